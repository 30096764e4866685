// Reads configuration and starts the worker. DATABASE_URL (PostgreSQL) is required: graphile-worker
// does not run on PGlite. Receiving servers come from the directory (Organization.endpoint →
// Endpoint); REFERRAL_TARGETS_FILE optionally overrides them, a JSON object by owner reference:
// { "Organization/x": { "baseUrl": "...", "requester": "Organization/..", "owner": "Organization/.." } }.
// REFERRAL_CREDENTIALS_FILE holds SMART Backend Services credentials by endpoint address:
// { "<address>": { "clientId", "privateJwk" (JWK or path), "tokenUrl"?, "scope", "requester"?, "owner"? } }.
import { readFileSync } from 'node:fs';
import type { PinoLike } from '@tic/jobs';
import { parseCredentials } from '@tic/referral';
import { openDatabase } from '@tic/store';
import { createWorker, DEFAULT_WORKER_CONCURRENCY } from './app.ts';

/** JSON lines on stdout (pino's shape); the worker logs messages only, never resource bodies. */
function jsonLogger(debug: boolean): PinoLike {
  const line = (level: number) => (obj: object, msg?: string) => {
    if (level < 30 && !debug) return;
    process.stdout.write(`${JSON.stringify({ level, time: Date.now(), ...obj, msg })}\n`);
  };
  return { error: line(50), warn: line(40), info: line(30), debug: line(20) };
}

async function main(): Promise<void> {
  const logger = jsonLogger(process.env.LOG_LEVEL === 'debug');
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('DATABASE_URL is required (the worker runs on PostgreSQL only)');
  const port = process.env.PORT ?? '8080';
  const sourceBase = `${(process.env.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, '')}/fhir`;
  const targets = process.env.REFERRAL_TARGETS_FILE ? (JSON.parse(readFileSync(process.env.REFERRAL_TARGETS_FILE, 'utf8')) as Record<string, never>) : {};
  const credentials = process.env.REFERRAL_CREDENTIALS_FILE ? parseCredentials(JSON.parse(readFileSync(process.env.REFERRAL_CREDENTIALS_FILE, 'utf8'))) : {};
  const number = (name: string) => {
    const v = process.env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
    return n;
  };
  const pollIntervalMs = number('REFERRAL_POLL_INTERVAL_MS');
  const concurrency = number('WORKER_CONCURRENCY');
  const recoveryInterval = number('WORKER_RECOVERY_INTERVAL_MS');
  // One connection per running job, and a few for polling and recovery.
  const db = await openDatabase({ url: databaseUrl, poolSize: (concurrency ?? DEFAULT_WORKER_CONCURRENCY) + 4 });
  const runner = await createWorker({ databaseUrl, db, sourceBase, targets, credentials, pollIntervalMs, concurrency, recoveryInterval, logger });
  logger.info({ sourceBase }, 'worker started');
  const stop = () => {
    runner.stop().then(
      () => db.close().then(() => process.exit(0)),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`worker failed to start: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
