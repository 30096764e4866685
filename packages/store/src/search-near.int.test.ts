// Location.near (latitude|longitude[|distance[|units]], default 5 km): bounding box on the indexed
// position plus the haversine distance (search-sql.ts nearPredicate). Exact match sets on PGlite
// and PostgreSQL. Distances: 0.01° of latitude ≈ 1.112 km.
import type { Location } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { OperationOutcomeError } from '@tic/fhir';
import { Repository } from './repository.ts';
import type { SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import { parseNear } from './search-query.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, statusOf, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };

describe('parseNear', () => {
  it('reads latitude|longitude|distance|units with km as default unit and 5 km as default distance', () => {
    expect(parseNear('52|5')).toEqual({ lat: 52, long: 5, km: 5 });
    expect(parseNear('-33.87|151.21|12')).toEqual({ lat: -33.87, long: 151.21, km: 12 });
    expect(parseNear('52|5|3000|m')).toEqual({ lat: 52, long: 5, km: 3 });
    expect(parseNear('52|5|2|mi').km).toBeCloseTo(3.218688, 6);
    expect(parseNear('52|5|2|[mi_i]').km).toBeCloseTo(3.218688, 6);
    expect(parseNear('52|5|le2|km').km).toBe(2);
  });
  it.each(['52', 'abc|5', '95|5', '52|181', '52|5|-1', '52|5|x', '52|5|5|furlong', '52|5|gt5', '52|5|5|km|x', '52|5||furlong'])('rejects %s', (v) => {
    expect(() => parseNear(v)).toThrow(OperationOutcomeError);
  });
});

describe.each(testDatabaseKinds())('near search on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, system, { modules: [] });
  const page = (q: Record<string, string>, strict = false): Promise<SearchResult> => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = [v];
    return searchResources(t.db, system, [], 'Location', query, strict);
  };
  const ids = async (q: Record<string, string>) => (await page(q)).entries.map((e) => e.resource.id!).sort();
  const at = (name: string, latitude?: number, longitude?: number): Location => ({
    resourceType: 'Location',
    name,
    ...(latitude !== undefined && longitude !== undefined ? { position: { latitude, longitude } } : {}),
  });

  let centre: Location, north3: Location, north11: Location, sydney: Location, east179: Location, west179: Location;
  const set = (...l: Location[]) => l.map((x) => x.id!).sort();

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    centre = await repo().create(at('centre', 52, 5));
    north3 = await repo().create(at('north 3.3 km', 52.03, 5)); // 3.34 km
    north11 = await repo().create(at('north 11 km', 52.1, 5)); // 11.12 km
    sydney = await repo().create(at('far away', -33.87, 151.21));
    east179 = await repo().create(at('east of the antimeridian', 0, 179.99));
    west179 = await repo().create(at('west of the antimeridian', 0, -179.99));
    await repo().create(at('no position'));
  });
  afterAll(() => t.drop());

  it('inside and outside the distance, in km, m and miles', async () => {
    expect(await ids({ near: '52|5|5|km' })).toEqual(set(centre, north3));
    expect(await ids({ near: '52|5|12' })).toEqual(set(centre, north3, north11));
    expect(await ids({ near: '52|5|11' })).toEqual(set(centre, north3));
    expect(await ids({ near: '52|5|3000|m' })).toEqual(set(centre));
    expect(await ids({ near: '52|5|3500|m' })).toEqual(set(centre, north3));
    expect(await ids({ near: '52|5|2|mi' })).toEqual(set(centre)); // 3.22 km
    expect(await ids({ near: '52|5|8|mi' })).toEqual(set(centre, north3, north11)); // 12.9 km
    expect(await ids({ near: '52.1|5|8' })).toEqual(set(north3, north11)); // 7.8 km from the centre
    expect(await ids({ near: '-33.8|151.2|10' })).toEqual(set(sydney));
    expect(await ids({ near: '10|10|100' })).toEqual([]);
  });

  it('missing distance: the 5 km default', async () => {
    expect(await ids({ near: '52|5' })).toEqual(set(centre, north3));
    expect(await ids({ near: '52.1|5' })).toEqual(set(north11));
  });

  it('across the antimeridian (2.2 km apart)', async () => {
    expect(await ids({ near: '0|-179.99|5' })).toEqual(set(east179, west179));
    expect(await ids({ near: '0|180|1.5' })).toEqual(set(east179, west179));
    expect(await ids({ near: '0|179.99|1' })).toEqual(set(east179));
  });

  it('OR values, other filters and updates', async () => {
    expect(await ids({ near: '52|5|1,-33.87|151.21|1' })).toEqual(set(centre, sydney));
    expect(await ids({ near: '52|5|12', name: 'north' })).toEqual(set(north3, north11));
    const r = await page({ near: '52|5|12', _total: 'accurate', _count: '1' });
    expect(r.total).toBe(3);
    const moved = await repo().update<Location>({ ...at('centre', 40, 5), id: centre.id });
    expect(await ids({ near: '52|5' })).toEqual(set(north3));
    expect(await ids({ near: '40|5' })).toEqual(set(moved));
    await repo().update<Location>({ ...at('centre', 52, 5), id: centre.id });
  });

  it('bad values: warnings, 400 when strict', async () => {
    for (const near of ['abc|5', '95|5', '52|5|5|furlong', '52', '52|5|-3']) {
      expect(await statusOf(page({ near }, true))).toBe(400);
      const lenient = await page({ near });
      expect(lenient.warnings).toHaveLength(1);
    }
    expect(await statusOf(page({ 'near:missing': 'true' }, true))).toBe(400);
  });
});
