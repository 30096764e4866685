// Graceful shutdown of the real process: on SIGTERM an in-flight request still completes and
// commits, new connections are refused, and the process exits 0.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(__dirname, '../../..');

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

async function waitFor(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

/** The real server on PGlite in `dataDir`, up, with a development-client token got the way the README says. */
async function startServer(dataDir: string): Promise<{ base: string; token: string; child: ChildProcess }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(root, 'services/api/src/index.ts')], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: '', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: base, DATA_DIR: dataDir, DEMO_DATA: 'false', LOG_LEVEL: 'warn', NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitFor(`${base}/healthz`, 60_000);
  const token = await new Promise<string>((ok, fail) => {
    const p = spawn(process.execPath, [join(root, 'packages/auth/src/cli/get-token.ts'), '--base-url', base, '--data-dir', join(dataDir, 'dev-client')], { cwd: root, env: { ...process.env, NODE_OPTIONS: '' } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => (code === 0 ? ok(out.trim()) : fail(new Error(`get-token exited ${code}`))));
  });
  return { base, token, child };
}

describe('graceful shutdown', () => {
  let child: ChildProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'tic-shutdown-'));
  afterAll(() => {
    child?.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('finishes the in-flight request, then exits 0', async () => {
    const started = await startServer(dataDir);
    child = started.child;
    const { base, token } = started;
    const exited = new Promise<number | null>((ok) => child!.on('exit', (code) => ok(code)));
    // A transaction large enough to be in flight when SIGTERM arrives.
    const entry = Array.from({ length: 400 }, (_, i) => ({
      resource: { resourceType: 'Patient', identifier: [{ system: 'urn:shutdown-test', value: String(i) }] },
      request: { method: 'POST', url: 'Patient' },
    }));
    const inFlight = fetch(`${base}/fhir`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/fhir+json' },
      body: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }),
    });
    await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGTERM');
    const res = await inFlight;
    expect(res.status).toBe(200);
    const bundle = (await res.json()) as { entry: Array<{ response: { status: string } }> };
    expect(bundle.entry).toHaveLength(400);
    expect(await exited).toBe(0);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  }, 120_000);
});

describe('a crash', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tic-crash-'));
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(): Promise<{ base: string; token: string; child: ChildProcess }> {
    const started = await startServer(dataDir);
    children.push(started.child);
    return started;
  }

  it('loses no audit record of a read answered before the server was killed (the journal is shipped at the next start)', async () => {
    const first = await start();
    const headers = { Authorization: `Bearer ${first.token}`, 'Content-Type': 'application/fhir+json' };
    const created = (await (await fetch(`${first.base}/fhir/Patient`, { method: 'POST', headers, body: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Crash' }] }) })).json()) as { id: string };
    const requestIds: string[] = [];
    for (let i = 0; i < 5; i++) {
      const requestId = `crash-read-${i}`;
      const res = await fetch(`${first.base}/fhir/Patient/${created.id}`, { headers: { ...headers, 'X-Request-Id': requestId } });
      expect(res.status).toBe(200);
      requestIds.push(requestId);
    }
    // Killed at once: no graceful shutdown, no drain; the reads' records are only in the journal.
    const exited = new Promise((ok) => first.child.on('exit', ok));
    first.child.kill('SIGKILL');
    await exited;

    const second = await start();
    const res = await fetch(`${second.base}/fhir/AuditEvent?entity=Patient/${created.id}&subtype=read&_count=100`, { headers: { Authorization: `Bearer ${second.token}` } });
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const id of requestIds) expect(text).toContain(`"${id}"`);
    second.child.kill('SIGTERM');
  }, 180_000);
});
