// Replay protection for client assertions: a jti may be used once until its assertion expires.
// The SQL store is the one to run with: it survives restarts and every replica sees the same rows.

export interface JtiStore {
  /** True the first time a jti is claimed; false if it was already claimed and has not expired. */
  claim(jti: string, expiresAt: Date): Promise<boolean>;
}

/** For unit tests and single-process development only. */
export class MemoryJtiStore implements JtiStore {
  private readonly seen = new Map<string, number>();
  private readonly now: () => number;
  constructor(now: () => number = Date.now) {
    this.now = now;
  }
  async claim(jti: string, expiresAt: Date): Promise<boolean> {
    const now = this.now();
    for (const [k, exp] of this.seen) if (exp < now) this.seen.delete(k);
    if (this.seen.has(jti)) return false;
    this.seen.set(jti, expiresAt.getTime());
    return true;
  }
}

/** The minimum the SQL store needs; `Db` from @tic/store and a pg Pool both fit. */
export interface SqlClient {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>;  
}

export interface SqlJtiStoreOptions {
  table?: string;
  /** How often (ms) a claim also deletes expired rows; default 60 s. */
  purgeIntervalMs?: number;
  now?: () => number;
}

/** PostgreSQL (or PGlite) jti store: a primary key and `ON CONFLICT DO NOTHING`. */
export class SqlJtiStore implements JtiStore {
  private readonly db: SqlClient;
  private readonly table: string;
  private readonly purgeIntervalMs: number;
  private readonly now: () => number;
  private ready: Promise<void> | undefined;
  private lastPurge = 0;

  constructor(db: SqlClient, options: SqlJtiStoreOptions = {}) {
    const table = options.table ?? 'auth_client_assertion_jti';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(table)) throw new Error(`Invalid jti table name: ${table}`);
    this.db = db;
    this.table = table;
    this.purgeIntervalMs = options.purgeIntervalMs ?? 60_000;
    this.now = options.now ?? Date.now;
  }

  /** Creates the table if it does not exist. Called by the first claim; may be called at start. */
  init(): Promise<void> {
    this.ready ??= this.db
      .query(`CREATE TABLE IF NOT EXISTS ${this.table} (jti text PRIMARY KEY, expires_at timestamptz NOT NULL)`)
      .then(() => undefined)
      .catch((e: unknown) => {
        this.ready = undefined;
        throw e;
      });
    return this.ready;
  }

  async claim(jti: string, expiresAt: Date): Promise<boolean> {
    await this.init();
    const now = this.now();
    if (now - this.lastPurge >= this.purgeIntervalMs) {
      this.lastPurge = now;
      await this.db.query(`DELETE FROM ${this.table} WHERE expires_at < $1`, [new Date(now).toISOString()]);
    }
    // A row left over from an expired assertion does not block: it is replaced in the same statement.
    const r = await this.db.query(
      `INSERT INTO ${this.table} (jti, expires_at) VALUES ($1, $2)
       ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE ${this.table}.expires_at < $3
       RETURNING jti`,
      [jti, expiresAt.toISOString(), new Date(now).toISOString()],
    );
    return r.rows.length === 1;
  }
}
