// `pnpm bench` (issue 3): the API on a fresh PostgreSQL database, a generated data set, every
// scenario at fixed concurrency, and the machine's ceilings in the same run. `--quick` or
// BENCH_QUICK=1 for the short check. Prints a markdown report (docs/benchmarks.md keeps them).
// Settings: options.ts. Profiles: BENCH_CPU_PROF_DIR=/dir (the API runs with --cpu-prof; use
// BENCH_ONLY=create to profile one path), then `node tests/src/bench/profile.ts <file>`.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { AutocannonRequest } from 'autocannon';
import { createPostgresDatabase } from '@tic/store/testing';
import { createBenchClient } from './auth.ts';
import { measureHttpCeiling, measurePgCeiling } from './ceilings.ts';
import type { Ceilings } from './ceilings.ts';
import { observation } from './data.ts';
import { loadThroughApi, loadThroughRepository } from './load.ts';
import type { LoadedData } from './load.ts';
import { measure } from './measure.ts';
import { cpuPerRequest, sampleCpu } from './cpu.ts';
import type { CpuSample } from './cpu.ts';
import { readOptions } from './options.ts';
import { cpuSeconds, cpuSince, postgresCpuSnapshot, threadCpuSeconds } from './cpu.ts';
import { startApi, stopAll } from './processes.ts';
import type { Child } from './processes.ts';
import { formatSummary, summarize } from './profile.ts';
import { describeMachine, formatReport, loadNow } from './report.ts';
import type { ApiResult, Report } from './report.ts';
import { PCL5_URL, pcl5Response, scenarios } from './scenarios.ts';
import type { Scenario, ScenarioState } from './scenarios.ts';

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

async function queryOne<T>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Whether the PCL-5 Questionnaire is on the server, and whether a response to it gets scored. */
async function checkScreening(fhirBase: string, token: string, subject: string, counter: pg.Client): Promise<{ present: boolean; scored: boolean; observations: number; versions: number; audits: number }> {
  const headers = { authorization: `Bearer ${token}` };
  const q = (await (await fetch(`${fhirBase}/Questionnaire?url=${encodeURIComponent(PCL5_URL)}`, { headers })).json()) as { entry?: unknown[] };
  if (!q.entry?.length) return { present: false, scored: false, observations: 0, versions: 0, audits: 0 };
  const before = await stored(counter);
  const res = await fetch(`${fhirBase}/QuestionnaireResponse`, { method: 'POST', headers: { ...headers, 'content-type': 'application/fhir+json' }, body: JSON.stringify(pcl5Response(subject)) });
  if (res.status !== 201) throw new Error(`a PCL-5 response was refused: ${res.status} ${await res.text()}`);
  const id = ((await res.json()) as { id: string }).id;
  const after = await stored(counter);
  const obs = (await (await fetch(`${fhirBase}/Observation?derived-from=QuestionnaireResponse/${id}&_count=100`, { headers })).json()) as { entry?: unknown[] };
  const n = obs.entry?.length ?? 0;
  return { present: true, scored: n > 0, observations: n, versions: after.versions - before.versions, audits: after.audits - before.audits };
}

/**
 * Resource versions stored so far, and AuditEvents among them (what a request really writes): the
 * current versions (resource rows) and the replaced ones (resource_version rows). A create adds a
 * resource row, an update or delete a resource_version row: one version each.
 */
async function stored(client: pg.Client): Promise<{ versions: number; audits: number }> {
  const r = await client.query<{ v: string; a: string }>(
    `SELECT ((SELECT count(*) FROM resource) + (SELECT count(*) FROM resource_version))::text AS v,
       ((SELECT count(*) FROM resource WHERE resource_type = 'AuditEvent') + (SELECT count(*) FROM resource_version WHERE resource_type = 'AuditEvent'))::text AS a`,
  );
  return { versions: Number(r.rows[0].v), audits: Number(r.rows[0].a) };
}

