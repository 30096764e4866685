// Issue 6, the worker as a process, and delivery targets from the directory. Two instances of this
// server on PostgreSQL (A: health organisation, referrer; B: housing organisation, receiver). A's
// directory says where B's FHIR server is (Organization.endpoint → Endpoint) and the worker
// authenticates there with SMART Backend Services (credentials file, token URL discovered from
// smart-configuration). The worker runs as a child process (services/worker/src/index.ts); it is
// SIGKILLed while B has stored the referral but its answer is held back; a new worker delivers it
// again and B still holds exactly one copy (conditional creates on business identifiers).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Bundle, Consent, Endpoint, Organization, Patient, ServiceRequest, Subscription, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { fhir, freePort, senderClientOnReceiver, until } from '../helpers.ts';
// tests/package.json does not list these workspace packages yet; import them by path until it does.
import { installJobSchema } from '../../../packages/jobs/src/index.ts';
import type { EndpointCredentials } from '../../../packages/referral/src/index.ts';
import { CredentialStore, directoryTargets, REFERRAL_IDENTIFIER_SYSTEM, referralModule, SECTOR_SYSTEM } from '../../../packages/referral/src/index.ts';

// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const pg = process.env.DATABASE_URL ? describe : describe.skip;
if (!process.env.DATABASE_URL) {
  // eslint-disable-next-line no-console
  console.warn('worker.int.test.ts skipped: DATABASE_URL is not set (the worker runs on PostgreSQL only)');
}



