// Versions stored once (decision 0006): the current version in resource, the replaced ones in
// resource_version. vread and history read both; migration 22 takes the copies of current versions
// out of resource_version. Contract suite: the same behaviour on PGlite and PostgreSQL.
import type { Patient, Resource } from '@medplum/fhirtypes';
import type { OperationOutcomeError, RequestContext } from '@tic/fhir';
import { statusForOutcome } from '@tic/fhir';
import type { Db } from './db.ts';
import { PGliteDb, PgDb } from './db.ts';
import { migrate, migrations } from './migrations.ts';
import type { HistoryOptions } from './repository.ts';
import { Repository } from './repository.ts';
import type { TestDatabase } from './testing.ts';
import { createPostgresDatabase, openTestDatabase, recordingDb, statusOf, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };


/** The version numbers stored in each table for one resource. */
async function stored(db: Db, type: string, id: string): Promise<{ current: number[]; replaced: number[] }> {
  const q = async (table: string) =>
    (await db.query<{ v: string }>(`SELECT version_id::text AS v FROM ${table} WHERE resource_type = $1 AND id = $2 ORDER BY version_id`, [type, id])).rows.map((r) => Number(r.v));
  return { current: await q('resource'), replaced: await q('resource_version') };
}

/** Every entry of a history, page by page (count per page), as "id/version". */
async function allPages(repo: Repository, type: string | undefined, id: string | undefined, count: number, options: Partial<HistoryOptions> = {}): Promise<string[]> {
  const out: string[] = [];
  for (let offset = 0; ; offset += count) {
    const page = await repo.historyEntries(type, id, { count, offset, ...options });
    out.push(...page.map((e) => `${e.resource.id}/${e.versionId}`));
    if (page.length < count) return out;
  }
}

