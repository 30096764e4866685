// One small database interface over node-postgres (production, tests in CI) and PGlite (the
// embedded default). The SQL is the same on both; only connection handling differs.
import type { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { WriteJournal } from './journal.ts';
import type { WritesAuditRow } from './journal.ts';

export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface QueryOptions {
  /**
   * A statement the server runs over and over with the same text (the write, the read by id):
   * PostgreSQL parses and plans it once per connection (a named prepared statement), and only the
   * parameters travel on later calls. Ignored by PGlite.
   */
  prepare?: boolean;
  /**
   * 'relaxed': an autocommit statement whose commit returns once PostgreSQL has the WAL record in
   * memory (synchronous_commit=off), not on disk: it survives a crash of this process, not of
   * PostgreSQL or the machine within the WAL writer's delay (≤ 3 × wal_writer_delay, 600 ms by
   * default). For the audit records of reads only (decision 0004). Ignored inside a transaction and
   * by PGlite.
   */
  commit?: 'relaxed';
}

export interface Db {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
  /** Runs several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /** Runs fn in one database transaction; commits if it resolves, rolls back if it throws. */
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T>;
  /** True inside a transaction. */
  readonly inTransaction: boolean;
  /** Inside a transaction: what the repository has written in it so far (journal.ts). */
  readonly journal?: WriteJournal;
  readonly dialect: 'postgres' | 'pglite';
  close(): Promise<void>;
}

// Timestamps and bigints come back as strings so JSON content stays exactly as written.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1184 || oid === 1114 || oid === 1082) return (v: string) => v;
    return pg.types.getTypeParser(oid, format);
  },
};

// Names of prepared statements by their text. Bounded: statement texts that vary beyond this many
// (each one is prepared on every pooled connection) are sent unnamed.
const MAX_PREPARED = 256;
const preparedNames = new Map<string, string>();

function queryConfig(sql: string, params: unknown[] | undefined, options: QueryOptions | undefined): pg.QueryConfig {
  if (!options?.prepare) return { text: sql, values: params, types } as pg.QueryConfig;
  let name = preparedNames.get(sql);
  if (name === undefined && preparedNames.size < MAX_PREPARED) {
    name = `tic_${preparedNames.size + 1}`;
    preparedNames.set(sql, name);
  }
  return { text: sql, values: params, types, name } as pg.QueryConfig;
}

const INSERT_AUDIT = 'INSERT INTO audit_queue (owner_org, content, records) SELECT * FROM unnest($1::text[], $2::text[], $3::int[])';

/**
 * The end of a transaction: COMMIT, preceded by the INSERT of the audit-log rows of its writes
 * (journal.ts auditRows) in the same round trip — one simple-protocol query of two statements. If
 * the INSERT fails the COMMIT does not run, and the caller rolls the transaction back: the writes
 * and their audit records commit together or not at all, as when a record is a CTE of its write's
 * statement (write.ts). The values are quoted by the driver's own escapeLiteral (the audit record
 * is JSON text the server made; there are no parameters in the simple protocol).
 */
export function commitSql(rows: WritesAuditRow[], literal: (s: string) => string): string {
  if (rows.length === 0) return 'COMMIT';
  // A simple-protocol query is a C string: a NUL would cut it short. PostgreSQL text holds none either.
  if (rows.some((r) => r.content.includes('\u0000') || r.ownerOrg?.includes('\u0000'))) throw new Error('An audit record cannot hold a NUL character');
  const values = rows.map((r) => `(${r.ownerOrg === null ? 'NULL' : literal(r.ownerOrg)}, ${literal(r.content)}, ${weight(r)})`).join(', ');
  return `INSERT INTO audit_queue (owner_org, content, records) VALUES ${values}; COMMIT`;
}

/** A row's weight in a drain batch: a positive integer (1 unless the row says more). */
const weight = (r: WritesAuditRow): number => (Number.isInteger(r.records) && r.records! > 0 ? r.records! : 1);

