// The audit log. Every audited access is first a compact record (one narrow row in audit_queue):
// a write's in the write's own statement (write.ts), a read's or search's committed before the
// response is sent (record(): concurrent callers share one INSERT, and several INSERTs may be in
// flight at once, so a read waits for one commit, not for a queue of them). drain() turns the
// records into AuditEvent resources (rows, versions, search index) in large batches, exactly once:
// the rows are deleted in the same transaction, and SKIP LOCKED lets several replicas drain side
// by side. How records become AuditEvents is the caller's (buildAuditEvents in @tic/auth groups the
// records of one client and interaction into one event).
import type { Resource } from '@medplum/fhirtypes';
import type { AuditJournal, AuditJournalEntry } from './audit-journal.ts';
import type { Db } from './db.ts';
import { referenceIndex, referencesOf } from './indexer.ts';
import { newResourceRow } from './repository.ts';
import type { AuditRow, CompanionRow } from './write.ts';
import { insertNewResources } from './write.ts';

interface Pending {
  owner: string | null;
  content: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export interface AuditQueueOptions {
  /** AuditEvents for the records of one owner organisation (null: the server's own). */
  build: (records: unknown[], owner: string | null) => Resource[];
  /** Records per INSERT at most (default 500). */
  maxBatch?: number;
  /** INSERTs in flight at once (default 4). */
  maxFlushes?: number;
  /** Records turned into AuditEvents per drain at most (default 1000: one drain blocks the event loop for ~10 ms, and a full batch is followed by the next at once). */
  drainBatch?: number;
  /** How record() commits (see QueryOptions.commit); default: synchronously. */
  commit?: 'relaxed';
  /**
   * Where record() makes records durable instead of audit_queue: a local journal (audit-journal.ts)
   * whose records each drain also ships, exactly once, with the mark of how far it got.
   */
  journal?: AuditJournal;
  /** Journal records shipped per audit-log row at most (default 1000). */
  journalBatch?: number;
}

/** Keys whose Patient reference says whom a resource is about (the audit's patient), in order. */
const PATIENT_KEYS = ['subject', 'patient', 'for', 'beneficiary'];

/**
 * The Patient a resource is about (the audit's `patient` entity): the Patient itself, the Patient
 * its subject, patient, for or beneficiary refers to, or else the first Patient its `patient`
 * search parameter finds (Appointment's participant, Provenance's target, ...).
 */
export function patientOf(resource: Resource | undefined): string | undefined {
  if (!resource) return undefined;
  if (resource.resourceType === 'Patient') return `Patient/${resource.id}`;
  const r = resource as unknown as Record<string, { reference?: string } | undefined>;
  for (const key of PATIENT_KEYS) {
    const ref = r[key]?.reference;
    if (typeof ref === 'string' && ref.startsWith('Patient/')) return ref;
  }
  return referencesOf(resource, 'patient').find((x) => x.startsWith('Patient/'));
}

/**
 * The Patient a stored row `r` of type `type` (resource_type, id) is about, in SQL, for the audit
 * record of a read by id: the row itself when it is a Patient, else its `patient` search
 * parameter's index rows (FHIR's own "patient this resource is about", e.g. Observation.subject or
 * Task.for where they are Patients; for most types those are the subject's rows of target type
 * Patient, indexer.ts referenceIndex). For the types whose `patient` parameter is their subject,
 * patient, for or beneficiary element this is patientOf (tested); for a few (Appointment's
 * participant, Provenance's target) it finds the patient where patientOf finds none. An index
 * lookup costs the read ~20 µs less of PostgreSQL's time than parsing the content as jsonb.
 * The text depends on the type only (codes from the R4 definitions, quoted).
 */
export function patientOfSql(type: string): string {
  if (type === 'Patient') return `'Patient/' || r.id`;
  const { codes } = referenceIndex(type, 'patient');
  const list = codes.map((c) => `'${c.replace(/'/g, "''")}'`).join(', ');
  return `(SELECT 'Patient/' || x.target_id FROM sp_reference x
  WHERE x.resource_type = r.resource_type AND x.id = r.id AND x.code IN (${list}) AND x.target_type = 'Patient' LIMIT 1)`;
}

const INSERT = 'INSERT INTO audit_queue (owner_org, content) SELECT * FROM unnest($1::text[], $2::text[])';

/** Appends audit-log rows within the caller's transaction (reads inside a transaction Bundle). */
export async function appendAuditRows(db: Db, rows: AuditRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.query(INSERT, [rows.map((r) => r.ownerOrg), rows.map((r) => r.content)]);
}

export class AuditQueue {
  private readonly db: Db;
  private readonly build: AuditQueueOptions['build'];
  private readonly maxBatch: number;
  private readonly maxFlushes: number;
  private readonly drainBatch: number;
  private readonly drainSql: string;
  private readonly commit: 'relaxed' | undefined;
  private readonly journal: AuditJournal | undefined;
  private readonly journalBatch: number;
  private orphanTimer: NodeJS.Timeout | undefined;
  private pending: Pending[] = [];
  private flushes = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private draining: Promise<number> | undefined;
  private shipping: Promise<number> | undefined;
  private recovering: Promise<void> | undefined;
  private shippedRecords = 0;
  private queuedRecords = 0;
  private drainedRecords = 0;
  private stopped = false;

