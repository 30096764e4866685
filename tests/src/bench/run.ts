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
import type { Bundle, Questionnaire } from '@medplum/fhirtypes';
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
import { buildAuditEvents, compareReadAudit } from './audit-comparison.ts';
import type { Side } from './audit-comparison.ts';
import { startApi, stopAll } from './processes.ts';
import type { Child } from './processes.ts';
import { formatSummary, summarize } from './profile.ts';
import { describeMachine, formatReport, loadNow } from './report.ts';
import type { ApiResult, Report } from './report.ts';
import { PCL5_PANEL_URL, PCL5_URL, pcl5PanelVariant, pcl5Response, scenarios } from './scenarios.ts';
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
        'Audit: every request writes a compact audit record — a write in its own statement, a read, search or refusal in the local audit journal before the response (decision 0005); AuditEvent resources are built from the records later (while busy within AUDIT_BUILD_SHARE of the time, decision 0012; the rest when the API is idle, past a backlog bound, or when AuditEvent is read), one per client, interaction and outcome per batch, so "versions stored/req" counts few AuditEvents (in brackets).',
      );
    }

    const results: ApiResult[] = [];
    measuringFrom = Date.now();
    const all = scenarios(state).filter((s) => (options.only ? options.only.includes(s.name) : !s.optIn));
    if (screening.present && all.some((s) => s.name === 'PCL-5 response: scored intake (items as panel components)')) {
      // Issue 5's option (b), measured only: the variant Questionnaire is stored for this run.
      const res = await fetch(`${fhirBase}/Questionnaire?url=${encodeURIComponent(PCL5_URL)}`, { headers: { authorization: `Bearer ${await token()}` } });
      const q = ((await res.json()) as Bundle<Questionnaire>).entry?.[0]?.resource;
      if (!q) throw new Error('the PCL-5 Questionnaire is not on the server');
      const stored = await fetch(`${fhirBase}/Questionnaire`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await token()}`, 'content-type': 'application/fhir+json' },
        body: JSON.stringify(pcl5PanelVariant(q)),
      });
      if (stored.status !== 201) throw new Error(`storing the PCL-5 panel variant answered ${stored.status}: ${await stored.text()}`);
      state.pcl5Version = q.version;
      notes.push(`PCL-5 panel variant (issue 5, option b, bench only): ${PCL5_PANEL_URL}|${q.version}, the 20 items inside one group extracted as components of a panel Observation.`);
    }
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

    // The read audit's cost (issue 4: ≤ 10 %): the read scenario against an API that audits reads and
    // one that does not, loaded side by side (audit-comparison.ts says why). The scenarios' API is
    // stopped first; both are started for the comparison.
    const readScenario = all.find((s) => s.name === 'read');
    if (readScenario && results.some((r) => r.name === 'read') && process.env.BENCH_AUDIT_COMPARISON !== 'off') {
      log('scenario: read, audited vs not audited, side by side (comparison)');
      if (api) {
        measuringTo = Date.now();
        const output = api.output();
        await api.stop();
        if (api.process.exitCode && api.process.exitCode !== 0) log(`API exited with ${api.process.exitCode}:\n${output}`);
        api = undefined;
      }
      const rounds = Math.max(1, Number(process.env.BENCH_AUDIT_ROUNDS ?? 6));
      const c = await compareReadAudit({
        databaseUrl: database.url,
        clientsFile: client.clientsFile,
        cpuProfDir: options.cpuProfDir,
        connections: options.connections,
        seconds: Math.max(2, Math.round(options.durationSeconds / 2)),
        rounds,
        warmupSeconds: Math.min(2, run.warmupSeconds || 2),
        requests: readScenario.requests,
        token: (url) => client.token(url),
        counter,
        log,
      });
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const row = (side: Side, name: string, description: string): ApiResult => ({
        name,
        rps: side.rps,
        p50: median(side.p50s),
        p99: median(side.p99s),
        errors: side.errors,
        requests: side.requests,
        seconds: side.seconds,
        load: loadNow(),
        kind: readScenario.kind,
        rowsPerRequest: readScenario.rowsPerRequest,
        description,
        versionsPerRequest: 0,
        auditEventsPerRequest: 0,
      });
      results.push(row(c.audited, 'read, audited (side by side)', `the read scenario, audited, ${options.connections / 2} connections, loaded at the same time as the API that does not audit`));
      results.push(row(c.plain, 'read, not audited (side by side)', `the read scenario on an API started with AUDIT_READS=off, ${options.connections / 2} connections, loaded at the same time as the audited one`));
      const overhead = c.plain.rps > 0 ? (1 - c.audited.rps / c.plain.rps) * 100 : 0;
      const perRound = c.rounds.map((r) => `${Math.round(r.audited)} vs ${Math.round(r.plain)} (${((1 - r.audited / r.plain) * 100).toFixed(1)} %)`).join(', ');
      const windowSeconds = c.audited.seconds / rounds;
      notes.push(
        `Read audit cost, both APIs loaded at the same time (${options.connections / 2} connections each, ${rounds} rounds of ${windowSeconds.toFixed(0)} s): ${Math.round(c.audited.rps)}/s audited vs ${Math.round(c.plain.rps)}/s not = ${overhead.toFixed(1)} % slower (target ≤ 10 %); by round ${perRound}; median p99 ${median(c.audited.p99s)} vs ${median(c.plain.p99s)} ms.`,
      );
      log(`  audited ${Math.round(c.audited.rps)}/s vs ${Math.round(c.plain.rps)}/s not audited: audit costs ${overhead.toFixed(1)} % (${perRound})`);
      const us = (seconds: number, side: Side) => (side.requests > 0 ? (seconds * 1e6) / side.requests : 0);
      const all = (side: Side) => us(side.apiCpu, side) + us(side.pgCpu, side);
      const cpuNote = `CPU per read in the rounds (from /proc): API ${us(c.audited.apiCpu, c.audited).toFixed(0)} µs audited vs ${us(c.plain.apiCpu, c.plain).toFixed(0)} µs not; its PostgreSQL backends ${us(c.audited.pgCpu, c.audited).toFixed(0)} vs ${us(c.plain.pgCpu, c.plain).toFixed(0)} µs; in all ${all(c.audited).toFixed(0)} vs ${all(c.plain).toFixed(0)} µs = ${((1 - all(c.plain) / Math.max(1, all(c.audited))) * 100).toFixed(1)} % of an audited read's CPU is the audit's (PostgreSQL's own processes, shared: ${((c.pgShared * 1e6) / Math.max(1, c.audited.requests + c.plain.requests)).toFixed(0)} µs per read of either).`;
      const byThread = (side: Side) =>
        [...side.threads].filter(([, s]) => s > 0).map(([name, s]) => `${name} ${us(s, side).toFixed(1)}`).join(', ');
      notes.push(`${cpuNote} By API thread, µs per read: audited ${byThread(c.audited)}; not audited ${byThread(c.plain)}.`);
      log(`  ${cpuNote}`);
      log(`  by thread, µs per read: audited ${byThread(c.audited)}; not audited ${byThread(c.plain)}`);
      const perRead = c.deferred.reads > 0 ? (c.deferred.ms * 1000) / c.deferred.reads : 0;
      notes.push(
        `Deferred audit work: ${c.deferred.left.toLocaleString('en')} of the audited API's ${c.deferred.reads.toLocaleString('en')} measured reads were not yet AuditEvents when their round ended (the rest were built during the rounds, within AUDIT_BUILD_SHARE: ${process.env.AUDIT_BUILD_SHARE ?? 'default'}); building them afterwards took ${Math.round(c.deferred.ms).toLocaleString('en')} ms in all (of which ${Math.round(c.deferred.checkpointMs).toLocaleString('en')} ms writing out the pages it dirtied: a CHECKPOINT; ${perRead.toFixed(0)} µs of wall time per measured read, ${c.deferred.left > 0 ? ((c.deferred.ms * 1000) / c.deferred.left).toFixed(0) : '-'} µs per record left, API and PostgreSQL together; at ${Math.round(c.audited.rps).toLocaleString('en')} reads/s sustained without pause that work would need ${((perRead * c.audited.rps) / 1e4).toFixed(0)} % of one core).`,
      );
      log(`  AuditEvents for ${c.deferred.left} of ${c.deferred.reads} reads built afterwards in ${Math.round(c.deferred.ms)} ms (checkpoints ${Math.round(c.deferred.checkpointMs)} ms; ${perRead.toFixed(0)} µs per read)`);
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
