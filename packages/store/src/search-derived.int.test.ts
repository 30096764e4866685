// Union and composite parameters searched from their base parameters' rows (indexer.ts
// planDerived, search-sql.ts): combo-code is code | component-code, code-value-concept the
// Observation's code and value-concept rows, component-… and combo-… composites the component rows
// of one element (joined on grp). The same answers as when each had rows of its own, on PGlite
// and PostgreSQL; and migration 11 re-indexes what was stored before it. Codes are local test
// codes (LOCAL) and the LOINC codes of the R4 spec's blood-pressure example (85354-9, 8480-6).
import type { Observation } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { PGliteDb } from './db.ts';
import { Repository } from './repository.ts';
import { migrate, migrations } from './migrations.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const LOINC = 'http://loinc.org';
const LOCAL = 'http://example.org/test-codes';
const coded = (code: string, display?: string) => ({ coding: [{ system: LOCAL, code, ...(display ? { display } : {}) }] });

/** An item answer: code q, value a. */
const item = (q: string, a: string): Observation => ({ resourceType: 'Observation', status: 'final', code: coded(q), valueCodeableConcept: coded(a) });
/** A panel without a value of its own: components (code, value) each. */
const panel = (code: string, components: Array<[string, string]>): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: coded(code),
  component: components.map(([c, v]) => ({ code: coded(c), valueCodeableConcept: coded(v) })),
});

describe.each(testDatabaseKinds())('union and composite parameters from base rows on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, system, { modules: [] });
  const ids = async (q: Record<string, string | string[]>) => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = Array.isArray(v) ? v : [v];
    return (await searchResources(t.db, system, [], 'Observation', query)).entries.map((e) => e.resource.id!).sort();
  };
  const set = (...o: Observation[]) => o.map((x) => x.id!).sort();
  let q1yes: Observation, q1no: Observation, q2yes: Observation, p1: Observation, p2: Observation, bare: Observation;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    q1yes = await repo().create(item('q1', 'yes'));
    q1no = await repo().create(item('q1', 'no'));
    q2yes = await repo().create(item('q2', 'yes'));
    // p1: component q1 = no, component q2 = yes. "q1$yes" must not match (crossed components).
    p1 = await repo().create(panel('p', [['q1', 'no'], ['q2', 'yes']]));
    p2 = await repo().create(panel('p', [['q1', 'yes']]));
    bare = await repo().create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '85354-9', display: 'Blood pressure panel' }] } });
  });
  afterAll(() => t.drop());

  it('stores no rows for the unions and the composites, and a grp per component', async () => {
    const rows = await t.db.query<{ code: string }>(`SELECT DISTINCT code FROM sp_token WHERE resource_type = 'Observation' AND (code LIKE 'combo-%' OR code LIKE '%$%')`);
    expect(rows.rows).toEqual([]);
    const grps = await t.db.query<{ code: string; value: string; grp: number }>(`SELECT code, value, grp FROM sp_token WHERE id = $1 AND code LIKE 'component-%' ORDER BY code, grp`, [p1.id]);
    expect(grps.rows).toEqual([
      { code: 'component-code', value: 'q1', grp: 0 },
      { code: 'component-code', value: 'q2', grp: 1 },
      { code: 'component-value-concept', value: 'no', grp: 0 },
      { code: 'component-value-concept', value: 'yes', grp: 1 },
    ]);
  });

  it('combo-code and combo-value-concept: the resource and its components', async () => {
    expect(await ids({ 'combo-code': 'q1' })).toEqual(set(q1yes, q1no, p1, p2));
    expect(await ids({ 'combo-code': `${LOCAL}|q2` })).toEqual(set(q2yes, p1));
    expect(await ids({ 'combo-code': 'p' })).toEqual(set(p1, p2));
    expect(await ids({ 'combo-code': 'q2,p' })).toEqual(set(q2yes, p1, p2));
    expect(await ids({ 'combo-value-concept': 'yes' })).toEqual(set(q1yes, q2yes, p1, p2));
    expect(await ids({ 'combo-code': 'q1', 'combo-value-concept': 'no' })).toEqual(set(q1no, p1));
    // Next to a driving filter, and driving with paging.
    expect(await ids({ 'combo-code': 'q1', status: 'final' })).toEqual(set(q1yes, q1no, p1, p2));
    const first = await searchResources(t.db, system, [], 'Observation', { 'combo-code': ['q1'], _count: ['2'], _total: ['accurate'] });
    expect(first.total).toBe(4);
    expect(first.entries).toHaveLength(2);
    const second = await searchResources(t.db, system, [], 'Observation', { 'combo-code': ['q1'], _count: ['2'], _cursor: [first.nextCursor!] });
    expect([...first.entries, ...second.entries].map((e) => e.resource.id!).sort()).toEqual(set(q1yes, q1no, p1, p2));
  });

  it('combo-code with :missing, :not, :text and _sort', async () => {
    expect(await ids({ 'combo-code:missing': 'false' })).toEqual(set(q1yes, q1no, q2yes, p1, p2, bare));
    expect(await ids({ 'combo-code:missing': 'true' })).toEqual([]);
    expect(await ids({ 'combo-value-concept:missing': 'true' })).toEqual(set(bare));
    // :not: no value matches, neither the resource's nor a component's.
    expect(await ids({ 'combo-code:not': 'q1' })).toEqual(set(q2yes, bare));
    expect(await ids({ 'combo-code:text': 'blood pressure' })).toEqual(set(bare));
    const sorted = await searchResources(t.db, system, [], 'Observation', { 'combo-code': ['q1,q2'], _sort: ['combo-code'] });
    // The lowest value of each: q1 for q1yes, q1no, p1 (q1 in a component), p2; q2 for q2yes.
    expect(sorted.entries.map((e) => e.resource.id).at(-1)).toBe(q2yes.id);
  });

  it('code-value-concept: the Observation\'s own code and value', async () => {
    expect(await ids({ 'code-value-concept': 'q1$yes' })).toEqual(set(q1yes));
    expect(await ids({ 'code-value-concept': `${LOCAL}|q1$${LOCAL}|no` })).toEqual(set(q1no));
    expect(await ids({ 'code-value-concept': 'q1$yes,q2$yes' })).toEqual(set(q1yes, q2yes));
    expect(await ids({ 'code-value-concept': 'q2$no' })).toEqual([]);
    expect(await ids({ 'code-value-concept': 'p$yes' })).toEqual([]); // the panel has no value
  });

  it('component- and combo-code-value-concept: code and value of one component', async () => {
    expect(await ids({ 'component-code-value-concept': 'q1$no' })).toEqual(set(p1));
    expect(await ids({ 'component-code-value-concept': 'q1$yes' })).toEqual(set(p2)); // not p1: q1 = no there
    expect(await ids({ 'component-code-value-concept': 'q2$no' })).toEqual([]);
    expect(await ids({ 'combo-code-value-concept': 'q1$yes' })).toEqual(set(q1yes, p2));
    expect(await ids({ 'combo-code-value-concept': 'q1$no' })).toEqual(set(q1no, p1));
    expect(await ids({ 'combo-code-value-concept': 'p$yes' })).toEqual([]);
    expect(await ids({ 'combo-code-value-concept': ['q1$no', 'q2$yes'] })).toEqual(set(p1));
  });

  it('an update rewrites the component groups', async () => {
    const changed = await repo().update<Observation>({ ...panel('p', [['q2', 'no'], ['q1', 'yes']]), id: p1.id });
    expect(await ids({ 'component-code-value-concept': 'q1$no' })).toEqual([]);
    expect(await ids({ 'component-code-value-concept': 'q1$yes' })).toEqual(set(changed, p2));
    await repo().update<Observation>({ ...panel('p', [['q1', 'no'], ['q2', 'yes']]), id: p1.id });
    expect(await ids({ 'component-code-value-concept': 'q1$no' })).toEqual(set(p1));
  });
});

