// Durable, cheap recording of read/search AuditEvents. record() commits one narrow row per event
// (concurrent callers share one INSERT: group commit) before the caller answers its client, so no
// read goes unaudited even on a crash; drain() turns queued rows into AuditEvent resources (rows,
// versions, search index) in large batches, exactly once (rows are deleted in the same transaction,
// SKIP LOCKED lets several replicas drain side by side).
import type { Resource } from '@medplum/fhirtypes';
import type { Db } from './db.ts';
import { newResourceRow } from './repository.ts';
import { insertNewResources } from './write.ts';

interface Pending {
  owner: string | null;
  content: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class AuditQueue {
  private readonly db: Db;
  private readonly maxBatch: number;
  private pending: Pending[] = [];
  private flushing = false;
  private timer: NodeJS.Timeout | undefined;
  private draining: Promise<number> | undefined;
  private stopped = false;

  constructor(db: Db, maxBatch = 500) {
    this.db = db;
    this.maxBatch = maxBatch;
  }

  /** Resolves once the event is committed to the queue. */
  record(ownerOrg: string | null, event: Resource): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ owner: ownerOrg, content: JSON.stringify(event), resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxBatch);
        try {
          await this.db.query('INSERT INTO audit_queue (owner_org, content) SELECT * FROM unnest($1::text[], $2::text[])', [batch.map((b) => b.owner), batch.map((b) => b.content)]);
          for (const b of batch) b.resolve();
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Turns up to `max` queued events into AuditEvent resources; returns how many. */
  drain(max = 250): Promise<number> {
    // One drain at a time per process (others may run in other replicas).
    this.draining ??= this.drainOnce(max).finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async drainOnce(max: number): Promise<number> {
    return this.db.transaction(async (tx) => {
      const taken = await tx.query<{ owner_org: string | null; content: string }>(
        `DELETE FROM audit_queue WHERE seq IN (SELECT seq FROM audit_queue ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING owner_org, content`,
        [max],
      );
      if (taken.rows.length === 0) return 0;
      const rows = taken.rows.map((r) => newResourceRow(r.owner_org ? { organization: r.owner_org } : { system: true }, JSON.parse(r.content) as Resource));
      await insertNewResources(tx, rows);
      return rows.length;
    });
  }

  /** Drains every `intervalMs` until stop(). */
  start(intervalMs = 200, onError: (e: unknown) => void = () => undefined): void {
    if (this.timer) return;
    this.stopped = false;
    const tick = () => {
      if (this.stopped) return;
      this.drain().then(
        (n) => {
          if (this.stopped) return;
          // A full batch: there is more; go again at once.
          this.timer = setTimeout(tick, n >= 250 ? 0 : intervalMs);
          this.timer.unref();
        },
        (e: unknown) => {
          if (this.stopped) return;
          onError(e);
          this.timer = setTimeout(tick, intervalMs);
          this.timer.unref();
        },
      );
    };
    this.timer = setTimeout(tick, intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and drains what is queued. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.draining;
    while ((await this.drain()) > 0);
  }
}
