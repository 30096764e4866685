// Test databases: a fresh PostgreSQL database per test run (created and dropped) when DATABASE_URL
// is set, and PGlite in memory always. The store's contract suite runs on every one of them.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { OperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { Db, QueryOptions } from './db.ts';
import { PGliteDb, PgDb } from './db.ts';
import { migrate } from './migrations.ts';

export interface TestDatabase {
  name: string;
  db: Db;
  /** Connection string when on PostgreSQL. */
  url?: string;
  drop(): Promise<void>;
}

/** Creates an empty PostgreSQL database next to the one in `baseUrl`; drop() removes it. */
export async function createPostgresDatabase(baseUrl: string, prefix = 'tic_test'): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: baseUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function openTestDatabase(kind: 'postgres' | 'pglite'): Promise<TestDatabase> {
  if (kind === 'postgres') {
    const base = process.env.DATABASE_URL;
    if (!base) throw new Error('DATABASE_URL is not set');
    const { url, drop } = await createPostgresDatabase(base);
    const db = new PgDb(url, 10);
    await migrate(db);
    return {
      name: 'postgres',
      db,
      url,
      drop: async () => {
        await db.close();
        await drop();
      },
    };
  }
  const db = await PGliteDb.open();
  await migrate(db);
  return { name: 'pglite', db, drop: () => db.close() };
}

/** The database kinds to run contract suites on: PGlite always, PostgreSQL when DATABASE_URL is set. */
export function testDatabaseKinds(): Array<'postgres' | 'pglite'> {
  return process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
}

/** The HTTP status a store call ends with: 200 when it resolves, the OperationOutcome's status when it is refused. */
export async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    if (e instanceof OperationOutcomeError) return statusForOutcome(e);
    throw e;
  }
}

/** A query sent through recordingDb. */
export interface RecordedQuery {
  sql: string;
  params: unknown[];
  options?: QueryOptions;
}

/** `db` with every query sent through it recorded in `calls`, in order, before it runs. */
export function recordingDb(db: Db): { db: Db; calls: RecordedQuery[] } {
  const calls: RecordedQuery[] = [];
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'query') {
        return (sql: string, params?: unknown[], options?: QueryOptions) => {
          calls.push({ sql, params: params ?? [], ...(options ? { options } : {}) });
          return target.query(sql, params, options);
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { db: proxy, calls };
}
