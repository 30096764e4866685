// The store's contract suite: the same behaviour on PGlite and PostgreSQL.
import type { Observation, Patient, Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { OperationOutcomeError, statusForOutcome } from '@tic/fhir';
import { newResourceRow, Repository } from './repository.ts';
import type { AuditedWrite } from './journal.ts';
import { insertNewResources } from './write.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, statusOf, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };
const orgB: RequestContext = { organization: 'Organization/b', clientId: 'b' };


describe.each(testDatabaseKinds())('store contract on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext = system) => new Repository(t.db, ctx, { modules: [] });

  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 60_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('creates with version 1 and reads back', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: 'Ngata' }] });
    expect(p.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(p.meta?.versionId).toBe('1');
    const read = await repo().read<Patient>('Patient', p.id!);
    expect(read).toEqual(p);
  });

  it('updates with a new version and keeps every version', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    const u = await repo().update<Patient>({ ...p, gender: 'male' });
    expect(u.meta?.versionId).toBe('2');
    expect((await repo().readVersion<Patient>('Patient', p.id!, '1')).gender).toBe('female');
    expect((await repo().readVersion<Patient>('Patient', p.id!, '2')).gender).toBe('male');
    const history = await repo().historyEntries('Patient', p.id!, { count: 10, offset: 0 });
    expect(history.map((h) => h.versionId)).toEqual([2, 1]);
  });

  it('refuses a stale If-Match with 412 and exactly one of two concurrent updates wins', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient' });
    expect(await statusOf(repo().update({ ...p, gender: 'other' }, { ifMatch: '7' }))).toBe(412);
    const results = await Promise.allSettled([
      repo().update<Patient>({ ...p, gender: 'male' }, { ifMatch: '1' }),
      repo().update<Patient>({ ...p, gender: 'female' }, { ifMatch: '1' }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(statusForOutcome(rejected.reason)).toBe(412);
    expect((await repo().read<Patient>('Patient', p.id!)).meta?.versionId).toBe('2');
  });

  it('updates and deletes of hook-free types in one statement: versions in order under concurrency, audit rows and index rows follow', async () => {
    const audit = (writes: AuditedWrite[]) => writes.map(({ interaction, resource: r }) => ({ ownerOrg: 'Organization/a', content: JSON.stringify({ interaction, ref: `${r.resourceType}/${r.id}/_history/${r.meta?.versionId}` }) }));
    const a = new Repository(t.db, orgA, { modules: [], audit });
    const p = await a.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Before' }] });
    const updates = await Promise.all(Array.from({ length: 8 }, (_, i) => a.update<Patient>({ ...p, name: [{ family: `After${i}` }] })));
    expect(updates.map((u) => Number(u.meta?.versionId)).sort((x, y) => x - y)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    for (const u of updates) expect(await a.readVersion<Patient>('Patient', p.id!, u.meta!.versionId!)).toEqual(u);
    const current = await a.read<Patient>('Patient', p.id!);
    expect(current.meta?.versionId).toBe('9');
    expect(JSON.stringify(current)).not.toContain('tic-version-');
    // Index rows are the current version's only.
    expect(await a.search('Patient', { family: 'Before' })).toHaveLength(0);
    expect((await a.search<Patient>('Patient', { family: current.name![0].family! })).map((x) => x.id)).toEqual([p.id]);
    const rows = await t.db.query<{ content: string }>('SELECT content FROM audit_queue WHERE content LIKE $1', [`%Patient/${p.id}/%`]);
    expect(rows.rows.map((r) => (JSON.parse(r.content) as { ref: string }).ref).sort()).toEqual(
      Array.from({ length: 9 }, (_, i) => `Patient/${p.id}/_history/${i + 1}`).sort(),
    );
    // If-Match, hidden, deleted: the general path answers as before.
    expect(await statusOf(a.update({ ...p }, { ifMatch: '3' }))).toBe(412);
    expect(await statusOf(a.update({ ...p }, { ifMatch: 'x' }))).toBe(412);
    expect(await statusOf(new Repository(t.db, orgB, { modules: [] }).update({ ...p }))).toBe(403);
    expect(await statusOf(new Repository(t.db, orgB, { modules: [] }).delete('Patient', p.id!))).toBe(404);
    await a.delete('Patient', p.id!, { ifMatch: '9' });
    expect(await statusOf(a.read('Patient', p.id!))).toBe(410);
    await a.delete('Patient', p.id!);
    const history = await a.historyEntries('Patient', p.id!, { count: 20, offset: 0 });
    expect(history.map((h) => h.versionId)).toEqual([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(history[0].deleted).toBe(true);
    expect(await a.search('Patient', { _id: p.id! })).toHaveLength(0);
    // An update brings a deleted resource back as the next version.
    expect((await a.update<Patient>({ ...p, name: [{ family: 'Back' }] })).meta?.versionId).toBe('11');
  });

  it('deletes: read answers 410, history keeps the deletion', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient' });
    await repo().delete('Patient', p.id!);
    expect(await statusOf(repo().read('Patient', p.id!))).toBe(410);
    expect(await statusOf(repo().read('Patient', 'never-was'))).toBe(404);
    const h = await repo().historyEntries('Patient', p.id!, { count: 10, offset: 0 });
    expect(h[0].deleted).toBe(true);
    expect(await repo().search('Patient', { _id: p.id! })).toHaveLength(0);
  });

  it('creates on update with a client id', async () => {
    const u = await repo().updateWithOutcome<Patient>({ resourceType: 'Patient', id: 'client-chosen-1' });
    expect(u.created).toBe(true);
    expect(u.resource.meta?.versionId).toBe('1');
  });

  it('indexes token, reference, string and date parameters for search', async () => {
    const pt = await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: 'Müller', given: ['Ana'] }], birthDate: '1980-05-17', identifier: [{ system: 'urn:mrn', value: 'X-42' }] });
    const obs = await repo().create<Observation>({
      resourceType: 'Observation', status: 'final', subject: { reference: `Patient/${pt.id}` }, effectiveDateTime: '2026-03-04T10:00:00Z',
      code: { coding: [{ system: 'http://loinc.org', code: '102017-1' }] }, valueInteger: 4,
    });
    const ids = (rs: Resource[]) => rs.map((r) => r.id);
    expect(ids(await repo().search('Patient', { identifier: 'urn:mrn|X-42' }))).toEqual([pt.id]);
    expect(ids(await repo().search('Patient', { identifier: 'X-42' }))).toEqual([pt.id]);
    expect(ids(await repo().search('Patient', { family: 'muller' }))).toEqual([pt.id]);
    expect(ids(await repo().search('Patient', { birthdate: 'ge1980-05', family: 'Mü' }))).toEqual([pt.id]);
    expect(await repo().search('Patient', { birthdate: 'lt1980-05-17', family: 'Mü' })).toHaveLength(0);
    expect(ids(await repo().search('Observation', { subject: `Patient/${pt.id}`, code: 'http://loinc.org|102017-1' }))).toEqual([obs.id]);
    expect(ids(await repo().search('Observation', { patient: pt.id!, date: 'ge2026-03-04' }))).toEqual([obs.id]);
    expect(await repo().search('Observation', { subject: `Patient/${pt.id}`, code: 'http://loinc.org|999' })).toHaveLength(0);
  });

  it('hides another organisation’s resources from read and search', async () => {
    const mine = await repo(orgA).create<Patient>({ resourceType: 'Patient', gender: 'unknown', identifier: [{ system: 'urn:org-test', value: 'hidden' }] });
    expect((await repo(orgA).read('Patient', mine.id!)).id).toBe(mine.id);
    expect(await statusOf(repo(orgB).read('Patient', mine.id!))).toBe(404);
    expect(await repo(orgB).search('Patient', { identifier: 'urn:org-test|hidden' })).toHaveLength(0);
    expect(await statusOf(repo(orgB).update({ ...mine, gender: 'male' }))).toBe(403);
    expect(await statusOf(repo(orgB).delete('Patient', mine.id!))).toBe(404);
  });

  it('conditional create returns the existing match instead of a duplicate', async () => {
    const body: Patient = { resourceType: 'Patient', identifier: [{ system: 'urn:cc', value: '1' }] };
    const [a, b] = await Promise.all([repo().conditionalCreate(body, 'identifier=urn:cc|1'), repo().conditionalCreate(body, 'identifier=urn:cc|1')]);
    expect([a.created, b.created].filter(Boolean)).toHaveLength(kind === 'postgres' ? 1 : 1);
    expect(a.resource.id).toBe(b.resource.id);
  });

  it('createMany validates each shape once when the caller gives shapes, every resource otherwise', async () => {
    const validated: string[] = [];
    const validate = (r: Resource) => {
      const gender: string = (r as Patient).gender ?? '';
      validated.push(gender);
      if (gender === 'bad') throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'value', diagnostics: 'bad' }] }, 400);
    };
    const r = new Repository(t.db, system, { modules: [], validate });
    const patients = (genders: string[]) => genders.map((g, i) => ({ resourceType: 'Patient', gender: g, name: [{ family: `F${i}` }] }) as unknown as Patient);
    const shape = (p: Resource) => `${(p as Patient).gender}`; // the name masked
    await r.createMany(patients(['male', 'male', 'female']), { shape });
    expect(validated).toEqual(['male', 'female']);
    await r.createMany(patients(['female', 'other']), { shape });
    expect(validated).toEqual(['male', 'female', 'other']);
    // An invalid shape is refused (nothing stored) and checked again next time.
    expect(await statusOf(r.createMany(patients(['bad']), { shape }))).toBe(400);
    expect(await statusOf(r.createMany(patients(['bad']), { shape }))).toBe(400);
    expect(validated.filter((g) => g === 'bad')).toHaveLength(2);
    // The shape is taken before the store assigns the id.
    await r.createMany(patients(['male']), { shape: (p) => JSON.stringify(p).replace(/"family":"F\d+"/, '') });
    await r.createMany(patients(['male']), { shape: (p) => JSON.stringify(p).replace(/"family":"F\d+"/, '') });
    expect(validated).toEqual(['male', 'female', 'other', 'bad', 'bad', 'male']);
    // Without shapes, or a shape of undefined, every resource is validated.
    validated.length = 0;
    await r.createMany(patients(['male', 'male']));
    await r.createMany(patients(['male']), { shape: () => undefined });
    expect(validated).toEqual(['male', 'male', 'male']);
  });

  it('createMany keepIds stores the caller\'s ids with their audit rows, refuses a bad or used id and names the resource of a validation failure', async () => {
    const audited: string[] = [];
    const validate = (r: Resource) => {
      if ((r as { gender?: string }).gender === 'bad') throw new OperationOutcomeError({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'value', diagnostics: 'bad' }] }, 400);
    };
    const audit = (writes: AuditedWrite[]) =>
      writes.map(({ interaction, resource: r }) => {
        audited.push(`${interaction} ${r.resourceType}/${r.id}/${r.meta?.versionId}`);
        return { ownerOrg: 'Organization/a', content: JSON.stringify({ what: `${r.resourceType}/${r.id}` }) };
      });
    const r = new Repository(t.db, orgA, { modules: [], validate, audit });
    const ids = [crypto.randomUUID(), crypto.randomUUID()];
    const [p, o] = await r.createMany<Resource>([
      { resourceType: 'Patient', id: ids[0] },
      { resourceType: 'Observation', id: ids[1], status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${ids[0]}` } },
    ], { keepIds: true });
    expect([p.id, o.id, p.meta?.versionId]).toEqual([...ids, '1']);
    expect((await r.read<Observation>('Observation', ids[1])).subject?.reference).toBe(`Patient/${ids[0]}`);
    expect(audited).toEqual([`create Patient/${ids[0]}/1`, `create Observation/${ids[1]}/1`]);
    const queued = await t.db.query<{ content: string }>('SELECT content FROM audit_queue WHERE content LIKE $1', [`%${ids[0]}%`]);
    expect(queued.rows).toHaveLength(1);
    const count = async () => Number((await t.db.query<{ n: string }>('SELECT count(*)::text AS n FROM resource')).rows[0].n);
    const before = await count();
    // A used id: nothing of the call is written.
    const fresh = crypto.randomUUID();
    expect(await statusOf(r.transaction((tx) => tx.createMany([{ resourceType: 'Patient', id: fresh }, { resourceType: 'Patient', id: ids[0] }] as Patient[], { keepIds: true })))).toBe(409);
    expect(await statusOf(r.createMany([{ resourceType: 'Patient', id: 'not an id' }] as Patient[], { keepIds: true }))).toBe(400);
    expect(await statusOf(r.createMany([{ resourceType: 'Patient' }] as Patient[], { keepIds: true }))).toBe(400);
    // errorAt gets the failing resource's number.
    const at: number[] = [];
    const failed = r.createMany([{ resourceType: 'Patient', id: crypto.randomUUID() }, { resourceType: 'Patient', id: crypto.randomUUID(), gender: 'bad' }] as unknown as Patient[], {
      keepIds: true,
      errorAt: (i, e) => (at.push(i), e),
    });
    expect(await statusOf(failed)).toBe(400);
    expect(at).toEqual([1]);
    expect(await count()).toBe(before);
  });

  it('indexes a string with a lone surrogate (as U+FFFD, what UTF-8 makes of it) and keeps it in the content', async () => {
    const family = `Sur\ud800rogate-${kind}`;
    const created = await repo().createMany<Patient>([{ resourceType: 'Patient', name: [{ family }] }, { resourceType: 'Patient', name: [{ family: 'Plain' }] }]);
    expect((await repo().read<Patient>('Patient', created[0].id!)).name?.[0].family).toBe(family);
    expect((await repo().search<Patient>('Patient', { family: `Sur\ufffdrogate-${kind}` })).map((p) => p.id)).toEqual([created[0].id]);
    const single = await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: `One\udc00-${kind}` }] });
    expect((await repo().search<Patient>('Patient', { family: `One\ufffd-${kind}` })).map((p) => p.id)).toEqual([single.id]);
  });

  it('createMany stores content exactly, quotes, backslashes and control characters included, and returns what a read returns', async () => {
    const family = `Q"u\\o\u001ete's ${kind}`;
    const created = await repo().createMany<Patient>([{ resourceType: 'Patient', name: [{ family }] }, { resourceType: 'Patient', name: [{ family: '"' }], gender: 'other' }]);
    for (const c of created) expect(await repo().read<Patient>('Patient', c.id!)).toEqual(c);
    expect(created[0].name?.[0].family).toBe(family);
    // Content that is not JSON text could hold the separator itself: sent as a text[] then.
    const odd = newResourceRow(system, { resourceType: 'Basic', code: { text: 'x' } } as Resource);
    odd.row.content = `{"resourceType":"Basic","id":"${odd.row.id}","x":"a\u001eb"}`;
    await insertNewResources(t.db, [odd, newResourceRow(system, { resourceType: 'Basic', code: { text: 'y' } } as Resource)]);
    const stored = await t.db.query<{ content: string }>('SELECT content FROM resource WHERE resource_type = $1 AND id = $2', ['Basic', odd.row.id]);
    expect(stored.rows[0].content).toBe(odd.row.content);
  });

  it('findByIdentifiers answers look-ups of several types at once, values with search escapes included, visibility applied', async () => {
    const sys = `urn:fbi-${kind}`;
    const [p1] = await repo(orgA).createMany<Patient>([{ resourceType: 'Patient', identifier: [{ system: sys, value: 'a' }] }]);
    const odd = await repo(orgA).create<Patient>({ resourceType: 'Patient', identifier: [{ system: sys, value: 'x,y|z$\\w' }] });
    const obs = await repo(orgA).create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 't' }, identifier: [{ system: sys, value: 'a' }] });
    const hidden = await repo(orgB).create<Patient>({ resourceType: 'Patient', identifier: [{ system: sys, value: 'b' }] });
    const found = await repo(orgA).findByIdentifiers([
      { type: 'Patient', system: sys, value: 'a' },
      { type: 'Observation', system: sys, value: 'a' },
      { type: 'Patient', system: sys, value: 'x,y|z$\\w' },
      { type: 'Patient', system: sys, value: 'b' },
      { type: 'Patient', system: sys, value: 'x' },
    ], 10);
    expect(found.map((list) => list.map((r) => r.id))).toEqual([[p1.id], [obs.id], [odd.id], [], []]);
    expect((await repo(orgB).findByIdentifiers([{ type: 'Patient', system: sys, value: 'b' }], 10))[0].map((r) => r.id)).toEqual([hidden.id]);
  });
});