  constructor(db: Db, options: AuditQueueOptions) {
    this.db = db;
    this.build = options.build;
    this.maxBatch = options.maxBatch ?? 500;
    this.maxFlushes = options.maxFlushes ?? 4;
    this.drainBatch = options.drainBatch ?? 1000;
    this.drainSql = auditDrainSql(this.drainBatch);
    this.commit = options.commit;
    this.journal = options.journal;
    this.journalBatch = options.journalBatch ?? 1000;
  }

  /** Resolves once the record is committed to the log (or durable in the journal). */
  record(ownerOrg: string | null, record: unknown): Promise<void> {
    return this.recordJson(ownerOrg, JSON.stringify(record));
  }

  /** record() with the record already serialised (`json`: its JSON text, e.g. auditRecordJson's). */
  recordJson(ownerOrg: string | null, json: string): Promise<void> {
    if (this.journal) return this.journal.appendJson(`[${ownerOrg === null ? 'null' : JSON.stringify(ownerOrg)},${json}]`);
    return new Promise((resolve, reject) => {
      this.pending.push({ owner: ownerOrg, content: json, resolve, reject });
      if (this.flushes < this.maxFlushes) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushes++;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxBatch);
        try {
          await this.db.query(INSERT, [batch.map((b) => b.owner), batch.map((b) => b.content)], { prepare: true, commit: this.commit });
          for (const b of batch) b.resolve();
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
    } finally {
      this.flushes--;
    }
  }

  /** Turns up to one batch of queued records into AuditEvent resources; returns how many records. */
  drain(): Promise<number> {
    // One drain at a time per process (others may run in other replicas).
    this.draining ??= this.drainOnce().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** Ships the journal and drains until the log is empty (auditors' reads, tests, shutdown). */
  async drainAll(): Promise<void> {
    // Files left by a process that is gone are shipped first (at start, recovery is under way).
    await this.recovering?.catch(() => undefined);
    while ((await this.ship()) > 0);
    while ((await this.drain()) > 0);
  }

  /**
   * Records this process queued (journal shipments, and the writes' rows it was told of with
   * noteQueued) and not yet drained by it: an estimate across replicas, set back to 0 whenever a
   * drain finds the log empty (a write rolled back after noteQueued is counted until then).
   */
  get backlog(): number {
    return Math.max(0, this.shippedRecords + this.queuedRecords - this.drainedRecords);
  }

  /** Records queued outside this queue (a write's audit rows, in its transaction), for the backlog. */
  noteQueued(records: number): void {
    this.queuedRecords += records;
  }

  private async drainOnce(): Promise<number> {
    const records = await this.db.transaction(async (tx): Promise<number> => {
      const taken = await tx.query<{ owner_org: string | null; content: string; records: number }>(this.drainSql, [], { prepare: true });
      if (taken.rows.length === 0) return 0;
      const byOwner = new Map<string | null, unknown[]>();
      const rows: CompanionRow[] = [];
      let records = 0;
      for (const r of taken.rows) {
        records += r.records;
        const parsed = JSON.parse(r.content) as Record<string, unknown> | Array<[string | null, unknown]>;
        if (Array.isArray(parsed)) {
          // A journal shipment: [owner, record] pairs.
          for (const [owner, record] of parsed) addTo(byOwner, owner, record);
          continue;
        }
        // Rows queued before the compact record (whole AuditEvents) are stored as they are.
        if (parsed.resourceType === 'AuditEvent') {
          rows.push(newResourceRow(ownerCtx(r.owner_org), parsed as unknown as Resource));
          continue;
        }
        addTo(byOwner, r.owner_org, parsed);
      }
      for (const [owner, list] of byOwner) {
        for (const event of this.build(list, owner)) rows.push(newResourceRow(ownerCtx(owner), event));
      }
      await insertNewResources(tx, rows);
      return records;
    });
    this.drainedRecords += records;
    if (records === 0) this.drainedRecords = this.shippedRecords + this.queuedRecords;
    return records;
  }

  /**
   * Moves up to one batch of the journal's written records into the audit log (one row, exactly
   * once: the journal file's mark moves in the same transaction); returns how many.
   */
  ship(): Promise<number> {
    if (!this.journal) return Promise.resolve(0);
    this.shipping ??= this.shipOnce().finally(() => {
      this.shipping = undefined;
    });
    return this.shipping;
  }

  private async shipOnce(): Promise<number> {
    const journal = this.journal!;
    const shipment = journal.take(this.journalBatch);
    if (!shipment) return 0;
    const n = await this.db.transaction((tx) => this.shipIn(tx, shipment.journal, shipment.entries));
    journal.shipped(shipment.journal, shipment.entries.at(-1)!.end);
    const removed = await journal.removeShipped();
    if (removed.length > 0) await this.db.query('DELETE FROM audit_journal_mark WHERE journal = ANY($1::text[])', [removed]);
    this.shippedRecords += n;
    return shipment.entries.reduce((m, e) => m + e.count, 0);
  }

  /**
   * Within the caller's transaction: locks the journal file's mark, queues the entries past it as
   * one row and moves the mark to the last entry's end. Returns how many entries were queued
   * (those at or before the mark were shipped already: a commit whose answer was lost, or another
   * process shipping the same orphaned file).
   */
  private async shipIn(tx: Db, journal: string, entries: AuditJournalEntry[]): Promise<number> {
    const mark = await tx.query<{ shipped_to: string }>(
      `INSERT INTO audit_journal_mark (journal, shipped_to) VALUES ($1, 0) ON CONFLICT (journal) DO UPDATE SET journal = EXCLUDED.journal RETURNING shipped_to`,
      [journal],
      { prepare: true },
    );
    const from = Number(mark.rows[0]!.shipped_to);
    const fresh = entries.filter((e) => e.end > from);
    if (fresh.length === 0) return 0;
    const count = fresh.reduce((m, e) => m + e.count, 0);
    await tx.query(
      `WITH q AS (INSERT INTO audit_queue (owner_org, content, records) VALUES (NULL, $2, $3))
      UPDATE audit_journal_mark SET shipped_to = $4 WHERE journal = $1`,
      // The lines are JSON already: the row is their array, not serialised again.
      [journal, `[${fresh.map((e) => e.json).join(',')}]`, count, fresh.at(-1)!.end],
      { prepare: true },
    );
    return count;
  }

  /**
   * Ships the journal files left by processes that are gone (a crash or restart on the same
   * directory) from their marks, then removes them. Returns how many records were shipped.
   */
  async recoverJournal(): Promise<number> {
    const journal = this.journal;
    if (!journal) return 0;
    let total = 0;
    for (const name of await journal.orphans()) {
      const mark = await this.db.query<{ shipped_to: string }>('SELECT shipped_to FROM audit_journal_mark WHERE journal = $1', [name]);
      const entries = await journal.readFrom(name, Number(mark.rows[0]?.shipped_to ?? 0));
      for (let i = 0; i < entries.length; i += this.journalBatch) {
        const chunk = entries.slice(i, i + this.journalBatch);
        total += await this.db.transaction((tx) => this.shipIn(tx, name, chunk));
      }
      await journal.remove(name);
      await this.db.query('DELETE FROM audit_journal_mark WHERE journal = $1', [name]);
    }
    this.shippedRecords += total;
    return total;
  }

  /**
   * Every `intervalMs` until stop(): ships the journal, and turns queued records into AuditEvents.
   * While the process has time to spare (`idle()`, e.g. no request for a while) or more than
   * `maxBacklog` records wait (default 100,000), they are built back to back. While it is busy
   * they wait, durable already, or with `share` are built taking at most `share()` of the wall
   * time (BuildBudget: after a build of d ms the next waits d × (1/share - 1) ms), so a saturating
   * load keeps the rest for requests. An auditor's search drains everything first (drainAll).
   */
  start(
    intervalMs = 200,
    onError: (e: unknown) => void = () => undefined,
    policy: { idle?: () => boolean; maxBacklog?: number; share?: () => number; now?: () => number } = {},
  ): void {
    if (this.timer || this.immediate) return;
    this.stopped = false;
    const idle = policy.idle ?? (() => true);
    const maxBacklog = policy.maxBacklog ?? 100_000;
    const share = policy.share;
    const budget = new BuildBudget(policy.now);
    // Resolves to how long to wait before the next tick: 0 when there is more to do at once.
    const tick = async (): Promise<number> => {
      const moreShipped = (await this.ship()) >= this.journalBatch;
      if (idle() || this.backlog > maxBacklog) return (await this.drain()) >= this.drainBatch || moreShipped ? 0 : intervalMs;
      if (!share) return moreShipped ? 0 : intervalMs;
      if (budget.wait() > 0) return moreShipped ? 0 : Math.min(intervalMs, budget.wait());
      const started = budget.now();
      const drained = await this.drain();
      budget.spent(started, share());
      if (moreShipped) return 0;
      return drained >= this.drainBatch ? Math.min(intervalMs, budget.wait()) : intervalMs;
    };
    const schedule = (delay: number) => {
      if (this.stopped) return;
      if (delay <= 0) {
        // Go again once the event loop has polled: requests that arrived during this batch are
        // taken in first (and so seen by idle()), not left waiting behind the next batch.
        this.timer = undefined;
        this.immediate = setImmediate(run);
        this.immediate.unref();
        return;
      }
      this.timer = setTimeout(run, delay);
      this.timer.unref();
    };
    const run = () => {
      if (this.stopped) return;
      tick().then(
        (delay) => schedule(delay),
        (e: unknown) => {
          onError(e);
          schedule(intervalMs);
        },
      );
    };
    schedule(intervalMs);
    if (this.journal) {
      // Files of processes that are gone: at start, then every minute (a sibling process on the same
      // directory may die while this one runs).
      const recover = () => {
        if (this.stopped) return;
        this.recovering = this.recoverJournal().then(
          () => undefined,
          (e: unknown) => onError(e),
        );
      };
      recover();
      this.orphanTimer = setInterval(recover, 60_000);
      this.orphanTimer.unref();
    }
  }

  /** Stops the background work (shipping, building, recovery) and leaves the log as it is (tests). */
  async pause(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    if (this.orphanTimer) clearInterval(this.orphanTimer);
    this.timer = undefined;
    this.immediate = undefined;
    this.orphanTimer = undefined;
    await this.draining;
    await this.shipping;
    await this.recovering;
  }

  /** Stops the timers and drains what is queued (with a journal: ships what it holds first). */
  async stop(): Promise<void> {
    await this.pause();
    await this.journal?.seal();
    await this.drainAll();
    if (this.journal) {
      // Files whose records are all shipped go; any other stays for the next process to ship.
      const removed = await this.journal.close();
      if (removed.length > 0) await this.db.query('DELETE FROM audit_journal_mark WHERE journal = ANY($1::text[])', [removed]);
    }
  }
}

/**
 * How much of the wall time the AuditEvent build may take while the process is busy: after a
 * build that took d ms at share s, the next may start d × (1/s - 1) ms after it ended, so builds
 * take at most s of any stretch of time. s ≥ 1: no wait.
 */
export class BuildBudget {
  private notBefore = 0;
  readonly now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.now = now;
  }

  /** Milliseconds until a build may start (0: now). */
  wait(): number {
    return Math.max(0, this.notBefore - this.now());
  }

  /** A build that started at `started` (this.now()) has just ended; `share` is what it may take. */
  spent(started: number, share: number): void {
    const end = this.now();
    const s = Number.isFinite(share) ? Math.min(1, Math.max(share, 0.001)) : 1;
    this.notBefore = end + (end - started) * (1 / s - 1);
  }
}

/**
 * The drain's statement: whole rows, oldest first, up to `batch` records (at least one row; a
 * journal shipment is one row of many records), deleted and returned. The batch size is written
 * into the statement, not bound, and the rows to delete are an array the DELETE looks up by key:
 * with `LIMIT $1` and a join PostgreSQL's generic plan (prepared statements) guessed a tenth of the
 * table and joined the DELETE through a sequential scan of all of audit_queue — seconds per drain
 * on a backlog, far worse where autovacuum does not run (measured: 40-60 s per drain at 160k rows,
 * 233 MB of table).
 */
export function auditDrainSql(batch: number): string {
  if (!Number.isInteger(batch) || batch < 1) throw new Error('The audit drain batch must be a positive integer');
  return `WITH c AS (SELECT seq, records FROM audit_queue ORDER BY seq LIMIT ${batch} FOR UPDATE SKIP LOCKED),
    s AS (SELECT seq FROM (SELECT seq, records, sum(records) OVER (ORDER BY seq) AS upto FROM c) w WHERE upto - records < ${batch})
    DELETE FROM audit_queue q WHERE q.seq = ANY(ARRAY(SELECT seq FROM s)) RETURNING q.owner_org, q.content, q.records`;
}

function addTo(byOwner: Map<string | null, unknown[]>, owner: string | null, record: unknown): void {
  const list = byOwner.get(owner);
  if (list) list.push(record);
  else byOwner.set(owner, [record]);
}

const ownerCtx = (owner: string | null) => (owner ? { organization: owner } : { system: true });
