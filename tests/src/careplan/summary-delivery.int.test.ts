// Issue 7, exchange: CarePlan/$send-summary delivers the plan's summary document to a care-team
// organisation's FHIR server through the durable job queue. Two instances of this server on
// PostgreSQL: A (org-a owns the plan) and B (org-b's FHIR server). A's directory names B as org-b's
// Endpoint; the worker authenticates there with SMART Backend Services (credentials per endpoint
// address, token URL discovered from B's smart-configuration), the same path referral delivery
// takes. org-c is in the care team but its (static) target is a closed port; org-d is not in the team.
// Runs on PostgreSQL only (graphile-worker); on PGlite the operation answers 422.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent, Bundle, CarePlan, CareTeam, Communication, Composition, Consent, Endpoint, Goal, Organization, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { expectOutcome, fhir, freePort, senderClientOnReceiver, until } from '../helpers.ts';
import { installJobSchema, startWorker } from '@tic/jobs';
import type { Runner } from '@tic/jobs';
import type { EndpointCredentials } from '@tic/referral';
import { workerTaskList } from '@tic/worker/tasks';
import { careplanModule, NEEDS_POSTGRES, SEND_SUMMARY_JOB, SYSTEM } from '@tic/careplan';

// Skipped without DATABASE_URL: graphile-worker (the durable job queue) runs on PostgreSQL only; CI sets it.
const pg = process.env.DATABASE_URL ? describe : describe.skip;
if (!process.env.DATABASE_URL) {
  console.warn('summary-delivery.int.test.ts: the delivery tests are skipped because DATABASE_URL is not set (delivery runs on graphile-worker, PostgreSQL only)');
}



const ref = (r: { resourceType: string; id?: string }) => ({ reference: `${r.resourceType}/${r.id}` });
const role = (code: string) => [{ coding: [{ system: SYSTEM.role, code }] }];
const recipient = (org: string) => ({ resourceType: 'Parameters', parameter: [{ name: 'recipient', valueReference: { reference: org } }] });

describe('$send-summary on the embedded database', () => {
  it('answers 422: delivery needs PostgreSQL', async () => {
    const t = await createTestApi({ kind: 'pglite', modules: [careplanModule()] });
    try {
      const a = fhir(t, await t.client('a'));
      const oo = expectOutcome(await a.post('CarePlan/any/$send-summary', recipient('Organization/org-b')), 422);
      expect(oo.issue[0].diagnostics).toBe(NEEDS_POSTGRES);
    } finally {
      await t.close();
    }
  }, 60_000);
});

