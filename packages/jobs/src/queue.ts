// Durable background jobs on graphile-worker. A job is enqueued with SQL inside the transaction of
// the write that causes it (graphile_worker.add_job), so it exists exactly when that write commits.
// Retries back off exponentially (graphile-worker: exp(min(attempts, 10)) seconds after each failure).
import { EventEmitter } from 'node:events';
import { Logger, run, runMigrations } from 'graphile-worker';
import type { Runner, Task as JobHandler, TaskList, WorkerEvents } from 'graphile-worker';
import type { Db } from '@tic/store';
import { PgDb } from '@tic/store';
import { holdLivenessLock, LIVENESS_TABLE_SQL, newLockKey, recoverDeadWorkers, registerWorker } from './liveness.ts';

export type { Runner, TaskList, JobHandler };

export interface EnqueueOptions {
  /** Replaces a pending job with the same key (debouncing, one delivery per Task). */
  jobKey?: string;
  runAt?: Date;
  maxAttempts?: number;
  queueName?: string;
}

/** A job to enqueue: its task name, payload and options. */
export interface JobSpec {
  task: string;
  payload: unknown;
  options?: EnqueueOptions;
}

/**
 * The enqueueing of `job` as an SQL expression (graphile_worker.add_job), its values added through
 * `param` (which returns the placeholder of a value it was given): for a statement that writes
 * something and enqueues the job it causes in one round trip (PostgreSQL only).
 */
export function addJobSql(job: JobSpec, param: (value: unknown) => string): string {
  const o = job.options ?? {};
  return `graphile_worker.add_job(${param(job.task)}::text, payload => ${param(JSON.stringify(job.payload ?? {}))}::json, queue_name => ${param(o.queueName ?? null)}::text, run_at => ${param(o.runAt ? o.runAt.toISOString() : null)}::timestamptz, max_attempts => ${param(o.maxAttempts ?? null)}::int, job_key => ${param(o.jobKey ?? null)}::text)`;
}

/** Enqueues a job on the given Db (a transaction, to be atomic with a write). */
export async function enqueueJob(db: Db, task: string, payload: unknown, options: EnqueueOptions = {}): Promise<void> {
  if (db.dialect !== 'postgres') throw new Error('Durable jobs need PostgreSQL (graphile-worker does not run on PGlite)');
  const params: unknown[] = [];
  const sql = addJobSql({ task, payload, options }, (v) => {
    params.push(v);
    return `$${params.length}`;
  });
  await db.query(`SELECT ${sql}`, params, { prepare: true });
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
  const db = new PgDb(connectionString, 1);
  try {
    // Serialised: CREATE TABLE IF NOT EXISTS can still collide when replicas start together.
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['job_worker_liveness']);
      await tx.exec(LIVENESS_TABLE_SQL);
    });
  } finally {
    await db.close();
  }
}

export interface WorkerOptions {
  connectionString: string;
  taskList: TaskList;
  concurrency?: number;
  /** How often to look for jobs when LISTEN/NOTIFY is quiet (ms). */
  pollInterval?: number;
  logger?: PinoLike;
  /**
   * How often to unlock the jobs of worker processes that died (ms, default 15 s; also done at start).
   * See liveness.ts.
   */
  recoveryInterval?: number;
  /** Jobs locked by a worker id nobody registered are unlocked after this long (ms, default 5 min). */
  unknownLockGraceMs?: number;
  /**
   * Jobs the pool fetches (and locks) in one query and hands to its workers (graphile-worker's
   * local queue; default concurrency + 1, 0 or 1: every worker fetches its own). Without it every
   * idle worker queries on every new-job notification, most of them for nothing. Jobs held by a
   * process that dies are unlocked by the liveness recovery like running ones.
   */
  localQueueSize?: number;
  /**
   * Completions are written in batches gathered over this long (ms, default 25; -1: one statement
   * per job). A job completed but not yet recorded when its process dies runs again, which every
   * job here tolerates (they are idempotent).
   */
  completeJobBatchDelay?: number;
}

/**
 * Starts a worker pool; stop it with `runner.stop()`. Needs installJobSchema first. The process holds
 * a liveness lock so that, should it die mid-job, any other worker unlocks its jobs for a retry.
 */
export async function startWorker(options: WorkerOptions): Promise<Runner> {
  const db = new PgDb(options.connectionString, 2);
  const session = await db.pool.connect();
  session.on('error', (e: Error) => options.logger?.error({ component: 'jobs', err: e.name }, 'liveness connection lost'));
  const key = newLockKey();
  await holdLivenessLock(session, key);
  const graceMs = options.unknownLockGraceMs ?? 5 * 60_000;
  const recover = async () => {
    try {
      const { unlocked } = await recoverDeadWorkers(db, graceMs);
      if (unlocked.length) options.logger?.warn({ component: 'jobs', workers: unlocked.length }, 'unlocked the jobs of workers that died');
    } catch (e) {
      options.logger?.error({ component: 'jobs', err: e instanceof Error ? e.name : 'error', code: (e as { code?: unknown })?.code }, 'dead-worker recovery failed');
    }
  };
  await recover();
  const events: WorkerEvents = new EventEmitter() as WorkerEvents;
  const registrations: Array<Promise<void>> = [];
  const register = (id: string) => registrations.push(registerWorker(db, id, key).catch(() => options.logger?.error({ component: 'jobs' }, 'worker registration failed')));
  // Jobs are locked by the pool's id (batched fetching) or by a worker's id: register both.
  events.on('pool:create', ({ workerPool }) => register(workerPool.id));
  events.on('worker:create', ({ worker }) => register(worker.workerId));
  const concurrency = options.concurrency ?? 5;
  const localQueueSize = options.localQueueSize ?? concurrency + 1;
  const runner = await run({
    connectionString: options.connectionString,
    taskList: options.taskList,
    concurrency,
    pollInterval: options.pollInterval ?? 1000,
    noHandleSignals: true,
    logger: workerLogger(options.logger),
    events,
    preset: {
      worker: {
        ...(localQueueSize > 1 ? { localQueue: { size: localQueueSize } } : {}),
        completeJobBatchDelay: options.completeJobBatchDelay ?? 25,
      },
    },
  });
  const timer = setInterval(() => void recover(), options.recoveryInterval ?? 15_000);
  timer.unref();
  const stopRunner = runner.stop.bind(runner);
  const stop = async () => {
    clearInterval(timer);
    try {
      await stopRunner();
    } finally {
      await Promise.all(registrations);
      session.release();
      await db.close();
    }
  };
  return Object.assign(runner, { stop });
}
