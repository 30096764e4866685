// Reads configuration, opens the database and starts the API and, on PostgreSQL unless WORKER=off,
// the job worker in the same process (referral delivery, status polling, Subscription notifications).
// In the embedded PGlite mode there is no worker (docs/decisions/0003-embedded-worker.md).
// Graceful shutdown: stop accepting, finish in-flight requests, stop the worker, close.
import { mkdirSync } from 'node:fs';
import { pino } from 'pino';
import { openDatabase } from '@tic/store';
import { startWorker } from '@tic/jobs';
import type { Runner } from '@tic/jobs';
import { parseCredentials } from '@tic/referral';
import { workerTaskList } from '@tic/worker/tasks';
import type { DeliveryTarget } from '@tic/referral';
import { safeError } from '@tic/rest';
import { loadConfig, readJsonFile } from './config.ts';
import { createApi } from './app.ts';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = pino({ level: config.logLevel, redact: { paths: ['req.headers.authorization', 'req.body', 'res.body'], remove: true } });
  if (!config.databaseUrl) mkdirSync(config.dataDir, { recursive: true });
  logger.info({ node: process.version, database: config.databaseUrl ? 'postgresql' : 'pglite', dataDir: config.databaseUrl ? undefined : config.dataDir }, 'starting tic-exchange');
  const db = await openDatabase({ url: config.databaseUrl, dataDir: config.databaseUrl ? undefined : `${config.dataDir}/pglite`, poolSize: config.poolSize });
  const api = await createApi({ config, db, logger });
  const server = api.app.listen(config.port, config.host, () => {
    logger.info({ url: api.baseUrl }, 'FHIR API listening');
    if (api.auth.devTokenCommand) {
      process.stdout.write(`\ntic-exchange is up: FHIR base ${api.baseUrl}\nGet a development access token (in another terminal, from the repository root) with:\n  npm run --silent token\n(with PORT/PUBLIC_URL/DATA_DIR set as for the server; or, on Node 24: ${api.auth.devTokenCommand})\n\n`);
    }
  });
  server.keepAliveTimeout = 65_000;

  let worker: Runner | undefined;
  if (config.databaseUrl && config.worker) {
    const taskList = workerTaskList({
      repository: () => api.systemRepository(),
      sourceBase: api.baseUrl,
      targets: config.referralTargetsFile ? (readJsonFile(config.referralTargetsFile) as Record<string, DeliveryTarget>) : {},
      credentials: config.referralCredentialsFile ? parseCredentials(readJsonFile(config.referralCredentialsFile)) : {},
      pollIntervalMs: config.referralPollIntervalMs,
    });
    worker = await startWorker({ connectionString: config.databaseUrl, taskList, logger });
    logger.info('job worker started in this process');
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    api.setReady(false);
    const force = setTimeout(() => {
      logger.warn('shutdown timeout: closing remaining connections');
      server.closeAllConnections();
    }, config.shutdownTimeoutMs);
    force.unref();
    server.close(() => {
      (worker ? worker.stop() : Promise.resolve())
        .catch((e: unknown) => logger.error({ err: safeError(e) }, 'worker stop failed'))
        .then(() => api.close())
        .catch((e: unknown) => logger.error({ err: safeError(e) }, 'audit queue drain failed'))
        .then(() => db.close())
        .then(
        () => {
          logger.info('stopped');
          process.exit(0);
        },
        () => process.exit(1),
      );
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: unknown) => {
  process.stderr.write(`tic-exchange failed to start: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
