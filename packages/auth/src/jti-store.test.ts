import { PGlite } from '@electric-sql/pglite';
import { MemoryJtiStore, SqlJtiStore } from './jti-store.ts';
import type { SqlClient } from './jti-store.ts';

const inMinutes = (m: number, from = Date.now()) => new Date(from + m * 60_000);

describe('MemoryJtiStore', () => {
  test('claims once until the jti expires', async () => {
    let now = Date.now();
    const store = new MemoryJtiStore(() => now);
    expect(await store.claim('a', inMinutes(5, now))).toBe(true);
    expect(await store.claim('a', inMinutes(5, now))).toBe(false);
    expect(await store.claim('b', inMinutes(5, now))).toBe(true);
    now += 6 * 60_000;
    expect(await store.claim('a', inMinutes(5, now))).toBe(true);
  });
});

describe('SqlJtiStore on PGlite', () => {
  let pg: PGlite;
  let db: SqlClient;
  beforeAll(async () => {
    pg = new PGlite();
    db = { query: async (sql, params) => ({ rows: (await pg.query(sql, params)).rows }) };
  });
  afterAll(() => pg.close());

  test('a jti is claimed once, across store instances (restarts, replicas)', async () => {
    const a = new SqlJtiStore(db);
    const b = new SqlJtiStore(db);
    await Promise.all([a.init(), b.init()]);
    expect(await a.claim('client-1 j1', inMinutes(5))).toBe(true);
    expect(await a.claim('client-1 j1', inMinutes(5))).toBe(false);
    expect(await b.claim('client-1 j1', inMinutes(5))).toBe(false);
    expect(await b.claim('client-1 j2', inMinutes(5))).toBe(true);
  });

  test('concurrent claims of one jti: exactly one wins', async () => {
    const stores = [new SqlJtiStore(db), new SqlJtiStore(db), new SqlJtiStore(db)];
    const results = await Promise.all(stores.map((s) => s.claim('race', inMinutes(5))));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  test('expired rows are purged and do not block', async () => {
    let now = Date.now();
    const store = new SqlJtiStore(db, { table: 'jti_expiry_test', now: () => now, purgeIntervalMs: 0 });
    expect(await store.claim('old', inMinutes(1, now))).toBe(true);
    expect(await store.claim('old', inMinutes(1, now))).toBe(false);
    now += 2 * 60_000;
    expect(await store.claim('other', inMinutes(1, now))).toBe(true);
    const left = await db.query('SELECT jti FROM jti_expiry_test ORDER BY jti');
    expect(left.rows.map((r) => r.jti)).toEqual(['other']);
    expect(await store.claim('old', inMinutes(1, now))).toBe(true);
  });

  test('refuses unsafe table names', () => {
    expect(() => new SqlJtiStore(db, { table: 'x; DROP TABLE y' })).toThrow(/Invalid jti table name/);
  });
});
