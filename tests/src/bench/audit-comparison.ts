// The read audit's cost (issue 4: audited reads at most 10 % slower): the read scenario against two
// APIs on the same database, one auditing reads and one started with AUDIT_READS=off (refused in
// production), both loaded at the same time, each with half the connections.
//
// Why side by side, not one after the other: on the shared machines these runs have, the speed of
// the same code drifts by a factor of two within a minute (windows of the earlier A B B A A B B A
// design, 5 s each, read 3,800-9,400/s in one run; a switch that turned the audit off entirely
// came out 5 % "faster" than the API that never audits, and one that only built the record 14 %
// faster). Loaded together, both APIs see the same machine at every instant, share the cores and
// PostgreSQL, and the ratio of their rates is the ratio of what a read costs each. Both are started
// for the comparison, the same way (an API that had run other scenarios first read 4.6 % slower
// than a fresh one, session 5).
//
// The AuditEvents of the audited reads are built while the API has time to spare (decision 0005):
// between rounds the audited API is made to build all of them (reading AuditEvent drains the log
// first), then a CHECKPOINT writes out the pages that dirtied, so no round carries another's audit
// work; the time both take is the deferred part of the audit's cost, reported beside.
import autocannon from 'autocannon';
import type { AutocannonRequest } from 'autocannon';
import type pg from 'pg';
import { cpuSeconds, threadCpuSeconds } from './cpu.ts';
import { fromAutocannon } from './measure.ts';
import type { Measurement } from './measure.ts';
import { startApi } from './processes.ts';
import type { Child } from './processes.ts';

export interface ComparisonInput {
  databaseUrl: string;
  clientsFile: string;
  cpuProfDir?: string;
  /** Connections in all (half on each API). */
  connections: number;
  /** Measured seconds per round (each API is measured for all of them, at the same time). */
  seconds: number;
  rounds: number;
  warmupSeconds: number;
  /** The read scenario's requests for a token. */
  requests: (token: string) => AutocannonRequest[];
  token: (apiUrl: string) => Promise<string>;
  /** A connection to the benchmark's database (superuser: it runs CHECKPOINT). */
  counter: pg.Client;
  log: (line: string) => void;
}

export interface Side {
  /** Successful reads per second over all rounds. */
  rps: number;
  p50s: number[];
  p99s: number[];
  errors: number;
  requests: number;
  seconds: number;
  /** CPU seconds over the measured rounds: the API process and its PostgreSQL backends. */
  apiCpu: number;
  pgCpu: number;
  threads: Map<string, number>;
}

export interface ComparisonResult {
  audited: Side;
  plain: Side;
  /** Per round: the audited and the plain API's reads/s. */
  rounds: Array<{ audited: number; plain: number }>;
  /** CPU seconds of PostgreSQL's own processes (checkpointer, WAL writer...) over the rounds: shared. */
  pgShared: number;
  deferred: { ms: number; checkpointMs: number; reads: number; left: number };
}

const APPLICATION = { audited: 'tic-bench-audited', plain: 'tic-bench-plain' } as const;
type Which = keyof typeof APPLICATION;

/** The database URL with an application_name, so each API's backends can be told apart. */
function withApplicationName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.toString();
}

/** CPU seconds so far of the backends of each API (by application_name) and of the server's own processes. */
async function postgresCpu(counter: pg.Client): Promise<{ byPid: Map<number, { which: Which | 'shared'; seconds: number }> }> {
  const rows = await counter.query<{ pid: number; app: string; backend_type: string }>(
    `SELECT pid, application_name AS app, backend_type FROM pg_stat_activity WHERE datname = current_database() OR backend_type IN ('checkpointer', 'background writer', 'walwriter')`,
  );
  const byPid = new Map<number, { which: Which | 'shared'; seconds: number }>();
  for (const r of rows.rows) {
    const which = r.app === APPLICATION.audited ? 'audited' : r.app === APPLICATION.plain ? 'plain' : r.backend_type === 'client backend' ? undefined : 'shared';
    if (which) byPid.set(r.pid, { which, seconds: cpuSeconds(r.pid) });
  }
  return { byPid };
}

function postgresCpuSince(before: Awaited<ReturnType<typeof postgresCpu>>, after: Awaited<ReturnType<typeof postgresCpu>>): Record<Which | 'shared', number> {
  const total = { audited: 0, plain: 0, shared: 0 };
  // A backend that started during the round counts all it used; one that ended is missing.
  for (const [pid, a] of after.byPid) total[a.which] += a.seconds - (before.byPid.get(pid)?.seconds ?? 0);
  return total;
}

