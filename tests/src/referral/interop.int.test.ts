// Issue 6, interoperability beyond ourselves: a referral delivered by the real delivery job (the
// worker's referralJobs on graphile-worker) to a FHIR server this project did not write — Medplum's
// FhirRouter over its MemoryRepository, wrapped in a plain node:http server on loopback. The
// transaction Bundle must land there as Medplum understands it (conditional creates resolved,
// urn:uuid references rewritten), redelivery must create nothing new, and the status the receiver
// sets there must come back by polling. PostgreSQL only (graphile-worker).
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { getStatus } from '@medplum/core';
import { Operator } from '@medplum/core';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import type { HttpMethod } from '@medplum/fhir-router';
import type { Bundle, Consent, Organization, Patient, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
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



interface Received {
  method: string;
  url: string;
  authorization?: string;
  bundleType?: string;
}

/** A FHIR server assembled from Medplum's router and in-memory repository, mounted at /fhir. */
function medplumServer(repo: MemoryRepository, received: Received[]): Server {
  const router = new FhirRouter();
  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? JSON.parse(text) : undefined;
  };
  return createHttpServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify(body));
    };
    readBody(req).then(
      async (body) => {
        const url = (req.url ?? '/').replace(/^\/fhir/, '') || '/';
        received.push({ method: req.method ?? 'GET', url, authorization: req.headers.authorization, bundleType: (body as Bundle | undefined)?.type });
        const [outcome, resource] = await router.handleRequest({ method: req.method as HttpMethod, url, pathname: '', body, params: {}, query: {}, headers: req.headers }, repo);
        send(getStatus(outcome), resource ?? outcome);
      },
      () => send(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', diagnostics: 'Body is not JSON' }] }),
    );
  });
}

