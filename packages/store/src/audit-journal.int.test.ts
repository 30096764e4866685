// The audit journal (decision 0005): records written to a local file before append() resolves,
// shipped to the audit log exactly once with the file's mark, files of dead processes recovered from
// their marks, failed writes refused and the journal going on in a new file.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AuditEvent, Resource } from '@medplum/fhirtypes';
import { AuditJournal } from './audit-journal.ts';
import { AuditQueue } from './audit-queue.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

/** One AuditEvent per record, naming the record's resources (enough to count what was built). */
const build = (records: unknown[]): Resource[] =>
  (records as Array<{ resources?: string[] }>).map(
    (r) => ({ resourceType: 'AuditEvent', recorded: '2026-11-26T00:00:00Z', type: { code: 'rest' }, agent: [{ requestor: true }], source: { observer: { display: 't' } }, entity: (r.resources ?? []).map((x) => ({ what: { reference: x } })) }) as AuditEvent,
  );

const record = (i: number) => ({ at: new Date().toISOString(), interaction: 'read', action: 'R', outcome: '0', resources: [`Observation/o${i}`] });

async function auditedResources(db: TestDatabase): Promise<string[]> {
  const r = await db.db.query<{ content: string }>(`SELECT content FROM resource WHERE resource_type = 'AuditEvent'`);
  return r.rows.flatMap((x) => (JSON.parse(x.content) as AuditEvent).entity?.map((e) => e.what?.reference ?? '') ?? []).sort();
}

/** The pid of a process that has exited. */
function deadPid(): Promise<number> {
  return new Promise((ok) => {
    const p = spawn(process.execPath, ['-e', ''], { env: { ...process.env, NODE_OPTIONS: '' } });
    p.on('exit', () => ok(p.pid!));
  });
}