/** Builds every queued AuditEvent (reading AuditEvent drains the audit log first); returns the time it took. */
async function buildAuditEvents(fhirBase: string, token: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${fhirBase}/AuditEvent?_count=1`, { headers: { authorization: `Bearer ${token}` } });
  await res.arrayBuffer();
  return performance.now() - t0;
}

/** Sends a scenario's first request once; says why when it is not answered with a 2xx. */
async function probe(baseUrl: string, request: AutocannonRequest): Promise<string | undefined> {
  const built = request.setupRequest ? (request.setupRequest({ ...request }, {}) ?? request) : request;
  const res = await fetch(`${baseUrl}${built.path ?? '/'}`, { method: built.method ?? 'GET', headers: built.headers, body: built.body as string | undefined });
  const text = await res.text();
  if (res.status < 300) return undefined;
  let detail = text.slice(0, 300);
  try {
    const outcome = JSON.parse(text) as { issue?: Array<{ code?: string; diagnostics?: string }> };
    detail = (outcome.issue ?? []).map((i) => `${i.code}: ${i.diagnostics}`).join('; ');
  } catch {
    // not JSON
  }
  return `the server answers ${res.status} (${detail})`;
}

async function main(): Promise<void> {
  const options = readOptions(process.argv.slice(2), process.env);
  const mode = options.quick ? 'quick' : 'full';
  log(`${mode} run: ${options.resources.toLocaleString('en-US')} resources, ${options.connections} connections, ${options.durationSeconds} s per scenario`);
  const tmp = mkdtempSync(join(tmpdir(), 'tic-bench-'));
  const database = await createPostgresDatabase(options.adminUrl, 'tic_bench');
  // Interrupted (Ctrl-C, turbo stopping): stop the children and drop the database all the same.
  const interrupted = (signal: string) => {
    log(`${signal}: stopping the API and dropping ${database.url.split('/').pop()}`);
    void stopAll()
      .then(() => database.drop())
      .finally(() => {
        rmSync(tmp, { recursive: true, force: true });
        process.exit(130);
      });
  };
  process.once('SIGINT', () => interrupted('SIGINT'));
  process.once('SIGTERM', () => interrupted('SIGTERM'));
  const client = await createBenchClient(join(tmp, 'clients.json'));
  let api: Child | undefined;
  let measuringFrom = 0;
  /** The scenarios' API: its profile is the one summarised (the comparison's APIs write their own). */
  let mainPid: number | undefined;
  let measuringTo = 0;
  try {
    const postgres = (await queryOne<{ v: string }>(database.url, `SELECT split_part(version(), ' (', 1) AS v`))[0].v;
    api = await startApi({ databaseUrl: database.url, clientsFile: client.clientsFile, cpuProfDir: options.cpuProfDir });
    const server = api;
    mainPid = server.process.pid;
    const fhirBase = `${server.url}/fhir`;
    const token = () => client.token(server.url);
    log(`API up at ${fhirBase} (pid ${server.process.pid}); loading data`);

    let lastLog = 0;
    const progress = (done: number) => {
      if (Date.now() - lastLog > 5000) {
        lastLog = Date.now();
        log(`  loaded ${done.toLocaleString('en-US')}`);
      }
    };
    const data: LoadedData =
      process.env.BENCH_LOAD === 'api'
        ? await loadThroughApi({ fhirBase, token, resources: options.resources, bundleSize: options.bundleSize, inFlight: options.bundlesInFlight, progress })
        : await loadThroughRepository({ databaseUrl: database.url, connections: 8, personsPerTransaction: 5, resources: options.resources, progress });
    log(`loaded ${(data.persons * 10).toLocaleString('en-US')} resources in ${data.seconds.toFixed(1)} s; VACUUM ANALYZE (as autovacuum would have done by the time a server has this much data)`);
    await queryOne(database.url, 'VACUUM ANALYZE');
    const counts = await queryOne<{ t: string; n: string }>(database.url, 'SELECT resource_type AS t, count(*)::text AS n FROM resource GROUP BY 1 ORDER BY 2 DESC');
    const rows = Object.fromEntries(counts.map((c) => [c.t, Number(c.n)]));

    const body = JSON.stringify({ ...observation(0, 0, `Patient/${data.patients[0]}`), id: data.observations[0], meta: { versionId: '1', lastUpdated: new Date().toISOString() } });
    const run = { connections: options.connections, seconds: options.durationSeconds, warmupSeconds: options.warmupSeconds };
    let ceilings: Ceilings | undefined;
    if (!options.only || options.only.includes('ceilings')) {
      log('ceilings: bare HTTP');
      const http = await measureHttpCeiling({ body, ...run });
      log('ceilings: raw PostgreSQL');
      const pgc = await measurePgCeiling({ databaseUrl: database.url, body, ...run });
      ceilings = { httpGet: http.get, httpPost: http.post, pgInsert: pgc.insert, pgRead: pgc.read };
    }

    const notes: string[] = [];
    const state: ScenarioState = { data, created: [] };
    const counter = new pg.Client({ connectionString: database.url });
    await counter.connect();
    const screening = await checkScreening(fhirBase, await token(), `Patient/${data.patients[0]}`, counter);
    if (!screening.present) notes.push(`PCL-5 intake skipped: the Questionnaire ${PCL5_URL} is not on the server.`);
    else if (!screening.scored) notes.push('PCL-5 scored intake: the response was stored but no Observation was derived from it (is the screening module registered?).');
    else {
      notes.push(
        `PCL-5 scored intake: each response is validated and scored, and ${screening.observations} Observations derived from it are written in the same transaction; ` +
          `one response sent alone stored ${screening.versions} resource versions, ${screening.audits} of them AuditEvents.`,
      );
    }
    {
      notes.push(
        'Audit: every request writes a compact audit record — a write in its own statement, a read, search or refusal in the local audit journal before the response (decision 0005); AuditEvent resources are built from the records later (when the API is idle, past a backlog bound, or when AuditEvent is read), one per client, interaction and outcome per batch, so "versions stored/req" counts few AuditEvents (in brackets).',
      );
    }

    const results: ApiResult[] = [];
    measuringFrom = Date.now();
    const all = scenarios(state).filter((s) => !options.only || options.only.includes(s.name));
    for (const s of all as Scenario[]) {
      if (s.name.startsWith('PCL-5') && !screening.present) continue;
      if (s.name === 'delete' && state.created.length === 0) state.created.push(...data.observations.slice(-Math.min(data.observations.length, 20_000)));
      log(`scenario: ${s.name}`);
      const requests = s.requests(await token());
      const refused = await probe(server.url, requests[0]);
      if (refused) notes.push(`${s.name}: ${refused}`);
      let before = { versions: 0, audits: 0 };
      let cpuBefore: CpuSample | undefined;
      const m = await measure(s.name, {
        url: server.url,
        ...run,
        requests,
        amount: s.amount?.(),
        beforeMeasure: async () => {
          // The warm-up's audit records are built first, so the window's deferred work is its own.
          await buildAuditEvents(fhirBase, await token());
          before = await stored(counter);
          cpuBefore = sampleCpu(server.process.pid);
        },
      });
      const cpu = cpuPerRequest(cpuBefore, sampleCpu(server.process.pid), m.requests);
      // The AuditEvents of the window's requests, built now (decision 0005 defers them while the API is busy).
      const queued = await counter.query<{ n: string | null; rows: string }>('SELECT sum(records) AS n, count(*) AS rows FROM audit_queue');
      const deferredMs = await buildAuditEvents(fhirBase, await token());
      const after = await stored(counter);
      const per = (n: number) => (m.requests > 0 ? n / m.requests : 0);
      if (cpu) {
        notes.push(
          `${s.name}: CPU per request over the measured window (/proc): API ${cpu.apiMs.toFixed(2)} ms, PostgreSQL ${cpu.postgresMs.toFixed(2)} ms (other processes ${cpu.otherCores.toFixed(2)} cores); ` +
            `AuditEvents of its ${m.requests.toLocaleString('en-US')} requests (${Number(queued.rows[0]?.rows ?? 0).toLocaleString('en-US')} audit-log rows queued, weighing ${Number(queued.rows[0]?.n ?? 0).toLocaleString('en-US')} records) built afterwards in ${Math.round(deferredMs).toLocaleString('en-US')} ms (${((deferredMs * 1000) / Math.max(1, m.requests)).toFixed(0)} µs per request).`,
        );
      }
      results.push({
        ...m,
        load: loadNow(),
        kind: s.kind,
        rowsPerRequest: s.rowsPerRequest,
        description: s.description,
        versionsPerRequest: per(after.versions - before.versions),
        auditEventsPerRequest: per(after.audits - before.audits),
      });
      log(`  ${Math.round(m.rps)}/s load ${loadNow().toFixed(1)} p50 ${m.p50} ms p99 ${m.p99} ms errors ${m.errors}${m.statuses ? ` ${JSON.stringify(m.statuses)}` : ''}`);
      if (cpu) log(`  CPU per request: API ${cpu.apiMs.toFixed(2)} ms, PostgreSQL ${cpu.postgresMs.toFixed(2)} ms, other ${cpu.otherCores.toFixed(2)} cores; audit rows ${queued.rows[0]?.rows ?? 0} (${queued.rows[0]?.n ?? 0} records), built in ${Math.round(deferredMs)} ms`);
    }

    // The read audit's cost: the same read scenario against two APIs on the same database, one
    // auditing reads and one not (AUDIT_READS=off, refused in production). Issue 4: ≤ 10 %. The two
    // are measured in alternating windows (A B B A A B B A), so a change in the machine's load
    // during the run falls on both alike. Both are started for the comparison, the same way, and
    // the scenarios' API is stopped first: measured against the API that had run the scenarios
    // (its JIT and heap shaped by them, and idle, so building AuditEvents in the background during
    // the windows), an API that audited nothing either read 4.6 % slower than a fresh one (control,
    // 2026-11-26 session 5). BENCH_COMPARISON_AUDITED=main compares against the scenarios' API as before.
    const readScenario = all.find((s) => s.name === 'read');
    const audited = results.find((r) => r.name === 'read');
    if (readScenario && audited && process.env.BENCH_AUDIT_COMPARISON !== 'off') {
      log('scenario: read, audited vs not audited, alternating windows (comparison)');
      const reuseMain = process.env.BENCH_COMPARISON_AUDITED === 'main';
      if (!reuseMain && api) {
        measuringTo = Date.now();
        const output = api.output();
        await api.stop();
        if (api.process.exitCode && api.process.exitCode !== 0) log(`API exited with ${api.process.exitCode}:\n${output}`);
        api = undefined;
      }
      const plain = await startApi({ databaseUrl: database.url, clientsFile: client.clientsFile, cpuProfDir: options.cpuProfDir, env: { AUDIT_READS: process.env.BENCH_PLAIN_AUDIT_READS ?? 'off' } });
      const auditedApi = reuseMain ? server : await startApi({ databaseUrl: database.url, clientsFile: client.clientsFile, cpuProfDir: options.cpuProfDir });
      const auditedBase = `${auditedApi.url}/fhir`;
      try {
        const targets = { audited: { url: auditedApi.url, requests: readScenario.requests(await client.token(auditedApi.url)) }, plain: { url: plain.url, requests: readScenario.requests(await client.token(plain.url)) } };
        const windowSeconds = Math.max(2, Math.round(options.durationSeconds / 4));
        const sums = { audited: { ok: 0, seconds: 0, p50: [] as number[], p99: [] as number[], errors: 0, requests: 0 }, plain: { ok: 0, seconds: 0, p50: [] as number[], p99: [] as number[], errors: 0, requests: 0 } };
        const rounds: string[] = [];
        // The AuditEvents of the audited reads are built while the API has time to spare (decision
        // 0005): before each window the audited API is made to build all of them (reading
        // AuditEvent drains the log first), so no window carries another's audit work, and the
        // time that takes is the deferred part of the audit's cost.
        const settleToken = await client.token(auditedApi.url);
        const settled = { ms: 0, reads: 0, queued: 0 };
        const settle = async (reads: number) => {
          const queued = await counter.query<{ n: string | null }>('SELECT sum(records) AS n FROM audit_queue');
          settled.queued += Number(queued.rows[0]?.n ?? 0);
          settled.ms += await buildAuditEvents(auditedBase, settleToken);
          settled.reads += reads;
        };
        await settle(0);
        settled.ms = 0;
        settled.queued = 0;
        // Each window starts after an unmeasured warm-up on its own API: building the AuditEvents
        // (settle) evicts resource pages from PostgreSQL's shared buffers, and without the warm-up
        // whichever window came next paid for re-reading them (25-35 % fewer reads/s at 100,000
        // resources, falling on A or B by the order alone).
        const pids = { audited: auditedApi.process.pid!, plain: plain.process.pid! };
        const databaseName = new URL(database.url).pathname.slice(1);
        const cpu = { audited: { api: 0, pg: 0, requests: 0 }, plain: { api: 0, pg: 0, requests: 0 } };
        const threads = { audited: new Map<string, number>(), plain: new Map<string, number>() };
        for (const which of ['audited', 'plain', 'plain', 'audited', 'audited', 'plain', 'plain', 'audited'] as const) {
          let start = { api: 0, pg: new Map<number, number>(), threads: new Map<string, number>() };
          const m = await measure(which, {
            url: targets[which].url,
            ...run,
            warmupSeconds: Math.min(2, run.warmupSeconds || 2),
            seconds: windowSeconds,
            requests: targets[which].requests,
            beforeMeasure: async () => {
              start = { api: cpuSeconds(pids[which]), pg: postgresCpuSnapshot([databaseName]), threads: threadCpuSeconds(pids[which]) };
            },
          });
          cpu[which].api += cpuSeconds(pids[which]) - start.api;
          cpu[which].pg += cpuSince(start.pg, postgresCpuSnapshot([databaseName]));
          cpu[which].requests += m.requests;
          for (const [name, seconds] of threadCpuSeconds(pids[which])) threads[which].set(name, (threads[which].get(name) ?? 0) + seconds - (start.threads.get(name) ?? 0));
          if (which === 'audited') await settle(m.requests);
          const sum = sums[which];
          sum.ok += m.rps * m.seconds;
          sum.seconds += m.seconds;
          sum.p50.push(m.p50);
          sum.p99.push(m.p99);
          sum.errors += m.errors;
          sum.requests += m.requests;
          rounds.push(`${which === 'audited' ? 'A' : 'B'} ${Math.round(m.rps)}`);
        }
        const rps = (k: 'audited' | 'plain') => (sums[k].seconds > 0 ? sums[k].ok / sums[k].seconds : 0);
        const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
        const pair = (k: 'audited' | 'plain', name: string, description: string): ApiResult => ({
          name,
          rps: rps(k),
          p50: median(sums[k].p50),
          p99: median(sums[k].p99),
          errors: sums[k].errors,
          requests: sums[k].requests,
          seconds: sums[k].seconds,
          load: loadNow(),
          kind: readScenario.kind,
          rowsPerRequest: readScenario.rowsPerRequest,
          description,
          versionsPerRequest: 0,
          auditEventsPerRequest: 0,
        });
        results.push(pair('audited', 'read, audited (alternating windows)', 'the read scenario, audited, in the alternating comparison'));
        results.push(pair('plain', 'read, not audited (alternating windows)', 'the read scenario on an API started with AUDIT_READS=off, in the alternating comparison'));
        const overhead = rps('plain') > 0 ? (1 - rps('audited') / rps('plain')) * 100 : 0;
        notes.push(
          `Read audit cost, alternating ${windowSeconds} s windows (A audited, B not): ${Math.round(rps('audited'))}/s vs ${Math.round(rps('plain'))}/s = ${overhead.toFixed(1)} % slower (target ≤ 10 %); windows ${rounds.join(', ')}; median p99 ${median(sums.audited.p99)} vs ${median(sums.plain.p99)} ms.`,
        );
        log(`  audited ${Math.round(rps('audited'))}/s vs ${Math.round(rps('plain'))}/s not audited: audit costs ${overhead.toFixed(1)} % (${rounds.join(', ')})`);
        const perRequest = (k: 'audited' | 'plain', part: 'api' | 'pg') => (cpu[k].requests > 0 ? (cpu[k][part] * 1e6) / cpu[k].requests : 0);
        const cpuNote = `CPU per read in the windows (from /proc): API ${perRequest('audited', 'api').toFixed(0)} µs audited vs ${perRequest('plain', 'api').toFixed(0)} µs not; PostgreSQL (this database's backends and the server's own processes) ${perRequest('audited', 'pg').toFixed(0)} vs ${perRequest('plain', 'pg').toFixed(0)} µs; in all ${(perRequest('audited', 'api') + perRequest('audited', 'pg')).toFixed(0)} vs ${(perRequest('plain', 'api') + perRequest('plain', 'pg')).toFixed(0)} µs = ${((1 - (perRequest('plain', 'api') + perRequest('plain', 'pg')) / Math.max(1, perRequest('audited', 'api') + perRequest('audited', 'pg'))) * 100).toFixed(1)} % of an audited read's CPU is the audit's.`;
        const byThread = (k: 'audited' | 'plain') =>
          [...threads[k]].filter(([, s]) => s > 0).map(([name, s]) => `${name} ${((s * 1e6) / Math.max(1, cpu[k].requests)).toFixed(1)}`).join(', ');
        notes.push(`${cpuNote} By API thread, µs per read: audited ${byThread('audited')}; not audited ${byThread('plain')}.`);
        log(`  ${cpuNote}`);
        log(`  by thread, µs per read: audited ${byThread('audited')}; not audited ${byThread('plain')}`);
        const perRead = settled.reads > 0 ? (settled.ms * 1000) / settled.reads : 0;
        notes.push(
          `Deferred audit work: building the AuditEvents of the audited windows' ${settled.reads.toLocaleString('en')} reads afterwards took ${Math.round(settled.ms).toLocaleString('en')} ms in all (${perRead.toFixed(0)} µs of wall time per read, API and PostgreSQL together; at ${Math.round(rps('audited')).toLocaleString('en')} reads/s sustained without pause that work would need ${((perRead * rps('audited')) / 1e4).toFixed(0)} % of one core).`,
        );
        log(`  AuditEvents for ${settled.reads} reads built afterwards in ${Math.round(settled.ms)} ms (${perRead.toFixed(0)} µs per read; ${settled.queued} records were queued at the windows' ends)`);
      } finally {
        await plain.stop();
        if (auditedApi !== server) await auditedApi.stop();
      }
    }

    await counter.end();
    const report: Report = {
      mode,
      date: new Date().toISOString().slice(0, 10),
      machine: describeMachine(postgres),
      connections: options.connections,
      durationSeconds: options.durationSeconds,
      load: { resources: data.persons * 10, how: data.how === 'api' ? 'API (transaction Bundles)' : 'Repository (bulk, no validation/hooks/audit)', seconds: data.seconds, resourcesPerSecond: data.resourcesPerSecond, rows },
      ceilings,
      results,
      notes,
    };
    process.stdout.write(`${formatReport(report)}\n`);
    if (options.jsonOut) writeFileSync(options.jsonOut, JSON.stringify(report, null, 2));
  } finally {
    if (api) {
      measuringTo = Date.now();
      const output = api.output();
      await api.stop();
      if (api.process.exitCode && api.process.exitCode !== 0) log(`API exited with ${api.process.exitCode}:\n${output}`);
    }
    await database.drop();
    rmSync(tmp, { recursive: true, force: true });
  }
  if (options.cpuProfDir) {
    const newest = readdirSync(options.cpuProfDir)
      .filter((f) => f.endsWith('.cpuprofile') && (mainPid === undefined || f.includes(`.${mainPid}.`)))
      .map((f) => join(options.cpuProfDir!, f))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
    if (newest) {
      process.stdout.write(`\nAPI CPU profile ${newest} (the scenarios' window, without start-up and loading):\n\n${formatSummary(summarize(JSON.parse(readFileSync(newest, 'utf8')), 25, measuringFrom ? { lastSeconds: (measuringTo - measuringFrom) / 1000, skipEndSeconds: 0.5 } : undefined))}\n`);
    }
  }
}

main().catch((e: unknown) => {
  log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  process.exit(1);
});