pg('referral delivery to an independent FHIR server (Medplum FhirRouter + MemoryRepository)', () => {
  let A: TestApi;
  let aa: Fhir;
  let worker: Runner;
  let options: DeliveryOptions;
  let server: Server;
  const repo = new MemoryRepository();
  const received: Received[] = [];
  const baseA = 'http://127.0.0.1:18081/fhir';

  beforeAll(async () => {
    const port = await freePort();
    server = medplumServer(repo, received);
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    // The receiving organisation as the Medplum server knows it.
    await repo.createResource<Organization>({ resourceType: 'Organization', id: 'housing-1', name: 'Northgate Housing Trust' });

    A = await createTestApi({ kind: 'postgres', modules: [referralModule({ delivery: { maxAttempts: 3 } })], publicUrl: 'http://127.0.0.1:18081' });
    const sys = A.api.systemRepository();
    for (const [id, sector] of [['org-a', 'health'], ['org-b', 'housing']]) {
      await sys.update<Organization>({ resourceType: 'Organization', id, name: id, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
    }
    await installJobSchema(A.db.url!);
    aa = fhir(A, await A.client('a'));
    options = {
      sourceBase: baseA,
      pollIntervalMs: 300,
      resolveTarget: staticTargets({
        'Organization/org-b': { baseUrl: `http://127.0.0.1:${port}/fhir`, requester: 'Organization/referrer-at-medplum', owner: 'Organization/housing-1', accessToken: async () => 'token-for-medplum' },
      }),
    };
    worker = await startWorker({ connectionString: A.db.url!, taskList: referralJobs(() => A.api.systemRepository(), options), pollInterval: 100, concurrency: 2 });
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await A?.close();
  });

  async function refer(): Promise<{ task: Task; sr: ServiceRequest; patient: Patient; consent: Consent }> {
    const patient = await aa.create<Patient>({
      resourceType: 'Patient',
      identifier: [{ system: 'https://example.org/nhi', value: 'ZZZ0016' }],
      name: [{ family: 'Okafor', given: ['Ngozi'] }],
      birthDate: '1975-09-30',
      gender: 'female',
      telecom: [{ system: 'phone', value: '000' }],
      address: [{ city: 'Nowhere' }],
    });
    const sr = await aa.create<ServiceRequest>({
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: { reference: `Patient/${patient.id}` },
      requester: { reference: 'Organization/org-a' },
      performer: [{ reference: 'Organization/org-b' }],
      note: [{ text: 'Do not contact the person directly' }],
    });
    const consent = await aa.create<Consent>({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      patient: { reference: `Patient/${patient.id}` },
      provision: { type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: 'Organization/org-b' } }] },
    });
    const task = await aa.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      priority: 'urgent',
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
      requester: { reference: 'Organization/org-a' },
      owner: { reference: 'Organization/org-b' },
    });
    return { task, sr, patient, consent };
  }

  const byIdentifier = async <T extends Resource>(type: T['resourceType'], source: Resource): Promise<T[]> =>
    (await repo.searchResources<T>({ resourceType: type, filters: [{ code: 'identifier', operator: Operator.EQUALS, value: `${REFERRAL_IDENTIFIER_SYSTEM}|${baseA}/${source.resourceType}/${source.id}` }] })) as T[];

  it('lands as a transaction Bundle Medplum resolves: minimal Patient, ServiceRequest, Consent and Task linked together', async () => {
    const { task, sr, patient, consent } = await refer();
    const [remoteTask] = await until(async () => {
      const found = await byIdentifier<Task>('Task', task);
      return found.length ? found : undefined;
    });
    await until(async () => ((await aa.get(`Task/${task.id}`)).body.businessStatus?.text === 'delivered' ? true : undefined));

    // One transaction POST to the base, with the bearer token the target supplied.
    const posts = received.filter((r) => r.method === 'POST');
    expect(posts).toEqual([{ method: 'POST', url: '/', authorization: 'Bearer token-for-medplum', bundleType: 'transaction' }]);

    const [remotePatient] = await byIdentifier<Patient>('Patient', patient);
    const [remoteSr] = await byIdentifier<ServiceRequest>('ServiceRequest', sr);
    const [remoteConsent] = await byIdentifier<Consent>('Consent', consent);
    // Minimal Patient: identifiers, name, birth date, gender; no telecom or address.
    expect(remotePatient.name?.[0].family).toBe('Okafor');
    expect(remotePatient.birthDate).toBe('1975-09-30');
    expect(remotePatient.identifier?.map((i) => i.system)).toEqual(['https://example.org/nhi', REFERRAL_IDENTIFIER_SYSTEM]);
    expect(remotePatient.telecom).toBeUndefined();
    expect(remotePatient.address).toBeUndefined();
    // urn:uuid references were rewritten by Medplum to the ids it assigned.
    expect(remoteTask.for?.reference).toBe(`Patient/${remotePatient.id}`);
    expect(remoteTask.focus?.reference).toBe(`ServiceRequest/${remoteSr.id}`);
    expect(remoteSr.subject?.reference).toBe(`Patient/${remotePatient.id}`);
    expect(remoteSr.supportingInfo?.map((r) => r.reference)).toContain(`Consent/${remoteConsent.id}`);
    expect(remoteConsent.patient?.reference).toBe(`Patient/${remotePatient.id}`);
    expect(remoteConsent.provision?.actor?.[0].reference?.reference).toBe('Organization/housing-1');
    // The parties are named as the receiving server knows them; the safety note travels.
    expect(remoteTask.owner?.reference).toBe('Organization/housing-1');
    expect(remoteTask.requester?.reference).toBe('Organization/referrer-at-medplum');
    expect(remoteTask.status).toBe('requested');
    expect(remoteTask.priority).toBe('urgent');
    expect(remoteTask.businessStatus).toBeUndefined();
    expect(remoteSr.note?.[0].text).toBe('Do not contact the person directly');
    // Medplum's own search sees the Task in the receiver's worklist with its includes.
    const worklist = await repo.search<Task>({ resourceType: 'Task', filters: [{ code: 'owner', operator: Operator.EQUALS, value: 'Organization/housing-1' }], include: [{ resourceType: 'Task', searchParam: 'patient' }, { resourceType: 'Task', searchParam: 'focus' }] });
    const types = (worklist.entry ?? []).map((e) => `${e.resource?.resourceType}/${e.resource?.id}`);
    expect(types).toEqual(expect.arrayContaining([`Task/${remoteTask.id}`, `Patient/${remotePatient.id}`, `ServiceRequest/${remoteSr.id}`]));

    // Redelivery (the job running again, or run by hand) creates nothing new there.
    const before = received.length;
    expect(await deliverReferral(A.api.systemRepository(), task.id!, options, { attempts: 1, maxAttempts: 3 })).toBe('sent');
    expect(await deliverReferral(A.api.systemRepository(), task.id!, options, { attempts: 1, maxAttempts: 3 })).toBe('sent');
    expect(received.slice(before).filter((r) => r.method === 'POST')).toHaveLength(2);
    for (const [type, source] of [['Task', task], ['ServiceRequest', sr], ['Patient', patient], ['Consent', consent]] as const) {
      expect(await byIdentifier(type, source)).toHaveLength(1);
    }
  }, 60_000);

  it('brings back the status the receiver sets on the Medplum server', async () => {
    const { task } = await refer();
    const [remote] = await until(async () => {
      const found = await byIdentifier<Task>('Task', task);
      return found.length ? found : undefined;
    });
    // The receiver skips a step there (requested → in-progress); the local Task follows along the
    // allowed transitions (requested → accepted → in-progress), each step kept in its history.
    await repo.updateResource<Task>({ ...remote, status: 'in-progress' });
    await until(async () => ((await aa.get(`Task/${task.id}`)).body.status === 'in-progress' ? true : undefined));
    await repo.updateResource<Task>({ ...remote, status: 'completed', output: [{ type: { text: 'outcome' }, valueString: 'Tenancy support started' }] });
    const done = await until(async () => {
      const t = (await aa.get(`Task/${task.id}`)).body as Task;
      return t.status === 'completed' ? t : undefined;
    });
    expect(done.output?.[0].valueString).toBe('Tenancy support started');
    // The local Task went through every step, each in its history.
    const history = (await aa.get(`Task/${task.id}/_history`)).body as Bundle;
    const statuses = (history.entry ?? []).map((e) => (e.resource as Task).status).reverse();
    expect([...new Set(statuses)]).toEqual(['requested', 'accepted', 'in-progress', 'completed']);
  }, 60_000);
});
