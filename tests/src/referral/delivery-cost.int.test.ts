// What a referral costs the databases end to end: the SQL statements (each one round trip) of the
// referrer's transaction Bundle on A (Patient, ServiceRequest, Consent, Task: the referral
// benchmark's), of its delivery by the worker (on A), and of the receiving Bundle on B, counted at
// the pg driver per database. Two servers with the modules the API runs on PostgreSQL (care plans,
// referrals with delivery and Subscriptions). PostgreSQL only (graphile-worker, pg driver counts).
import type { Server } from 'node:http';
import type { Bundle, Consent, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import { careplanModule } from '@tic/careplan';
import type { Fhir } from '../helpers.ts';
import { countStatements, fhir, freePort, unique } from '../helpers.ts';
// tests/package.json does not list these workspace packages yet; import them by path until it does.
import { installJobSchema } from '../../../packages/jobs/src/index.ts';
import type { DeliveryOptions } from '../../../packages/referral/src/index.ts';
import { deliverReferral, REFERRAL_IDENTIFIER_SYSTEM, referralModule, SECTOR_SYSTEM, staticTargets } from '../../../packages/referral/src/index.ts';

// Skipped without DATABASE_URL: graphile-worker and the pg driver's counts need PostgreSQL; CI sets it.
const run = process.env.DATABASE_URL ? describe : describe.skip;

run('referral delivery: statements per referral', () => {
  let A: TestApi;
  let B: TestApi;
  let serverB: Server | undefined;
  let aa: Fhir;
  let options: DeliveryOptions;
  const counter = countStatements();
  const baseA = 'http://127.0.0.1:18080/fhir';
  const nameOf = (t: TestApi) => new URL(t.db.url!).pathname.slice(1);
  const listing = (sqls: string[]) => sqls.map((sql) => sql.replace(/\s+/g, ' ').slice(0, 90));

  beforeAll(async () => {
    const portB = await freePort();
    const modules = () => [careplanModule(), referralModule({ delivery: { maxAttempts: 5 }, subscriptions: {} })];
    A = await createTestApi({ kind: 'postgres', modules: modules(), publicUrl: 'http://127.0.0.1:18080' });
    B = await createTestApi({ kind: 'postgres', modules: modules(), publicUrl: `http://127.0.0.1:${portB}` });
    for (const t of [A, B]) {
      const sys = t.api.systemRepository();
      for (const [id, sector] of [['org-a', 'health'], ['org-b', 'housing']]) {
        await sys.update<Organization>({ resourceType: 'Organization', id, name: id, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
      }
    }
    await installJobSchema(A.db.url!);
    await new Promise<void>((resolve) => {
      serverB = B.api.app.listen(portB, '127.0.0.1', () => resolve());
    });
    aa = fhir(A, await A.client('a'));
    const tokenOnB = (await B.client('a')).token;
    options = {
      sourceBase: baseA,
      pollIntervalMs: 3_600_000,
      resolveTarget: staticTargets({ 'Organization/org-b': { baseUrl: `http://127.0.0.1:${portB}/fhir`, requester: 'Organization/org-a', owner: 'Organization/org-b', accessToken: async () => tokenOnB } }),
    };
    counter.install();
  }, 120_000);

  afterAll(async () => {
    counter.restore();
    if (serverB?.listening) {
      serverB.closeAllConnections();
      await new Promise<void>((resolve) => serverB!.close(() => resolve()));
    }
    await A?.close();
    await B?.close();
  });

  /** The referral benchmark's Bundle: a new Patient, its ServiceRequest, Consent and Task for org-b. */
  const referral = (): Bundle => {
    const [p, sr, c, t] = [1, 2, 3, 4].map(() => `urn:uuid:${crypto.randomUUID()}`);
    const patient: Patient = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: unique('ref-') }], name: [{ family: 'Tane', given: ['Sam'] }], birthDate: '1990-02-03' };
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
  };

  const refer = async (): Promise<Task> => {
    const res = await aa.post('', referral());
    expect(res.status).toBe(200);
    return (res.body as Bundle).entry![3].resource as Task;
  };

  it('the referrer\'s Bundle, the delivery and the receiving Bundle take 7, 6 and 9 statements', async () => {
    // Warm-up (first use compiles, caches and prepares), then one referral measured with both
    // servers' audit background work paused, so only the referral's own statements are counted.
    const first = await refer();
    expect(await deliverReferral(A.api.systemRepository(), first.id!, options, { attempts: 1, maxAttempts: 5 })).toBe('sent');
    await A.api.pauseAudit();
    await B.api.pauseAudit();

    counter.reset();
    const task = await refer();
    const onA = listing(counter.on(nameOf(A)));
    expect(task.businessStatus?.text).toBe('consented');
    expect({ count: onA.length, onA }).toEqual({ count: Math.min(onA.length, 7), onA });
    // The Bundle enqueued the delivery in its transaction.
    const jobs = await A.db.db.query<{ n: string }>('SELECT count(*)::text AS n FROM graphile_worker.jobs WHERE key = $1', [`referral-deliver:${task.id}`]);
    expect(jobs.rows[0].n).toBe('1');

    counter.reset();
    expect(await deliverReferral(A.api.systemRepository(), task.id!, options, { attempts: 1, maxAttempts: 5 })).toBe('sent');
    const worker = listing(counter.on(nameOf(A)));
    const onB = listing(counter.on(nameOf(B)));
    expect({ count: worker.length, worker }).toEqual({ count: Math.min(worker.length, 6), worker });
    expect({ count: onB.length, onB }).toEqual({ count: Math.min(onB.length, 9), onB });

    // Delivered once, shared with the receiver there, and marked delivered here.
    const remote = await B.db.db.query<{ content: string }>(
      "SELECT r.content FROM sp_token x JOIN resource r ON r.resource_type = 'Task' AND r.id = x.id WHERE x.resource_type = 'Task' AND x.code = 'identifier' AND x.system = $1 AND x.value = $2",
      [REFERRAL_IDENTIFIER_SYSTEM, `${baseA}/Task/${task.id}`],
    );
    expect(remote.rows).toHaveLength(1);
    const onBTask = JSON.parse(remote.rows[0].content) as Task;
    expect(onBTask.businessStatus?.text).toBe('consented');
    const bb = fhir(B, await B.client('b'));
    expect((await bb.get(`Task/${onBTask.id}`)).status).toBe(200);
    expect((await bb.get(onBTask.focus!.reference!)).status).toBe(200);
    expect(((await aa.get(`Task/${task.id}`)).body as Task).businessStatus?.text).toBe('delivered');
  }, 60_000);
});
