// Recovering the jobs of a worker process that died (SIGKILL, OOM, lost host). graphile-worker keeps
// a job locked by its worker id until the lock is 4 hours old; a crashed worker's job would wait that
// long. Each worker process therefore holds a PostgreSQL session advisory lock for its lifetime on a
// dedicated connection and registers its graphile-worker pool and worker ids (either may appear in locked_by) under that lock's key. PostgreSQL drops
// the lock the moment the process's connection goes away, so any live worker can tell that the ids
// are dead and unlock their jobs (graphile_worker.force_unlock_workers) for another attempt.
// Jobs locked by ids nobody registered (a worker started some other way) are unlocked only after a
// grace period. A delivery that was in flight when its worker died is sent again: every job here must
// be idempotent (referral delivery is: conditional creates on business identifiers).
import { randomInt } from 'node:crypto';
import type { Db } from '@tic/store';

/** classid of the advisory locks (pg_advisory_lock(int4, int4)) that mark a live worker process. */
export const LIVENESS_LOCK_CLASS = 0x7ac0;

export const LIVENESS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS job_worker_liveness (
  worker_id text PRIMARY KEY,
  lock_key integer NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now()
)`;

/** A new process lock key (positive, so it compares directly with pg_locks.objid). */
export function newLockKey(): number {
  return randomInt(1, 2 ** 31 - 1);
}

/** Holds the process's liveness lock on a dedicated session (one connection held for the process's life). */
export async function holdLivenessLock(session: { query(sql: string, params: unknown[]): Promise<unknown> }, key: number): Promise<void> {
  await session.query('SELECT pg_advisory_lock($1::int, $2::int)', [LIVENESS_LOCK_CLASS, key]);
}

export async function registerWorker(db: Db, workerId: string, key: number): Promise<void> {
  await db.query('INSERT INTO job_worker_liveness (worker_id, lock_key) VALUES ($1, $2) ON CONFLICT (worker_id) DO UPDATE SET lock_key = EXCLUDED.lock_key', [workerId, key]);
}

export interface RecoveryResult {
  /** Worker ids whose jobs (and queues) were unlocked. */
  unlocked: string[];
}

/**
 * Unlocks the jobs of dead workers: registered workers whose process lock is gone at once, unknown
 * lockers once their lock is older than `graceMs`.
 */
export async function recoverDeadWorkers(db: Db, graceMs: number): Promise<RecoveryResult> {
  const lockers = await db.query<{ locked_by: string; registered: boolean; alive: boolean; stale: boolean }>(
    `WITH live AS (
       SELECT l.objid::bigint AS key FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = $1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     ),
     lockers AS (
       SELECT locked_by, min(locked_at) AS since FROM (
         SELECT locked_by, locked_at FROM graphile_worker._private_jobs WHERE locked_by IS NOT NULL
         UNION ALL
         SELECT locked_by, locked_at FROM graphile_worker._private_job_queues WHERE locked_by IS NOT NULL
       ) x GROUP BY locked_by
     )
     SELECT k.locked_by,
            w.worker_id IS NOT NULL AS registered,
            EXISTS (SELECT 1 FROM live WHERE live.key = w.lock_key) AS alive,
            k.since < now() - make_interval(secs => $2::double precision / 1000) AS stale
       FROM lockers k LEFT JOIN job_worker_liveness w ON w.worker_id = k.locked_by`,
    [LIVENESS_LOCK_CLASS, graceMs],
  );
  const dead = lockers.rows.filter((r) => (r.registered ? !r.alive : r.stale)).map((r) => r.locked_by);
  if (dead.length > 0) await db.query('SELECT graphile_worker.force_unlock_workers($1::text[])', [dead]);
  // Forget registrations of processes that are gone and hold nothing any more.
  await db.query(
    `DELETE FROM job_worker_liveness w
      WHERE NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid::bigint = $1 AND l.objid::bigint = w.lock_key)
        AND NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs j WHERE j.locked_by = w.worker_id)`,
    [LIVENESS_LOCK_CLASS],
  );
  return { unlocked: dead };
}
