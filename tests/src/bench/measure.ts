// Runs one scenario at fixed concurrency with autocannon (keep-alive connections, one request in
// flight per connection) and keeps requests/s, p50, p99 and errors. A warm-up run comes first and
// is not counted (JIT, connection pools, PostgreSQL caches).
import autocannon from 'autocannon';
import type { AutocannonRequest, AutocannonResult } from 'autocannon';

export interface Measurement {
  name: string;
  /** Successful (2xx) requests per second over the measured window. */
  rps: number;
  p50: number;
  p99: number;
  /** Transport errors, timeouts and non-2xx answers. */
  errors: number;
  requests: number;
  seconds: number;
  /** Status codes other than 2xx seen, e.g. { "409": 3 }. */
  statuses?: Record<string, number>;
  note?: string;
}

export interface ScenarioRun {
  url: string;
  connections: number;
  seconds: number;
  warmupSeconds: number;
  requests: AutocannonRequest[];
  /** Stop after this many requests (scenarios with a finite pool of ids, e.g. delete). */
  amount?: number;
  /** Called between the warm-up and the measured run (e.g. to snapshot row counts). */
  beforeMeasure?: () => Promise<void>;
}

export function fromAutocannon(name: string, r: AutocannonResult): Measurement {
  const ok = r['2xx'];
  const statuses: Record<string, number> = {};
  for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) if (!code.startsWith('2')) statuses[code] = s.count;
  return {
    name,
    rps: r.duration > 0 ? ok / r.duration : 0,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts + r.non2xx,
    requests: r.requests.total,
    seconds: r.duration,
    ...(Object.keys(statuses).length ? { statuses } : {}),
  };
}

export async function measure(name: string, run: ScenarioRun): Promise<Measurement> {
  if (run.warmupSeconds > 0 && run.amount === undefined) {
    await autocannon({ url: run.url, connections: run.connections, duration: run.warmupSeconds, requests: run.requests, timeout: 30 });
  }
  await run.beforeMeasure?.();
  const result = await autocannon({
    url: run.url,
    connections: run.connections,
    ...(run.amount !== undefined ? { amount: run.amount } : { duration: run.seconds }),
    requests: run.requests,
    timeout: 30,
  });
  return fromAutocannon(name, result);
}
