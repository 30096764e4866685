// The results table: each API figure beside its ceilings, as ratios, and against issue 3's targets.
import { cpus, loadavg, totalmem } from 'node:os';
import type { Ceilings } from './ceilings.ts';
import type { Measurement } from './measure.ts';
import type { Kind } from './scenarios.ts';

export interface ApiResult extends Measurement {
  kind: Kind;
  /** 1-minute load average when the scenario ended (other work on the machine shows here). */
  load: number;
  /** Resource versions stored per request during the measured run, and how many were AuditEvents. */
  versionsPerRequest?: number;
  auditEventsPerRequest?: number;
  rowsPerRequest: number;
  description: string;
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  platform: string;
}

export interface Report {
  mode: 'quick' | 'full';
  date: string;
  machine: Machine;
  connections: number;
  durationSeconds: number;
  load: { resources: number; how: string; seconds: number; resourcesPerSecond: number; rows: Record<string, number> };
  /** Absent when only some scenarios were run (BENCH_ONLY without "ceilings"). */
  ceilings?: Ceilings;
  results: ApiResult[];
  notes: string[];
}

/** Issue 3's targets on a 2-core machine (p99 < 50 ms for all). */
export const TARGETS: Partial<Record<Kind, number>> = { read: 3000, create: 1000, search: 1000 };
export const P99_TARGET_MS = 50;

export function describeMachine(postgresVersion: string): Machine {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: postgresVersion,
    platform: `${process.platform}-${process.arch}`,
  };
}

const f0 = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
const ms = (n: number) => (n < 10 ? n.toFixed(1) : Math.round(n).toString());
const pct = (n: number) => `${Math.round(n * 100)}%`;

/** The HTTP and PostgreSQL ceilings that bound a scenario of this kind. */
export function ceilingsFor(kind: Kind, c: Ceilings): { http: Measurement; pg: Measurement } {
  return kind === 'read' || kind === 'search' ? { http: c.httpGet, pg: c.pgRead } : { http: c.httpPost, pg: c.pgInsert };
}

function verdict(r: ApiResult): string {
  const target = TARGETS[r.kind];
  const parts: string[] = [];
  if (target !== undefined) parts.push(r.rps >= target ? `✅ ≥ ${f0(target)}/s` : `❌ < ${f0(target)}/s`);
  parts.push(r.p99 < P99_TARGET_MS ? '✅ p99' : '❌ p99');
  return parts.join(' ');
}

export function loadNow(): number {
  return loadavg()[0];
}

export function resultsTable(report: Report): string {
  const c = report.ceilings;
  const lines = [
    '| scenario | req/s | p50 ms | p99 ms | errors | HTTP ceiling req/s | ratio | pg ceiling rows/s | ratio | target | versions stored/req (AuditEvent) | load avg |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|',
  ];
  for (const r of report.results) {
    const rows = r.rps * r.rowsPerRequest;
    const entries = r.rowsPerRequest > 1 ? ` (${f0(rows)} entries/s)` : '';
    let vs = `– | – | – | –${entries}`;
    if (c) {
      const { http, pg } = ceilingsFor(r.kind, c);
      vs = `${f0(http.rps)} | ${pct(r.rps / http.rps)} | ${f0(pg.rps)} | ${pct(rows / pg.rps)}${entries}`;
    }
    const written = r.versionsPerRequest === undefined ? '–' : `${r.versionsPerRequest.toFixed(1)} (${(r.auditEventsPerRequest ?? 0).toFixed(1)})`;
    lines.push(`| ${r.name} | ${f0(r.rps)} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.errors} | ${vs} | ${verdict(r)} | ${written} | ${r.load.toFixed(1)} |`);
  }
  return lines.join('\n');
}

export function ceilingsTable(c: Ceilings): string {
  const lines = ['| ceiling | ops/s | p50 ms | p99 ms | errors |', '|---|---:|---:|---:|---:|'];
  for (const m of [c.httpGet, c.httpPost, c.pgInsert, c.pgRead]) lines.push(`| ${m.name} | ${f0(m.rps)} | ${ms(m.p50)} | ${ms(m.p99)} | ${m.errors} |`);
  return lines.join('\n');
}

export function formatReport(report: Report): string {
  const m = report.machine;
  const l = report.load;
  const out = [
    `## ${report.mode === 'quick' ? 'Quick' : 'Full'} run, ${report.date}`,
    '',
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.platform}; Node.js ${m.node}; ${m.postgres}.`,
    `Load: ${l.resources.toLocaleString('en-US')} resources through the ${l.how} in ${l.seconds.toFixed(1)} s (${f0(l.resourcesPerSecond)}/s); rows in the database before measuring: ${Object.entries(l.rows)
      .map(([k, v]) => `${k} ${v.toLocaleString('en-US')}`)
      .join(', ')}.`,
    `Each scenario: ${report.connections} keep-alive connections, ${report.durationSeconds} s measured after a warm-up.`,
    '',
    resultsTable(report),
    '',
    ...(report.ceilings ? ['Ceilings (same run, same concurrency):', '', ceilingsTable(report.ceilings)] : ['(ceilings not measured in this run)']),
  ];
  if (report.notes.length) out.push('', ...report.notes.map((n) => `- ${n}`));
  return out.join('\n');
}