class PgClientDb implements Db {
  readonly inTransaction = true;
  readonly dialect = 'postgres' as const;
  readonly journal = new WriteJournal();
  private readonly client: pg.PoolClient;
  constructor(client: pg.PoolClient) {
    this.client = client;
  }
  async query<R>(sql: string, params?: unknown[], options?: QueryOptions): Promise<QueryResult<R>> {
    const r = await this.client.query(queryConfig(sql, params, options));
    return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
  }
  async exec(sql: string): Promise<void> {
    await this.client.query(sql);
  }
  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    // Nested: a savepoint, so an inner failure can be handled without aborting the outer work.
    const name = `sp_${Math.random().toString(36).slice(2, 10)}`;
    await this.client.query(`SAVEPOINT ${name}`);
    const mark = this.journal.mark();
    try {
      const out = await fn(this);
      await this.client.query(`RELEASE SAVEPOINT ${name}`);
      return out;
    } catch (e) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${name}`);
      this.journal.rollback(mark);
      throw e;
    }
  }
  async close(): Promise<void> {}
}

export class PgDb implements Db {
  readonly inTransaction = false;
  readonly dialect = 'postgres' as const;
  readonly pool: pg.Pool;
  private readonly connectionString: string;
  private readonly max: number;
  private relaxedPool: pg.Pool | undefined;
  constructor(connectionString: string, max = 20) {
    this.connectionString = connectionString;
    this.max = max;
    this.pool = new pg.Pool({ connectionString, max });
    // An idle client's error (e.g. the server restarting) must not crash the process.
    this.pool.on('error', () => undefined);
  }
  /** Connections for 'relaxed' commits, opened on first use (a quarter of the pool size, at least 2). */
  private relaxed(): pg.Pool {
    if (!this.relaxedPool) {
      this.relaxedPool = new pg.Pool({ connectionString: this.connectionString, max: Math.max(2, Math.ceil(this.max / 4)), options: '-c synchronous_commit=off' });
      this.relaxedPool.on('error', () => undefined);
    }
    return this.relaxedPool;
  }
  async query<R>(sql: string, params?: unknown[], options?: QueryOptions): Promise<QueryResult<R>> {
    const pool = options?.commit === 'relaxed' ? this.relaxed() : this.pool;
    const r = await pool.query(queryConfig(sql, params, options));
    return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
  }
  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }
  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const tx = new PgClientDb(client);
      const out = await fn(tx);
      await client.query(commitSql(tx.journal.auditRows(), (s) => client.escapeLiteral(s)));
      return out;
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }
  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.relaxedPool?.end()]);
  }
}

type PGliteTx = Parameters<Parameters<PGlite['transaction']>[0]>[0];

class PGliteTxDb implements Db {
  readonly inTransaction = true;
  readonly dialect = 'pglite' as const;
  readonly journal = new WriteJournal();
  private readonly tx: PGliteTx;
  constructor(tx: PGliteTx) {
    this.tx = tx;
  }
  async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    const r = await this.tx.query<R>(sql, params as unknown[], { parsers: pgliteParsers });
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
  }
  async exec(sql: string): Promise<void> {
    await this.tx.exec(sql);
  }
  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    const name = `sp_${Math.random().toString(36).slice(2, 10)}`;
    await this.tx.query(`SAVEPOINT ${name}`);
    const mark = this.journal.mark();
    try {
      const out = await fn(this);
      await this.tx.query(`RELEASE SAVEPOINT ${name}`);
      return out;
    } catch (e) {
      await this.tx.query(`ROLLBACK TO SAVEPOINT ${name}`);
      this.journal.rollback(mark);
      throw e;
    }
  }
  async close(): Promise<void> {}
}

const asText = (v: string) => v;
const pgliteParsers = { 20: asText, 1184: asText, 1114: asText, 1082: asText };

export class PGliteDb implements Db {
  readonly inTransaction = false;
  readonly dialect = 'pglite' as const;
  readonly pglite: PGlite;
  constructor(pglite: PGlite) {
    this.pglite = pglite;
  }
  static async open(dataDir?: string): Promise<PGliteDb> {
    const { PGlite } = await import('@electric-sql/pglite');
    const db = new PGlite(dataDir);
    await db.waitReady;
    return new PGliteDb(db);
  }
  async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    const r = await this.pglite.query<R>(sql, params as unknown[], { parsers: pgliteParsers });
    return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
  }
  async exec(sql: string): Promise<void> {
    await this.pglite.exec(sql);
  }
  async transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return this.pglite.transaction(async (tx) => {
      const db = new PGliteTxDb(tx);
      const out = await fn(db);
      const audit = db.journal.auditRows();
      if (audit.length > 0) await tx.query(INSERT_AUDIT, [audit.map((r) => r.ownerOrg), audit.map((r) => r.content), audit.map((r) => weight(r))]);
      return out;
    });
  }
  async close(): Promise<void> {
    await this.pglite.close();
  }
}

/** PostgreSQL when a URL is given, otherwise PGlite in dataDir (in memory when dataDir is undefined). */
export async function openDatabase(options: { url?: string; dataDir?: string; poolSize?: number }): Promise<Db> {
  if (options.url) return new PgDb(options.url, options.poolSize);
  return PGliteDb.open(options.dataDir);
}