describe('migration 11 on existing data', () => {
  it('re-indexes Observations stored with part and union rows and ungrouped component rows', async () => {
    const db = await PGliteDb.open();
    try {
      await db.query(`CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of migrations.filter((m) => m.version < 11)) {
        await db.exec(m.sql);
        await db.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      const r = new Repository(db, system, { modules: [] });
      const p = await r.create(panel('p', [['q1', 'no'], ['q2', 'yes']]));
      const i = await r.create(item('q1', 'yes'));
      // As written before migration 11: component rows without grp, part and union rows.
      await db.query(`UPDATE sp_token SET grp = NULL WHERE code LIKE 'component-%'`);
      await db.query(
        `INSERT INTO sp_token (resource_type, id, code, system, value, last_updated, grp)
         SELECT resource_type, id, c, system, value, last_updated, 0 FROM sp_token, unnest(ARRAY['code-value-concept$0', 'combo-code']) AS c WHERE code = 'code'`,
      );
      const before = (q: Record<string, string[]>) => searchResources(db, system, [], 'Observation', q);
      expect((await before({ 'component-code-value-concept': ['q1$no'] })).entries).toEqual([]); // no grp: no group
      expect(await migrate(db)).toEqual(expect.arrayContaining([11, 12]));
      const left = await db.query(`SELECT 1 FROM sp_token WHERE code LIKE 'combo-%' OR code LIKE '%$%' OR (code LIKE 'component-%' AND grp IS NULL)`);
      expect(left.rows).toEqual([]);
      expect((await before({ 'component-code-value-concept': ['q1$no'] })).entries.map((e) => e.resource.id)).toEqual([p.id]);
      expect((await before({ 'combo-code-value-concept': ['q1$yes'] })).entries.map((e) => e.resource.id)).toEqual([i.id]);
      expect((await before({ 'combo-code': ['q1'] })).entries.map((e) => e.resource.id).sort()).toEqual([p.id, i.id].sort());
    } finally {
      await db.close();
    }
  });
});