pg('$send-summary between two servers', () => {
  let A: TestApi;
  let B: TestApi;
  let portB: number;
  let serverB: Server | undefined;
  let worker: Runner;
  let startOurWorker: () => Promise<Runner>;
  let aa: Fhir; // org-a's client on A (owns the plan)
  let patient: Patient;
  let team: CareTeam;
  let goal: Goal;
  let plan: CarePlan;
  const publicA = 'http://127.0.0.1:18100';
  const baseA = `${publicA}/fhir`;

  const listenB = () =>
    new Promise<void>((resolve) => {
      serverB = B.api.app.listen(portB, '127.0.0.1', () => resolve());
    });
  const stopB = () =>
    new Promise<void>((resolve) => {
      serverB!.closeAllConnections();
      serverB!.close(() => resolve());
    });
  const taskList = (credentials: Record<string, EndpointCredentials>, deadPort: number) =>
    workerTaskList({
      repository: () => A.api.systemRepository(),
      sourceBase: baseA,
      credentials,
      // org-c's server: a static target (overrides the directory) on a closed port.
      targets: { 'Organization/org-c': { baseUrl: `http://127.0.0.1:${deadPort}/fhir`, requester: 'Organization/org-a', owner: 'Organization/org-c' } },
    });

  /** Documents B holds with this identifier (read as B itself). */
  const documentsOnB = async (identifier: { system?: string; value?: string }) =>
    B.api.systemRepository().search<Bundle>('Bundle', { identifier: `${identifier.system}|${identifier.value}` });
  const record = async (id: string) => (await aa.get(`Communication/${id}`)).body as Communication;
  const send = async (org: string, client = aa) => client.post(`CarePlan/${plan.id}/$send-summary`, recipient(org));

  let dir: string | undefined;
  beforeAll(async () => {
    portB = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'tic-summary-'));
    const { clientsFile, privateJwk: priv } = senderClientOnReceiver(dir);

    A = await createTestApi({ kind: 'postgres', modules: [careplanModule({ delivery: { maxAttempts: 3 } })], publicUrl: publicA });
    B = await createTestApi({ kind: 'postgres', modules: [careplanModule()], publicUrl: `http://127.0.0.1:${portB}`, env: { AUTH_CLIENTS_FILE: clientsFile } });
    await installJobSchema(A.db.url!);
    await listenB();
    const baseB = `http://127.0.0.1:${portB}/fhir`;

    for (const t of [A, B]) {
      const sys = t.api.systemRepository();
      for (const id of ['org-a', 'org-b', 'org-c', 'org-d']) await sys.update<Organization>({ resourceType: 'Organization', id, name: id });
    }
    // A's directory: org-b's FHIR server is B.
    const sysA = A.api.systemRepository();
    await sysA.update<Endpoint>({
      resourceType: 'Endpoint',
      id: 'ep-b',
      status: 'active',
      connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'hl7-fhir-rest' },
      payloadType: [{ coding: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Bundle' }] }],
      address: baseB,
    });
    await sysA.update<Organization>({ resourceType: 'Organization', id: 'org-b', name: 'org-b', endpoint: [{ reference: 'Endpoint/ep-b' }] });

    aa = fhir(A, await A.client('a'));
    patient = await aa.create<Patient>({ resourceType: 'Patient', gender: 'other', name: [{ family: 'Rangi', given: ['Aroha'] }] });
    const subject = ref(patient);
    team = await aa.create<CareTeam>({
      resourceType: 'CareTeam',
      status: 'active',
      subject,
      participant: [
        { role: role('person'), member: subject },
        { role: role('care-coordinator'), member: { reference: 'Organization/org-a' } },
        { role: role('professional'), member: { reference: 'Organization/org-b' } },
        { role: role('professional'), member: { reference: 'Organization/org-c' } },
      ],
    });
    goal = await aa.create<Goal>({ resourceType: 'Goal', lifecycleStatus: 'active', category: [{ coding: [{ system: SYSTEM.chime, code: 'connectedness' }] }], description: { text: 'Back to the Thursday peer group' }, subject, expressedBy: subject });
    plan = await aa.create<CarePlan>({
      resourceType: 'CarePlan',
      status: 'active',
      intent: 'plan',
      category: [{ coding: [{ system: SYSTEM.category, code: 'recovery' }] }],
      title: 'Recovery plan',
      subject,
      period: { start: '2025-01-06' },
      author: { reference: 'Organization/org-a' },
      careTeam: [ref(team)],
      goal: [ref(goal)],
    });

    const credentials = { [baseB]: { clientId: 'org-a-sender', privateJwk: priv as EndpointCredentials['privateJwk'], scope: 'system/*.cruds' } };
    const deadPort = await freePort();
    startOurWorker = () => startWorker({ connectionString: A.db.url!, taskList: taskList(credentials, deadPort), pollInterval: 100, concurrency: 4 });
    worker = await startOurWorker();
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    if (serverB?.listening) await stopB();
    await A?.close();
    await B?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('delivers the document to the recipient\'s server once; sending it again stores nothing new', async () => {
    const res = await send('Organization/org-b');
    expect(res.status).toBe(200);
    const sending = res.body as Communication;
    expect(sending.resourceType).toBe('Communication');
    expect(sending.status).toBe('in-progress');
    expect(sending.recipient?.[0].reference).toBe('Organization/org-b');
    expect(sending.sender?.reference).toBe('Organization/org-a');
    const identifier = sending.identifier![0];

    const done = await until(async () => {
      const r = await record(sending.id!);
      return r.status === 'completed' ? r : undefined;
    });
    expect(done.sent).toBeDefined();
    const [doc, ...more] = await documentsOnB(identifier);
    expect(more).toHaveLength(0);
    expect(doc.type).toBe('document');
    expect(doc.identifier).toEqual(identifier);
    const composition = doc.entry![0].resource as Composition;
    expect(composition.resourceType).toBe('Composition');
    expect(composition.subject?.reference).toBe(`Patient/${patient.id}`);
    expect(composition.section?.map((s) => s.code?.coding?.[0].code)).toEqual(['goals', 'strengths', 'stage', 'crisis-preferences', 'care-team', 'measures']);
    expect(doc.entry!.map((e) => e.resource!.resourceType).sort()).toEqual(['CarePlan', 'CareTeam', 'Composition', 'Goal', 'Patient']);
    expect(doc.entry!.find((e) => e.resource!.resourceType === 'Goal')!.fullUrl).toBe(`${baseA}/Goal/${goal.id}`);

    // The same request again: the same record, a new job, and B still holds one copy.
    const again = await send('Organization/org-b');
    expect(again.status).toBe(200);
    expect((again.body as Communication).id).toBe(sending.id);
    await until(async () => {
      const r = await A.db.db.query<{ n: string }>('SELECT count(*)::text AS n FROM graphile_worker.jobs WHERE task_identifier = $1', [SEND_SUMMARY_JOB]);
      return r.rows[0].n === '0' ? true : undefined;
    });
    expect(await documentsOnB(identifier)).toHaveLength(1);
    expect((await record(sending.id!)).status).toBe('completed');
  }, 60_000);

  it('refuses a recipient outside the care team (422) and one the person\'s consent does not cover (403)', async () => {
    const outside = expectOutcome(await send('Organization/org-d'), 422);
    expect(outside.issue[0].expression).toEqual(['Parameters.parameter[0].valueReference']);
    expectOutcome(await aa.post(`CarePlan/${plan.id}/$send-summary`, { resourceType: 'Parameters', parameter: [{ name: 'recipient', valueReference: { reference: 'Patient/x' } }] }), 400);

    const consent = await aa.create<Consent>({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ text: 'Privacy consent' }],
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      patient: ref(patient),
      provision: { type: 'permit', actor: [{ role: { text: 'care team' }, reference: { reference: 'Organization/org-a' } }, { role: { text: 'care team' }, reference: { reference: 'Organization/org-b' } }] },
    });
    try {
      // org-c is in the team but the consent names only org-a and org-b.
      expectOutcome(await send('Organization/org-c'), 403);
      // Consent withdrawn: nobody may receive the plan any more.
      const withdrawn = await aa.put(`Consent/${consent.id}`, { ...consent, status: 'inactive' });
      expect(withdrawn.status).toBe(200);
      expectOutcome(await send('Organization/org-b'), 403);
    } finally {
      expect((await aa.del(`Consent/${consent.id}`)).status).toBe(204);
    }
    const jobs = await A.db.db.query<{ n: string }>("SELECT count(*)::text AS n FROM graphile_worker.jobs WHERE key LIKE $1", [`${SEND_SUMMARY_JOB}:${plan.id}:%:Organization/org-d:%`]);
    expect(jobs.rows[0].n).toBe('0');
  }, 60_000);

  it('delivers once the receiver is back after being down, without duplicates', async () => {
    // A new plan version makes a new document.
    const current = (await aa.get(`CarePlan/${plan.id}`)).body as CarePlan;
    const updated = await aa.put(`CarePlan/${plan.id}`, { ...current, title: 'Recovery plan (reviewed)' }, { 'If-Match': `W/"${current.meta!.versionId}"` });
    expect(updated.status).toBe(200);
    plan = updated.body as CarePlan;

    await stopB();
    const sending = (await send('Organization/org-b')).body as Communication;
    const key = `${SEND_SUMMARY_JOB}:${plan.id}:${plan.meta!.versionId}:Organization/org-b:Organization/org-a`;
    await until(async () => {
      const r = await A.db.db.query<{ attempts: number; last_error: string | null }>('SELECT attempts, last_error FROM graphile_worker.jobs WHERE key = $1', [key]);
      return r.rows[0] && r.rows[0].attempts >= 1 && r.rows[0].last_error ? true : undefined;
    });
    expect((await record(sending.id!)).status).toBe('in-progress');
    await listenB();
    await until(async () => ((await record(sending.id!)).status === 'completed' ? true : undefined), 30_000);
    const docs = await documentsOnB(sending.identifier![0]);
    expect(docs).toHaveLength(1);
    expect((docs[0].entry![1].resource as CarePlan).title).toBe('Recovery plan (reviewed)');
  }, 60_000);

  it('does not send when the consent stops covering the recipient between the request and the send', async () => {
    const current = (await aa.get(`CarePlan/${plan.id}`)).body as CarePlan;
    plan = (await aa.put(`CarePlan/${plan.id}`, { ...current, title: 'Recovery plan (v3)' }, { 'If-Match': `W/"${current.meta!.versionId}"` })).body as CarePlan;
    await worker.stop();
    let consent: Consent | undefined;
    try {
      const res = await send('Organization/org-b');
      expect(res.status).toBe(200);
      const sending = res.body as Communication;
      consent = await aa.create<Consent>({
        resourceType: 'Consent',
        status: 'active',
        scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
        category: [{ text: 'Privacy consent' }],
        policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
        patient: ref(patient),
        provision: { type: 'permit', actor: [{ role: { text: 'care team' }, reference: { reference: 'Organization/org-a' } }] },
      });
      worker = await startOurWorker();
      const refused = await until(async () => {
        const r = await record(sending.id!);
        return r.status === 'not-done' ? r : undefined;
      });
      expect(refused.statusReason?.text).toBe("the person's consent no longer covers the recipient");
      expect(await documentsOnB(sending.identifier![0])).toHaveLength(0);
      const audits = await A.api.systemRepository().search<AuditEvent>('AuditEvent', { entity: `Communication/${sending.id}`, outcome: '4' });
      expect(audits).toHaveLength(1);
    } finally {
      if (consent) expect((await aa.del(`Consent/${consent.id}`)).status).toBe(204);
    }
  }, 60_000);

  it('lets another care-team organisation send; a recipient without a FHIR endpoint makes the sending not-done at once', async () => {
    const b = fhir(A, await A.client('b'));
    const res = await send('Organization/org-a', b);
    expect(res.status).toBe(200);
    const sending = res.body as Communication;
    expect(sending.sender?.reference).toBe('Organization/org-b');
    const done = await until(async () => {
      const r = (await b.get(`Communication/${sending.id}`)).body as Communication;
      return r.status === 'not-done' ? r : undefined;
    });
    expect(done.statusReason?.text).toBe('the recipient has no active FHIR endpoint in the directory');
    // The record is the sender's: org-a (the plan's owner) does not see org-b's Communication.
    expect((await aa.get(`Communication/${sending.id}`)).status).toBe(404);
  }, 60_000);

  it('after the last attempt the sending is not-done with the reason, and an AuditEvent records it', async () => {
    const sending = (await send('Organization/org-c')).body as Communication;
    const failed = await until(async () => {
      const r = await record(sending.id!);
      return r.status === 'not-done' ? r : undefined;
    }, 40_000);
    expect(failed.statusReason?.text).toMatch(/^delivery failed after 3 attempts: /);
    const audits = await A.api.systemRepository().search<AuditEvent>('AuditEvent', { entity: `Communication/${sending.id}`, outcome: '8' });
    expect(audits.some((a) => a.outcome === '8' && /after 3 attempts/.test(a.outcomeDesc ?? ''))).toBe(true);
  }, 60_000);
});
