// Child processes of the benchmark: the API (services/api/src/index.ts) and the bare HTTP server
// used as the ceiling. Each runs in its own process so its event loop does not share one with the
// load generator; the machine's cores are still shared, which is the point of the ceilings.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export const repoRoot = join(import.meta.dirname, '..', '..', '..');

export interface Child {
  url: string;
  port: number;
  process: ChildProcess;
  /** Last lines the child wrote to stderr/stdout (for error messages). */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<Child>();

/** Stops every child still running (interrupted run). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop()));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`child exited with ${child.exitCode} before it answered ${url}:\n${output()}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${url}:\n${output()}`);
}

function startChild(args: string[], env: NodeJS.ProcessEnv, port: number, healthPath: string): Promise<Child> {
  const child = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (lines.length > 50) lines.splice(0, lines.length - 50);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const output = () => lines.join('\n');
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    running.delete(handle);
    if (child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const handle: Child = { url, port, process: child, output, stop };
  running.add(handle);
  return waitFor(`${url}${healthPath}`, child, output, 120_000).then(
    () => handle,
    async (e: unknown) => {
      await stop();
      throw e;
    },
  );
}

/** The Node/V8 options `npm start` gives the API (services/api/node-options.json). */
export function apiNodeOptions(): string[] {
  return (JSON.parse(readFileSync(join(repoRoot, 'services/api/node-options.json'), 'utf8')) as { nodeOptions: string[] }).nodeOptions;
}

/**
 * The APIs' data directory (audit journal, development client): one per benchmark process, removed
 * when it exits (the database it belongs to is dropped by then; nothing in it is needed after).
 */
const dataDir = `/tmp/tic-bench-${process.pid}`;
let dataDirRemovedAtExit = false;

/** The FHIR API as production runs it: one process on PostgreSQL, warn-level logs, no demo data. */
export async function startApi(options: { databaseUrl: string; clientsFile: string; cpuProfDir?: string; env?: Record<string, string> }): Promise<Child> {
  if (!dataDirRemovedAtExit) {
    dataDirRemovedAtExit = true;
    process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
  }
  const port = await freePort();
  const args = [...(options.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`] : []), 'services/api/src/index.ts'];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: options.databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    DEMO_DATA: 'false',
    LOG_LEVEL: 'warn',
    AUTH_CLIENTS_FILE: options.clientsFile,
    DATA_DIR: dataDir,
    // The API alone is measured; the job worker runs as its own process in production.
    WORKER: 'off',
    // The audit settings under test (AUDIT_READ_COMMIT, AUDIT_JOURNAL_SYNC_MS, ...) pass through.
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('AUDIT_'))),
    // The options production starts the API with (services/api/node-options.json, as `npm start`
    // does), then any for the API process alone to compare (e.g. --max-semi-space-size=64: the
    // later option wins).
    NODE_OPTIONS: [...apiNodeOptions(), process.env.BENCH_API_NODE_OPTIONS].filter(Boolean).join(' '),
    ...options.env,
  };
  return startChild(args, env, port, '/healthz');
}

/** The HTTP ceiling: node:http answering every request with the same JSON body, nothing else. */
export async function startBareServer(body: string): Promise<Child> {
  const port = await freePort();
  const script = `
    const http = require('node:http');
    const body = Buffer.from(process.env.BENCH_BODY);
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': body.length });
        res.end(body);
      });
    });
    server.keepAliveTimeout = 65000;
    server.listen(Number(process.env.PORT), '127.0.0.1');
    process.on('SIGTERM', () => { server.close(); server.closeAllConnections(); process.exit(0); });
  `;
  return startChild(['-e', script], { PATH: process.env.PATH, PORT: String(port), BENCH_BODY: body }, port, '/');
}
