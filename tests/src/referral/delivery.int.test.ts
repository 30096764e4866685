// Issue 6, delivery: two instances of this server, each with its own PostgreSQL database, on
// loopback ports, as a health organisation (A) and a housing organisation (B). A referral made in A
// arrives in B, is accepted there, and its status comes back to A. Faults: B down during delivery,
// consent revoked before delivery, delivery failing for good. PostgreSQL only (graphile-worker).
import type { Server } from 'node:http';
import type { AuditEvent, Bundle, Consent, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { fhir, freePort, until } from '../helpers.ts';
// tests/package.json does not list these workspace packages yet; import them by path until it does.
import { installJobSchema, startWorker } from '../../../packages/jobs/src/index.ts';
import type { Runner } from '../../../packages/jobs/src/index.ts';
import type { DeliveryOptions } from '../../../packages/referral/src/index.ts';
import { deliverReferral, REFERRAL_IDENTIFIER_SYSTEM, referralJobs, referralModule, SECTOR_SYSTEM, staticTargets } from '../../../packages/referral/src/index.ts';

// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const pg = process.env.DATABASE_URL ? describe : describe.skip;



pg('referral delivery between two servers', () => {
  let A: TestApi;
  let B: TestApi;
  let portB: number;
  let serverB: Server | undefined;
  let worker: Runner;
  let aa: Fhir; // org-a's client on A (the referrer)
  let bb: Fhir; // org-b's client on B (the receiver)
  let options: DeliveryOptions;
  const baseA = 'http://127.0.0.1:18080/fhir';

  const listenB = () =>
    new Promise<void>((resolve) => {
      serverB = B.api.app.listen(portB, '127.0.0.1', () => resolve());
    });
  const stopB = () =>
    new Promise<void>((resolve) => {
      serverB!.closeAllConnections();
      serverB!.close(() => resolve());
    });

  beforeAll(async () => {
    portB = await freePort();
    A = await createTestApi({ kind: 'postgres', modules: [referralModule({ delivery: { maxAttempts: 5 } })], publicUrl: 'http://127.0.0.1:18080' });
    B = await createTestApi({ kind: 'postgres', modules: [referralModule()], publicUrl: `http://127.0.0.1:${portB}` });
    for (const t of [A, B]) {
      const sys = t.api.systemRepository();
      for (const [id, sector] of [['org-a', 'health'], ['org-b', 'housing']]) {
        await sys.update<Organization>({ resourceType: 'Organization', id, name: id, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
      }
    }
    await installJobSchema(A.db.url!);
    await listenB();
    aa = fhir(A, await A.client('a'));
    bb = fhir(B, await B.client('b'));
    const tokenOnB = (await B.client('a')).token;
    options = {
      sourceBase: baseA,
      pollIntervalMs: 300,
      resolveTarget: staticTargets({ 'Organization/org-b': { baseUrl: `http://127.0.0.1:${portB}/fhir`, requester: 'Organization/org-a', owner: 'Organization/org-b', accessToken: async () => tokenOnB } }),
    };
    worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100, concurrency: 4 });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    if (serverB?.listening) await stopB();
    await A?.close();
    await B?.close();
  });

  const consent = (patient: string): Consent => ({
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    patient: { reference: patient },
    provision: { type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: 'Organization/org-b' } }] },
  });

  async function refer(withConsent: boolean): Promise<{ task: Task; consent?: Consent }> {
    const patient = await aa.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Tane', given: ['Wiremu'] }], birthDate: '2001-01-22', telecom: [{ system: 'phone', value: '000' }] });
    const sr = await aa.create<ServiceRequest>({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: `Patient/${patient.id}` }, requester: { reference: 'Organization/org-a' } });
    const c = withConsent ? await aa.create(consent(`Patient/${patient.id}`)) : undefined;
    const task = await aa.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
      requester: { reference: 'Organization/org-a' },
      owner: { reference: 'Organization/org-b' },
    });
    return { task, ...(c ? { consent: c } : {}) };
  }

  const remoteTasks = async (task: Task): Promise<Task[]> => {
    const res = await bb.get(`Task?identifier=${encodeURIComponent(REFERRAL_IDENTIFIER_SYSTEM)}|${encodeURIComponent(`${baseA}/Task/${task.id}`)}`);
    return ((res.body as Bundle).entry ?? []).map((e) => e.resource as Task);
  };

  const deliveryJobs = async (task: Task): Promise<number> =>
    Number((await A.db.db.query<{ n: string }>('SELECT count(*)::text AS n FROM graphile_worker.jobs WHERE key = $1', [`referral-deliver:${task.id}`])).rows[0].n);

  it('delivers a referral, the receiver accepts it there, and the status comes back', async () => {
    const { task } = await refer(true);
    const [remote] = await until(async () => {
      const found = await remoteTasks(task);
      return found.length ? found : undefined;
    });
    expect(remote.status).toBe('requested');
    expect(remote.owner?.reference).toBe('Organization/org-b');
    // The receiver sees the ServiceRequest and a minimal Patient (no telecom).
    const patient = (await bb.get(remote.for!.reference!)).body;
    expect(patient.name[0].family).toBe('Tane');
    expect(patient.telecom).toBeUndefined();
    expect((await bb.get(remote.focus!.reference!)).status).toBe(200);
    await until(async () => ((await aa.get(`Task/${task.id}`)).body.businessStatus?.text === 'delivered' ? true : undefined));

    const accepted = await bb.put(`Task/${remote.id}`, { ...remote, status: 'accepted' });
    expect(accepted.status).toBe(200);
    const back = await until(async () => {
      const t = (await aa.get(`Task/${task.id}`)).body as Task;
      return t.status === 'accepted' ? t : undefined;
    });
    expect(back.status).toBe('accepted');
    // Redelivery creates nothing new.
    expect(await deliverReferral(A.api.systemRepository(), task.id!, options, { attempts: 1, maxAttempts: 5 })).toBe('sent');
    expect(await remoteTasks(task)).toHaveLength(1);
  }, 60_000);

  it('does not send on a referral it received from another server', async () => {
    const patient = await aa.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Ngata' }] });
    await aa.create(consent(`Patient/${patient.id}`));
    const base: Task = { resourceType: 'Task', status: 'requested', intent: 'order', code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] }, for: { reference: `Patient/${patient.id}` }, requester: { reference: 'Organization/org-a' }, owner: { reference: 'Organization/org-b' } };
    const received = await aa.create<Task>({ ...base, identifier: [{ system: REFERRAL_IDENTIFIER_SYSTEM, value: 'http://elsewhere.example/fhir/Task/1' }] });
    const own = await aa.create<Task>({ ...base });
    // Both are disclosable under the Consent; only the server's own referral gets a delivery job.
    expect([received, own].map((t) => t.businessStatus?.text)).toEqual(['consented', 'consented']);
    const jobs = await A.db.db.query<{ key: string }>('SELECT key FROM graphile_worker.jobs WHERE key = ANY($1::text[])', [[`referral-deliver:${received.id}`, `referral-deliver:${own.id}`]]);
    const delivered = await until(async () => ((await remoteTasks(own)).length ? true : undefined));
    expect(delivered).toBe(true);
    expect(jobs.rows.map((r) => r.key).filter((k) => k.endsWith(received.id!))).toEqual([]);
    expect(await remoteTasks(received)).toHaveLength(0);
  }, 60_000);

  it('keeps a change made to the Task while it was being sent', async () => {
    await worker.stop();
    try {
      const { task } = await refer(true);
      // The requester changes the Task after the worker read it, before the receiver answers.
      const racing: DeliveryOptions = {
        ...options,
        resolveTarget: async (owner, repo, t) => {
          const base = await options.resolveTarget(owner, repo, t);
          return base && { ...base, accessToken: async () => {
            const current = (await aa.get(`Task/${task.id}`)).body as Task;
            expect((await aa.put(`Task/${task.id}`, { ...current, priority: 'urgent' }, { 'If-Match': `W/"${current.meta!.versionId}"` })).status).toBe(200);
            return base.accessToken?.();
          } };
        },
      };
      expect(await deliverReferral(A.api.systemRepository(), task.id!, racing, { attempts: 1, maxAttempts: 5 })).toBe('sent');
      const local = (await aa.get(`Task/${task.id}`)).body as Task;
      expect([local.priority, local.businessStatus?.text]).toEqual(['urgent', 'delivered']);
      expect(await remoteTasks(task)).toHaveLength(1);
      await A.db.db.query('SELECT graphile_worker.remove_job($1)', [`referral-deliver:${task.id}`]);
    } finally {
      worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100, concurrency: 4 });
    }
  }, 60_000);

  it('a consent revoked while the referral was being sent: the Task ends "awaiting consent", not "delivered"', async () => {
    await worker.stop();
    try {
      const { task, consent: c } = await refer(true);
      // Revoked after the worker read the Task and its Consents, before the receiver answers: the
      // "delivered" update must not take the Consents it read then as current.
      const revoking: DeliveryOptions = {
        ...options,
        resolveTarget: async (owner, repo, t) => {
          const base = await options.resolveTarget(owner, repo, t);
          return base && { ...base, accessToken: async () => {
            expect((await aa.put(`Consent/${c!.id}`, { ...c, status: 'inactive' })).status).toBe(200);
            return base.accessToken?.();
          } };
        },
      };
      expect(await deliverReferral(A.api.systemRepository(), task.id!, revoking, { attempts: 1, maxAttempts: 5 })).toBe('sent');
      expect(((await aa.get(`Task/${task.id}`)).body as Task).businessStatus?.text).toBe('awaiting consent');
      await A.db.db.query('SELECT graphile_worker.remove_job($1)', [`referral-deliver:${task.id}`]);
    } finally {
      worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100, concurrency: 4 });
    }
  }, 60_000);

  it('delivers once the receiver is back after being down, without duplicates', async () => {
    await stopB();
    const { task } = await refer(true);
    // Wait until the first attempt has failed against the closed port (the job waits to retry).
    await until(async () => {
      const r = await A.db.db.query<{ attempts: number; last_error: string | null }>('SELECT attempts, last_error FROM graphile_worker.jobs WHERE key = $1', [`referral-deliver:${task.id}`]);
      return r.rows[0] && r.rows[0].attempts >= 1 && r.rows[0].last_error ? true : undefined;
    });
    await listenB();
    const found = await until(async () => {
      const f = await remoteTasks(task);
      return f.length ? f : undefined;
    }, 30_000);
    expect(found).toHaveLength(1);
    // The job completes (it is recorded after the receiver answered) and is not retried again.
    await until(async () => ((await deliveryJobs(task)) === 0 ? true : undefined));
    expect(await remoteTasks(task)).toHaveLength(1);
  }, 60_000);

  it('sends nothing when consent is revoked before delivery, or was never given', async () => {
    const { task: noConsent } = await refer(false);
    expect((await aa.get(`Task/${noConsent.id}`)).body.businessStatus.text).toBe('awaiting consent');
    expect(await deliverReferral(A.api.systemRepository(), noConsent.id!, options, { attempts: 1, maxAttempts: 5 })).toBe('skipped');

    await worker.stop();
    try {
      const { task, consent: c } = await refer(true);
      await aa.put(`Consent/${c!.id}`, { ...c, status: 'inactive' });
      expect(await deliverReferral(A.api.systemRepository(), task.id!, options, { attempts: 1, maxAttempts: 5 })).toBe('skipped');
      worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100 });
      // The worker has run the delivery job once it is gone from the queue (skipped: nothing to retry).
      await until(async () => ((await deliveryJobs(task)) === 0 ? true : undefined));
      expect(await remoteTasks(task)).toHaveLength(0);
      expect(await remoteTasks(noConsent)).toHaveLength(0);
    } finally {
      if (!worker) worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100 });
    }
  }, 60_000);

  it('marks "delivery failed" and writes an AuditEvent after the last attempt', async () => {
    // The attempts are made here against a dead address: the worker, which would deliver the same
    // Task to the live receiver in the meantime, is stopped until they are done.
    await worker.stop();
    let task: Task;
    try {
      ({ task } = await refer(true));
      const dead: DeliveryOptions = { ...options, resolveTarget: staticTargets({ 'Organization/org-b': { baseUrl: `http://127.0.0.1:${await freePort()}/fhir`, requester: 'Organization/org-a', owner: 'Organization/org-b' } }) };
      await expect(deliverReferral(A.api.systemRepository(), task.id!, dead, { attempts: 1, maxAttempts: 2 })).rejects.toBeDefined();
      expect(await deliverReferral(A.api.systemRepository(), task.id!, dead, { attempts: 2, maxAttempts: 2 })).toBe('failed');
      // The job the Task enqueued is not run: the failure stands.
      await A.db.db.query('SELECT graphile_worker.remove_job($1)', [`referral-deliver:${task.id}`]);
    } finally {
      worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100, concurrency: 4 });
    }
    const local = (await aa.get(`Task/${task.id}`)).body as Task;
    expect(local.businessStatus?.text).toBe('delivery failed');
    const audits = await A.api.systemRepository().search<AuditEvent>('AuditEvent', { entity: `Task/${task.id}` });
    expect(audits.some((a) => a.outcome === '8' && /after 2 attempts/.test(a.outcomeDesc ?? ''))).toBe(true);
    // It shows in the referrer's worklist.
    const worklist = await aa.get(`Task?requester=Organization/org-a&_id=${task.id}`);
    expect(((worklist.body as Bundle).entry ?? []).map((e) => (e.resource as Task).businessStatus?.text)).toEqual(['delivery failed']);
  }, 60_000);
});
