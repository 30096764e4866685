// Configuration, read once at start from the environment and validated with ajv.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Ajv } from 'ajv';

export interface ApiConfig {
  port: number;
  host: string;
  /** Public origin, e.g. http://localhost:8080; the FHIR base is `${publicUrl}/fhir`. */
  publicUrl: string;
  /** PostgreSQL connection string; when absent PGlite runs embedded in dataDir. */
  databaseUrl?: string;
  dataDir: string;
  poolSize: number;
  environment: 'development' | 'production';
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Load the demo data set at start (embedded default). */
  demoData: boolean;
  auth: {
    mode: 'builtin' | 'external';
    /** JSON file with the client registry (array of registrations). */
    clientsFile?: string;
    externalIssuer?: string;
    externalAudience?: string;
    externalJwksUrl?: string;
    rateLimitPerSecond?: number;
    rateLimitBurst?: number;
  };
  /** Per-organisation screening configuration (cut-offs and protocols), a JSON file. */
  screeningConfigFile?: string;
  shutdownTimeoutMs: number;
  /**
   * Audit reads and searches (default true). false exists only to measure the audit's cost in the
   * benchmark; production refuses it.
   */
  auditReads: boolean;
  /**
   * How the audit record of a read, search or refusal is made durable before the response:
   * 'journal' (default: a local file, written and fdatasync'ed, shipped to PostgreSQL in batches;
   * decision 0005), 'sync' or 'relaxed' (a row committed to PostgreSQL, waiting for the disk or not;
   * decision 0004).
   */
  auditReadCommit: 'journal' | 'relaxed' | 'sync';
  /** The audit journal's directory (default `<dataDir>/audit-journal`); one per server process host. */
  auditJournalDir: string;
  /**
   * How often the journal is fdatasync'ed in the background, in ms (default 100); 0: before each
   * response (group commit), so that not even a machine crash loses a record.
   */
  auditJournalSyncMs: number;
  /**
   * The share of wall time (0-1] that building AuditEvents from the audit log takes at least while
   * the API is busy (default 0.03): more as the CPU has time to spare, everything when the API is
   * idle. 1: no limit.
   */
  auditBuildShare: number;
  /** Records waiting to become AuditEvents past which they are built without that limit (default 1,000,000). */
  auditBuildMaxBacklog: number;
  /** Delivery attempts of a referral before the Task is marked "delivery failed". */
  referralMaxAttempts: number;
  /** Run the job worker in this process (PostgreSQL only); WORKER=off when it runs separately. */
  worker: boolean;
  /** Receiving servers by owner reference (overrides the directory's Endpoints), a JSON file. */
  referralTargetsFile?: string;
  /** SMART Backend Services credentials by endpoint address, a JSON file. */
  referralCredentialsFile?: string;
  referralPollIntervalMs?: number;
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['port', 'host', 'publicUrl', 'dataDir', 'auditJournalDir', 'auditJournalSyncMs', 'auditBuildShare', 'auditBuildMaxBacklog', 'poolSize', 'environment', 'logLevel', 'demoData', 'auth', 'shutdownTimeoutMs', 'referralMaxAttempts', 'worker'],
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    host: { type: 'string', minLength: 1 },
    publicUrl: { type: 'string', pattern: '^https?://[^/]+(/.*[^/])?$' },
    databaseUrl: { type: 'string', pattern: '^postgres(ql)?://' },
    dataDir: { type: 'string', minLength: 1 },
    poolSize: { type: 'integer', minimum: 1, maximum: 500 },
    environment: { enum: ['development', 'production'] },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    demoData: { type: 'boolean' },
    auth: {
      type: 'object',
      additionalProperties: false,
      required: ['mode'],
      properties: {
        mode: { enum: ['builtin', 'external'] },
        clientsFile: { type: 'string' },
        externalIssuer: { type: 'string' },
        externalAudience: { type: 'string' },
        externalJwksUrl: { type: 'string' },
        rateLimitPerSecond: { type: 'number', exclusiveMinimum: 0 },
        rateLimitBurst: { type: 'integer', minimum: 1 },
      },
    },
    screeningConfigFile: { type: 'string' },
    shutdownTimeoutMs: { type: 'integer', minimum: 0 },
    referralMaxAttempts: { type: 'integer', minimum: 1, maximum: 100 },
    auditReads: { type: 'boolean' },
    auditReadCommit: { enum: ['journal', 'relaxed', 'sync'] },
    auditJournalDir: { type: 'string', minLength: 1 },
    auditJournalSyncMs: { type: 'integer', minimum: 0, maximum: 10000 },
    auditBuildShare: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
    auditBuildMaxBacklog: { type: 'integer', minimum: 0 },
    worker: { type: 'boolean' },
    referralTargetsFile: { type: 'string' },
    referralCredentialsFile: { type: 'string' },
    referralPollIntervalMs: { type: 'integer', minimum: 100 },
  },
} as const;

