// Dead-worker recovery on PostgreSQL: a job locked by a worker whose process lock is gone is
// unlocked at once; one locked by a live worker is left alone; one locked by an unknown id only
// after the grace period.
import { createPostgresDatabase } from '@tic/store/testing';
import { PgDb } from '@tic/store';
import { enqueueJob, installJobSchema } from './queue.ts';
import { holdLivenessLock, newLockKey, recoverDeadWorkers, registerWorker } from './liveness.ts';

const url = process.env.DATABASE_URL;
// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const maybe = url ? describe : describe.skip;

maybe('dead-worker recovery on PostgreSQL', () => {
  let db: PgDb;
  let target: { url: string; drop: () => Promise<void> };
  beforeAll(async () => {
    target = await createPostgresDatabase(url!, 'tic_jobs');
    db = new PgDb(target.url, 5);
    await installJobSchema(target.url);
  }, 60_000);
  afterAll(async () => {
    await db?.close();
    await target?.drop();
  });

  const lockJob = async (task: string, workerId: string) => {
    await enqueueJob(db, task, {});
    await db.query("UPDATE graphile_worker._private_jobs SET locked_by = $1, locked_at = now() - interval '1 minute' WHERE task_id = (SELECT id FROM graphile_worker._private_tasks WHERE identifier = $2)", [workerId, task]);
  };
  const lockedBy = async (task: string) =>
    (await db.query<{ locked_by: string | null }>('SELECT locked_by FROM graphile_worker.jobs WHERE task_identifier = $1', [task])).rows[0]?.locked_by;

  it('unlocks jobs of registered workers whose process is gone, keeps those of live ones', async () => {
    const liveSession = new PgDb(target.url, 1);
    const client = await liveSession.pool.connect();
    const liveKey = newLockKey();
    await holdLivenessLock(client, liveKey);
    await registerWorker(db, 'worker-live', liveKey);
    await registerWorker(db, 'worker-dead', newLockKey()); // nobody holds its lock
    await lockJob('live-job', 'worker-live');
    await lockJob('dead-job', 'worker-dead');
    await lockJob('unknown-job', 'worker-unknown');
    try {
      const first = await recoverDeadWorkers(db, 10 * 60_000);
      expect(first.unlocked).toEqual(['worker-dead']);
      expect(await lockedBy('dead-job')).toBeNull();
      expect(await lockedBy('live-job')).toBe('worker-live');
      expect(await lockedBy('unknown-job')).toBe('worker-unknown');
      // Unknown lockers: after the grace period (the lock is a minute old).
      const second = await recoverDeadWorkers(db, 30_000);
      expect(second.unlocked).toEqual(['worker-unknown']);
      expect(await lockedBy('unknown-job')).toBeNull();
      expect(await lockedBy('live-job')).toBe('worker-live');
    } finally {
      client.release();
      await liveSession.close();
    }
    // The live worker's session ended: now its job is unlocked too.
    await new Promise((r) => setTimeout(r, 200));
    expect((await recoverDeadWorkers(db, 10 * 60_000)).unlocked).toEqual(['worker-live']);
    expect(await lockedBy('live-job')).toBeNull();
  }, 30_000);
});
