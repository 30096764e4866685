// Search never reveals another organisation's resources: not as matches, totals, through
// _include/_revinclude, chains or _has. On PGlite and PostgreSQL.
import type { Observation, Patient } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };
const orgB: RequestContext = { organization: 'Organization/b', clientId: 'b' };
const CODE = 'http://loinc.org|44249-1';

describe.each(testDatabaseKinds())('search visibility on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext) => new Repository(t.db, ctx, { modules: [] });
  const search = async (ctx: RequestContext, type: string, q: Record<string, string>) =>
    searchResources(t.db, ctx, [], type, Object.fromEntries(Object.entries(q).map(([k, v]) => [k, [v]])));
  const idsOf = (r: Awaited<ReturnType<typeof search>>, mode: 'match' | 'include') => r.entries.filter((e) => e.mode === mode).map((e) => e.resource.id).sort();

  let pa: Patient, pb: Patient, oa: Observation, ob: Observation, shared: Patient;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    pa = await repo(orgA).create<Patient>({ resourceType: 'Patient', name: [{ family: 'Avisible' }] });
    pb = await repo(orgB).create<Patient>({ resourceType: 'Patient', name: [{ family: 'Bhidden' }] });
    shared = await repo(system).create<Patient>({ resourceType: 'Patient', name: [{ family: 'Serverowned' }] });
    // A's observation points at B's patient; B's observation points at A's patient.
    oa = await repo(orgA).create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '1-8' }] }, subject: { reference: `Patient/${pb.id}` } });
    ob = await repo(orgB).create<Observation>({
      resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '44249-1' }] }, subject: { reference: `Patient/${pa.id}` },
    });
  }, 60_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('the server itself sees everything (control)', async () => {
    expect(idsOf(await search(system, 'Observation', { _id: oa.id!, _include: 'Observation:subject' }), 'include')).toEqual([pb.id]);
    expect(idsOf(await search(system, 'Patient', { '_has:Observation:subject:code': CODE }), 'match')).toEqual([pa.id]);
    expect(idsOf(await search(system, 'Observation', { 'subject:Patient.name': 'bhidden' }), 'match')).toEqual([oa.id]);
  });

  it('_include does not bring in a hidden target', async () => {
    const r = await search(orgA, 'Observation', { _id: oa.id!, _include: 'Observation:subject' });
    expect(idsOf(r, 'match')).toEqual([oa.id]);
    expect(idsOf(r, 'include')).toEqual([]);
  });

  it('_revinclude does not bring in a hidden source', async () => {
    expect(idsOf(await search(orgB, 'Patient', { _id: pa.id!, _revinclude: 'Observation:subject' }), 'match')).toEqual([]);
    expect(idsOf(await search(system, 'Patient', { _id: pa.id!, _revinclude: 'Observation:subject' }), 'include')).toEqual([ob.id]);
    const r = await search(orgA, 'Patient', { _id: pa.id!, _revinclude: 'Observation:subject' });
    expect(idsOf(r, 'match')).toEqual([pa.id]);
    expect(idsOf(r, 'include')).toEqual([]);
    const iter = await search(orgA, 'Patient', { _id: pa.id!, '_revinclude:iterate': 'Observation:subject', '_include:iterate': 'Observation:subject' });
    expect(idsOf(iter, 'include')).toEqual([]);
  });

  it('chains do not match through a hidden target', async () => {
    expect(idsOf(await search(orgA, 'Observation', { 'subject:Patient.name': 'bhidden' }), 'match')).toEqual([]);
    expect(idsOf(await search(orgA, 'Observation', { 'subject:Patient._id': pb.id! }), 'match')).toEqual([]);
    // The plain reference is A's own data, so it still matches.
    expect(idsOf(await search(orgA, 'Observation', { subject: `Patient/${pb.id}` }), 'match')).toEqual([oa.id]);
  });

  it('_has does not match through a hidden source', async () => {
    expect(idsOf(await search(orgA, 'Patient', { '_has:Observation:subject:code': CODE }), 'match')).toEqual([]);
    expect(idsOf(await search(orgB, 'Patient', { '_has:Observation:subject:code': CODE }), 'match')).toEqual([]);
  });

  it('totals count only visible resources; server-owned data is visible to all', async () => {
    const a = await search(orgA, 'Patient', { _total: 'accurate', _count: '0' });
    expect(a.total).toBe(2);
    const b = await search(orgB, 'Patient', { _summary: 'count' });
    expect(b.total).toBe(2);
    expect(idsOf(await search(orgB, 'Patient', { name: 'serverowned' }), 'match')).toEqual([shared.id]);
    expect(idsOf(await search(orgB, 'Patient', { name: 'avisible' }), 'match')).toEqual([]);
  });

  it('a share makes a resource visible to the other organisation, includes too', async () => {
    await t.db.query(`INSERT INTO resource_share (resource_type, id, org, reason) VALUES ('Patient', $1, 'Organization/a', 'referral')`, [pb.id]);
    const r = await search(orgA, 'Observation', { _id: oa.id!, _include: 'Observation:subject' });
    expect(idsOf(r, 'include')).toEqual([pb.id]);
    await t.db.query(`DELETE FROM resource_share WHERE id = $1`, [pb.id]);
  });
});