const validate = new Ajv({ allErrors: true, useDefaults: false }).compile<ApiConfig>(schema);

/** A number from the environment (the schema says which are integers and their bounds). */
function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got "${v}"`);
  return n;
}

function bool(v: string | undefined): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  return ['1', 'true', 'yes', 'on'].includes(v.toLowerCase());
}

/** Builds and validates the configuration from environment variables (see README, Configuration). */
export function loadConfig(env: NodeJS.ProcessEnv, cwd = process.cwd()): ApiConfig {
  const port = num(env.PORT, 'PORT') ?? 8080;
  const environment = env.TIC_ENV === 'production' || env.NODE_ENV === 'production' ? 'production' : 'development';
  const databaseUrl = env.DATABASE_URL || undefined;
  const dataDir = resolve(cwd, env.DATA_DIR ?? 'data');
  const config: ApiConfig = {
    port,
    host: env.HOST ?? '0.0.0.0',
    publicUrl: (env.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    databaseUrl,
    dataDir,
    poolSize: num(env.PG_POOL_SIZE, 'PG_POOL_SIZE') ?? 20,
    environment,
    logLevel: (env.LOG_LEVEL as ApiConfig['logLevel']) ?? 'info',
    demoData: bool(env.DEMO_DATA) ?? !databaseUrl,
    auth: {
      mode: env.AUTH_MODE === 'external' ? 'external' : 'builtin',
      clientsFile: env.AUTH_CLIENTS_FILE,
      externalIssuer: env.AUTH_EXTERNAL_ISSUER,
      externalAudience: env.AUTH_EXTERNAL_AUDIENCE,
      externalJwksUrl: env.AUTH_EXTERNAL_JWKS_URL,
      rateLimitPerSecond: num(env.RATE_LIMIT_PER_SECOND, 'RATE_LIMIT_PER_SECOND'),
      rateLimitBurst: num(env.RATE_LIMIT_BURST, 'RATE_LIMIT_BURST'),
    },
    screeningConfigFile: env.SCREENING_CONFIG_FILE,
    shutdownTimeoutMs: num(env.SHUTDOWN_TIMEOUT_MS, 'SHUTDOWN_TIMEOUT_MS') ?? 10_000,
    referralMaxAttempts: num(env.REFERRAL_MAX_ATTEMPTS, 'REFERRAL_MAX_ATTEMPTS') ?? 8,
    auditReads: bool(env.AUDIT_READS) ?? true,
    auditReadCommit: (env.AUDIT_READ_COMMIT ?? 'journal') as ApiConfig['auditReadCommit'],
    auditJournalDir: resolve(cwd, env.AUDIT_JOURNAL_DIR ?? resolve(dataDir, 'audit-journal')),
    auditJournalSyncMs: num(env.AUDIT_JOURNAL_SYNC_MS, 'AUDIT_JOURNAL_SYNC_MS') ?? 100,
    auditBuildShare: num(env.AUDIT_BUILD_SHARE, 'AUDIT_BUILD_SHARE') ?? 0.03,
    auditBuildMaxBacklog: num(env.AUDIT_BUILD_MAX_BACKLOG, 'AUDIT_BUILD_MAX_BACKLOG') ?? 1_000_000,
    worker: !['off', 'false', '0', 'no'].includes((env.WORKER ?? '').trim().toLowerCase()),
    referralTargetsFile: env.REFERRAL_TARGETS_FILE,
    referralCredentialsFile: env.REFERRAL_CREDENTIALS_FILE,
    referralPollIntervalMs: num(env.REFERRAL_POLL_INTERVAL_MS, 'REFERRAL_POLL_INTERVAL_MS'),
  };
  for (const k of Object.keys(config.auth) as Array<keyof ApiConfig['auth']>) if (config.auth[k] === undefined) delete config.auth[k];
  for (const k of Object.keys(config) as Array<keyof ApiConfig>) if (config[k] === undefined) delete config[k];
  if (config.environment === 'production' && !config.auditReads) throw new Error('Invalid configuration: AUDIT_READS=off is refused in production (every read must be audited)');
  if (!validate(config)) {
    const problems = (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message}`).join('; ');
    throw new Error(`Invalid configuration: ${problems}`);
  }
  return config;
}

export function readJsonFile(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8'));
}
