// Issue 6 over HTTP: directory import ($import-hsds), $match, and the referral workflow with
// consent-governed disclosure, on the composed API. Search, _include, history and batch obey it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bundle, BundleEntry, Consent, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { expectOutcome, fhir } from '../helpers.ts';
// tests/package.json does not list @tic/referral yet; import it by path until it does.
import { MATCH_REASON_EXTENSION, referralModule, SECTOR_SYSTEM } from '../../../packages/referral/src/index.ts';

let t: TestApi;
let a: Fhir; // the referrer (health)
let b: Fhir; // the receiver (housing)
let c: Fhir; // another housing organisation
let d: Fhir; // an organisation of another sector (justice)
const A = 'Organization/org-a';
const B = 'Organization/org-b';
const C = 'Organization/org-c';

beforeAll(async () => {
  t = await createTestApi({ modules: [referralModule()] });
  const sys = t.api.systemRepository();
  for (const [ref, sector] of [[A, 'health'], [B, 'housing'], [C, 'housing'], ['Organization/org-d', 'justice']]) {
    await sys.update<Organization>({ resourceType: 'Organization', id: ref.split('/')[1], name: ref, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
  }
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
  c = fhir(t, await t.client('c'));
  d = fhir(t, await t.client('d'));
}, 120_000);
afterAll(async () => t?.close());

const hsds = readFileSync(join(__dirname, '../../../packages/referral/src/testdata/hsds-services.json'), 'utf8');
const reasons = (e: BundleEntry) => Object.fromEntries((e.search?.extension ?? []).filter((x) => x.url === MATCH_REASON_EXTENSION).map((x) => [x.extension!.find((y) => y.url === 'factor')!.valueCode, x.extension!.find((y) => y.url === 'points')!.valueDecimal]));

describe('directory', () => {
  it('imports an HSDS export as shared reference data, idempotently', async () => {
    const body = { resourceType: 'Parameters', parameter: [{ name: 'hsds', valueString: hsds }] };
    const first = await a.post('$import-hsds', body);
    expect(first.status).toBe(200);
    expect(first.body.entry.map((e: BundleEntry) => e.response!.status)).toEqual(['201 Created', '201 Created', '201 Created', '201 Created']);
    const again = await a.post('$import-hsds', body);
    expect(again.body.entry.map((e: BundleEntry) => e.response!.status)).toEqual(['200 OK', '200 OK', '200 OK', '200 OK']);
    // Written by the server: every organisation reads it, no client may change it.
    const svc = await d.get('HealthcareService/hsds-4b1a3f5e-8c1d-4f57-9c5e-2d7a3b6e9f01');
    expect(svc.status).toBe(200);
    expectOutcome(await d.put(`HealthcareService/${svc.body.id}`, { ...svc.body, name: 'hijacked' }), 403);
  });

  it('refuses $import-hsds to a client without write scopes and with bad input', async () => {
    const narrow = fhir(t, await t.client('narrow'));
    expect((await narrow.post('$import-hsds', { resourceType: 'Parameters', parameter: [{ name: 'hsds', valueString: hsds }] })).status).toBe(403);
    expectOutcome(await a.post('$import-hsds', { resourceType: 'Parameters', parameter: [{ name: 'hsds', valueString: '{not json' }] }), 400);
  });

  it('$match ranks services with reasons (GET with parameters)', async () => {
    const res = await b.get('HealthcareService/$match?sector=housing&language=ur&latitude=53.4794&longitude=-2.2453&urgency=urgent');
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.type).toBe('searchset');
    // The paused helpline is closed: left out.
    expect(bundle.entry!.map((e) => e.resource!.id)).toEqual(['hsds-4b1a3f5e-8c1d-4f57-9c5e-2d7a3b6e9f01']);
    const r = reasons(bundle.entry![0]);
    expect(r).toMatchObject({ language: 30, sector: 10, 'trauma-informed': 0 });
    // The export's capacity date (2025-05-30) is more than 30 days old by now: counted half.
    expect(r.capacity).toBe(10);
    expect(bundle.entry![0].search!.score).toBe(0.6991);
    expectOutcome(await b.get('HealthcareService/$match?urgency=whenever'), 400);
  });

  it('$match reads the need from a ServiceRequest and its Patient (POST Parameters)', async () => {
    const patient = await a.create<Patient>({ resourceType: 'Patient', communication: [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: 'ur' }] }, preferred: true }], address: [{ use: 'home', postalCode: 'M1 1AA' }] });
    const sr = await a.create<ServiceRequest>({ resourceType: 'ServiceRequest', status: 'active', intent: 'order', priority: 'routine', subject: { reference: `Patient/${patient.id}` }, category: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }] });
    const res = await a.post('HealthcareService/$match', { resourceType: 'Parameters', parameter: [{ name: 'serviceRequest', valueReference: { reference: `ServiceRequest/${sr.id}` } }] });
    expect(res.status).toBe(200);
    const r = reasons(res.body.entry[0]);
    expect(r).toMatchObject({ language: 30, sector: 10, distance: 20 });
    // Another organisation cannot use a ServiceRequest it may not see.
    expect((await d.post('HealthcareService/$match', { resourceType: 'Parameters', parameter: [{ name: 'serviceRequest', valueReference: { reference: `ServiceRequest/${sr.id}` } }] })).status).toBe(404);
  });
});

