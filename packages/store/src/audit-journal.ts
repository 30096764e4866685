// The audit journal: a local append-only file in which the audit records of reads, searches and
// refusals are written before the response leaves, without a database write on the response path
// (docs/decisions/0005-audit-journal.md). The records appended during one turn of the event loop
// are written together with one write(2) on the event loop itself (a write to the page cache: a few
// µs; handing the batch to libuv's thread pool and back cost ~40 µs of CPU per write), before their
// callers resume. The file is fdatasync'ed every `syncMs` in the background (default 100 ms), or,
// when `syncMs` is 0, before the callers resume (one fdatasync in flight on the thread pool, the
// records arriving meanwhile in the next). Once written, a record survives a crash of this server
// (and of PostgreSQL); a crash of the machine can lose what was written since the last fdatasync,
// unless `syncMs` is 0.
// The audit queue (audit-queue.ts) ships the written records to PostgreSQL as AuditEvents in
// batches, recording how far each journal file has been shipped in the same transaction
// (audit_journal_mark), so a record is shipped exactly once whether this process goes on, crashes
// or is restarted: a file left by a process that is gone is shipped from its mark by the next
// process that starts on the same directory, then removed.
//
// One line per record: JSON `[owner organisation or null, record]`. A line without its newline at
// the end of a file is a write that never completed (its caller got an error) and is ignored.
import { randomUUID } from 'node:crypto';
import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Written records: their lines' JSON values (`[owner, record]`) joined by commas, how many, and the
 * file offset just past the last line. One per write (one batch), or per line when read back.
 */
export interface AuditJournalEntry {
  json: string;
  count: number;
  end: number;
}

/** The records appended since the last write: written together, their callers answered together. */
interface Batch {
  lines: string[];
  done: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const done = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { lines: [], done, resolve, reject };
}

interface JournalFile {
  name: string;
  fd: number;
  /** Bytes written. */
  size: number;
  /** Written since the last fdatasync began. */
  dirty: boolean;
  /** An fdatasync in flight (the descriptor stays open until it ends). */
  syncing: boolean;
  /** Written records not yet shipped, in file order. */
  unshipped: AuditJournalEntry[];
  /** No more appends (rotated, or a write failed): removed once everything in it is shipped. */
  retired: boolean;
}

export interface AuditJournalOptions {
  /**
   * fdatasync the file every this many milliseconds in the background (default 100); 0: before
   * the callers of append() resume (group commit: one write and one fdatasync in flight at a time).
   */
  syncMs?: number;
  /** Start a new file once the current one holds this many bytes (default 64 MiB). */
  rotateBytes?: number;
  /** A write or a background fdatasync failed (the file is retired; what it holds is still shipped). */
  onError?: (e: unknown) => void;
}

const FILE_PATTERN = /^audit-(\d+)-([0-9a-f-]{36})\.jsonl$/;

/** Files open in this process (several journals may share a directory in tests): never orphans. */
const openHere = new Set<string>();

export class AuditJournal {
  readonly dir: string;
  private readonly syncMs: number;
  private readonly rotateBytes: number;
  private readonly onError: (e: unknown) => void;
  private current: JournalFile | undefined;
  /** Files of this process, oldest first (the current one last). */
  private files: JournalFile[] = [];
  private pending: Batch | undefined;
  private scheduled = false;
  private flushing: Promise<void> | undefined;
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(dir: string, options: AuditJournalOptions) {
    this.dir = dir;
    this.syncMs = options.syncMs ?? 100;
    this.rotateBytes = options.rotateBytes ?? 64 * 1024 * 1024;
    this.onError = options.onError ?? (() => undefined);
  }

  /** Opens a journal in `dir` (created if missing) with a new file of this process. */
  static open(dir: string, options: AuditJournalOptions = {}): AuditJournal {
    mkdirSync(dir, { recursive: true });
    const journal = new AuditJournal(dir, options);
    journal.openFile();
    if (journal.syncMs > 0) {
      journal.syncTimer = setInterval(() => journal.syncDirty(), journal.syncMs);
      journal.syncTimer.unref();
    }
    return journal;
  }

