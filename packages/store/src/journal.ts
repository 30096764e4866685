// What a database transaction has written so far, as the repository wrote it: the current version
// of every resource written in it, its index rows, and whether it was created in it under an id
// this server generated. Write hooks use it to answer "which resources refer to X?" without a
// search when X is new here: nobody outside the transaction knows X's id before it commits, so
// only resources written in the same transaction can refer to it. A savepoint rolled back takes
// its entries back with it (db.ts).
//
// It also holds the transaction's audited writes: their audit-log rows are made from all of them at
// once and inserted just before the transaction commits (db.ts), one record per patient for the
// whole transaction instead of one per resource (docs/decisions/0007-audit-per-request.md).
import type { Resource } from '@medplum/fhirtypes';
import type { RequestContext, WriteInteraction } from '@tic/fhir';
import type { IndexRows } from './indexer.ts';
import type { AuditRow } from './write.ts';

/** One stored write as the audit sees it: who wrote what (the stored version), and how. */
export interface AuditedWrite {
  ctx: RequestContext;
  interaction: WriteInteraction;
  /** The stored version (for a delete: type, id and meta only). */
  resource: Resource;
}

/**
 * An audit-log row of writes. `records`: its weight in a drain batch (audit_queue.records; default
 * 1): the number of resources it lists, so that a drain builds about as many entities whether the
 * rows list one resource each or a request's 22.
 */
export type WritesAuditRow = AuditRow & { records?: number };

/** The audit-log rows of a list of writes (the services' audit: one record per patient, ...). */
export type AuditWrites = (writes: AuditedWrite[]) => WritesAuditRow[];

export interface JournalEntry {
  type: string;
  id: string;
  /** The stored version's JSON as written (undefined once deleted). */
  content: string | undefined;
  /** Its search-index rows (those the write stored). */
  index: IndexRows | undefined;
  ownerOrg: string | null;
  /** Labelled R or V (resource.restricted). */
  restricted: boolean;
  /** Created in this transaction under an id this server generated (a random UUID). */
  created: boolean;
  /** The write, for its audit-log row (made when the transaction commits: auditRows). */
  audit?: AuditedWrite;
}

export class WriteJournal {
  private readonly log: JournalEntry[] = [];
  private byKey = new Map<string, JournalEntry>();
  private auditWrites: AuditWrites | undefined;

  /** How the audited writes recorded here become audit-log rows (set by the repository). */
  auditWith(audit: AuditWrites): void {
    this.auditWrites = audit;
  }

  /**
   * The audit-log rows of every audited write recorded here (and not rolled back), to be inserted
   * in the transaction before it commits.
   */
  auditRows(): WritesAuditRow[] {
    if (!this.auditWrites) return [];
    const writes: AuditedWrite[] = [];
    for (const e of this.log) if (e.audit) writes.push(e.audit);
    return writes.length > 0 ? this.auditWrites(writes) : [];
  }

  /** Records a write; `created`: a create whose id this server generated. */
  record(entry: JournalEntry): void {
    const key = `${entry.type}/${entry.id}`;
    const before = this.byKey.get(key);
    const e = { ...entry, created: entry.created || (before?.created ?? false) };
    this.log.push(e);
    this.byKey.set(key, e);
  }

  /** A mark to roll back to (a savepoint). */
  mark(): number {
    return this.log.length;
  }

  /** Forgets the entries recorded since `mark` (the savepoint was rolled back). */
  rollback(mark: number): void {
    if (mark >= this.log.length) return;
    this.log.length = mark;
    this.byKey = new Map();
    for (const e of this.log) this.byKey.set(`${e.type}/${e.id}`, { ...e, created: e.created || (this.byKey.get(`${e.type}/${e.id}`)?.created ?? false) });
  }

  /** Whether `type/id` was created in this transaction under an id this server generated. */
  createdHere(type: string, id: string): boolean {
    return this.byKey.get(`${type}/${id}`)?.created ?? false;
  }

  /** The current (last written) entry of every resource of `type` written here, deleted ones included. */
  written(type: string): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (const e of this.byKey.values()) if (e.type === type) out.push(e);
    return out;
  }
}
