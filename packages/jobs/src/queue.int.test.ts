// The job queue on PostgreSQL: a job exists exactly when the transaction that enqueued it commits,
// and a failing job is retried.
import { createPostgresDatabase } from '@tic/store/testing';
import { PgDb } from '@tic/store';
import { enqueueJob, installJobSchema, startWorker } from './queue.ts';

const url = process.env.DATABASE_URL;
// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const maybe = url ? describe : describe.skip;

maybe('job queue on PostgreSQL', () => {
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

  it('enqueues inside a transaction: rolled back means never run, committed means run; failures retry', async () => {
    await db.transaction(async (tx) => {
      await enqueueJob(tx, 'record', { n: 1 });
      await tx.query('SELECT 1');
    });
    await db
      .transaction(async (tx) => {
        await enqueueJob(tx, 'record', { n: 2 });
        throw new Error('rollback');
      })
      .catch(() => undefined);
    await enqueueJob(db, 'flaky', { n: 3 }, { maxAttempts: 3 });
    const seen: number[] = [];
    let flakyAttempts = 0;
    const runner = await startWorker({
      connectionString: target.url,
      pollInterval: 100,
      taskList: {
        record: async (payload) => {
          seen.push((payload as { n: number }).n);
        },
        flaky: async (_payload, helpers) => {
          flakyAttempts = helpers.job.attempts;
          if (helpers.job.attempts < 2) throw new Error('first attempt fails');
        },
      },
    });
    try {
      const deadline = Date.now() + 15_000;
      while ((seen.length < 1 || flakyAttempts < 2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 300));
      expect(seen).toEqual([1]);
      expect(flakyAttempts).toBe(2);
      const left = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM graphile_worker.jobs');
      expect(left.rows[0].n).toBe('0');
    } finally {
      await runner.stop();
    }
  }, 30_000);
});