  private openFile(): JournalFile {
    const name = `audit-${process.pid}-${randomUUID()}.jsonl`;
    const fd = openSync(join(this.dir, name), 'wx');
    const file: JournalFile = { name, fd, size: 0, dirty: false, syncing: false, unshipped: [], retired: false };
    openHere.add(name);
    this.files.push(file);
    this.current = file;
    return file;
  }

  /**
   * Resolves once the record is written to the journal (and fdatasync'ed, when `syncMs` is 0);
   * rejects if it could not be.
   */
  append(owner: string | null, record: unknown): Promise<void> {
    return this.appendJson(JSON.stringify([owner, record]));
  }

  /**
   * append() with the line already serialised: `json` is the JSON text of `[owner, record]`, on
   * one line (JSON text never holds a raw newline). The read path builds it by hand.
   */
  appendJson(json: string): Promise<void> {
    if (this.closed) return Promise.reject(new Error('The audit journal is closed'));
    const batch = (this.pending ??= newBatch());
    batch.lines.push(`${json}\n`);
    this.kick();
    return batch.done;
  }

  /**
   * Starts a write of what is pending unless one is in flight or about to start. The first record
   * of a burst waits for the end of the event-loop turn, so the records of the turn are written
   * together; while a write is in flight the next batch gathers behind it.
   */
  private kick(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flushing = this.flushLoop().finally(() => {
        this.flushing = undefined;
        // A caller resumed by the last write may have appended before this ran.
        if (this.pending) this.kick();
      });
    });
  }

  /** The file to append to (a new one after a failure, or when the current one is full). */
  private target(): JournalFile {
    let file = this.current;
    if (!file || file.retired || file.size >= this.rotateBytes) {
      if (file) file.retired = true;
      file = this.openFile();
    }
    return file;
  }

  /** Records a batch's lines (`text`, `bytes` long) as written at the end of `file`. */
  private written(file: JournalFile, count: number, text: string, bytes: number): void {
    file.size += bytes;
    // JSON.stringify never leaves a raw newline inside a value: the newlines are the separators.
    file.unshipped.push({ json: text.slice(0, -1).replaceAll('\n', ','), count, end: file.size });
    file.dirty = true;
  }

  /**
   * One write(2) per batch, on the event loop (this runs in the turn's setImmediate), and with
   * `syncMs` 0 an fdatasync on libuv's thread pool after it; what arrives meanwhile goes in the next.
   */
  private async flushLoop(): Promise<void> {
    while (this.pending) {
      const batch = this.pending;
      this.pending = undefined;
      let file: JournalFile | undefined;
      try {
        file = this.target();
        const fd = file.fd;
        const text = batch.lines.join('');
        const bytes = Buffer.from(text, 'utf8');
        let done = 0;
        while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
        if (this.syncMs === 0) {
          await new Promise<void>((resolve, reject) => {
            fdatasync(fd, (e) => (e ? reject(e) : resolve()));
          });
        }
        this.written(file, batch.lines.length, text, bytes.length);
        if (this.syncMs === 0) file.dirty = false;
      } catch (e) {
        if (file) file.retired = true;
        this.onError(e);
        batch.reject(e);
        continue;
      }
      batch.resolve();
    }
  }

  /** The background fdatasync of every file written since its last one. */
  private syncDirty(): void {
    for (const f of this.files) {
      if (!f.dirty || f.syncing) continue;
      f.dirty = false;
      f.syncing = true;
      fdatasync(f.fd, (e) => {
        f.syncing = false;
        if (e) {
          f.retired = true;
          this.onError(e);
        }
      });
    }
  }

  /**
   * Written records not yet shipped (whole writes, until at least `max` records), all of one file
   * (the oldest with any), with the file's name; undefined when there are none.
   */
  take(max: number): { journal: string; entries: AuditJournalEntry[] } | undefined {
    for (const f of this.files) {
      if (f.unshipped.length === 0) continue;
      let n = 0;
      let i = 0;
      while (i < f.unshipped.length && n < max) n += f.unshipped[i++]!.count;
      return { journal: f.name, entries: f.unshipped.slice(0, i) };
    }
    return undefined;
  }

  /** Forgets the records of `journal` up to offset `end` (committed as shipped). */
  shipped(journal: string, end: number): void {
    const f = this.files.find((x) => x.name === journal);
    if (!f) return;
    let i = 0;
    while (i < f.unshipped.length && f.unshipped[i]!.end <= end) i++;
    f.unshipped.splice(0, i);
  }

  /** Retired files whose records are all shipped: closes and deletes them; returns their names. */
  async removeShipped(): Promise<string[]> {
    const done = this.files.filter((f) => f.retired && f.unshipped.length === 0 && !f.syncing && f !== this.current);
    for (const f of done) {
      openHere.delete(f.name);
      closeQuietly(f.fd);
      await unlink(join(this.dir, f.name)).catch(() => undefined);
    }
    this.files = this.files.filter((f) => !done.includes(f));
    return done.map((f) => f.name);
  }

  /** Whether records are waiting to be written or shipped. */
  get backlog(): number {
    return (this.pending?.lines.length ?? 0) + this.files.reduce((n, f) => n + f.unshipped.reduce((m, e) => m + e.count, 0), 0);
  }

  /**
   * Journal files in the directory that no running process writes: those of an earlier process
   * (a crash, a restart) on this directory. A file of a process id that is alive and not this one
   * is another live server's (a directory must not be shared between hosts).
   */
  async orphans(): Promise<string[]> {
    const names = await readdir(this.dir);
    return names.filter((n) => {
      const m = FILE_PATTERN.exec(n);
      if (!m || openHere.has(n)) return false;
      const pid = Number(m[1]);
      return pid === process.pid || !processAlive(pid);
    });
  }

  /** The complete records of a journal file from byte `from` (a torn last line is left out). */
  async readFrom(name: string, from: number): Promise<AuditJournalEntry[]> {
    const buf = await readFile(join(this.dir, name));
    const entries: AuditJournalEntry[] = [];
    let start = from;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      const end = nl + 1;
      try {
        const json = buf.toString('utf8', start, nl);
        const parsed = JSON.parse(json) as unknown;
        if (!Array.isArray(parsed) || parsed.length !== 2) throw new Error('not a journal line');
        entries.push({ json, count: 1, end });
      } catch {
        // Not a line this journal wrote whole (only a failed write leaves one, and its caller got the
        // error); the records after it are still shipped.
      }
      start = end;
    }
    return entries;
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name)).catch(() => undefined);
  }

  /** Refuses further appends, writes what is pending and waits for the writes in flight. */
  async seal(): Promise<void> {
    this.closed = true;
    while (this.scheduled || this.flushing) await (this.flushing ?? new Promise((r) => setImmediate(r)));
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.syncTimer = undefined;
  }

  /**
   * Waits for the writes in flight, then closes every file; deletes those whose records are all
   * shipped and returns their names (the others stay for the next process to ship).
   */
  async close(): Promise<string[]> {
    await this.seal();
    while (this.files.some((f) => f.syncing)) await new Promise((r) => setTimeout(r, 5));
    const removed: string[] = [];
    for (const f of this.files) {
      openHere.delete(f.name);
      if (f.dirty && f.unshipped.length > 0) {
        try {
          fdatasyncSync(f.fd);
        } catch (e) {
          this.onError(e);
        }
      }
      closeQuietly(f.fd);
      if (f.unshipped.length === 0) {
        await unlink(join(this.dir, f.name)).catch(() => undefined);
        removed.push(f.name);
      }
    }
    this.files = [];
    this.current = undefined;
    return removed;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
