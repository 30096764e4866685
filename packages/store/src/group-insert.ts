// Group commit for append-only records (audit events of reads): callers wait until their rows are
// committed, but concurrent callers share one INSERT statement. No artificial delay: while one
// batch is being written, the next one gathers.
import type { Db } from './db.ts';
import type { CompanionRow } from './write.ts';
import { insertNewResources } from './write.ts';

interface Pending {
  rows: CompanionRow[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class GroupInserter {
  private readonly db: Db;
  private readonly maxBatch: number;
  private pending: Pending[] = [];
  private flushing = false;

  constructor(db: Db, maxBatch = 200) {
    this.db = db;
    this.maxBatch = maxBatch;
  }

  /** Resolves once the rows are committed; rejects if they could not be written. */
  insert(rows: CompanionRow[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ rows, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxBatch);
        try {
          await insertNewResources(this.db, batch.flatMap((b) => b.rows));
          for (const b of batch) b.resolve();
        } catch (e) {
          // One bad entry must not fail the others: retry them one by one.
          if (batch.length === 1) batch[0].reject(e);
          else {
            for (const b of batch) {
              await insertNewResources(this.db, b.rows).then(b.resolve, b.reject);
            }
          }
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}
