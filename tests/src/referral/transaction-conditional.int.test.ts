// Transaction Bundles made of conditional creates on business identifiers, as referral delivery
// sends them: the lookups of a Bundle are answered together (one query for all identifier
// queries, the others as their own search), give the same matches as a search, respect what the
// client may see, and two Bundles carrying the same identifiers at once create each resource once.
import type { Bundle, BundleEntry, Patient, Resource } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import { Repository } from '@tic/store';
import type { Fhir } from '../helpers.ts';
import { expectOutcome, fhir, unique } from '../helpers.ts';

let t: TestApi;
let a: Fhir;
let b: Fhir;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
}, 120_000);
afterAll(async () => t?.close());

const SYS = 'urn:test:source';
const urn = (n: number) => `urn:uuid:7d1f0c2a-3b4e-4c5d-8e6f-${String(n).padStart(12, '0')}`;

/** A referral-like Bundle (Patient, ServiceRequest, Task): every entry a conditional create on its identifier. */
function delivery(key: string, extra: BundleEntry[] = []): Bundle {
  const ident = (type: string) => ({ system: SYS, value: `${key}/${type}` });
  const q = (type: string) => `identifier=${encodeURIComponent(SYS)}|${encodeURIComponent(`${key}/${type}`)}`;
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: urn(1), resource: { resourceType: 'Patient', identifier: [ident('Patient')], name: [{ family: 'Okafor' }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: q('Patient') } },
      {
        fullUrl: urn(2),
        resource: { resourceType: 'ServiceRequest', identifier: [ident('ServiceRequest')], status: 'active', intent: 'order', subject: { reference: urn(1) } },
        request: { method: 'POST', url: 'ServiceRequest', ifNoneExist: q('ServiceRequest') },
      },
      {
        fullUrl: urn(3),
        resource: { resourceType: 'Task', identifier: [ident('Task')], status: 'requested', intent: 'order', focus: { reference: urn(2) }, for: { reference: urn(1) } },
        request: { method: 'POST', url: 'Task', ifNoneExist: q('Task') },
      },
      ...extra,
    ],
  };
}

async function count(client: Fhir, query: string): Promise<number> {
  const res = await client.get(`${query}&_summary=count`);
  expect(res.status).toBe(200);
  return (res.body as Bundle).total!;
}

describe('conditional creates in a transaction', () => {
  it('creates what does not exist, finds what does, and links the found ids', async () => {
    const key = unique('cc-');
    const existing = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/Patient` }] });
    const first = await a.post('', delivery(key));
    expect(first.status).toBe(200);
    const entries = (first.body as Bundle).entry!;
    expect(entries.map((e) => e.response?.status)).toEqual(['200 OK', '201 Created', '201 Created']);
    expect(entries[0].response?.location).toContain(`Patient/${existing.id}/_history/`);
    // A match answers like a create: absolute Location, ETag and lastModified.
    expect(entries[0].response?.location).toMatch(/^https?:\/\//);
    expect(entries[0].response?.location).toBe(entries[1].response?.location?.replace(/ServiceRequest\/.*$/, `Patient/${existing.id}/_history/1`));
    expect(entries[0].response?.etag).toBe('W/"1"');
    expect(entries[0].response?.lastModified).toBeTruthy();
    expect((entries[1].resource as { subject?: { reference?: string } }).subject?.reference).toBe(`Patient/${existing.id}`);
    // Again: everything is found, nothing new, the same ids.
    const again = await a.post('', delivery(key));
    expect(again.status).toBe(200);
    const second = (again.body as Bundle).entry!;
    expect(second.map((e) => e.response?.status)).toEqual(['200 OK', '200 OK', '200 OK']);
    const idIn = (e: BundleEntry) => /(?:^|\/)(?:ServiceRequest|Task)\/([^/]+)\/_history/.exec(e.response?.location ?? '')?.[1];
    expect(idIn(second[1])).toBe(idIn(entries[1]));
    expect(idIn(second[2])).toBe(idIn(entries[2]));
    expect(idIn(second[2])).toBeDefined();
    for (const type of ['Patient', 'ServiceRequest', 'Task']) expect(await count(a, `${type}?identifier=${SYS}|${key}/${type}`)).toBe(1);
  });

  it('mixes identifier lookups with other conditional queries and conditional references', async () => {
    const key = unique('mix-');
    const family = unique('Fam');
    const byName = await a.create<Patient>({ resourceType: 'Patient', name: [{ family }] });
    const other = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/other` }] });
    const res = await a.post(
      '',
      delivery(key, [
        { fullUrl: urn(4), resource: { resourceType: 'Patient', name: [{ family }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `family=${family}` } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?identifier=${SYS}|${key}/other` } }, request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'y' }, subject: { reference: `Patient?identifier=${SYS}|${key}/other` } }, request: { method: 'POST', url: 'Observation' } },
      ]),
    );
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    expect(entries[3].response?.status).toBe('200 OK');
    expect(entries[3].response?.location).toContain(`Patient/${byName.id}/`);
    expect(entries[0].response?.status).toBe('201 Created');
    for (const e of entries.slice(4)) expect((e.resource as { subject?: { reference?: string } }).subject?.reference).toBe(`Patient/${other.id}`);
    // A conditional reference that matches nothing fails its entry.
    const missing = await a.post('', delivery(unique('none-'), [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'z' }, subject: { reference: `Patient?identifier=${SYS}|nobody` } }, request: { method: 'POST', url: 'Observation' } }]));
    expect(expectOutcome(missing, 404).issue[0].diagnostics).toContain('Bundle.entry[3]');
  });

  it('refuses a query that matches more than one resource, naming its entry, and writes nothing', async () => {
    const key = unique('multi-');
    for (let i = 0; i < 2; i++) await a.create<Resource>({ resourceType: 'ServiceRequest', identifier: [{ system: SYS, value: `${key}/ServiceRequest` }], status: 'active', intent: 'order', subject: { reference: 'Patient/x' } } as Resource);
    const res = await a.post('', delivery(key));
    const outcome = expectOutcome(res, 412);
    expect(outcome.issue[0].diagnostics).toContain('Bundle.entry[1]');
    expect(await count(a, `Patient?identifier=${SYS}|${key}/Patient`)).toBe(0);
  });

  it('does not match what the client may not see (as a search would not)', async () => {
    const key = unique('vis-');
    await b.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/Patient` }] });
    const res = await a.post('', delivery(key));
    expect(res.status).toBe(200);
    expect((res.body as Bundle).entry![0].response?.status).toBe('201 Created');
  });

  it('creates each resource once when the same Bundle arrives several times at once', async () => {
    const key = unique('race-');
    const answers = await Promise.all([1, 2, 3, 4].map(() => a.post('', delivery(key))));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    const created = answers.flatMap((r) => (r.body as Bundle).entry!.filter((e) => e.response?.status === '201 Created'));
    expect(created).toHaveLength(3);
    for (const type of ['Patient', 'ServiceRequest', 'Task']) expect(await count(a, `${type}?identifier=${SYS}|${key}/${type}`)).toBe(1);
  }, 30_000);
});

