// Durable background jobs on graphile-worker. A job is enqueued with SQL inside the transaction of
// the write that causes it (graphile_worker.add_job), so it exists exactly when that write commits.
// Retries back off exponentially (graphile-worker: exp(min(attempts, 10)) seconds after each failure).
import { Logger, run, runMigrations } from 'graphile-worker';
import type { Runner, Task as JobHandler, TaskList } from 'graphile-worker';
import type { Db } from '@tic/store';

export type { Runner, TaskList, JobHandler };

export interface EnqueueOptions {
  /** Replaces a pending job with the same key (debouncing, one delivery per Task). */
  jobKey?: string;
  runAt?: Date;
  maxAttempts?: number;
  queueName?: string;
}

/** Enqueues a job on the given Db (a transaction, to be atomic with a write). */
export async function enqueueJob(db: Db, task: string, payload: unknown, options: EnqueueOptions = {}): Promise<void> {
  if (db.dialect !== 'postgres') throw new Error('Durable jobs need PostgreSQL (graphile-worker does not run on PGlite)');
  await db.query('SELECT graphile_worker.add_job($1::text, payload => $2::json, queue_name => $3::text, run_at => $4::timestamptz, max_attempts => $5::int, job_key => $6::text)', [
    task,
    JSON.stringify(payload ?? {}),
    options.queueName ?? null,
    options.runAt ? options.runAt.toISOString() : null,
    options.maxAttempts ?? null,
    options.jobKey ?? null,
  ]);
}

export interface PinoLike {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** graphile-worker's logger routed to pino (messages only: payloads never reach the log). */
export function workerLogger(logger?: PinoLike): Logger {
  return new Logger(() => (level, message) => {
    if (!logger) return;
    const fn = level === 'error' ? logger.error : level === 'warning' ? logger.warn : level === 'info' ? logger.info : logger.debug;
    fn.call(logger, { component: 'jobs' }, message);
  });
}

/** Installs or upgrades the graphile_worker schema (idempotent; safe with several replicas). */
export async function installJobSchema(connectionString: string, logger?: PinoLike): Promise<void> {
  await runMigrations({ connectionString, logger: workerLogger(logger) });
}

export interface WorkerOptions {
  connectionString: string;
  taskList: TaskList;
  concurrency?: number;
  /** How often to look for jobs when LISTEN/NOTIFY is quiet (ms). */
  pollInterval?: number;
  logger?: PinoLike;
}

/** Starts a worker pool; stop it with `runner.stop()`. */
export async function startWorker(options: WorkerOptions): Promise<Runner> {
  return run({
    connectionString: options.connectionString,
    taskList: options.taskList,
    concurrency: options.concurrency ?? 5,
    pollInterval: options.pollInterval ?? 1000,
    noHandleSignals: true,
    logger: workerLogger(options.logger),
  });
}
