// Referral worklists at 100k Tasks (issue 6): loads Tasks (mixed requesters, owners, statuses,
// priorities) with their Patients and ServiceRequests into a fresh PostgreSQL database through the
// Repository of @tic/store, shares each Task, its ServiceRequest and Patient with the owner as the
// referral module does (resource_share), runs ANALYZE, then for every worklist search prints
// EXPLAIN (ANALYZE, BUFFERS) of each query it ran and the median of 15 runs.
//   node scripts/tic.mjs pnpm --filter @tic/tests exec node src/bench/referral-worklist.ts
// Settings: WORKLIST_TASKS (default 100000), BENCH_DATABASE_URL / DATABASE_URL (admin database,
// default postgres://postgres@127.0.0.1:5432/postgres), WORKLIST_OUT (default
// /tmp/referral-worklist-plans.txt), WORKLIST_KEEP=1 keeps the database. Findings: docs/search-plans.md.
// The load bypasses the referral module (no state machine, consent or audit: a bulk load, not a
// measured path) and validation; the searches run exactly as the API runs them for a client.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import type { Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { migrate, PgDb, Repository, searchResources } from '@tic/store';
import type { Db, QueryResult } from '@tic/store';
import { createPostgresDatabase } from '@tic/store/testing';

const TASKS = Number(process.env.WORKLIST_TASKS ?? 100_000);
const PATIENTS = Math.max(1, Math.floor(TASKS / 10));
const ORGS = 20;
const CONNECTIONS = 8;
const CHUNK = 250;
const OUT = process.env.WORKLIST_OUT ?? '/tmp/referral-worklist-plans.txt';
const adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const BUSINESS_STATUS_SYSTEM = 'https://tic-exchange.org/fhir/CodeSystem/referral-business-status';

const log = (msg: string) => process.stderr.write(`[worklist] ${msg}\n`);
const org = (n: number) => `Organization/org-${n}`;

// Status mix of a live service: most referrals are finished, a fifth wait for the receiver.
const STATUSES: Array<[Task['status'], number]> = [
  ['requested', 0.2],
  ['accepted', 0.1],
  ['in-progress', 0.15],
  ['on-hold', 0.03],
  ['completed', 0.4],
  ['rejected', 0.05],
  ['cancelled', 0.05],
  ['failed', 0.02],
];
const PRIORITIES: Array<[Task['priority'], number]> = [
  ['routine', 0.7],
  ['urgent', 0.2],
  ['asap', 0.08],
  ['stat', 0.02],
];

function pick<T>(table: Array<[T, number]>, x: number): T {
  let acc = 0;
  for (const [v, w] of table) {
    acc += w;
    if (x < acc) return v;
  }
  return table[table.length - 1][0];
}