describe.each(testDatabaseKinds())('history on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext = orgA) => new Repository(t.db, ctx, { modules: [] });

  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 60_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('stores each version once: a create in resource only, an update moves the replaced version to resource_version', async () => {
    const p = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    expect(await stored(t.db, 'Patient', p.id!)).toEqual({ current: [1], replaced: [] });
    const [q] = await repo().createMany<Patient>([{ resourceType: 'Patient' }]);
    expect(await stored(t.db, 'Patient', q.id!)).toEqual({ current: [1], replaced: [] });
    await repo().update<Patient>({ ...p, gender: 'male' });
    await repo().update<Patient>({ ...p, gender: 'other' }, { ifMatch: '2' });
    await repo().delete('Patient', p.id!);
    expect(await stored(t.db, 'Patient', p.id!)).toEqual({ current: [4], replaced: [1, 2, 3] });
    const replaced = await t.db.query<{ deleted: boolean; content: string }>(`SELECT deleted, content FROM resource_version WHERE resource_type = 'Patient' AND id = $1 AND version_id = 3`, [p.id]);
    expect(replaced.rows[0].deleted).toBe(false);
    expect((JSON.parse(replaced.rows[0].content) as Patient).gender).toBe('other');
  });

  it('vread answers the current version and every replaced one; a deletion answers 410, an unknown version 404', async () => {
    const v1 = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    const v2 = await repo().update<Patient>({ ...v1, gender: 'male' });
    const v3 = await repo().update<Patient>({ ...v1, gender: 'other' });
    for (const v of [v1, v2, v3]) expect(await repo().readVersion<Patient>('Patient', v1.id!, v.meta!.versionId!)).toEqual(v);
    expect(await repo().read<Patient>('Patient', v1.id!)).toEqual(v3);
    expect(await statusOf(repo().readVersion('Patient', v1.id!, '4'))).toBe(404);
    expect(await statusOf(repo().readVersion('Patient', v1.id!, '0'))).toBe(404);
    await repo().delete('Patient', v1.id!);
    expect(await statusOf(repo().readVersion('Patient', v1.id!, '4'))).toBe(410);
    expect(await repo().readVersion<Patient>('Patient', v1.id!, '3')).toEqual(v3);
    // Hidden from another organisation, current and replaced versions alike.
    const b = repo({ organization: 'Organization/b', clientId: 'b' });
    expect(await statusOf(b.readVersion('Patient', v1.id!, '3'))).toBe(404);
    expect(await statusOf(b.readVersion('Patient', v1.id!, '4'))).toBe(404);
  });

  it('history of a deleted then recreated resource: every version once, newest first, in instance, type and system history', async () => {
    const v1 = await repo().create<Patient>({ resourceType: 'Patient', gender: 'female' });
    await repo().update<Patient>({ ...v1, gender: 'male' });
    await repo().delete('Patient', v1.id!);
    expect(await statusOf(repo().read('Patient', v1.id!))).toBe(410);
    const back = await repo().update<Patient>({ ...v1, gender: 'unknown' });
    expect(back.meta?.versionId).toBe('4');
    const h = await repo().historyEntries('Patient', v1.id!, { count: 10, offset: 0 });
    expect(h.map((e) => [e.versionId, e.deleted])).toEqual([
      [4, false],
      [3, true],
      [2, false],
      [1, false],
    ]);
    expect(h[0].resource).toEqual(back);
    expect((h[2].resource as Patient).gender).toBe('male');
    const mine = (entries: string[]) => entries.filter((e) => e.startsWith(`${v1.id}/`));
    expect(mine(await allPages(repo(), 'Patient', undefined, 1000))).toEqual([4, 3, 2, 1].map((v) => `${v1.id}/${v}`));
    expect(mine(await allPages(repo(), undefined, undefined, 1000))).toEqual([4, 3, 2, 1].map((v) => `${v1.id}/${v}`));
    expect((await repo().search<Patient>('Patient', { _id: v1.id! })).map((p) => p.meta?.versionId)).toEqual(['4']);
  });

  it('pages across current and replaced versions: every version exactly once, in order, whatever the page size', async () => {
    const own = new Repository(t.db, { organization: `Organization/paging-${kind}`, clientId: 'p' }, { modules: [] });
    // Interleaved writes: current versions of some resources are older than replaced versions of others.
    const [a, b, c] = await own.createMany<Patient>([{ resourceType: 'Patient' }, { resourceType: 'Patient' }, { resourceType: 'Patient' }]);
    const tick = () => new Promise((r) => setTimeout(r, 2));
    for (const [p, g] of [
      [a, 'male'],
      [b, 'male'],
      [a, 'female'],
      [c, 'other'],
      [a, 'other'],
    ] as Array<[Patient, Patient['gender']]>) {
      await tick();
      await own.update<Patient>({ ...p, gender: g });
    }
    await tick();
    await own.delete('Patient', b.id!);
    const full = await allPages(own, 'Patient', undefined, 1000);
    expect(full).toHaveLength(9);
    expect(new Set(full).size).toBe(9);
    // Newest first: the last writes lead, each resource's versions descend.
    expect(full.slice(0, 2)).toEqual([`${b.id}/3`, `${a.id}/4`]);
    for (const p of [a, b, c]) {
      const versions = full.filter((e) => e.startsWith(`${p.id}/`)).map((e) => Number(e.split('/')[1]));
      expect(versions).toEqual([...versions].sort((x, y) => y - x));
    }
    // System history also holds server-owned resources other tests write: these three's entries are
    // compared (pages of every entry, so a skipped or repeated one shows).
    const ours = (entries: string[]) => entries.filter((e) => [a.id, b.id, c.id].includes(e.split('/')[0]));
    for (const count of [1, 2, 4]) {
      expect(await allPages(own, 'Patient', undefined, count)).toEqual(full);
      expect(ours(await allPages(own, undefined, undefined, count))).toEqual(full);
      expect(await allPages(own, 'Patient', a.id, count)).toEqual([4, 3, 2, 1].map((v) => `${a.id}/${v}`));
    }
    // _since and _before bound both tables alike.
    const entries = await own.historyEntries('Patient', undefined, { count: 100, offset: 0 });
    const at = (e: string) => entries.find((x) => `${x.resource.id}/${x.versionId}` === e)!.lastUpdated;
    const since = new Date(at(`${c.id}/2`)).toISOString();
    const before = new Date(at(`${a.id}/4`)).toISOString();
    expect(await allPages(own, 'Patient', undefined, 2, { since, before })).toEqual([`${a.id}/4`, `${c.id}/2`]);
    expect(ours(await allPages(own, undefined, undefined, 1, { since }))).toEqual([`${b.id}/3`, `${a.id}/4`, `${c.id}/2`]);
  });

  it('_at: the versions current at some point in a period, from both tables', async () => {
    const own = new Repository(t.db, { organization: `Organization/at-${kind}`, clientId: 'at' }, { modules: [] });
    const tick = () => new Promise((r) => setTimeout(r, 3));
    const p = await own.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    await tick();
    const q = await own.create<Patient>({ resourceType: 'Patient' });
    await tick();
    await own.update<Patient>({ ...p, gender: 'female' });
    await tick();
    await own.delete('Patient', q.id!);
    await tick();
    await own.update<Patient>({ ...p, gender: 'other' });
    const entries = await own.historyEntries('Patient', undefined, { count: 100, offset: 0 });
    const time = (e: string) => Date.parse(String(entries.find((x) => `${x.resource.id}/${x.versionId}` === e)!.lastUpdated));
    const moment = (ms: number): [string, string] => [new Date(ms).toISOString(), new Date(ms + 1).toISOString()];
    const atPages = (at: [string, string], count = 1) => allPages(own, 'Patient', undefined, count, { at });
    // The moment a version was written, it and the other resource's version of then are current;
    // the version it replaced is not (replaced at that very moment).
    expect(await atPages(moment(time(`${p.id}/2`)))).toEqual([`${p.id}/2`, `${q.id}/1`]);
    expect(await atPages(moment(time(`${p.id}/2`) - 1))).toEqual([`${q.id}/1`, `${p.id}/1`]);
    // After a delete the deletion is the current version; the last version is current until now.
    expect(await atPages(moment(time(`${p.id}/3`)))).toEqual([`${p.id}/3`, `${q.id}/2`]);
    expect(await atPages(moment(Date.now() + 60_000))).toEqual([`${p.id}/3`, `${q.id}/2`]);
    // A period spanning every write holds every version; one before the first holds none.
    const all = [`${p.id}/3`, `${q.id}/2`, `${p.id}/2`, `${q.id}/1`, `${p.id}/1`];
    expect(await atPages([new Date(time(`${p.id}/1`)).toISOString(), new Date(time(`${p.id}/3`) + 1).toISOString()], 2)).toEqual(all);
    expect(await atPages(moment(time(`${p.id}/1`) - 1))).toEqual([]);
    // Instance history and system history take it alike.
    expect((await own.historyEntries('Patient', p.id, { count: 10, offset: 0, at: moment(time(`${q.id}/2`)) })).map((e) => e.versionId)).toEqual([2]);
    const system = await own.historyEntries(undefined, undefined, { count: 100, offset: 0, at: moment(time(`${q.id}/2`)) });
    expect(system.map((e) => `${e.resource.id}/${e.versionId}`).filter((e) => [p.id, q.id].includes(e.split('/')[0]))).toEqual([`${q.id}/2`, `${p.id}/2`]);
  });

  it('hides every version of a resource whose current version is labelled R/V from clients without the permission', async () => {
    const restricted = { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] };
    const p = await repo().create<Patient>({ resourceType: 'Patient', gender: 'male' });
    await repo().update<Patient>({ ...p, meta: restricted });
    expect(await repo().historyEntries('Patient', p.id!, { count: 10, offset: 0 })).toEqual([]);
    const allowed = repo({ ...orgA, canReadRestricted: true });
    expect((await allowed.historyEntries('Patient', p.id!, { count: 10, offset: 0 })).map((e) => e.versionId)).toEqual([2, 1]);
  });

  it('concurrent updates with the same If-Match: one writes the next version, the others answer 412; the replaced version is copied once', async () => {
    // Server-owned resources (owner NULL) take the general path: read, then write against the version read.
    for (const ctx of [orgA, system]) {
      const p = await repo(ctx).create<Patient>({ resourceType: 'Patient' });
      const results = await Promise.allSettled(['male', 'female', 'other', 'unknown'].map((g) => repo(ctx).update<Patient>({ ...p, gender: g as Patient['gender'] }, { ifMatch: '1' })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(statusForOutcome(r.reason as OperationOutcomeError)).toBe(412);
      expect(await stored(t.db, 'Patient', p.id!)).toEqual({ current: [2], replaced: [1] });
      const winner = (results.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Patient>).value;
      expect(await repo(ctx).read<Patient>('Patient', p.id!)).toEqual(winner);
      expect(await repo(ctx).readVersion<Patient>('Patient', p.id!, '1')).toEqual(p);
      // Without If-Match every update writes a version of its own, each replaced one copied once;
      // an organisation's (one statement each) waits for the one before it instead of falling back
      // to reading the row first.
      const { db: counted, calls: statements } = recordingDb(t.db);
      await Promise.all(['male', 'female', 'other', 'unknown'].map((g) => new Repository(counted, ctx, { modules: [] }).update<Patient>({ ...p, gender: g as Patient['gender'] })));
      expect(await stored(t.db, 'Patient', p.id!)).toEqual({ current: [6], replaced: [1, 2, 3, 4, 5] });
      if (ctx === orgA) expect(statements).toHaveLength(4);
    }
  });
});