describe('store: conditional lookups together', () => {
  const asOrgA = () => {
    const sys = t.api.systemRepository();
    return new Repository(sys.db, { organization: 'Organization/org-a', clientId: 'client-a' }, sys.services);
  };

  it('gives the same matches as one search per query, in the order asked', async () => {
    const key = unique('st-');
    const p1 = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/1` }], name: [{ family: `${key}x` }] });
    const p2 = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/2` }, { system: SYS, value: `${key}/2` }] });
    const p3 = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/3` }] });
    await b.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/3` }] });
    const deleted = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: SYS, value: `${key}/4` }] });
    expect((await a.del(`Patient/${deleted.id}`)).status).toBe(204);
    const repo = asOrgA();
    const queries = [
      { type: 'Patient', query: `identifier=${SYS}|${key}/3` },
      { type: 'Patient', query: `identifier=${SYS}|${key}/missing` },
      { type: 'Patient', query: `identifier=${SYS}|${key}/2` },
      { type: 'Patient', query: `family=${key}x` },
      { type: 'Patient', query: `identifier=${SYS}|${key}/4` },
      { type: 'Patient', query: `identifier=${SYS}|${key}/1,${SYS}|${key}/2` },
      { type: 'Observation', query: `identifier=${SYS}|${key}/1` },
    ];
    const together = await repo.findConditionalMatches(queries, 2);
    const oneByOne = await Promise.all(queries.map((q) => repo.searchByQueryString(q.type, q.query, 2)));
    const idsOf = (rs: Resource[][]) => rs.map((r) => r.map((x) => x.id).sort());
    expect(idsOf(together)).toEqual(idsOf(oneByOne));
    expect(idsOf(together)).toEqual([[p3.id], [], [p2.id], [p1.id], [], [p1.id, p2.id].sort(), []]);
    // As the server (no visibility rule) both Patients with identifier 3 match.
    const system = t.api.systemRepository();
    expect((await system.findConditionalMatches([{ type: 'Patient', query: `identifier=${SYS}|${key}/3` }], 2))[0]).toHaveLength(2);
  });

  it('reads several resources at once, leaving out missing, deleted and hidden ones', async () => {
    const mine = await a.create<Patient>({ resourceType: 'Patient' });
    const gone = await a.create<Patient>({ resourceType: 'Patient' });
    expect((await a.del(`Patient/${gone.id}`)).status).toBe(204);
    const theirs = await b.create<Patient>({ resourceType: 'Patient' });
    const repo = asOrgA();
    const keys = [mine, gone, theirs, { id: 'nope' }].map((p) => ({ type: 'Patient', id: p.id! }));
    expect((await repo.readMany(keys)).map((r) => r.id)).toEqual([mine.id]);
    const system = t.api.systemRepository();
    expect((await system.readMany(keys)).map((r) => r.id).sort()).toEqual([mine.id, theirs.id].sort());
  });
});