/** Deterministic 0..1 from an integer (so runs are reproducible). */
function unit(i: number, salt: number): number {
  let t = (i * 2654435761 + salt * 40503) >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

class RecordingDb implements Db {
  readonly inner: Db;
  readonly seen: Array<{ sql: string; params: unknown[] }> = [];
  readonly inTransaction = false;
  readonly dialect = 'postgres' as const;
  constructor(inner: Db) {
    this.inner = inner;
  }
  query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    this.seen.push({ sql, params: params ?? [] });
    return this.inner.query<R>(sql, params);
  }
  exec(sql: string): Promise<void> {
    return this.inner.exec(sql);
  }
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return this.inner.transaction(fn);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function pool(workers: number, items: number, chunk: number, work: (first: number, last: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items) {
      const first = next;
      const last = Math.min(items, first + chunk);
      next = last;
      await work(first, last);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

interface Loaded {
  patients: string[];
  serviceRequests: string[];
  /** _lastUpdated of the Task at 90% of the load ("changed since" worklists). */
  recent: string;
  seconds: number;
}

async function load(db: Db): Promise<Loaded> {
  const repos = Array.from({ length: ORGS }, (_, n) => new Repository(db, { organization: org(n), clientId: `client-${n}` }, { modules: [] }));
  const patients: string[] = [];
  const serviceRequests: string[] = [];
  let recent = '';
  const started = performance.now();
  // Patients and one ServiceRequest each, owned by the referring organisation (patient p → org p % ORGS).
  await pool(CONNECTIONS, PATIENTS, CHUNK, async (first, last) => {
    await db.transaction(async (tx) => {
      for (let p = first; p < last; p++) {
        const repo = repos[p % ORGS].withDb(tx);
        const patient = await repo.create<Patient>({ resourceType: 'Patient', identifier: [{ system: 'https://bench.tic-exchange.org/mrn', value: `W-${p}` }], name: [{ family: `Family${p % 500}`, given: ['Sam'] }], birthDate: '1980-01-01' });
        const sr = await repo.create<ServiceRequest>({
          resourceType: 'ServiceRequest',
          status: 'active',
          intent: 'order',
          subject: { reference: `Patient/${patient.id}` },
          requester: { reference: org(p % ORGS) },
        });
        patients[p] = patient.id!;
        serviceRequests[p] = sr.id!;
      }
    });
  });
  log(`${PATIENTS} Patients + ${PATIENTS} ServiceRequests in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  let done = 0;
  await pool(CONNECTIONS, TASKS, CHUNK, async (first, last) => {
    await db.transaction(async (tx) => {
      const shares: Array<[string, string, string, string]> = [];
      for (let i = first; i < last; i++) {
        const p = i % PATIENTS;
        const requester = p % ORGS;
        // 2% are open Tasks (no owner yet); the rest go to one of the other organisations.
        const open = unit(i, 9) < 0.02;
        const owner = (requester + 1 + Math.floor(unit(i, 1) * (ORGS - 1))) % ORGS;
        const status = open ? 'requested' : pick(STATUSES, unit(i, 2));
        const failedDelivery = !open && status === 'requested' && unit(i, 3) < 0.05;
        const repo = repos[requester].withDb(tx);
        const id = randomUUID();
        await repo.create<Task>(
          {
            resourceType: 'Task',
            identifier: [{ system: 'https://tic-exchange.org/fhir/NamingSystem/referral-id', value: `http://bench/fhir/Task/${id}` }],
            status,
            ...(['rejected', 'cancelled', 'on-hold', 'failed'].includes(status) ? { statusReason: { text: 'bench' } } : {}),
            ...(failedDelivery ? { businessStatus: { coding: [{ system: BUSINESS_STATUS_SYSTEM, code: 'delivery-failed' }], text: 'delivery failed' } } : {}),
            intent: 'order',
            priority: pick(PRIORITIES, unit(i, 4)),
            code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
            focus: { reference: `ServiceRequest/${serviceRequests[p]}` },
            for: { reference: `Patient/${patients[p]}` },
            authoredOn: new Date(Date.UTC(2025, 0, 1) + i * 60_000).toISOString(),
            requester: { reference: org(requester) },
            ...(open ? { performerType: [{ coding: [{ system: 'https://tic-exchange.org/fhir/CodeSystem/sector', code: 'housing' }] }] } : { owner: { reference: org(owner) } }),
          },
          { id },
        );
        if (!open) {
          const reason = `referral:Task/${id}`;
          shares.push(['Task', id, org(owner), reason], ['ServiceRequest', serviceRequests[p], org(owner), reason], ['Patient', patients[p], org(owner), reason]);
        }
      }
      // The rows Repository.share writes (one per resource the owner may read), in one statement per chunk.
      await tx.query(
        'INSERT INTO resource_share (resource_type, id, org, reason) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING',
        [0, 1, 2, 3].map((k) => shares.map((row) => row[k])),
      );
    });
    done += last - first;
    if (done >= TASKS * 0.9 && !recent) recent = new Date().toISOString();
    if (done % 10_000 < CHUNK) log(`${done} Tasks, ${(done / ((performance.now() - started) / 1000)).toFixed(0)}/s`);
  });
  return { patients, serviceRequests, recent, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  const t = await createPostgresDatabase(adminUrl, 'tic_worklist');
  const db = new PgDb(t.url, CONNECTIONS + 2);
  const out: string[] = [];
  try {
    await migrate(db);
    const loaded = await load(db);
    await db.query('ANALYZE');
    const counts = await db.query<{ resource_type: string; n: string }>("SELECT resource_type, count(*)::text AS n FROM resource GROUP BY 1 UNION ALL SELECT 'resource_share', count(*)::text FROM resource_share ORDER BY 1");
    const total = PATIENTS * 2 + TASKS;
    out.push(`# Referral worklists: ${counts.rows.map((r) => `${r.resource_type} ${r.n}`).join(', ')}`);
    out.push(`# loaded ${total} resources in ${loaded.seconds.toFixed(1)} s (${(total / loaded.seconds).toFixed(0)}/s, ${CONNECTIONS} connections, ${CHUNK} per transaction); ${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
    log(out[1]);

    const receiver: RequestContext = { organization: org(3), clientId: 'client-3' };
    const requester: RequestContext = { organization: org(0), clientId: 'client-0' };
    const system: RequestContext = { system: true };
    const shapes: Array<[string, RequestContext, Record<string, string>]> = [
      ['receiver inbox, newest first', receiver, { owner: org(3), status: 'requested', _sort: '-_lastUpdated', _count: '20' }],
      ['receiver inbox + _include focus and patient', receiver, { owner: org(3), status: 'requested', _sort: '-_lastUpdated', _count: '20', _include: 'Task:focus', '_include:1': 'Task:patient' }],
      ['receiver urgent, open statuses', receiver, { owner: org(3), priority: 'urgent,stat', status: 'requested,accepted,in-progress', _count: '20' }],
      ['receiver changed since (last 10%)', receiver, { owner: org(3), _lastUpdated: `ge${loaded.recent}`, _sort: '-_lastUpdated', _count: '20' }],
      ['receiver inbox count (_total=accurate)', receiver, { owner: org(3), status: 'requested', _total: 'accurate', _count: '20' }],
      ['requester outbox, active', requester, { requester: org(0), status: 'requested,accepted,in-progress', _sort: '-_lastUpdated', _count: '20' }],
      ['requester delivery failed', requester, { requester: org(0), 'business-status': `${BUSINESS_STATUS_SYSTEM}|delivery-failed`, _count: '20' }],
      ['requester outbox, patient included', requester, { requester: org(0), status: 'requested', _sort: '-_lastUpdated', _count: '20', _include: 'Task:patient' }],
      ['server: owner + status', system, { owner: org(3), status: 'requested', _sort: '-_lastUpdated', _count: '20' }],
      ['server: open Tasks (owner:missing)', system, { 'owner:missing': 'true', status: 'requested', _count: '20' }],
      ['server: one patient’s referrals', system, { patient: `Patient/${loaded.patients[4242 % PATIENTS]}`, _count: '20' }],
    ];
    const summary: string[] = ['| worklist | matches on page | queries | median | max |', '|---|---|---|---|---|'];
    for (const [label, ctx, query] of shapes) {
      // `_include:1` stands for a second _include (a record cannot hold the same key twice).
      const q: Record<string, string[]> = {};
      for (const [k, v] of Object.entries(query)) (q[k.replace(/:1$/, '')] ??= []).push(v);
      const rec = new RecordingDb(db);
      const first = await searchResources(rec, ctx, [], 'Task', q);
      const times: number[] = [];
      for (let i = 0; i < 15; i++) {
        const s = process.hrtime.bigint();
        await searchResources(db, ctx, [], 'Task', q);
        times.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      times.sort((a, b) => a - b);
      const matches = first.entries.filter((e) => e.mode === 'match').length;
      const includes = first.entries.length - matches;
      const qs = Object.entries(query).map(([k, v]) => `${k.replace(/:1$/, '')}=${v}`).join('&');
      out.push(`## ${label}: Task?${qs} (as ${ctx.system ? 'the server' : ctx.organization})`);
      out.push(`${matches} matches + ${includes} included; median ${times[7].toFixed(2)} ms, max ${times[14].toFixed(2)} ms over 15 runs (${rec.seen.length} queries)\n`);
      summary.push(`| ${label} | ${matches}${includes ? ` + ${includes} incl.` : ''} | ${rec.seen.length} | ${times[7].toFixed(1)} ms | ${times[14].toFixed(1)} ms |`);
      for (const s of rec.seen) {
        const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${s.sql}`, s.params);
        out.push('```');
        out.push(plan.rows.map((r) => r['QUERY PLAN']).join('\n'));
        out.push('```\n');
      }
      log(`${label}: median ${times[7].toFixed(2)} ms`);
    }
    out.splice(2, 0, summary.join('\n') + '\n');
    writeFileSync(OUT, out.join('\n'));
    process.stdout.write(`${out.slice(0, 3).join('\n')}\nplans: ${OUT}${process.env.WORKLIST_KEEP === '1' ? `\ndatabase kept: ${t.url}` : ''}\n`);
  } finally {
    await db.close();
    if (process.env.WORKLIST_KEEP !== '1') await t.drop();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
