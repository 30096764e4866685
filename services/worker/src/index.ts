// Reads configuration and starts the worker. DATABASE_URL (PostgreSQL) is required: graphile-worker
// does not run on PGlite. REFERRAL_TARGETS_FILE is a JSON object of receiving servers by owner
// reference: { "Organization/x": { "baseUrl": "...", "requester": "Organization/..", "owner": "Organization/.." } }.
import { readFileSync } from 'node:fs';
import type { PinoLike } from '@tic/jobs';
import { openDatabase } from '@tic/store';
import { createWorker } from './app.ts';

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
  const pollIntervalMs = process.env.REFERRAL_POLL_INTERVAL_MS ? Number(process.env.REFERRAL_POLL_INTERVAL_MS) : undefined;
  const db = await openDatabase({ url: databaseUrl, poolSize: 10 });
  const runner = await createWorker({ databaseUrl, db, sourceBase, targets, pollIntervalMs, logger });
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
