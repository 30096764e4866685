// The read audit's own cost per record (issue 4), without HTTP: appends N realistic read records to
// the audit journal in event-loop turns of 16 (the bench's connections), shipping every 200 ms as
// the API does, and prints the CPU per record of this process (every thread: the journal's writes
// run on libuv's pool) and of PostgreSQL (this database's backends and the server's own
// processes). AuditEvents are not built (that is the deferred part: audit-drain.ts).
// Usage: DATABASE_URL=postgres://... node tests/src/bench/journal-cost.ts [records] [perTurn]
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditRecord, buildAuditEvents } from '@tic/auth';
import type { RequestContext } from '@tic/fhir';
import { AuditJournal, AuditQueue } from '@tic/store';
import { openTestDatabase } from '@tic/store/testing';
import { cpuSince, postgresCpuSnapshot } from './cpu.ts';

const say = (line: string) => process.stdout.write(`${line}\n`);
const total = Number(process.argv[2] ?? 200_000);
const perTurn = Number(process.argv[3] ?? 16);
const db = await openTestDatabase('postgres');
const dir = mkdtempSync(join(tmpdir(), 'tic-journal-cost-'));
const journal = AuditJournal.open(dir, { syncMs: Number(process.env.AUDIT_JOURNAL_SYNC_MS ?? 100) });
const queue = new AuditQueue(db.db, { build: (records) => buildAuditEvents(records as never), journal });
const databaseName = db.url ? new URL(db.url).pathname.slice(1) : '';
try {
  for (const stmt of (process.env.SETUP_SQL ?? '').split(';').filter((x) => x.trim())) await db.db.query(stmt);
  const ctx = { clientId: 'bench-client', organization: 'Organization/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b' } as unknown as RequestContext;
  const ids = Array.from({ length: 1000 }, () => [randomUUID(), randomUUID()] as const);
  const run = async (n: number) => {
    const shipper = setInterval(() => void queue.ship(), 200);
    for (let i = 0; i < n; i += perTurn) {
      const turn: Promise<void>[] = [];
      for (let k = 0; k < perTurn; k++) {
        const [o, p] = ids[(i + k) % ids.length]!;
        const record = auditRecord({ ctx: { ...ctx, requestId: randomUUID() } as RequestContext, action: 'R', interaction: 'read', resources: [`Observation/${o}`], patients: [`Patient/${p}`], outcome: '0' });
        turn.push(queue.record(ctx.organization ?? null, record));
      }
      await Promise.all(turn);
    }
    clearInterval(shipper);
    while ((await queue.ship()) > 0);
  };
  await run(Math.min(20_000, total / 10)); // warm-up: JIT, the pool's connections, the file
  const pg0 = postgresCpuSnapshot([databaseName]);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(total);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const pg = cpuSince(pg0, postgresCpuSnapshot([databaseName]));
  const size = await db.db.query<{ bytes: string; rows: string }>(`SELECT pg_total_relation_size('audit_queue') AS bytes, count(*) AS rows FROM audit_queue`);
  say(
    `${total.toLocaleString('en')} records, ${perTurn} per turn, in ${(wall / 1000).toFixed(1)} s: this process ${(((cpu.user + cpu.system) / total) as number).toFixed(1)} µs CPU per record (user ${(cpu.user / total).toFixed(1)}, system ${(cpu.system / total).toFixed(1)}), PostgreSQL ${((pg * 1e6) / total).toFixed(1)} µs; audit_queue ${size.rows[0]!.rows} rows, ${(Number(size.rows[0]!.bytes) / (total + Math.min(20_000, total / 10))).toFixed(0)} bytes per record`,
  );
} finally {
  await queue.stop();
  await journal.close();
  rmSync(dir, { recursive: true, force: true });
  await db.drop();
}
