// End-to-end referral delivery benchmark (issue 6): two instances of the API on PostgreSQL, each
// with its own fresh database, as a health organisation (A, org-a) and a housing organisation (B,
// org-b); delivery worker process(es) on A's database; a steady open-loop stream of referrals, each
// one transaction Bundle (Patient, ServiceRequest, Consent, Task) POSTed to A by org-a's client.
// Measured: latency from the Task's first version on A to its first version on B (both stamped by
// the servers on the same clock, read from the databases afterwards), throughput of arrivals,
// referrals lost (never arrived) and duplicated (more than one Task on B for one source Task), and
// CPU seconds used by each process over the measured window (where the time goes).
//   node scripts/tic.mjs pnpm --filter @tic/tests exec node src/bench/referral.ts
// Settings (environment): REFERRAL_RATE (referrals/s offered, default 100), REFERRAL_DURATION
// (seconds, default 60), REFERRAL_WARMUP (seconds not counted, default 5), REFERRAL_WORKERS
// (worker processes, default 1), REFERRAL_CONCURRENCY (jobs per worker, default 32),
// REFERRAL_IN_FLIGHT (client requests in flight at most, default 64), REFERRAL_DRAIN (seconds to
// wait for the last deliveries, default 60), BENCH_DATABASE_URL / DATABASE_URL (admin database),
// REFERRAL_LOG_SLOW_MS / REFERRAL_EXPLAIN_MS (statements / their plans slower than this go to the
// PostgreSQL server log), REFERRAL_JSON_OUT (write the results as JSON), REFERRAL_CPU_PROF_DIR (the
// APIs and workers write V8 CPU profiles there on exit: summarise with tests/src/bench/profile.ts),
// REFERRAL_ANALYZE ("warmup", the default: ANALYZE both databases when the warm-up ends; "off").
// Why ANALYZE: both databases start empty, and this machine's PostgreSQL runs with autovacuum off
// (its conf.d/90-ci.conf), so no table ever gets statistics. Without them the planner picks
// indexes by ties: a receiving Bundle's identifier look-up read every Task of the run (1,800 index
// rows per look-up by the end, through sp_token's former (type, code, system) index), a Consent's
// status check every Consent; and prepared statements keep the plan made on the first, nearly empty
// tables (a sequential scan of resource_share per Task write). A production PostgreSQL analyses
// tables as they change (autovacuum); the ANALYZE after warm-up stands in for that, inside the
// measured window (its CPU is counted).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import pg from 'pg';
import type { Bundle, Consent, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { PgDb, Repository } from '@tic/store';
import { createPostgresDatabase } from '@tic/store/testing';
import { cpuSeconds, postgresBackendsOf, postgresCpuSeconds } from './cpu.ts';
import { freePort, repoRoot } from './processes.ts';

const log = (msg: string) => process.stderr.write(`[referral] ${msg}\n`);
const num = (name: string, fallback: number) => {
  const v = process.env[name];
  const n = v ? Number(v) : fallback;
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number`);
  return n;
};

const RATE = num('REFERRAL_RATE', 100);
const DURATION = num('REFERRAL_DURATION', 60);
const WARMUP = num('REFERRAL_WARMUP', 5);
const WORKERS = num('REFERRAL_WORKERS', 1);
const CONCURRENCY = num('REFERRAL_CONCURRENCY', 32);
const IN_FLIGHT = num('REFERRAL_IN_FLIGHT', 64);
const DRAIN = num('REFERRAL_DRAIN', 60);
const ANALYZE = process.env.REFERRAL_ANALYZE ?? 'warmup';
if (ANALYZE !== 'warmup' && ANALYZE !== 'off') throw new Error('REFERRAL_ANALYZE must be warmup or off');
const adminUrl = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SECTOR = 'https://tic-exchange.org/fhir/CodeSystem/sector';
const REFERRAL_ID = 'https://tic-exchange.org/fhir/NamingSystem/referral-id';

interface Key {
  clientId: string;
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
  registration: object;
}

async function clientKey(clientId: string, organization: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
  const kid = `${clientId}-1`;
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' };
  return {
    clientId,
    kid,
    privateKey,
    jwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES384' },
    registration: { clientId, name: clientId, organization, scopes: ['system/*.cruds'], jwks: { keys: [pub] } },
  };
}

async function token(baseUrl: string, key: Key): Promise<string> {
  const tokenUrl = `${baseUrl}/auth/token`;
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({}).setProtectedHeader({ alg: 'ES384', kid: key.kid, typ: 'JWT' }).setIssuer(key.clientId).setSubject(key.clientId).setAudience(tokenUrl).setIssuedAt(now).setExpirationTime(now + 240).setJti(randomUUID()).sign(key.privateKey);
  const body = new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.cruds', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion });
  const res = await fetch(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const json = (await res.json()) as { access_token?: string };
  if (res.status !== 200 || !json.access_token) throw new Error(`token request failed: ${res.status}`);
  return json.access_token;
}

/** Directory entries both servers know, written as server reference data. */
async function seedOrganizations(databaseUrl: string): Promise<void> {
  const db = new PgDb(databaseUrl, 2);
  try {
    const sys = new Repository(db, { system: true }, { modules: [] });
    for (const [id, sector, name] of [['org-a', 'health', 'Harbourside Primary Care'], ['org-b', 'housing', 'Northgate Housing Trust']]) {
      await sys.update<Organization>({ resourceType: 'Organization', id, active: true, name, type: [{ coding: [{ system: SECTOR, code: sector }] }] });
    }
  } finally {
    await db.close();
  }
}

function referralBundle(n: number): Bundle {
  const [p, sr, c, t] = [1, 2, 3, 4].map(() => `urn:uuid:${randomUUID()}`);
  const patient: Patient = { resourceType: 'Patient', identifier: [{ system: 'https://bench.tic-exchange.org/mrn', value: `R-${n}` }], name: [{ family: `Bench${n % 1000}`, given: ['Sam'] }], birthDate: '1990-02-03', telecom: [{ system: 'phone', value: '000' }] };
  const serviceRequest: ServiceRequest = { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: p }, requester: { reference: 'Organization/org-a' }, performer: [{ reference: 'Organization/org-b' }] };
  const consent: Consent = {
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    patient: { reference: p },
    provision: { type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: 'Organization/org-b' } }] },
  };
  const task: Task = {
    resourceType: 'Task',
    status: 'requested',
    intent: 'order',
    priority: n % 5 === 0 ? 'urgent' : 'routine',
    code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
    focus: { reference: sr },
    for: { reference: p },
    requester: { reference: 'Organization/org-a' },
    owner: { reference: 'Organization/org-b' },
  };
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: p, resource: patient, request: { method: 'POST', url: 'Patient' } },
      { fullUrl: sr, resource: serviceRequest, request: { method: 'POST', url: 'ServiceRequest' } },
      { fullUrl: c, resource: consent, request: { method: 'POST', url: 'Consent' } },
      { fullUrl: t, resource: task, request: { method: 'POST', url: 'Task' } },
    ],
  };
}

interface Proc {
  url: string;
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

function spawnChild(args: string[], environment: NodeJS.ProcessEnv): Proc & { lines: string[] } {
  const profileDir = process.env.REFERRAL_CPU_PROF_DIR;
  const child = spawn(process.execPath, [...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []), ...args], { cwd: repoRoot, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...environment }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (lines.length > 50) lines.splice(0, lines.length - 50);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const stop = async () => {
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  return { url: '', process: child, lines, output: () => lines.join('\n'), stop };
}

/**
 * The API as production runs it, on PostgreSQL, with WORKER=off: the API now starts a job worker
 * in its own process by default, and one without delivery targets would take delivery jobs and
 * drop them (see the referral section of docs/benchmarks.md). (processes.ts's startApi has a fixed
 * environment.)
 */
async function startApiWithoutWorker(databaseUrl: string, clientsFile: string): Promise<Proc> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const c = spawnChild(['services/api/src/index.ts'], { DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: url, DEMO_DATA: 'false', LOG_LEVEL: 'warn', AUTH_CLIENTS_FILE: clientsFile, DATA_DIR: `/tmp/tic-refbench-${process.pid}`, WORKER: 'off' });
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (c.process.exitCode !== null || Date.now() > deadline) {
      await c.stop();
      throw new Error(`API did not start:\n${c.output()}`);
    }
    try {
      if ((await fetch(`${url}/healthz`)).ok) return { ...c, url };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface WorkerChild {
  process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

async function startWorkerChild(environment: NodeJS.ProcessEnv): Promise<WorkerChild> {
  const c = spawnChild(['tests/src/bench/referral-worker.ts'], environment);
  const deadline = Date.now() + 60_000;
  while (!c.lines.includes('worker ready')) {
    if (c.process.exitCode !== null || Date.now() > deadline) {
      await c.stop();
      throw new Error(`worker did not start:\n${c.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return c;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function rows<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tic-referral-bench-'));
  const dbA = await createPostgresDatabase(adminUrl, 'tic_refbench_a');
  const dbB = await createPostgresDatabase(adminUrl, 'tic_refbench_b');
  const nameOf = (url: string) => new URL(url).pathname.slice(1);
  // REFERRAL_LOG_SLOW_MS: PostgreSQL logs statements slower than this on the two databases (where the time goes).
  if (process.env.REFERRAL_LOG_SLOW_MS) {
    for (const u of [dbA.url, dbB.url]) await rows(adminUrl, `ALTER DATABASE ${nameOf(u)} SET log_min_duration_statement = ${Number(process.env.REFERRAL_LOG_SLOW_MS)}`);
    log(`slow statements (> ${process.env.REFERRAL_LOG_SLOW_MS} ms) of ${nameOf(dbA.url)} and ${nameOf(dbB.url)} go to the PostgreSQL server log`);
  }
  // REFERRAL_EXPLAIN_MS: the plans of statements slower than this go to the server log too (auto_explain).
  if (process.env.REFERRAL_EXPLAIN_MS) {
    for (const u of [dbA.url, dbB.url]) {
      for (const setting of ["session_preload_libraries = 'auto_explain'", `auto_explain.log_min_duration = ${Number(process.env.REFERRAL_EXPLAIN_MS)}`, 'auto_explain.log_nested_statements = on']) await rows(adminUrl, `ALTER DATABASE ${nameOf(u)} SET ${setting}`);
    }
    log(`plans of statements slower than ${process.env.REFERRAL_EXPLAIN_MS} ms of ${nameOf(dbA.url)} and ${nameOf(dbB.url)} go to the PostgreSQL server log`);
  }
  const children: Array<{ stop(): Promise<void> }> = [];
  try {
    const referrerOnA = await clientKey('referrer', 'Organization/org-a');
    const referrerOnB = await clientKey('referrer-at-b', 'Organization/org-a');
    writeFileSync(join(dir, 'clients-a.json'), JSON.stringify([referrerOnA.registration]));
    writeFileSync(join(dir, 'clients-b.json'), JSON.stringify([referrerOnB.registration]));
    writeFileSync(join(dir, 'key-b.json'), JSON.stringify({ clientId: referrerOnB.clientId, kid: referrerOnB.kid, jwk: referrerOnB.jwk }));

    log('starting A and B (API on PostgreSQL, separate databases)');
    const [A, B] = await Promise.all([startApiWithoutWorker(dbA.url, join(dir, 'clients-a.json')), startApiWithoutWorker(dbB.url, join(dir, 'clients-b.json'))]);
    children.push(A, B);
    await seedOrganizations(dbA.url);
    await seedOrganizations(dbB.url);
    const sourceBase = `${A.url}/fhir`;
    const workers: WorkerChild[] = [];
    for (let w = 0; w < WORKERS; w++) {
      const child = await startWorkerChild({ DATABASE_URL: dbA.url, SOURCE_BASE: sourceBase, TARGET_BASE: B.url, KEY_FILE: join(dir, 'key-b.json'), CONCURRENCY: String(CONCURRENCY) });
      workers.push(child);
      children.push(child);
    }
    log(`A ${A.url}, B ${B.url}, ${WORKERS} worker(s) × ${CONCURRENCY} jobs`);

    let bearer = await token(A.url, referrerOnA);
    let bearerAt = Date.now();
    const send = async (n: number): Promise<{ ok: boolean; ms: number; taskId?: string; error?: string }> => {
      if (Date.now() - bearerAt > 120_000) {
        bearerAt = Date.now();
        bearer = await token(A.url, referrerOnA);
      }
      const started = performance.now();
      const res = await fetch(sourceBase, { method: 'POST', headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/fhir+json' }, body: JSON.stringify(referralBundle(n)) });
      const text = await res.text();
      const ms = performance.now() - started;
      if (res.status !== 200) return { ok: false, ms, error: `${res.status} ${text.slice(0, 300)}` };
      const loc = (JSON.parse(text) as Bundle).entry?.[3]?.response?.location ?? '';
      return { ok: true, ms, taskId: /Task\/([^/]+)/.exec(loc)?.[1] };
    };
    const probe = await send(-1);
    if (!probe.ok || !probe.taskId) throw new Error(`a referral was refused by A: ${probe.error}`);

    // Open loop: one referral every 1/RATE s whatever the answers; at most IN_FLIGHT outstanding.
    const total = Math.round(RATE * (WARMUP + DURATION));
    const sent: Array<{ n: number; at: number; ms: number; ok: boolean; taskId?: string }> = [];
    const errors: string[] = [];
    let inFlight = 0;
    let skipped = 0;
    const pending: Array<Promise<void>> = [];
    const start = Date.now();
    const measuredFrom = start + WARMUP * 1000;
    const pids = () => ({ A: A.process.pid!, B: B.process.pid!, workers: workers.map((w) => w.process.pid!) });
    let cpuBefore: Record<string, number> | undefined;
    const cpuNow = (): Record<string, number> => {
      const p = pids();
      return {
        'API A': cpuSeconds(p.A),
        'API B': cpuSeconds(p.B),
        'worker(s)': p.workers.reduce((s, pid) => s + cpuSeconds(pid), 0),
        'PostgreSQL (A+B backends)': postgresBackendsOf([nameOf(dbA.url), nameOf(dbB.url)]).reduce((s, pid) => s + cpuSeconds(pid), 0),
        'PostgreSQL (all processes)': postgresCpuSeconds(),
        'load generator': process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6,
      };
    };
    // Connections kept open to the end, so the ANALYZE backends' CPU is in the window's figures.
    const analyzers = ANALYZE === 'warmup' ? [new pg.Client({ connectionString: dbA.url }), new pg.Client({ connectionString: dbB.url })] : [];
    for (const c of analyzers) await c.connect();
    let analyzed: Promise<unknown> = Promise.resolve();
    const loadBefore = loadavg()[0];
    log(`offering ${RATE} referrals/s for ${WARMUP} + ${DURATION} s (${total} referrals)`);
    for (let n = 0; n < total; n++) {
      const due = start + (n * 1000) / RATE;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!cpuBefore && Date.now() >= measuredFrom) {
        cpuBefore = cpuNow();
        analyzed = Promise.all(analyzers.map((c) => c.query('ANALYZE')));
      }
      if (inFlight >= IN_FLIGHT) {
        skipped++;
        continue;
      }
      inFlight++;
      const at = Date.now();
      pending.push(
        send(n).then(
          (r) => {
            inFlight--;
            sent.push({ n, at, ms: r.ms, ok: r.ok, ...(r.taskId ? { taskId: r.taskId } : {}) });
            if (!r.ok && errors.length < 5) errors.push(r.error ?? '');
          },
          (e: unknown) => {
            inFlight--;
            sent.push({ n, at, ms: NaN, ok: false });
            if (errors.length < 5) errors.push(e instanceof Error ? e.message : String(e));
          },
        ),
      );
    }
    await Promise.all(pending);
    const sendEnd = Date.now();
    const cpuAfterSend = cpuNow();
    const created = sent.filter((s) => s.ok && s.taskId);
    log(`sent ${sent.length} (${created.length} accepted by A, ${skipped} not sent: ${IN_FLIGHT} in flight) in ${((sendEnd - start) / 1000).toFixed(1)} s; waiting for deliveries`);

    // Wait until every Task created on A is on B (or the drain time is over).
    const expected = created.length + 1; // + the probe
    const drainUntil = Date.now() + DRAIN * 1000;
    let arrived = 0;
    for (;;) {
      const r = await rows<{ n: string }>(dbB.url, "SELECT count(DISTINCT value)::text AS n FROM sp_token WHERE resource_type = 'Task' AND code = 'identifier' AND system = $1", [REFERRAL_ID]);
      arrived = Number(r[0].n);
      if (arrived >= expected || Date.now() > drainUntil) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    await analyzed;
    const drainEnd = Date.now();
    const cpuAfter = cpuNow();
    for (const c of analyzers) await c.end();
    const loadAfter = loadavg()[0];

    // Latency per referral, from the databases: A's Task version 1 → B's Task version 1 (the
    // earliest of its versions: the current one in resource, the replaced ones in resource_version).
    const taskVersions = "(SELECT id, last_updated FROM resource WHERE resource_type = 'Task' UNION ALL SELECT id, last_updated FROM resource_version WHERE resource_type = 'Task')";
    const createdOnA = await rows<{ id: string; t: string }>(dbA.url, `SELECT id, (extract(epoch FROM min(last_updated)) * 1000)::float8::text AS t FROM ${taskVersions} v GROUP BY id`);
    const onB = await rows<{ value: string; copies: string; t: string }>(
      dbB.url,
      `SELECT x.value, count(DISTINCT x.id)::text AS copies, (extract(epoch FROM min(v.last_updated)) * 1000)::float8::text AS t
       FROM sp_token x JOIN ${taskVersions} v ON v.id = x.id
       WHERE x.resource_type = 'Task' AND x.code = 'identifier' AND x.system = $1 GROUP BY x.value`,
      [REFERRAL_ID],
    );
    const arrivals = new Map(onB.map((r) => [r.value, { copies: Number(r.copies), t: Number(r.t) }]));
    const latencies: number[] = [];
    // Also by when the Task was created on A: after the warm-up only, and per 10 s of the run.
    const afterWarmup: number[] = [];
    const byTenSeconds = new Map<number, number[]>();
    const arrivalTimes: number[] = [];
    let lost = 0;
    let duplicated = 0;
    const ids = new Set(created.map((s) => s.taskId!));
    for (const row of createdOnA) {
      if (!ids.has(row.id)) continue;
      const a = arrivals.get(`${sourceBase}/Task/${row.id}`);
      if (!a) {
        lost++;
        continue;
      }
      if (a.copies > 1) duplicated++;
      const ms = a.t - Number(row.t);
      latencies.push(ms);
      if (Number(row.t) >= measuredFrom) afterWarmup.push(ms);
      const bucket = Math.floor((Number(row.t) - start) / 10_000) * 10;
      byTenSeconds.set(bucket, [...(byTenSeconds.get(bucket) ?? []), ms]);
      arrivalTimes.push(a.t);
    }
    const failed = await rows<{ n: string }>(dbA.url, "SELECT count(*)::text AS n FROM resource WHERE resource_type = 'Task' AND content::jsonb -> 'businessStatus' ->> 'text' = 'delivery failed'");
    const jobs = await rows<{ n: string; errors: string }>(dbA.url, "SELECT count(*)::text AS n, count(*) FILTER (WHERE last_error IS NOT NULL)::text AS errors FROM graphile_worker.jobs WHERE task_identifier = 'referral-deliver'");
    latencies.sort((x, y) => x - y);
    afterWarmup.sort((x, y) => x - y);
    for (const v of byTenSeconds.values()) v.sort((x, y) => x - y);
    const firstArrival = Math.min(...arrivalTimes);
    const lastArrival = Math.max(...arrivalTimes);
    // Steady-state throughput: arrivals inside the measured window (after warm-up, before the stream ended).
    const window = (sendEnd - measuredFrom) / 1000;
    const inWindow = arrivalTimes.filter((t) => t >= measuredFrom && t <= sendEnd).length;
    const createMs = created.map((s) => s.ms).sort((x, y) => x - y);
    const cpu = Object.fromEntries(Object.entries(cpuAfter).map(([k, v]) => [k, (v - (cpuBefore?.[k] ?? 0)) / ((drainEnd - measuredFrom) / 1000)]));
    // CPU milliseconds per referral, by process: the window's CPU (stream and drain) over the
    // referrals created in it (all delivered by the end of the drain when none is lost). Unlike
    // throughput, this hardly depends on how much of the machine other work leaves us.
    const createdInWindow = created.filter((s) => s.at >= measuredFrom).length;
    const cpuMsPerReferral = Object.fromEntries(Object.entries(cpuAfter).map(([k, v]) => [k, ((v - (cpuBefore?.[k] ?? 0)) * 1000) / (createdInWindow || 1)]));
    const cpuSend = Object.fromEntries(Object.entries(cpuAfterSend).map(([k, v]) => [k, (v - (cpuBefore?.[k] ?? 0)) / window]));
    const pgVersion = (await rows<{ v: string }>(adminUrl, 'SHOW server_version'))[0].v;
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, postgres: pgVersion, loadBefore, loadAfter },
      settings: { rate: RATE, duration: DURATION, warmup: WARMUP, workers: WORKERS, concurrency: CONCURRENCY, inFlight: IN_FLIGHT, analyze: ANALYZE },
      referrals: { offered: total, sent: sent.length, notSent: skipped, createdOnA: created.length, refusedByA: sent.length - created.length, arrivedOnB: latencies.length, lost, duplicated, deliveryFailed: Number(failed[0].n), jobsLeft: Number(jobs[0].n), jobsWithErrors: Number(jobs[0].errors) },
      createOnA: { p50: percentile(createMs, 50), p99: percentile(createMs, 99) },
      latencyMs: { p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), max: latencies[latencies.length - 1] },
      latencyAfterWarmupMs: { n: afterWarmup.length, p50: percentile(afterWarmup, 50), p90: percentile(afterWarmup, 90), p99: percentile(afterWarmup, 99), max: afterWarmup[afterWarmup.length - 1] },
      latencyBySecondOfRunMs: [...byTenSeconds].sort((x, y) => x[0] - y[0]).map(([from, v]) => ({ from, n: v.length, p50: percentile(v, 50), p99: percentile(v, 99) })),
      throughput: { offeredPerSecond: RATE, createdPerSecond: created.length / ((sendEnd - start) / 1000), deliveredInWindowPerSecond: inWindow / window, deliveredOverallPerSecond: latencies.length / ((lastArrival - firstArrival) / 1000 || 1) },
      cpuCoresDuringStream: cpuSend,
      cpuCoresIncludingDrain: cpu,
      cpuMsPerReferral,
      errors,
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (process.env.REFERRAL_JSON_OUT) writeFileSync(process.env.REFERRAL_JSON_OUT, JSON.stringify(result, null, 2));
    if (errors.length) log(`first errors: ${errors.join(' | ')}`);
    for (const w of workers) {
      const out = w.output();
      if (out.includes('"level":50') || out.includes('"level":40')) log(`worker log (last lines):\n${out.split('\n').slice(-5).join('\n')}`);
    }
  } finally {
    for (const c of children.reverse()) await c.stop().catch(() => undefined);
    // REFERRAL_KEEP=1 leaves both databases for inspection (their names are in the log).
    if (process.env.REFERRAL_KEEP === '1') log(`databases kept: ${dbA.url} ${dbB.url}`);
    else {
      await dbA.drop().catch(() => undefined);
      await dbB.drop().catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
