// One AuditEvent per request's writes (decision 0007, IHE BALP: one event per RESTful interaction,
// several entities): a scored intake (the response, its 21 Observations and the protocol's Task) is
// one event listing every resource written; a transaction Bundle is one event per patient; a batch
// Bundle's entries of one patient meet in one event. Every written resource is still found by
// `AuditEvent?entity=` and by `patient`; nothing of a request that failed is in the trail.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import type { AuditEvent, Bundle, Observation, Patient, QuestionnaireResponse, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi, TestClient } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { fhir } from './helpers.ts';
import { fetchQuestionnaires, response, weights } from './screening/screening.ts';

let t: TestApi;
let auditor: Fhir;
let auditorClient: TestClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tic-audit-request-'));
  const file = join(dir, 'screening.json');
  writeFileSync(file, JSON.stringify({ defaults: { protocols: [{ questionnaire: '*', on: ['positive'], task: { dueWithinHours: 72 } }] } }));
  t = await createTestApi({ env: { SCREENING_CONFIG_FILE: file } });
  auditorClient = await t.client('auditor');
  auditor = fhir(t, auditorClient);
}, 120_000);
let dir: string | undefined;
afterAll(async () => {
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const HISTORY = /\/_history\/\d+$/;
const unversioned = (ref: string | undefined) => ref?.replace(HISTORY, '');
const dataEntities = (e: AuditEvent) => (e.entity ?? []).filter((x) => x.role?.code === '4');
const patientsOf = (e: AuditEvent) => (e.entity ?? []).filter((x) => x.role?.code === '1').map((x) => x.what?.reference);

/** The AuditEvents whose entities name this request id (the auditor's search drains the log first). */
async function eventsOfRequest(requestId: string): Promise<AuditEvent[]> {
  const res = await auditor.get('AuditEvent?_count=1000&_sort=-date');
  expect(res.status).toBe(200);
  return ((res.body as Bundle).entry ?? [])
    .map((e) => e.resource as AuditEvent)
    .filter((e) => JSON.stringify(e.entity ?? []).includes(`"${requestId}"`));
}

async function search(query: string): Promise<AuditEvent[]> {
  const res = await auditor.get(`AuditEvent?${query}`);
  expect(res.status).toBe(200);
  return ((res.body as Bundle).entry ?? []).map((e) => e.resource as AuditEvent);
}

async function post(path: string, body: unknown, requestId: string): Promise<request.Response> {
  return request(t.api.app).post(`/fhir/${path}`).set('Authorization', auditorClient.auth).set('X-Request-Id', requestId).set('Content-Type', 'application/fhir+json').send(JSON.stringify(body));
}

it('a scored intake is one AuditEvent listing the response, every Observation and the Task, each found by entity and patient', async () => {
  // Background building paused: the audit log is looked at before the auditor's search builds it.
  await t.api.pauseAudit();
  const patient = (await auditor.post('Patient', { resourceType: 'Patient' })).body as Patient;
  const qs = await fetchQuestionnaires(auditor);
  const rid = `intake-${patient.id}`;
  // Every item at its highest weight: positive, so the protocol's Task is written too.
  const res = await post('QuestionnaireResponse', response(qs['pcl-5'], weights(qs['pcl-5'], 4), { subject: { reference: `Patient/${patient.id}` } }), rid);
  expect(res.status).toBe(201);
  const qr = res.body as QuestionnaireResponse;
  const repo = t.api.systemRepository();
  const observations = await repo.search<Observation>('Observation', { 'derived-from': `QuestionnaireResponse/${qr.id}`, _count: '100' });
  expect(observations).toHaveLength(21);
  const tasks = await repo.search<Task>('Task', { patient: `Patient/${patient.id}` });
  expect(tasks).toHaveLength(1);

  // One audit record for the whole request, weighed by the 23 resources it lists.
  const queued = await t.db.db.query<{ records: number }>('SELECT records FROM audit_queue WHERE content LIKE $1', [`%"${rid}"%`]);
  expect(queued.rows.map((r) => Number(r.records))).toEqual([23]);

  const events = await eventsOfRequest(rid);
  expect(events).toHaveLength(1);
  const [event] = events;
  expect(event.subtype?.[0]?.code).toBe('create');
  expect(event.action).toBe('C');
  expect(event.outcome).toBe('0');
  expect(event.agent[0].who?.identifier?.value).toBe('client-auditor');
  expect(event.agent.some((a) => a.who?.reference === 'Organization/org-auditor')).toBe(true);
  expect(patientsOf(event)).toEqual([`Patient/${patient.id}`]);
  const written = [`QuestionnaireResponse/${qr.id}/_history/1`, ...observations.map((o) => `Observation/${o.id}/_history/1`), `Task/${tasks[0].id}/_history/1`];
  expect(dataEntities(event).map((x) => x.what?.reference).sort()).toEqual(written.sort());
  for (const x of dataEntities(event)) {
    expect(x.type?.code).toBe('2');
    expect(x.detail).toBeUndefined();
  }

  // The auditor's searches find the one event by any of its resources (versioned or not) and by patient.
  for (const o of observations) {
    const found = await search(`entity=Observation/${o.id}`);
    expect(found.map((e) => e.id)).toEqual([event.id]);
  }
  expect((await search(`entity=${encodeURIComponent(`Task/${tasks[0].id}/_history/1`)}`)).map((e) => e.id)).toEqual([event.id]);
  expect((await search(`entity=QuestionnaireResponse/${qr.id}&subtype=create`)).map((e) => e.id)).toEqual([event.id]);
  expect((await search(`patient=Patient/${patient.id}&subtype=create`)).map((e) => e.id)).toContain(event.id);
  expect((await search(`patient=Patient/${patient.id}&entity-role=4&action=C`)).map((e) => e.id)).toContain(event.id);
});

it('a transaction Bundle about two patients is one AuditEvent per patient, plus one for what is about no patient', async () => {
  const rid = `bundle-${Date.now()}`;
  const obs = (subject: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'weight' }, subject: { reference: subject } });
  const res = await post(
    '',
    {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: 'urn:uuid:0b9c8b4e-1b1a-4a5e-9c55-000000000001', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        { fullUrl: 'urn:uuid:0b9c8b4e-1b1a-4a5e-9c55-000000000002', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
        { resource: obs('urn:uuid:0b9c8b4e-1b1a-4a5e-9c55-000000000001'), request: { method: 'POST', url: 'Observation' } },
        { resource: obs('urn:uuid:0b9c8b4e-1b1a-4a5e-9c55-000000000001'), request: { method: 'POST', url: 'Observation' } },
        { resource: obs('urn:uuid:0b9c8b4e-1b1a-4a5e-9c55-000000000002'), request: { method: 'POST', url: 'Observation' } },
        { resource: { resourceType: 'Organization', name: 'Clinic' }, request: { method: 'POST', url: 'Organization' } },
      ],
    },
    rid,
  );
  expect(res.status).toBe(200);
  const locations = ((res.body as Bundle).entry ?? []).map((e) => unversioned(e.response?.location?.split('/fhir/')[1]));
  const [p1, p2, o1, o2, o3, org] = locations;

  const events = await eventsOfRequest(rid);
  expect(events).toHaveLength(3);
  const of = (patient: string | undefined) => events.find((e) => (patient ? patientsOf(e).includes(patient) : patientsOf(e).length === 0))!;
  // Each event names one patient (or none) and exactly the resources about it (a Patient written
  // is its own patient, and its version a data entity).
  expect(events.map((e) => patientsOf(e).length).sort()).toEqual([0, 1, 1]);
  expect(dataEntities(of(p1)).map((x) => unversioned(x.what?.reference)).sort()).toEqual([p1, o1, o2].sort());
  expect(dataEntities(of(p2)).map((x) => unversioned(x.what?.reference)).sort()).toEqual([p2, o3].sort());
  expect(dataEntities(of(undefined)).map((x) => unversioned(x.what?.reference))).toEqual([org]);
  for (const e of events) expect(e.subtype?.[0]?.code).toBe('create');
  // By patient: the other patient's event is not among the first's.
  const byP1 = (await search(`patient=${p1}&subtype=create`)).map((e) => e.id);
  expect(byP1).toContain(of(p1).id);
  expect(byP1).not.toContain(of(p2).id);
  expect((await search(`entity=${o3}`)).map((e) => e.id)).toEqual([of(p2).id]);
});