describe.each(testDatabaseKinds())('audit journal on %s', (kind) => {
  let db: TestDatabase;
  let dir: string;
  beforeAll(async () => {
    db = await openTestDatabase(kind);
  });
  afterAll(async () => {
    await db.drop();
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tic-journal-'));
    await db.db.query(`DELETE FROM resource WHERE resource_type = 'AuditEvent'`);
    await db.db.query('DELETE FROM audit_queue');
    await db.db.query('DELETE FROM audit_journal_mark');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it.each([100, 0])('with syncMs %i: a record is in the file when append resolves, then shipped and built exactly once', async (syncMs) => {
    const journal = AuditJournal.open(dir, { syncMs });
    const queue = new AuditQueue(db.db, { build, journal });
    await Promise.all([1, 2, 3].map((i) => queue.record('Organization/a', record(i))));
    const [file] = readdirSync(dir);
    const lines = readFileSync(join(dir, file!), 'utf8').trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as [string, { resources: string[] }])[1].resources[0]).sort()).toEqual(['Observation/o1', 'Observation/o2', 'Observation/o3']);
    expect(await auditedResources(db)).toEqual([]);
    await queue.drainAll();
    expect(await auditedResources(db)).toEqual(['Observation/o1', 'Observation/o2', 'Observation/o3']);
    const mark = await db.db.query<{ shipped_to: string }>('SELECT shipped_to FROM audit_journal_mark WHERE journal = $1', [file]);
    expect(Number(mark.rows[0]!.shipped_to)).toBe(readFileSync(join(dir, file!)).length);
    await queue.drainAll();
    expect(await auditedResources(db)).toHaveLength(3);
    await queue.stop();
    // Everything shipped: the file and its mark are gone.
    expect(readdirSync(dir)).toEqual([]);
    expect((await db.db.query('SELECT 1 FROM audit_journal_mark')).rows).toHaveLength(0);
  });

  it('ships only what is past the mark (a commit whose answer was lost is not shipped twice)', async () => {
    const journal = AuditJournal.open(dir);
    const queue = new AuditQueue(db.db, { build, journal });
    for (const i of [1, 2, 3]) await queue.record(null, record(i));
    const [file] = readdirSync(dir);
    const text = readFileSync(join(dir, file!), 'utf8');
    const afterTwo = Buffer.byteLength(text.split('\n').slice(0, 2).join('\n') + '\n');
    await db.db.query('INSERT INTO audit_journal_mark (journal, shipped_to) VALUES ($1, $2)', [file, afterTwo]);
    await queue.drainAll();
    expect(await auditedResources(db)).toEqual(['Observation/o3']);
    await queue.stop();
  });

  it('ships the file of a process that is gone from its mark, ignores a torn last line, then removes file and mark', async () => {
    const name = `audit-${await deadPid()}-${randomUUID()}.jsonl`;
    const lines = [1, 2, 3].map((i) => `${JSON.stringify(['Organization/a', record(i)])}\n`);
    writeFileSync(join(dir, name), `${lines.join('')}["Organization/a",{"at":"2026`);
    await db.db.query('INSERT INTO audit_journal_mark (journal, shipped_to) VALUES ($1, $2)', [name, Buffer.byteLength(lines[0]!)]);
    const journal = AuditJournal.open(dir);
    const queue = new AuditQueue(db.db, { build, journal });
    // A live file of this process in the same directory is not an orphan.
    await queue.record(null, record(9));
    expect(await queue.recoverJournal()).toBe(2);
    expect(existsSync(join(dir, name))).toBe(false);
    expect((await db.db.query('SELECT 1 FROM audit_journal_mark WHERE journal = $1', [name])).rows).toHaveLength(0);
    await queue.drainAll();
    expect(await auditedResources(db)).toEqual(['Observation/o2', 'Observation/o3', 'Observation/o9']);
    await queue.stop();
  });

  it('a process killed after its appends resolved loses none of them: the next process ships them', async () => {
    const script = join(dir, 'child.mjs');
    const journalDir = join(dir, 'journal');
    writeFileSync(
      script,
      `import { AuditJournal } from ${JSON.stringify(resolve(__dirname, 'audit-journal.ts'))};
const j = AuditJournal.open(${JSON.stringify(journalDir)});
let n = 0;
const tick = async () => {
  const batch = [];
  for (let i = 0; i < 20; i++) batch.push(j.append('Organization/a', { at: new Date().toISOString(), interaction: 'read', action: 'R', outcome: '0', resources: ['Observation/k' + (n++)] }));
  await Promise.all(batch);
  process.stdout.write(n + '\\n');
  setImmediate(tick);
};
tick();
`,
    );
    const child = spawn(process.execPath, [script], { env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'inherit'] });
    let acknowledged = 0;
    await new Promise<void>((ok) => {
      child.stdout.on('data', (d: Buffer) => {
        const last = d.toString().trim().split('\n').at(-1);
        acknowledged = Math.max(acknowledged, Number(last));
        if (acknowledged >= 400 && !child.killed) child.kill('SIGKILL');
      });
      child.on('exit', () => ok());
    });
    const journal = AuditJournal.open(journalDir);
    const queue = new AuditQueue(db.db, { build, journal });
    const shipped = await queue.recoverJournal();
    expect(shipped).toBeGreaterThanOrEqual(acknowledged);
    await queue.drainAll();
    const audited = new Set(await auditedResources(db));
    for (let i = 0; i < acknowledged; i++) expect(audited.has(`Observation/k${i}`)).toBe(true);
    expect(audited.size).toBe(shipped);
    await queue.stop();
  }, 30_000);

  it('a failed write rejects its callers; the next append goes to a new file and nothing written is lost', async () => {
    const journal = AuditJournal.open(dir);
    const queue = new AuditQueue(db.db, { build, journal });
    await queue.record(null, record(1));
    // Break the current file under the journal (as a failing disk would).
    closeSync((journal as unknown as { current: { fd: number } }).current.fd);
    await expect(queue.record(null, record(2))).rejects.toThrow();
    await queue.record(null, record(3));
    expect(readdirSync(dir)).toHaveLength(2);
    await queue.drainAll();
    expect(await auditedResources(db)).toEqual(['Observation/o1', 'Observation/o3']);
    await queue.stop();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rotates to a new file when one is full and removes the full ones once shipped', async () => {
    const journal = AuditJournal.open(dir, { rotateBytes: 300 });
    const queue = new AuditQueue(db.db, { build, journal, journalBatch: 2 });
    for (let i = 0; i < 10; i++) await queue.record(null, record(i));
    expect(readdirSync(dir).length).toBeGreaterThan(2);
    await queue.drainAll();
    expect(await auditedResources(db)).toHaveLength(10);
    expect(readdirSync(dir)).toHaveLength(1);
    await queue.stop();
  });

  /** A queue on a new journal, started in the background every 20 ms with `policy`, busy until told. */
  const inBackground = (policy: { maxBacklog: number; share?: () => number; now?: () => number }) => {
    const queue = new AuditQueue(db.db, { build, journal: AuditJournal.open(dir) });
    const state = { idle: false };
    queue.start(20, (e) => {
      throw e;
    }, { idle: () => state.idle, ...policy });
    return { queue, state, settle: () => new Promise((r) => setTimeout(r, 300)) };
  };

  it('in the background: ships every tick, builds AuditEvents only when idle or past the backlog bound', async () => {
    const { queue, state, settle } = inBackground({ maxBacklog: 5 });
    const queued = async () => Number((await db.db.query<{ n: string | null }>('SELECT sum(records) AS n FROM audit_queue')).rows[0]!.n ?? 0);
    for (const i of [1, 2, 3]) await queue.record(null, record(i));
    await settle();
    // Busy and under the bound: shipped, not built.
    expect(await queued()).toBe(3);
    expect(await auditedResources(db)).toEqual([]);
    for (const i of [4, 5, 6]) await queue.record(null, record(i));
    await settle();
    // Past the bound (6 > 5): built although busy.
    expect(await queued()).toBe(0);
    expect(await auditedResources(db)).toHaveLength(6);
    await queue.record(null, record(7));
    await settle();
    expect(await auditedResources(db)).toHaveLength(6);
    state.idle = true;
    await settle();
    expect(await auditedResources(db)).toHaveLength(7);
    await queue.stop();
  });

  it("counts the writes' audit rows it is told of (noteQueued) towards the backlog bound, and forgets the count once the log is empty", async () => {
    const { queue, state, settle } = inBackground({ maxBacklog: 5 });
    // A write's row, committed with the write (as write.ts does), weighing its 4 resources.
    const writeRow = (i: number) =>
      db.db.query('INSERT INTO audit_queue (owner_org, content, records) VALUES (NULL, $1, 4)', [JSON.stringify({ ...record(i), interaction: 'create', action: 'C', resources: [`Observation/w${i}`] })]);
    await writeRow(1);
    await settle();
    // Busy, and the queue was not told: it does not know the backlog, so nothing is built.
    expect(await auditedResources(db)).toEqual([]);
    await writeRow(2);
    queue.noteQueued(4);
    queue.noteQueued(4);
    await settle();
    // Told of 8 records (> 5): built although busy, both rows.
    expect(await auditedResources(db)).toEqual(['Observation/w1', 'Observation/w2']);
    expect(queue.backlog).toBe(0);
    // A write told of but rolled back leaves nothing in the log: the first drain that finds the
    // log empty sets the count back, so a later small backlog is not mistaken for a large one.
    queue.noteQueued(4);
    queue.noteQueued(4);
    await queue.drain();
    expect(queue.backlog).toBe(0);
    await writeRow(3);
    queue.noteQueued(4);
    await settle();
    expect(await auditedResources(db)).toHaveLength(2);
    state.idle = true;
    await settle();
    expect(await auditedResources(db)).toHaveLength(3);
    await queue.stop();
  });

  it('in the background, with a share: builds while busy, then waits until the builds have taken only that share of the time', async () => {
    // A clock that moves 10 ms each time it is read: the first build "takes" 10 ms, and at a share
    // of 1 % the next may start 990 ms after it, far more than this test waits while busy.
    let t = 0;
    const now = () => (t += 10);
    const { queue, state, settle } = inBackground({ maxBacklog: 100, share: () => 0.01, now });
    await queue.record(null, record(1));
    await settle();
    // Busy and under the bound, but within the share: built.
    expect(await auditedResources(db)).toHaveLength(1);
    await queue.record(null, record(2));
    await settle();
    // The budget is spent: waits, durable in the log.
    expect(await auditedResources(db)).toHaveLength(1);
    state.idle = true;
    await settle();
    expect(await auditedResources(db)).toHaveLength(2);
    await queue.stop();
  });

  it('refuses appends once closed', async () => {
    const journal = AuditJournal.open(dir);
    const queue = new AuditQueue(db.db, { build, journal });
    await queue.stop();
    await expect(queue.record(null, record(1))).rejects.toThrow(/closed/);
  });
});