describe.each(testDatabaseKinds())('migration 22 on %s', (kind) => {
  it('takes the copies of current versions out of resource_version and keeps vread and history whole', async () => {
    let db: Db;
    let drop: () => Promise<void>;
    if (kind === 'postgres') {
      const created = await createPostgresDatabase(process.env.DATABASE_URL!);
      const pgdb = new PgDb(created.url, 4);
      db = pgdb;
      drop = async () => {
        await pgdb.close();
        await created.drop();
      };
    } else {
      const lite = await PGliteDb.open();
      db = lite;
      drop = () => lite.close();
    }
    try {
      await db.query(`CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of migrations.filter((m) => m.version < 22)) {
        if (m.sql) await db.exec(m.sql);
        if (m.run) await m.run(db);
        await db.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      const r = new Repository(db, orgA, { modules: [] });
      const created = await r.createMany<Resource>(
        Array.from({ length: 300 }, (_, i): Resource => (i % 2 ? { resourceType: 'Patient' } : { resourceType: 'Observation', status: 'final', code: { text: 'x' } })),
      );
      const p = created.find((x) => x.resourceType === 'Patient')!;
      await r.update<Patient>({ ...(p as Patient), gender: 'male' });
      await r.update<Patient>({ ...(p as Patient), gender: 'female' });
      await r.delete('Observation', created[0].id!);
      const history = await allPages(r, undefined, undefined, 1000);
      expect(history).toHaveLength(303);
      // The layout before: every version in resource_version, the current ones too.
      await db.query('INSERT INTO resource_version SELECT * FROM resource');
      expect(await stored(db, 'Patient', p.id!)).toEqual({ current: [3], replaced: [1, 2, 3] });

      // 22 and 23 are applied now (with any later migration); 22 is the one under test.
      expect((await migrate(db)).filter((v) => v === 22 || v === 23)).toEqual([22, 23]);
      expect(await stored(db, 'Patient', p.id!)).toEqual({ current: [3], replaced: [1, 2] });
      expect(await stored(db, 'Observation', created[0].id!)).toEqual({ current: [2], replaced: [1] });
      const count = async (sql: string) => Number((await db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sql}`)).rows[0].n);
      expect(await count('resource_version')).toBe(3);
      expect(await count('resource')).toBe(300);
      expect(await allPages(r, undefined, undefined, 1000)).toEqual(history);
      expect(await allPages(r, 'Patient', p.id, 1)).toEqual([3, 2, 1].map((v) => `${p.id}/${v}`));
      expect((await r.readVersion<Patient>('Patient', p.id!, '1')).gender).toBeUndefined();
      expect((await r.readVersion<Patient>('Patient', p.id!, '3')).gender).toBe('female');
      // The rebuilt table has its key and indexes: writes go on, a duplicate version is refused.
      await r.update<Patient>({ ...(p as Patient), gender: 'other' });
      expect(await stored(db, 'Patient', p.id!)).toEqual({ current: [4], replaced: [1, 2, 3] });
      await expect(db.query('INSERT INTO resource_version SELECT * FROM resource_version WHERE version_id = 1 LIMIT 1')).rejects.toThrow();
      const indexes = await db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE tablename IN ('resource_version', 'resource') ORDER BY 1`);
      expect(indexes.rows.map((x) => x.indexname)).toEqual([
        'resource_pkey',
        'resource_type_updated_idx',
        'resource_updated_idx',
        'resource_version_pkey',
        'resource_version_type_updated_idx',
        'resource_version_updated_idx',
      ]);
    } finally {
      await drop();
    }
  }, 60_000);
});
