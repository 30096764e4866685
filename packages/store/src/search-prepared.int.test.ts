// Prepared search statements (search.ts preparedSearch): a driven page's statement is prepared
// from its second use, undriven ones never; a string prefix states its index range in the SQL so
// that the generic plan of a prepared statement still reads only the prefix's index rows. On
// PGlite and PostgreSQL (the plan checks on PostgreSQL only).
import type { Patient } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import pg from 'pg';
import type { Db } from './db.ts';
import { Repository } from './repository.ts';
import { prefixRange } from './search-sql.ts';
import type { SearchOptions } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };

describe('prefixRange', () => {
  it('bounds exactly the strings with the prefix in code point order', () => {
    expect(prefixRange('ngat')).toEqual(['ngat', 'ngau']);
    expect(prefixRange('a\u{10ffff}')).toEqual(['a\u{10ffff}', 'b']);
    expect(prefixRange('\u{10ffff}')).toEqual(['\u{10ffff}', undefined]);
    expect(prefixRange('\ud7ff')).toEqual(['\ud7ff', '\ue000']);
    expect(prefixRange('x\ud800')).toEqual(['x\ufffd', 'x\ufffe']);
    expect(prefixRange('zo\u00eb')).toEqual(['zo\u00eb', 'zo\u00ec']);
  });
});

/** The database, recording each statement's options. */

describe.each(testDatabaseKinds())('prepared searches on %s', (kind) => {
  let t: TestDatabase;
  const families = ['Ngata', 'Ngatai', 'NGAT', 'Ngb', 'Nga', 'Zoë', 'Zoey', 'Zo', 'zz\u{10ffff}', 'zz\u{10ffff}a', 'zz'];
  const ids = new Map<string, string>();
  const names = async (db: Db, q: Record<string, string | string[]>, options: SearchOptions = {}) => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = typeof v === 'string' ? [v] : v;
    const r = await searchResources(db, system, [], 'Patient', query, options);
    return r.entries.map((e) => (e.resource as Patient).name![0].family!).sort();
  };

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const repo = new Repository(t.db, system, { modules: [] });
    for (const [i, f] of families.entries()) ids.set(f, (await repo.create<Patient>({ resourceType: 'Patient', name: [{ family: f }], birthDate: `${1950 + i}-01-01` })).id!);
  });
  afterAll(() => t.drop());

  it('matches string prefixes as before, run prepared again and again', async () => {
    for (let i = 0; i < 8; i++) {
      expect(await names(t.db, { family: 'ngat' })).toEqual(['NGAT', 'Ngata', 'Ngatai']);
      expect(await names(t.db, { family: 'Zoe' })).toEqual(['Zoey', 'Zoë']);
      expect(await names(t.db, { family: 'zo' })).toEqual(['Zo', 'Zoey', 'Zoë']);
      expect(await names(t.db, { family: 'zz\u{10ffff}' })).toEqual(['zz\u{10ffff}', 'zz\u{10ffff}a']);
      expect(await names(t.db, { family: 'nga' })).toEqual(['NGAT', 'Nga', 'Ngata', 'Ngatai']);
      expect(await names(t.db, { 'family:exact': 'Nga' })).toEqual(['Nga']);
      expect(await names(t.db, { 'family:contains': 'gat' })).toEqual(['NGAT', 'Ngata', 'Ngatai']);
    }
  });

  it('prepares a driven page statement from its second use, an undriven one never', async () => {
    const r = recordingDb(t.db);
    // A shape of its own per database kind (the prepared set is per process).
    const shape: Record<string, string> = kind === 'postgres' ? { given: 'p' } : {};
    await names(r.db, { family: 'prepare-a', gender: 'female', ...shape });
    await names(r.db, { family: 'prepare-b', gender: 'male', ...shape });
    await names(r.db, { family: 'prepare-c', gender: 'other', ...shape });
    expect(r.calls.map((c) => c.options?.prepare === true)).toEqual([false, true, true]);
    expect(new Set(r.calls.map((c) => c.sql)).size).toBe(1);
    const u = recordingDb(t.db);
    for (let i = 0; i < 3; i++) await names(u.db, { family: `n${i}`, _sort: 'family' });
    expect(u.calls.length).toBe(3);
    expect(u.calls.every((c) => c.options?.prepare !== true)).toBe(true);
  });

  it('prepares a gathered date window, never a one-sided range or the walk past the cap', async () => {
    const window = { birthdate: ['ge1952-01-01', kind === 'postgres' ? 'lt1956-01-01' : 'le1955-12-31'] };
    const w = recordingDb(t.db);
    for (let i = 0; i < 3; i++) expect(await names(w.db, window)).toEqual(['NGAT', 'Nga', 'Ngb', 'Zoë']);
    expect(w.calls.map((c) => c.options?.prepare === true)).toEqual([false, true, true]);
    const walk = recordingDb(t.db);
    for (let i = 0; i < 3; i++) expect(await names(walk.db, window, { candidateCap: 1 })).toEqual(['NGAT', 'Nga', 'Ngb', 'Zoë']);
    // Gathered (capped), then walked: only the gathering statement is prepared.
    expect(walk.calls.map((c) => c.options?.prepare === true)).toEqual([false, false, true, false, true, false]);
    const open = recordingDb(t.db);
    for (let i = 0; i < 3; i++) expect(await names(open.db, { birthdate: kind === 'postgres' ? 'ge1958-01-01' : 'gt1957-12-31' })).toEqual(['zz', 'zz\u{10ffff}', 'zz\u{10ffff}a']);
    expect(open.calls.every((c) => c.options?.prepare !== true)).toBe(true);
  });

  it('reads only the prefix range of the name index in a generic plan', async () => {
    if (kind !== 'postgres') return;
    const r = recordingDb(t.db);
    await names(r.db, { family: 'ngat' });
    const text = r.calls[0].sql;
    const params = (await captureParams(t.db, { family: 'ngat' })).map((p) => pg.Client.prototype.escapeLiteral(String(p)));
    const plan = await t.db.transaction(async (tx) => {
      await tx.query('SET LOCAL plan_cache_mode = force_generic_plan');
      await tx.query('SET LOCAL enable_seqscan = off');
      await tx.query('SET LOCAL enable_bitmapscan = off');
      await tx.query(`PREPARE generic_name AS ${text}`);
      const e = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN EXECUTE generic_name(${params.join(', ')})`);
      await tx.query('DEALLOCATE generic_name');
      return e.rows.map((row) => row['QUERY PLAN']).join('\n');
    });
    const cond = plan.split('\n').find((l) => l.includes('Index Cond') && l.includes('norm'));
    expect(cond).toMatch(/norm ~>=~ \$\d+/);
    expect(cond).toMatch(/norm ~<~ \$\d+/);
  });

  /** The parameters of a search's page statement. */
  async function captureParams(db: Db, q: Record<string, string>): Promise<unknown[]> {
    const r = recordingDb(db);
    await names(r.db, q);
    return r.calls.at(-1)?.params ?? [];
  }
});