const consent = (patient: string, actors: string[], extra: Partial<NonNullable<Consent['provision']>> = {}): Consent => ({
  resourceType: 'Consent',
  status: 'active',
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
  policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
  patient: { reference: patient },
  provision: { type: 'permit', actor: actors.map((x) => ({ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: x } })), ...extra },
});

async function referralBundle(owner: string | undefined): Promise<{ patient: string; obs: string; sr: string; task: Task }> {
  const u = (n: number) => `urn:uuid:6f1c2d3e-4b5a-4c6d-8e7f-${String(n).padStart(12, '0')}`;
  const res = await a.post('', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: u(1), resource: { resourceType: 'Patient', name: [{ family: 'Okafor', given: ['Ngozi'] }], birthDate: '1975-09-30' }, request: { method: 'POST', url: 'Patient' } },
      { fullUrl: u(2), resource: { resourceType: 'Observation', status: 'final', code: { text: 'PC-PTSD-5 total' }, subject: { reference: u(1) }, valueInteger: 4 }, request: { method: 'POST', url: 'Observation' } },
      {
        fullUrl: u(3),
        resource: { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: u(1) }, requester: { reference: A }, reasonReference: [{ reference: u(2) }], note: [{ text: 'Do not contact the person directly; go through the key worker.' }] },
        request: { method: 'POST', url: 'ServiceRequest' },
      },
      {
        fullUrl: u(4),
        resource: {
          resourceType: 'Task',
          status: 'requested',
          intent: 'order',
          code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
          focus: { reference: u(3) },
          for: { reference: u(1) },
          requester: { reference: A },
          ...(owner ? { owner: { reference: owner } } : { performerType: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }] }),
        },
        request: { method: 'POST', url: 'Task' },
      },
    ],
  });
  expect(res.status).toBe(200);
  const loc = (i: number) => /([A-Z][A-Za-z]+\/[^/]+)\/_history\//.exec(res.body.entry[i].response.location as string)![1];
  const task = (await a.get(loc(3))).body as Task;
  return { patient: loc(0), obs: loc(1), sr: loc(2), task };
}

