// An update of a type with write hooks given the stored row the caller read (UpdateOptions +
// current): written against it without reading it again, and refused with 412 when the row has
// moved on since, as If-Match is. On PGlite and PostgreSQL.
import type { Patient, Resource } from '@medplum/fhirtypes';
import type { DomainModule } from '@tic/fhir';
import { OperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { Db } from './db.ts';
import { Repository } from './repository.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const previousSeen: Array<string | undefined> = [];
const hooked: DomainModule = {
  name: 'test-hooks',
  resourceTypes: ['Patient'],
  async beforeWrite(resource, ctx) {
    previousSeen.push((ctx.previous as Patient | undefined)?.gender);
    return resource;
  },
};

describe.each(testDatabaseKinds())('update against a row already read on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, { system: true }, { modules: [hooked] });

  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 60_000);
  afterAll(async () => {
    await t?.drop();
  });

  const rowOf = async (id: string) => (await repo().readRow('Patient', id))!;

  it('writes without reading the row again, the hooks seeing it as the previous version', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    const row = await rowOf(p.id!);
    previousSeen.length = 0;
    const updated = await repo().transaction(async (tx) => {
      let n = 0;
      const query = tx.db.query.bind(tx.db);
      (tx.db as { query: Db['query'] }).query = ((...args: Parameters<Db['query']>) => {
        n++;
        return query(...args);
      }) as Db['query'];
      try {
        const u = await tx.update<Patient>({ ...p, gender: 'male' }, { ifMatch: '1', current: row });
        expect(n).toBe(1);
        return u;
      } finally {
        (tx.db as { query: Db['query'] }).query = query;
      }
    });
    expect(updated.meta?.versionId).toBe('2');
    expect(previousSeen).toEqual(['female']);
    expect((await repo().read<Patient>('Patient', p.id!)).gender).toBe('male');
  });

  it('refuses with 412 when the row has moved on since it was read', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    const stale = await rowOf(p.id!);
    await repo().update<Patient>({ ...p, gender: 'other' });
    const status = await repo()
      .update<Resource>({ ...p, gender: 'male' } as Resource, { ifMatch: '1', current: stale })
      .then(
        () => 200,
        (e: unknown) => (e instanceof OperationOutcomeError ? statusForOutcome(e) : 500),
      );
    expect(status).toBe(412);
    expect((await repo().read<Patient>('Patient', p.id!)).gender).toBe('other');
  });
});