/** Builds every queued AuditEvent (reading AuditEvent drains the audit log first); returns the time it took. */
export async function buildAuditEvents(fhirBase: string, token: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${fhirBase}/AuditEvent?_count=1`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return performance.now() - t0;
}

const emptySide = (): Side => ({ rps: 0, p50s: [], p99s: [], errors: 0, requests: 0, seconds: 0, apiCpu: 0, pgCpu: 0, threads: new Map() });

export async function compareReadAudit(input: ComparisonInput): Promise<ComparisonResult> {
  const apis: Record<Which, Child> = {
    plain: await startApi({ databaseUrl: withApplicationName(input.databaseUrl, APPLICATION.plain), clientsFile: input.clientsFile, cpuProfDir: input.cpuProfDir, env: { AUDIT_READS: process.env.BENCH_PLAIN_AUDIT_READS ?? 'off' } }),
    audited: await startApi({ databaseUrl: withApplicationName(input.databaseUrl, APPLICATION.audited), clientsFile: input.clientsFile, cpuProfDir: input.cpuProfDir }),
  };
  try {
    const requests = { audited: input.requests(await input.token(apis.audited.url)), plain: input.requests(await input.token(apis.plain.url)) };
    const settleToken = await input.token(apis.audited.url);
    const perApi = Math.max(1, Math.floor(input.connections / 2));
    const load = (which: Which, seconds: number) => autocannon({ url: apis[which].url, connections: perApi, duration: seconds, requests: requests[which], timeout: 30 });
    const sides = { audited: emptySide(), plain: emptySide() };
    const rounds: ComparisonResult['rounds'] = [];
    const deferred = { ms: 0, checkpointMs: 0, reads: 0, left: 0 };
    let pgShared = 0;
    const ok = { audited: 0, plain: 0 };
    // Builds what the audited API has queued and writes out the pages that dirtied.
    const settle = async () => {
      const built = await buildAuditEvents(`${apis.audited.url}/fhir`, settleToken);
      const t0 = performance.now();
      await input.counter.query('CHECKPOINT');
      const checkpoint = performance.now() - t0;
      return { ms: built + checkpoint, checkpointMs: checkpoint };
    };
    await settle();
    for (let round = 0; round < input.rounds; round++) {
      // Unmeasured: both at once, so the pages the build evicted are read back and the JITs are warm.
      await Promise.all([load('audited', input.warmupSeconds), load('plain', input.warmupSeconds)]);
      input.log(`  round ${round + 1}: warm-up's AuditEvents built in ${Math.round((await settle()).ms)} ms`);
      const before = { api: { audited: cpuSeconds(apis.audited.process.pid!), plain: cpuSeconds(apis.plain.process.pid!) }, threads: { audited: threadCpuSeconds(apis.audited.process.pid!), plain: threadCpuSeconds(apis.plain.process.pid!) }, pg: await postgresCpu(input.counter) };
      const [a, p] = await Promise.all([load('audited', input.seconds), load('plain', input.seconds)]);
      const pg = postgresCpuSince(before.pg, await postgresCpu(input.counter));
      const measured: Record<Which, Measurement> = { audited: fromAutocannon('audited', a), plain: fromAutocannon('plain', p) };
      for (const which of ['audited', 'plain'] as const) {
        const m = measured[which];
        const side = sides[which];
        ok[which] += m.rps * m.seconds;
        side.seconds += m.seconds;
        side.p50s.push(m.p50);
        side.p99s.push(m.p99);
        side.errors += m.errors;
        side.requests += m.requests;
        side.apiCpu += cpuSeconds(apis[which].process.pid!) - before.api[which];
        side.pgCpu += pg[which];
        for (const [name, seconds] of threadCpuSeconds(apis[which].process.pid!)) side.threads.set(name, (side.threads.get(name) ?? 0) + seconds - (before.threads[which].get(name) ?? 0));
      }
      pgShared += pg.shared;
      rounds.push({ audited: measured.audited.rps, plain: measured.plain.rps });
      input.log(`  round ${round + 1}: audited ${Math.round(measured.audited.rps)}/s, not audited ${Math.round(measured.plain.rps)}/s (${((1 - measured.audited.rps / measured.plain.rps) * 100).toFixed(1)} %)`);
      // Read records the API had not built into AuditEvents by the end of the round (shipped to
      // audit_queue; the last ≤ 200 ms of the journal not counted).
      const left = await input.counter.query<{ n: number }>('SELECT coalesce(sum(records), 0)::int AS n FROM audit_queue');
      deferred.left += left.rows[0]?.n ?? 0;
      const s = await settle();
      deferred.ms += s.ms;
      deferred.checkpointMs += s.checkpointMs;
      deferred.reads += measured.audited.requests;
    }
    for (const which of ['audited', 'plain'] as const) sides[which].rps = sides[which].seconds > 0 ? ok[which] / sides[which].seconds : 0;
    return { audited: sides.audited, plain: sides.plain, rounds, pgShared, deferred };
  } finally {
    await apis.plain.stop();
    await apis.audited.stop();
  }
}