describe('referral workflow', () => {
  it('discloses nothing before consent; with it search, _include, history and batch show the referral only; revocation refuses at once', async () => {
    const { patient, obs, sr, task } = await referralBundle(B);
    expect(task.businessStatus?.text).toBe('awaiting consent');
    expectOutcome(await b.get(`Task/${task.id}`), 404);
    expect((await b.get(`Task?owner=${B}&_id=${task.id}`)).body.entry ?? []).toEqual([]);

    const granted = await a.create(consent(patient, [B]));
    const read = await b.get(`Task/${task.id}`);
    expect(read.status).toBe(200);
    expect(read.body.businessStatus.text).toBe('consented');
    const worklist = await b.get(`Task?owner=${B}&status=requested&_id=${task.id}&_include=Task:focus&_include=Task:patient`);
    expect((worklist.body.entry as BundleEntry[]).map((e) => `${e.resource!.resourceType}/${e.resource!.id}`).sort()).toEqual([patient, sr, `Task/${task.id}`].sort());
    expect(((await b.get(`Task/${task.id}/_history`)).body.entry ?? []).length).toBeGreaterThanOrEqual(2);
    const batch = await b.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: sr } }, { request: { method: 'GET', url: obs } }] });
    expect(batch.body.entry.map((e: BundleEntry) => e.response!.status.slice(0, 3))).toEqual(['200', '404']);
    expectOutcome(await c.get(`Task/${task.id}`), 404);

    // The receiver accepts; the requester may not set owner statuses; disallowed transitions are 422.
    const current = (await b.get(`Task/${task.id}`)).body as Task;
    expectOutcome(await a.put(`Task/${task.id}`, { ...current, status: 'accepted' }), 403);
    expectOutcome(await b.put(`Task/${task.id}`, { ...current, status: 'completed' }), 422);
    expectOutcome(await b.put(`Task/${task.id}`, { ...current, status: 'rejected' }), 422);
    const accepted = await b.put(`Task/${task.id}`, { ...current, status: 'accepted' });
    expect(accepted.status).toBe(200);
    expect((await a.get(`Task/${task.id}`)).body.status).toBe('accepted');

    // Revocation.
    const revoked = await a.put(`Consent/${granted.id}`, { ...granted, status: 'inactive' });
    expect(revoked.status).toBe(200);
    for (const ref of [`Task/${task.id}`, sr, patient]) expectOutcome(await b.get(ref), 404);
    expect((await b.get(`Task?owner=${B}&_id=${task.id}`)).body.entry ?? []).toEqual([]);
    expect((await b.get(`Task/${task.id}/_history`)).body.entry ?? []).toEqual([]);
    expect((await a.get(`Task/${task.id}`)).body.businessStatus.text).toBe('awaiting consent');
  });

  it('honours nested Consent provisions: a nested deny for screening results keeps them back; a deny Consent beside a permit one withholds', async () => {
    const OBSERVATION = { system: 'http://hl7.org/fhir/resource-types', code: 'Observation' };
    const { patient, obs, sr, task } = await referralBundle(B);
    // Permits B the referral and screening results, except (nested) Observations: B sees the Task and ServiceRequest, not the screen.
    const granted = await a.create<Consent>(consent(patient, [B], { class: [OBSERVATION], provision: [{ type: 'deny', class: [OBSERVATION] }] }));
    expect((await b.get(`Task/${task.id}`)).body.businessStatus.text).toBe('consented');
    expect((await b.get(sr)).status).toBe(200);
    expect((await b.get(patient)).status).toBe(200);
    expectOutcome(await b.get(obs), 404);
    const found = await b.get(`Task?_id=${task.id}&_include=Task:focus`);
    expect((found.body.entry as BundleEntry[]).map((e) => e.resource!.resourceType).sort()).toEqual(['ServiceRequest', 'Task']);
    // Without the nested deny the screen travels.
    const widened = await a.put(`Consent/${granted.id}`, { ...granted, provision: { ...granted.provision, provision: undefined } });
    expect(widened.status).toBe(200);
    expect((await b.get(obs)).status).toBe(200);
    // A second, denying Consent for B wins over the permitting one: nothing is disclosed.
    const denied = await a.create<Consent>(consent(patient, [B], { type: 'deny' }));
    for (const ref of [`Task/${task.id}`, sr, patient, obs]) expectOutcome(await b.get(ref), 404);
    expect((await a.get(`Task/${task.id}`)).body.businessStatus.text).toBe('awaiting consent');
    // An inactive Consent is ignored: lifting the deny restores the disclosure.
    expect((await a.put(`Consent/${denied.id}`, { ...denied, status: 'inactive' })).status).toBe(200);
    expect((await b.get(obs)).status).toBe(200);
  });

  it('a root deny with a nested permit for the receiver discloses to it alone; a nested deny for a period running now withholds', async () => {
    const { patient, sr, task } = await referralBundle(B);
    const only = await a.create<Consent>({ ...consent(patient, []), provision: { type: 'deny', provision: [{ type: 'permit', actor: [{ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: B } }] }] } });
    expect((await b.get(`Task/${task.id}`)).status).toBe(200);
    expect((await b.get(sr)).status).toBe(200);
    expectOutcome(await c.get(`Task/${task.id}`), 404);
    const now = Date.now();
    const paused = { start: new Date(now - 86_400_000).toISOString(), end: new Date(now + 86_400_000).toISOString() };
    expect((await a.put(`Consent/${only.id}`, { ...only, provision: { ...only.provision, provision: [{ ...only.provision!.provision![0], provision: [{ type: 'deny', period: paused }] }] } })).status).toBe(200);
    expectOutcome(await b.get(`Task/${task.id}`), 404);
    expect((await a.get(`Task/${task.id}`)).body.businessStatus.text).toBe('awaiting consent');
  });

  it('a Bundle bringing its Task before the Consent and ServiceRequest ends consented, with both shared (resynced within the transaction)', async () => {
    const u = (n: number) => `urn:uuid:7a2b3c4d-5e6f-4a1b-9c2d-${String(n).padStart(12, '0')}`;
    const task: Task = { resourceType: 'Task', status: 'requested', intent: 'order', code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] }, focus: { reference: u(2) }, for: { reference: u(1) }, requester: { reference: A }, owner: { reference: B } };
    const res = await a.post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: u(4), resource: task, request: { method: 'POST', url: 'Task' } },
        { fullUrl: u(3), resource: { ...consent(u(1), [B]) }, request: { method: 'POST', url: 'Consent' } },
        { fullUrl: u(2), resource: { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: u(1) }, requester: { reference: A } }, request: { method: 'POST', url: 'ServiceRequest' } },
        { fullUrl: u(1), resource: { resourceType: 'Patient', name: [{ family: 'Walker' }] }, request: { method: 'POST', url: 'Patient' } },
      ],
    });
    expect(res.status).toBe(200);
    const loc = (i: number) => /([A-Z][A-Za-z]+\/[^/]+)\/_history\//.exec(res.body.entry[i].response.location as string)![1];
    const seen = await b.get(loc(0));
    expect(seen.status).toBe(200);
    expect((seen.body as Task).businessStatus?.text).toBe('consented');
    for (const ref of [loc(2), loc(3)]) expect((await b.get(ref)).status).toBe(200);
    expectOutcome(await c.get(loc(0)), 404);
  });

  it('of two organisations claiming an open Task at once, one wins', async () => {
    const { patient, task } = await referralBundle(undefined);
    await a.create(consent(patient, [B, C]));
    const offered = (await b.get(`Task/${task.id}`)).body as Task;
    expect(offered.id).toBe(task.id);
    expectOutcome(await d.get(`Task/${task.id}`), 404);
    const etag = `W/"${offered.meta!.versionId}"`;
    const [rb, rc] = await Promise.all([
      b.put(`Task/${task.id}`, { ...offered, owner: { reference: B }, status: 'accepted' }, { 'If-Match': etag }),
      c.put(`Task/${task.id}`, { ...offered, owner: { reference: C }, status: 'accepted' }, { 'If-Match': etag }),
    ]);
    expect([rb.status, rc.status].sort()).toEqual([200, 412]);
    const winner = rb.status === 200 ? b : c;
    const loser = rb.status === 200 ? c : b;
    expect((await winner.get(patient)).status).toBe(200);
    expectOutcome(await loser.get(`Task/${task.id}`), 404);
  });
});