it("a batch Bundle's entries of one patient meet in one AuditEvent (each entry its own transaction)", async () => {
  const patient = (await auditor.post('Patient', { resourceType: 'Patient' })).body as Patient;
  const rid = `batch-${patient.id}`;
  const obs = { resourceType: 'Observation', status: 'final', code: { text: 'pulse' }, subject: { reference: `Patient/${patient.id}` } };
  const res = await post('', { resourceType: 'Bundle', type: 'batch', entry: [obs, obs, obs].map((resource) => ({ resource, request: { method: 'POST', url: 'Observation' } })) }, rid);
  expect(res.status).toBe(200);
  const created = ((res.body as Bundle).entry ?? []).map((e) => unversioned(e.response?.location?.split('/fhir/')[1]));
  expect(created).toHaveLength(3);
  const events = (await eventsOfRequest(rid)).filter((e) => e.subtype?.[0]?.code === 'create');
  expect(events).toHaveLength(1);
  expect(dataEntities(events[0]).map((x) => unversioned(x.what?.reference)).sort()).toEqual([...created].sort());
  // Separate commits: each entity keeps its own time.
  for (const x of dataEntities(events[0])) expect(x.detail?.find((d) => d.type === 'recorded')?.valueString).toBeTruthy();
});

it('a transaction Bundle that fails leaves nothing of its writes in the audit trail', async () => {
  const id = crypto.randomUUID();
  const rid = `failed-${id}`;
  const res = await post(
    '',
    {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
        { resource: { resourceType: 'Observation', status: 'not-a-status', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
      ],
    },
    rid,
  );
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect((await auditor.get(`Patient/${id}`)).status).toBe(404);
  expect(await search(`entity=Patient/${id}`)).toHaveLength(0);
  expect((await eventsOfRequest(rid)).filter((e) => e.action !== 'R' && e.action !== 'E')).toHaveLength(0);
});