function repoRoot(): string {
  let dir = process.cwd();
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

pg('the worker process and directory-based delivery with SMART Backend Services', () => {
  let A: TestApi;
  let B: TestApi;
  let portB: number;
  let serverB: Server;
  let proxy: Server;
  let proxyBase: string;
  let receiver: Server;
  let hookBase: string;
  const hooks: string[] = [];
  let aa: Fhir;
  let bb: Fhir;
  let credentials: Record<string, EndpointCredentials>;
  let credentialsFile: string;
  const publicA = 'http://127.0.0.1:18090';
  const baseA = `${publicA}/fhir`;
  const children: ChildProcess[] = [];
  // The proxy in front of B: counts transactions; while `hold` is set it forwards them to B but
  // never answers (the worker waits mid-delivery).
  let hold = false;
  let transactions = 0;
  let heldAnswered = 0;

  let dir: string | undefined;
  beforeAll(async () => {
    portB = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'tic-worker-'));
    const { clientsFile, privateJwk: priv } = senderClientOnReceiver(dir);
    const jwkFile = join(dir, 'a-on-b.jwk.json');
    writeFileSync(jwkFile, JSON.stringify(priv));

    A = await createTestApi({ kind: 'postgres', modules: [referralModule({ delivery: { maxAttempts: 5 }, subscriptions: {} })], publicUrl: publicA });
    B = await createTestApi({ kind: 'postgres', modules: [referralModule()], publicUrl: `http://127.0.0.1:${portB}`, env: { AUTH_CLIENTS_FILE: clientsFile } });
    await installJobSchema(A.db.url!);
    await new Promise<void>((r) => (serverB = B.api.app.listen(portB, '127.0.0.1', () => r())));

    proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          const body = Buffer.concat(chunks);
          const isTransaction = req.method === 'POST' && /^\/fhir\/?$/.test(req.url ?? '');
          if (isTransaction) transactions++;
          const headers: Record<string, string> = {};
          for (const h of ['authorization', 'content-type', 'accept']) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h];
          const upstream = await fetch(`http://127.0.0.1:${portB}${req.url}`, { method: req.method, headers, body: body.length ? body : undefined });
          const out = Buffer.from(await upstream.arrayBuffer());
          if (isTransaction && hold) {
            heldAnswered++;
            return; // B has committed; the worker never hears back
          }
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
          res.end(out);
        })().catch(() => {
          res.statusCode = 502;
          res.end();
        });
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    proxyBase = `http://127.0.0.1:${(proxy.address() as { port: number }).port}/fhir`;

    receiver = createServer((req, res) => {
      hooks.push(`${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => res.end());
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    hookBase = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;

    // Directory: both organisations on both servers; on A, org-b's FHIR endpoint is B (via the proxy).
    for (const t of [A, B]) {
      const sys = t.api.systemRepository();
      for (const [id, sector] of [['org-a', 'health'], ['org-b', 'housing']]) {
        await sys.update<Organization>({ resourceType: 'Organization', id, name: id, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
      }
    }
    const sysA = A.api.systemRepository();
    const endpoint = (id: string, address: string, status: Endpoint['status']): Endpoint => ({
      resourceType: 'Endpoint',
      id,
      status,
      connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-rest' },
      payloadType: [{ coding: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Task' }] }],
      address,
    });
    await sysA.update(endpoint('ep-b-old', 'http://127.0.0.1:9/fhir', 'off'));
    await sysA.update(endpoint('ep-b', proxyBase, 'active'));
    await sysA.update<Organization>({ resourceType: 'Organization', id: 'org-b', name: 'org-b', type: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }], endpoint: [{ reference: 'Endpoint/ep-b-old' }, { reference: 'Endpoint/ep-b' }] });
    await sysA.update<Organization>({ resourceType: 'Organization', id: 'org-c', name: 'org-c', endpoint: [{ reference: 'Endpoint/ep-b-old' }] });

    credentials = { [proxyBase]: { clientId: 'org-a-sender', privateJwk: priv as EndpointCredentials['privateJwk'], scope: 'system/*.cruds' } };
    credentialsFile = join(dir, 'credentials.json');
    writeFileSync(credentialsFile, JSON.stringify({ [`${proxyBase}/`]: { clientId: 'org-a-sender', privateJwk: jwkFile, scope: 'system/*.cruds' } }));
    aa = fhir(A, await A.client('a'));
    bb = fhir(B, await B.client('b'));
  }, 120_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const s of [proxy, receiver, serverB]) {
      if (!s?.listening) continue;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
    await A?.close();
    await B?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function startWorkerProcess(): ChildProcess {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_OPTIONS: '',
      DATABASE_URL: A.db.url!,
      PUBLIC_URL: publicA,
      REFERRAL_CREDENTIALS_FILE: credentialsFile,
      REFERRAL_POLL_INTERVAL_MS: '300',
      WORKER_RECOVERY_INTERVAL_MS: '500',
    };
    delete env.REFERRAL_TARGETS_FILE;
    const child = spawn(process.execPath, ['services/worker/src/index.ts'], { cwd: repoRoot(), env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (process.env.TIC_DEBUG_WORKER) child.stdout!.on('data', (c: Buffer) => process.stderr.write(c)); else child.stdout!.resume();
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => {
      if (code) process.stderr.write(`worker exited with ${code}: ${stderr}\n`);
    });
    children.push(child);
    return child;
  }

  const consent = (patient: string): Consent => ({
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    patient: { reference: patient },
    provision: { type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: 'Organization/org-b' } }] },
  });

  async function refer(): Promise<Task> {
    const patient = await aa.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Ngata', given: ['Aroha'] }], birthDate: '1994-07-03' });
    const sr = await aa.create<ServiceRequest>({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${patient.id}` }, requester: { reference: 'Organization/org-a' } });
    await aa.create(consent(`Patient/${patient.id}`));
    return aa.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
      requester: { reference: 'Organization/org-a' },
      owner: { reference: 'Organization/org-b' },
    });
  }

  const remote = async (type: string, source: string): Promise<Array<{ id?: string; status?: string }>> => {
    const res = await bb.get(`${type}?identifier=${encodeURIComponent(REFERRAL_IDENTIFIER_SYSTEM)}|${encodeURIComponent(`${baseA}/${source}`)}`);
    return ((res.body as Bundle).entry ?? []).map((e) => e.resource as { id?: string; status?: string });
  };

  it('resolves the receiver from the directory (active hl7-fhir-rest Endpoint) and gets one cached SMART token by discovery', async () => {
    const store = new CredentialStore(credentials);
    const resolve = directoryTargets(store);
    const sys = A.api.systemRepository();
    const task = { resourceType: 'Task', requester: { reference: 'Organization/org-a' } } as Task;
    const target = await resolve('Organization/org-b', sys, task);
    expect(target).toMatchObject({ baseUrl: proxyBase, requester: 'Organization/org-a', owner: 'Organization/org-b' });
    expect(await resolve('Organization/org-c', sys, task)).toBeUndefined(); // only an inactive endpoint
    expect(await resolve('Organization/nobody', sys, task)).toBeUndefined();
    const first = await target!.accessToken!();
    const second = await target!.accessToken!();
    expect(second).toBe(first);
    expect(store.tokenSource(proxyBase)!.requests).toBe(1);
    // The token is B's own: B answers as org-a's client.
    const res = await fetch(`http://127.0.0.1:${portB}/fhir/Organization/org-a`, { headers: { Authorization: `Bearer ${first}` } });
    expect(res.status).toBe(200);
  }, 30_000);

  it('delivers exactly once although the worker is killed mid-delivery, and the status coming back fires the referrer’s Subscription', async () => {
    const sub = await aa.create<Subscription>({
      resourceType: 'Subscription',
      status: 'requested',
      reason: 'my referrals accepted',
      criteria: 'Task?requester=Organization/org-a&status=accepted',
      channel: { type: 'rest-hook', endpoint: `${hookBase}/hook` },
    });
    expect(sub.status).toBe('active');
    hold = true;
    const first = startWorkerProcess();
    const task = await refer();
    // B has stored the referral, but the worker is still waiting for its answer.
    await until(async () => (heldAnswered >= 1 && (await remote('Task', `Task/${task.id}`)).length === 1 ? true : undefined));
    const locked = await A.db.db.query<{ locked_by: string | null; attempts: number }>('SELECT locked_by, attempts FROM graphile_worker.jobs WHERE key = $1', [`referral-deliver:${task.id}`]);
    expect(locked.rows[0]?.locked_by).toBeTruthy();
    expect((await aa.get(`Task/${task.id}`)).body.businessStatus?.text).not.toBe('delivered');
    first.kill('SIGKILL');
    await new Promise<void>((r) => (first.exitCode !== null || first.signalCode !== null ? r() : first.once('exit', () => r())));
    hold = false;

    startWorkerProcess();
    await until(async () => ((await aa.get(`Task/${task.id}`)).body.businessStatus?.text === 'delivered' ? true : undefined), 45_000);
    expect(transactions).toBeGreaterThanOrEqual(2); // sent again after the restart...
    const tasks = await remote('Task', `Task/${task.id}`);
    expect(tasks).toHaveLength(1); // ...and still one copy
    expect(await remote('ServiceRequest', `ServiceRequest/${task.focus!.reference!.split('/')[1]}`)).toHaveLength(1);
    expect(await remote('Patient', task.for!.reference!)).toHaveLength(1);

    // The receiver accepts on its server; the worker brings the status back and the Subscription fires.
    const remoteTask = (await bb.get(`Task/${tasks[0].id}`)).body as Task;
    expect((await bb.put(`Task/${remoteTask.id}`, { ...remoteTask, status: 'accepted' })).status).toBe(200);
    await until(async () => ((await aa.get(`Task/${task.id}`)).body.status === 'accepted' ? true : undefined), 30_000);
    await until(() => (hooks.includes('POST /hook') ? true : undefined), 30_000);
  }, 120_000);
});
