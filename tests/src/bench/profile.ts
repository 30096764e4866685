// Summarises a V8 .cpuprofile (written by `node --cpu-prof`): self time per function and per
// package/file, so the doc can list where the server spends its time on a path.
// Usage: node tests/src/bench/profile.ts <file.cpuprofile> [top] [lastSeconds] [skipEndSeconds]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileLine {
  name: string;
  selfMs: number;
  share: number;
}

/** Where a frame's code lives: a workspace package, a dependency, or node itself. */
export function ownerOf(url: string): string {
  if (!url) return '(native / V8)';
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pnpm) return pnpm[1];
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const ws = /\/(packages|services)\/([^/]+)\/src\/(.+)$/.exec(url);
  if (ws) return `@tic/${ws[2]} ${ws[3]}`;
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '');
}

/**
 * Self time per function and per owner. `window` keeps only the samples of the last
 * `window.lastSeconds` before `window.skipEndSeconds` from the end of the profile (the measured
 * scenario, without start-up and shutdown).
 */
export function summarize(profile: CpuProfile, top = 25, window?: { lastSeconds: number; skipEndSeconds?: number }): { byFunction: ProfileLine[]; byOwner: ProfileLine[]; totalMs: number; idleMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const to = profile.endTime - (window?.skipEndSeconds ?? 0) * 1e6;
  const from = window ? to - window.lastSeconds * 1e6 : -Infinity;
  let t = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    t += deltas[i] ?? 0;
    if (t < from || t > to) continue;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + (deltas[i] ?? 0) / 1000);
  }
  const fn = new Map<string, number>();
  const owner = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const f = n.callFrame;
    total += ms;
    if (f.functionName === '(idle)') {
      idle += ms;
      continue;
    }
    const o = ownerOf(f.url);
    const key = `${f.functionName || '(anonymous)'} ${o}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + ms);
    owner.set(o, (owner.get(o) ?? 0) + ms);
  }
  const busy = total - idle;
  const lines = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, selfMs]) => ({ name, selfMs, share: busy > 0 ? selfMs / busy : 0 }));
  return { byFunction: lines(fn), byOwner: lines(owner), totalMs: total, idleMs: idle };
}

export function formatSummary(s: ReturnType<typeof summarize>): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const out = [`busy ${(s.totalMs - s.idleMs).toFixed(0)} ms of ${s.totalMs.toFixed(0)} ms sampled`, '', '| self time | share of busy | where |', '|---:|---:|---|'];
  for (const l of s.byOwner) out.push(`| ${l.selfMs.toFixed(0)} ms | ${pct(l.share)} | ${l.name} |`);
  out.push('', '| self time | share of busy | function |', '|---:|---:|---|');
  for (const l of s.byFunction) out.push(`| ${l.selfMs.toFixed(0)} ms | ${pct(l.share)} | \`${l.name}\` |`);
  return out.join('\n');
}

if (process.argv[1] === import.meta.filename) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node profile.ts <file.cpuprofile> [top]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const lastSeconds = process.argv[4] ? Number(process.argv[4]) : undefined;
  const window = lastSeconds ? { lastSeconds, skipEndSeconds: Number(process.argv[5] ?? 0) } : undefined;
  process.stdout.write(formatSummary(summarize(profile, Number(process.argv[3] ?? 25), window)) + '\n');
}
