// What a transaction wrote (journal.ts) and the look-ups it answers: Repository.referring finds
// what refers to a resource without a statement when that resource was created in the same
// transaction under an id the server generated, and by one prepared statement otherwise, with
// the same answer as the search. On PGlite and PostgreSQL.
import type { CarePlan, Consent, Patient, Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { Db } from './db.ts';
import { Repository } from './repository.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };

const consent = (patient: string, status: Consent['status'] = 'active'): Consent => ({
  resourceType: 'Consent',
  status,
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
  patient: { reference: patient },
});

/** Counts the statements sent on a transaction's Db while `fn` runs. */
async function statementsDuring(db: Db, fn: () => Promise<unknown>): Promise<number> {
  let n = 0;
  const query = db.query.bind(db);
  (db as { query: Db['query'] }).query = ((...args: Parameters<Db['query']>) => {
    n++;
    return query(...args);
  }) as Db['query'];
  try {
    await fn();
  } finally {
    (db as { query: Db['query'] }).query = query;
  }
  return n;
}

const idsOf = (rs: Resource[]) => rs.map((r) => r.id);

describe.each(testDatabaseKinds())('write journal and referring look-ups on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext = system) => new Repository(t.db, ctx, { modules: [] });

  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 60_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('answers what refers to a resource created in the same transaction from the transaction, without a statement', async () => {
    await repo().transaction(async (tx) => {
      const p = await tx.create<Patient>({ resourceType: 'Patient' });
      const c1 = await tx.create(consent(`Patient/${p.id}`));
      const c2 = await tx.create(consent(`Patient/${p.id}/_history/1`, 'inactive'));
      await tx.create(consent('Patient/someone-else'));
      const deleted = await tx.create(consent(`Patient/${p.id}`));
      await tx.delete('Consent', deleted.id!);
      let found: Consent[] = [];
      expect(await statementsDuring(tx.db, async () => (found = await tx.referring<Consent>('Consent', 'patient', `Patient/${p.id}`, 10)))).toBe(0);
      expect(idsOf(found)).toEqual([c1.id, c2.id]);
      // The search agrees.
      expect(idsOf(await tx.search<Consent>('Consent', { patient: `Patient/${p.id}` })).sort()).toEqual([c1.id, c2.id].sort());
      // An update moving a Consent to another person takes it out.
      await tx.update<Consent>({ ...c2, patient: { reference: 'Patient/someone-else' } });
      expect(idsOf(await tx.referring<Consent>('Consent', 'patient', `Patient/${p.id}`, 10))).toEqual([c1.id]);
    });
  });

  it('forgets what a rolled-back savepoint wrote', async () => {
    await repo().transaction(async (tx) => {
      const p = await tx.create<Patient>({ resourceType: 'Patient' });
      const kept = await tx.create(consent(`Patient/${p.id}`));
      await expect(
        tx.db.transaction(async (sp) => {
          await tx.withDb(sp).create(consent(`Patient/${p.id}`));
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      expect(idsOf(await tx.referring<Consent>('Consent', 'patient', `Patient/${p.id}`, 10))).toEqual([kept.id]);
      expect(idsOf(await tx.search<Consent>('Consent', { patient: `Patient/${p.id}` }))).toEqual([kept.id]);
    });
  });

  it('looks up in the database when the resource was not created here under a generated id', async () => {
    const before = await repo().create<Patient>({ resourceType: 'Patient' });
    const old = await repo().create(consent(`Patient/${before.id}`));
    const clientId = `client-chosen-${Math.random().toString(36).slice(2, 8)}`;
    await repo().transaction(async (tx) => {
      const c = await tx.create(consent(`Patient/${before.id}`));
      let found: Consent[] = [];
      expect(await statementsDuring(tx.db, async () => (found = await tx.referring<Consent>('Consent', 'patient', `Patient/${before.id}`, 10)))).toBe(1);
      // In _lastUpdated order, then by id (two creates in the same millisecond: version 7 ids are
      // ordered by the millisecond only).
      const inOrder = [old, c].sort((x, y) => (x.meta!.lastUpdated! < y.meta!.lastUpdated! ? -1 : x.meta!.lastUpdated! > y.meta!.lastUpdated! ? 1 : x.id! < y.id! ? -1 : 1));
      expect(idsOf(found)).toEqual(idsOf(inOrder));
      // A client-chosen id (create on update) may have been referred to before it existed.
      const early = await tx.create(consent(`Patient/${clientId}`));
      await tx.update<Patient>({ resourceType: 'Patient', id: clientId });
      expect(await statementsDuring(tx.db, async () => (found = await tx.referring<Consent>('Consent', 'patient', `Patient/${clientId}`, 10)))).toBe(1);
      expect(idsOf(found)).toEqual([early.id]);
      // A Bundle's ids are generated by the server: created with idAssigned, they are answered here.
      const assigned = await tx.create<Patient>({ resourceType: 'Patient' }, { id: crypto.randomUUID(), idAssigned: true });
      const onAssigned = await tx.create(consent(`Patient/${assigned.id}`));
      expect(await statementsDuring(tx.db, async () => (found = await tx.referring<Consent>('Consent', 'patient', `Patient/${assigned.id}`, 10)))).toBe(0);
      expect(idsOf(found)).toEqual([onAssigned.id]);
    });
  });

  it('applies the client\'s visibility: another organisation\'s resources are not returned from the transaction', async () => {
    await repo(orgA).transaction(async (tx) => {
      const p = await tx.create<Patient>({ resourceType: 'Patient' });
      const mine = await tx.create<CarePlan>({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${p.id}` } });
      // Written by the server in the same transaction on behalf of another organisation.
      const theirs = await new Repository(tx.db, { organization: 'Organization/b', clientId: 'b' }, { modules: [] }).create<CarePlan>({ resourceType: 'CarePlan', status: 'active', intent: 'plan', subject: { reference: `Patient/${p.id}` } });
      const found = await tx.referring<CarePlan>('CarePlan', 'subject', `Patient/${p.id}`, 10);
      expect(idsOf(found)).toEqual([mine.id]);
      expect(idsOf(found)).not.toContain(theirs.id);
      expect(idsOf(await tx.search<CarePlan>('CarePlan', { subject: `Patient/${p.id}` }))).toEqual([mine.id]);
    });
  });

  it('answers a read of a resource written in the transaction from it', async () => {
    await repo().transaction(async (tx) => {
      const p = await tx.create<Patient>({ resourceType: 'Patient', gender: 'female' });
      const u = await tx.update<Patient>({ ...p, gender: 'male' });
      expect(tx.writtenInTransaction<Patient>(`Patient/${p.id}`)).toEqual(u);
      expect(tx.writtenInTransaction<Patient>(`Patient/${p.id}`)).toEqual(await tx.read<Patient>('Patient', p.id!));
      await tx.delete('Patient', p.id!);
      expect(tx.writtenInTransaction(`Patient/${p.id}`)).toBeUndefined();
      expect(tx.writtenInTransaction('Patient/not-written-here')).toBeUndefined();
    });
  });
});
