// Benchmark settings: the full run (issue 3) or the quick check (`--quick` or BENCH_QUICK=1).
// Every figure can be overridden from the environment so a run on a bigger machine can scale up.

export interface BenchOptions {
  quick: boolean;
  /** Resources loaded before measuring (Patient, Observation, QuestionnaireResponse, Task, ServiceRequest). */
  resources: number;
  /** Concurrent keep-alive connections for every measured scenario. */
  connections: number;
  /** Seconds measured per scenario, after a warm-up that is not counted. */
  durationSeconds: number;
  warmupSeconds: number;
  /** Entries per load Bundle, and Bundles in flight while loading. */
  bundleSize: number;
  bundlesInFlight: number;
  /** PostgreSQL server to create the fresh database on (its database part is the admin database). */
  adminUrl: string;
  /** Write the results as JSON here (for docs/benchmarks.md), when set. */
  jsonOut?: string;
  /** Run the API child with --cpu-prof, profiles written to this directory, when set. */
  cpuProfDir?: string;
  /** Only these scenarios (comma-separated names), when set. */
  only?: string[];
}

function num(v: string | undefined, fallback: number): number {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`expected a positive number, got "${v}"`);
  return n;
}

export function readOptions(argv: string[], env: NodeJS.ProcessEnv): BenchOptions {
  const quick = argv.includes('--quick') || ['1', 'true', 'yes'].includes((env.BENCH_QUICK ?? '').toLowerCase());
  const only = env.BENCH_ONLY ? env.BENCH_ONLY.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  return {
    quick,
    resources: num(env.BENCH_RESOURCES, quick ? 10_000 : 100_000),
    connections: num(env.BENCH_CONNECTIONS, 16),
    durationSeconds: num(env.BENCH_DURATION, quick ? 5 : 20),
    warmupSeconds: num(env.BENCH_WARMUP, quick ? 1 : 3),
    bundleSize: num(env.BENCH_BUNDLE_SIZE, 500),
    bundlesInFlight: num(env.BENCH_BUNDLES_IN_FLIGHT, 4),
    adminUrl: env.BENCH_DATABASE_URL ?? env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    jsonOut: env.BENCH_JSON_OUT || undefined,
    cpuProfDir: env.BENCH_CPU_PROF_DIR || undefined,
    only,
  };
}
