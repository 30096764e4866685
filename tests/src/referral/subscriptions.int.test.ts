// Issue 6, R4 Subscriptions (rest-hook, criteria on Task) on PostgreSQL: a notification job is
// enqueued in the Task write's transaction for each matching active Subscription and sent by the
// worker to a local receiver on 127.0.0.1. Fires on a match only, only for Tasks the Subscription's
// owner can see, with or without payload, and goes to "error" after repeated failures.
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { Subscription, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { expectOutcome, fhir, unique, until } from '../helpers.ts';
// tests/package.json does not list these workspace packages yet; import them by path until it does.
import { installJobSchema, startWorker } from '../../../packages/jobs/src/index.ts';
import type { Runner } from '../../../packages/jobs/src/index.ts';
import { referralModule, subscriptionJobs } from '../../../packages/referral/src/index.ts';

// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const pg = process.env.DATABASE_URL ? describe : describe.skip;
if (!process.env.DATABASE_URL) {
  // eslint-disable-next-line no-console
  console.warn('subscriptions.int.test.ts skipped: DATABASE_URL is not set (Subscriptions run on the PostgreSQL job queue)');
}

interface Hit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}


pg('R4 rest-hook Subscriptions on Task', () => {
  let A: TestApi;
  let worker: Runner;
  let receiver: Server;
  let hookBase: string;
  let aa: Fhir;
  let cc: Fhir;
  const hits: Hit[] = [];

  beforeAll(async () => {
    A = await createTestApi({ kind: 'postgres', modules: [referralModule({ subscriptions: { maxAttempts: 2 } })] });
    await installJobSchema(A.db.url!);
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        hits.push({ method: req.method!, url: req.url!, headers: req.headers, body });
        res.statusCode = req.url!.startsWith('/fail/') ? 500 : 200;
        res.end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    hookBase = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
    aa = fhir(A, await A.client('a'));
    cc = fhir(A, await A.client('c'));
    worker = await startWorker({ connectionString: A.db.url!, taskList: subscriptionJobs(() => A.api.systemRepository()), pollInterval: 100, concurrency: 4 });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
    await A?.close();
  });

  const subscription = (criteria: string, endpoint: string, extra: Partial<Subscription['channel']> = {}): Subscription => ({
    resourceType: 'Subscription',
    status: 'requested',
    reason: 'referral status',
    criteria,
    channel: { type: 'rest-hook', endpoint, ...extra },
  });
  const task = (tag: string, status: Task['status'] = 'requested'): Task => ({ resourceType: 'Task', status, intent: 'order', identifier: [{ system: 'urn:test:sub', value: tag }] });
  const hitsUnder = (prefix: string) => hits.filter((h) => h.url.startsWith(prefix));

  it('activates a valid Subscription and refuses what it cannot honour', async () => {
    const ok = await aa.create(subscription('Task?status=accepted', `${hookBase}/ok/x`));
    expect(ok.status).toBe('active');
    expectOutcome(await aa.post('Subscription', subscription('Patient?name=x', `${hookBase}/ok/x`)), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?no-such-param=1', `${hookBase}/ok/x`)), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?status=accepted&_count=5', `${hookBase}/ok/x`)), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?status=accepted', 'ftp://127.0.0.1/x')), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?status=accepted', `${hookBase}/ok/x`, { type: 'websocket' })), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?status=accepted', `${hookBase}/ok/x`, { payload: 'application/xml' })), 400);
    expectOutcome(await aa.post('Subscription', subscription('Task?status=accepted', `${hookBase}/ok/x`, { header: ['Host: evil'] })), 400);
    expectOutcome(await aa.post('Subscription', { ...subscription('Task?status=accepted', `${hookBase}/ok/x`), status: 'error' }), 422);
    const off = await aa.put(`Subscription/${ok.id}`, { ...ok, status: 'off' });
    expect(off.body.status).toBe('off');
  });

  it('fires on a matching Task change with the resource as payload (PUT [base]/Task/[id]), headers honoured; not on a non-matching one', async () => {
    const tag = unique('full');
    const sub = await aa.create(subscription(`Task?identifier=urn:test:sub|${tag}&status=accepted`, `${hookBase}/ok/${tag}`, { payload: 'application/fhir+json', header: ['X-Hook-Token: s3cret'] }));
    expect(sub.status).toBe('active');
    const t = await aa.create(task(tag)); // requested: does not match
    await new Promise((r) => setTimeout(r, 1000));
    expect(hitsUnder(`/ok/${tag}`)).toHaveLength(0);
    const accepted = (await aa.put(`Task/${t.id}`, { ...t, status: 'accepted' })).body as Task;
    const [hit] = await until(() => (hitsUnder(`/ok/${tag}`).length ? hitsUnder(`/ok/${tag}`) : undefined));
    expect(hit.method).toBe('PUT');
    expect(hit.url).toBe(`/ok/${tag}/Task/${t.id}`);
    expect(hit.headers['x-hook-token']).toBe('s3cret');
    expect(hit.headers['content-type']).toMatch(/application\/fhir\+json/);
    const body = JSON.parse(hit.body) as Task;
    expect(body.status).toBe('accepted');
    expect(body.meta?.versionId).toBe(accepted.meta?.versionId);
    // A later change that no longer matches sends nothing more.
    await aa.put(`Task/${t.id}`, { ...accepted, status: 'in-progress' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(hitsUnder(`/ok/${tag}`)).toHaveLength(1);
  }, 30_000);

  it('sends an empty POST to the endpoint when the Subscription has no payload', async () => {
    const tag = unique('empty');
    await aa.create(subscription(`Task?identifier=urn:test:sub|${tag}`, `${hookBase}/ok/${tag}`));
    await aa.create(task(tag));
    const [hit] = await until(() => (hitsUnder(`/ok/${tag}`).length ? hitsUnder(`/ok/${tag}`) : undefined));
    expect(hit.method).toBe('POST');
    expect(hit.url).toBe(`/ok/${tag}`);
    expect(hit.body).toBe('');
  }, 30_000);

  it('does not fire for Tasks the Subscription owner cannot see', async () => {
    const tag = unique('vis');
    const theirs = await cc.create(subscription(`Task?identifier=urn:test:sub|${tag}`, `${hookBase}/ok/${tag}/c`));
    const ours = await aa.create(subscription(`Task?identifier=urn:test:sub|${tag}`, `${hookBase}/ok/${tag}/a`));
    expect([theirs.status, ours.status]).toEqual(['active', 'active']);
    await aa.create(task(tag)); // org-a's Task, not shared with org-c
    await until(() => (hitsUnder(`/ok/${tag}/a`).length ? true : undefined));
    await new Promise((r) => setTimeout(r, 1000));
    expect(hitsUnder(`/ok/${tag}/c`)).toHaveLength(0);
    // The Subscription itself is the owner's: org-a does not see org-c's.
    expect((await aa.get(`Subscription/${theirs.id}`)).status).toBe(404);
  }, 30_000);

  it('retries with back-off, then sets the Subscription to error with the reason', async () => {
    const tag = unique('fail');
    const sub = await aa.create(subscription(`Task?identifier=urn:test:sub|${tag}`, `${hookBase}/fail/${tag}`));
    await aa.create(task(tag));
    const errored = await until(async () => {
      const s = (await aa.get(`Subscription/${sub.id}`)).body as Subscription;
      return s.status === 'error' ? s : undefined;
    }, 30_000);
    expect(errored.error).toMatch(/after 2 attempts: HTTP 500/);
    expect(hitsUnder(`/fail/${tag}`)).toHaveLength(2);
    // A Subscription in error sends nothing more.
    await aa.create(task(tag));
    await new Promise((r) => setTimeout(r, 1000));
    expect(hitsUnder(`/fail/${tag}`)).toHaveLength(2);
  }, 45_000);
});
