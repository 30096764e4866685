// Issue 4: scopes (403/401), confidentiality labels (R/V need the `sensitive` flag) and the audit
// trail (every data interaction and every refusal; only auditors read it; nobody writes it).
import request from 'supertest';
import type { AuditEvent, Bundle, Observation, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi, TestClient } from '@tic/api/testing';
import { OPERATOR_ORGANIZATION } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, expectOutcome, fhir, ids } from './helpers.ts';

let t: TestApi;
let a: Fhir;
let narrow: Fhir;
let sensitive: Fhir;
let auditor: Fhir;
let clientA: TestClient;
let auditorClient: TestClient;

const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';

beforeAll(async () => {
  t = await createTestApi();
  clientA = await t.client('a');
  a = fhir(t, clientA);
  narrow = fhir(t, await t.client('narrow'));
  sensitive = fhir(t, await t.client('sensitive'));
  auditorClient = await t.client('auditor');
  auditor = fhir(t, auditorClient);
}, 120_000);
afterAll(async () => t?.close());

/** AuditEvents stored for an organisation, newest last (read from the database as the server). */
async function auditEvents(org: string | null): Promise<AuditEvent[]> {
  // Read AuditEvents are queued durably and stored in batches: store what is queued first.
  await t.api.drainAudit();
  const r = await t.db.db.query<{ content: string }>(
    `select content from resource where resource_type = 'AuditEvent' and ${org ? 'owner_org = $1' : 'owner_org is null'} order by last_updated`,
    org ? [org] : [],
  );
  return r.rows.map((row) => JSON.parse(row.content) as AuditEvent);
}

const subtype = (e: AuditEvent) => e.subtype?.[0]?.code;
const refs = (e: AuditEvent) => (e.entity ?? []).map((x) => x.what?.reference).filter(Boolean);

describe('scopes', () => {
  it('narrow (system/Patient.rs) may read and search Patients but not create them or touch other types', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    expect((await narrow.get('Patient')).status).toBe(200);
    expectOutcome(await narrow.post('Patient', { resourceType: 'Patient' }), 403);
    expectOutcome(await narrow.post('Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }), 403);
    expectOutcome(await narrow.get('Observation'), 403);
    expectOutcome(await narrow.get(`Observation/${p.id}`), 403);
    expectOutcome(await narrow.get('Observation/_history'), 403);
    expectOutcome(await narrow.get('_history'), 403);
    expectOutcome(await narrow.del(`Patient/${p.id}`), 403);
    expectOutcome(await narrow.patch(`Patient/${p.id}`, [{ op: 'add', path: '/active', value: true }]), 403);
    expectOutcome(await narrow.put(`Patient?identifier=x|y`, { resourceType: 'Patient' }), 403);
    expectOutcome(await narrow.del(`Patient?identifier=x|y`), 403);
  });

  it('a batch entry beyond the scopes answers 403 in its entry; a transaction is refused whole', async () => {
    const before = await countData(t);
    const batch = await narrow.post('', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } },
        { request: { method: 'GET', url: 'Patient?_count=1' } },
      ],
    });
    expect(batch.status).toBe(200);
    expect(batch.body.entry[0].response.status).toMatch(/^403/);
    expect(batch.body.entry[0].response.outcome.resourceType).toBe('OperationOutcome');
    expect(batch.body.entry[1].response.status).toMatch(/^200/);
    const tx = await narrow.post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' } }, request: { method: 'POST', url: 'Observation' } }],
    });
    expectOutcome(tx, 403);
    expect(await countData(t)).toEqual(before);
  });

  it('_include and _revinclude do not return types the scopes do not cover', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    // narrow is organisation org-narrow; give it its own data through the server's repository.
    const own = await t.api.systemRepository().create<Patient>({ resourceType: 'Patient' });
    await t.db.db.query(`update resource set owner_org = 'Organization/org-narrow' where id = $1`, [own.id]);
    const o = await t.api.systemRepository().create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${own.id}` } });
    await t.db.db.query(`update resource set owner_org = 'Organization/org-narrow' where id = $1`, [o.id]);
    void p;
    const res = await narrow.get(`Patient?_id=${own.id}&_revinclude=Observation:subject&_revinclude=AuditEvent:patient`);
    expect(res.status === 403 || res.status === 200).toBe(true);
    if (res.status === 200) {
      const types = (res.body as Bundle).entry?.map((e) => e.resource?.resourceType) ?? [];
      expect(types).not.toContain('Observation');
      expect(types).not.toContain('AuditEvent');
    }
  });

  it('401 without a token, with WWW-Authenticate; 401 with a bad token', async () => {
    const res = await request(t.api.app).get('/fhir/Patient');
    expectOutcome(res, 401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    const bad = await request(t.api.app).get('/fhir/Patient').set('Authorization', 'Bearer abc.def.ghi');
    expectOutcome(bad, 401);
    expect(bad.headers['www-authenticate']).toMatch(/invalid_token/);
    const tampered = await request(t.api.app).get('/fhir/Patient').set('Authorization', `${clientA.auth.slice(0, -4)}AAAA`);
    expectOutcome(tampered, 401);
    expectOutcome(await request(t.api.app).get('/fhir/Patient').set('Authorization', 'Basic dXNlcjpwYXNz'), 401);
  });
});

describe('confidentiality labels', () => {
  it('R and V resources are hidden from a client of the same organisation without `sensitive`', async () => {
    // Both clients belong to org-sensitive? No: each test client has its own organisation. Make a
    // restricted resource in org-sensitive and check that client's own view, and another org's.
    const restricted = await sensitive.create<Patient>({ resourceType: 'Patient', gender: 'female', meta: { security: [{ system: CONF, code: 'R' }] } });
    const veryRestricted = await sensitive.create<Patient>({ resourceType: 'Patient', meta: { security: [{ system: CONF, code: 'V' }] } });
    const normal = await sensitive.create<Patient>({ resourceType: 'Patient', meta: { security: [{ system: CONF, code: 'N' }] } });
    expect((await sensitive.get(`Patient/${restricted.id}`)).status).toBe(200);
    expect((await sensitive.get(`Patient/${veryRestricted.id}`)).status).toBe(200);
    expect(ids((await sensitive.get(`Patient?_id=${restricted.id},${veryRestricted.id},${normal.id}`)).body).sort()).toEqual([restricted.id, veryRestricted.id, normal.id].sort());

    // The same organisation, a client without the sensitive flag: a token for client-sensitive's
    // organisation cannot be had without the flag, so label one of a's own resources instead.
    const own = await a.create<Patient>({ resourceType: 'Patient', gender: 'male', meta: { security: [{ system: CONF, code: 'R' }] } });
    const ownV = await a.create<Patient>({ resourceType: 'Patient', meta: { security: [{ system: CONF, code: 'V' }] } });
    const ownN = await a.create<Patient>({ resourceType: 'Patient', meta: { security: [{ system: CONF, code: 'N' }] } });
    expect((await a.get(`Patient/${own.id}`)).status).toBe(404);
    expect((await a.get(`Patient/${own.id}/_history/1`)).status).toBe(404);
    expect((await a.get(`Patient/${ownV.id}`)).status).toBe(404);
    expect((await a.get(`Patient/${ownN.id}`)).status).toBe(200);
    expect(ids((await a.get(`Patient?_id=${own.id},${ownV.id},${ownN.id}`)).body)).toEqual([ownN.id]);
    const hist = await a.get('Patient/_history?_count=1000');
    expect(JSON.stringify(hist.body)).not.toContain(own.id);
    expect(JSON.stringify(hist.body)).not.toContain(ownV.id);
    // Not changeable either (no blind overwrite of a resource one cannot read).
    const put = await a.put(`Patient/${own.id}`, { resourceType: 'Patient', id: own.id });
    expect([403, 404]).toContain(put.status);
    // Nor reachable through _include.
    const o = await a.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${own.id}` } });
    const inc = await a.get(`Observation?_id=${o.id}&_include=Observation:subject`);
    expect(ids(inc.body)).toEqual([o.id]);
    // Other organisations never see them, sensitive or not.
    expect((await a.get(`Patient/${restricted.id}`)).status).toBe(404);
    expect((await sensitive.get(`Patient/${own.id}`)).status).toBe(404);
  });

  it('labelling one\'s own resource R through an update hides it from then on', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    const upd = await a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, meta: { security: [{ system: CONF, code: 'R' }] } });
    expect(upd.status).toBe(200);
    expect((await a.get(`Patient/${p.id}`)).status).toBe(404);
    // The previous, unlabelled version must not be reachable by vread or history either.
    expect((await a.get(`Patient/${p.id}/_history/1`)).status).toBe(404);
    expect((await a.get(`Patient/${p.id}/_history`)).status).toBe(404);
    expect(JSON.stringify((await a.get('Patient/_history?_count=1000')).body)).not.toContain(p.id);
    const sys = (await a.get('_history?_count=1000')).body as Bundle;
    expect(sys.entry?.map((e) => e.resource?.id)).not.toContain(p.id);
  });
});

describe('audit trail', () => {
  it('records create, read, search, update, delete and refusals', async () => {
    const before = (await auditEvents('Organization/org-a')).length;
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    await a.get(`Patient/${p.id}`);
    await a.get(`Patient?_id=${p.id}&gender=female`);
    await a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, active: true });
    await a.get(`Patient/${p.id}/_history/1`);
    await a.get(`Patient/${p.id}/_history`);
    await a.get('Patient/_history?_count=2');
    await a.del(`Patient/${p.id}`);
    const events = (await auditEvents('Organization/org-a')).slice(before);
    const kinds = events.map((e) => `${subtype(e)}:${e.action}`);
    expect(kinds).toEqual(expect.arrayContaining(['create:C', 'read:R', 'search-type:E', 'update:U', 'vread:R', 'history-instance:R', 'history-type:R', 'delete:D']));
    expect(events.find((e) => subtype(e) === 'create')?.agent?.[0].who?.identifier?.value).toBe(clientA.clientId);
    expect(refs(events.find((e) => subtype(e) === 'read')!)).toContain(`Patient/${p.id}`);
    // Search events name parameters, never values.
    const search = events.find((e) => subtype(e) === 'search-type')!;
    expect(JSON.stringify(search)).not.toContain('female');

    const narrowBefore = (await auditEvents('Organization/org-narrow')).length;
    await narrow.post('Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' } });
    const refused = (await auditEvents('Organization/org-narrow')).slice(narrowBefore);
    expect(refused.some((e) => e.outcome === '4' && /403/.test(e.outcomeDesc ?? ''))).toBe(true);

    const anonBefore = (await auditEvents(OPERATOR_ORGANIZATION)).length;
    await request(t.api.app).get('/fhir/Patient');
    const anon = (await auditEvents(OPERATOR_ORGANIZATION)).slice(anonBefore);
    expect(anon.some((e) => /401/.test(e.outcomeDesc ?? ''))).toBe(true);
  });

  it('batch and transaction entries are audited too', async () => {
    const before = (await auditEvents('Organization/org-a')).length;
    const res = await a.post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } }],
    });
    expect(res.status).toBe(200);
    const batch = await a.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient?_count=1' } }] });
    expect(batch.status).toBe(200);
    const events = (await auditEvents('Organization/org-a')).slice(before).map(subtype);
    expect(events).toEqual(expect.arrayContaining(['create', 'search-type']));
  });

  it('an auditor sees every access recorded before the request, grouped events keeping each access', async () => {
    const p = await auditor.post('Patient', { resourceType: 'Patient' });
    const obs = [];
    for (let i = 0; i < 2; i++) {
      obs.push((await auditor.post('Observation', { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${p.body.id}` } })).body as Observation);
    }
    for (const o of obs) expect((await auditor.get(`Observation/${o.id}`)).status).toBe(200);
    expect((await auditor.get(`Patient/${p.body.id}`)).status).toBe(200);
    // No drainAudit(): reading AuditEvent drains the audit log first.
    const found = await auditor.get(`AuditEvent?patient=Patient/${p.body.id}&subtype=read&_count=50`);
    expect(found.status).toBe(200);
    const events = (found.body as Bundle).entry!.map((e) => e.resource as AuditEvent);
    const read = events.flatMap((e) => (e.entity ?? []).map((x) => x.what?.reference));
    for (const o of obs) expect(read).toContain(`Observation/${o.id}`);
    for (const e of events) {
      expect(e.agent[0].who?.identifier?.value).toBe('client-auditor');
      // A group of accesses: each access's own time and request on its entities.
      if (e.period) for (const x of e.entity!.filter((x) => x.role?.code === '4')) expect(x.detail?.find((d) => d.type === 'recorded')?.valueString).toBeTruthy();
    }
    const creates = await auditor.get(`AuditEvent?entity=Observation/${obs[0].id}/_history/1&subtype=create`);
    expect((creates.body as Bundle).entry).toHaveLength(1);

    // The request id the client sent is the access's XrequestId; refusals are found by outcome and date.
    const since = new Date(Date.now() - 1000).toISOString();
    const rid = `authz-read-${obs[1].id}`;
    await request(t.api.app).get(`/fhir/Observation/${obs[1].id}`).set('Authorization', auditorClient.auth).set('X-Request-Id', rid).expect(200);
    await request(t.api.app).delete(`/fhir/AuditEvent/${events[0].id}`).set('Authorization', auditorClient.auth).expect((r) => expect(r.status).toBeGreaterThanOrEqual(400));
    const mine = await auditor.get(`AuditEvent?entity=Observation/${obs[1].id}&subtype=read`);
    expect(JSON.stringify(mine.body)).toContain(`"${rid}"`);
    const refusedSince = await auditor.get(`AuditEvent?outcome=4&date=ge${encodeURIComponent(since)}`);
    expect(refusedSince.status).toBe(200);
    expect((refusedSince.body as Bundle).entry?.some((e) => (e.resource as AuditEvent).agent[0].who?.identifier?.value === 'client-auditor')).toBe(true);
  });

  it('only the auditor reads AuditEvents; nobody creates, updates or deletes them', async () => {
    expectOutcome(await a.get('AuditEvent'), 403);
    expectOutcome(await sensitive.get('AuditEvent'), 403);
    // A batch entry and a system search are refused the same way.
    const batch = await a.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'AuditEvent' } }] });
    expect(batch.body.entry[0].response.status).toMatch(/^403/);
    expectOutcome(await a.get('?_type=AuditEvent'), 403);
    expectOutcome(await a.get('AuditEvent/_history'), 403);
    const sysHistory = (await a.get('_history?_count=1000')).body as Bundle;
    expect(sysHistory.entry?.length).toBeGreaterThan(0);
    expect(sysHistory.entry?.map((e) => e.resource?.resourceType ?? e.request?.url.split('/')[0])).not.toContain('AuditEvent');
    // Includes do not smuggle AuditEvents out either.
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    await a.get(`Patient/${p.id}`);
    const rev = await a.get(`Patient?_id=${p.id}&_revinclude=AuditEvent:patient&_revinclude=AuditEvent:entity`);
    if (rev.status === 200) expect((rev.body as Bundle).entry?.map((e) => e.resource?.resourceType)).not.toContain('AuditEvent');

    // The auditor reads its own organisation's trail.
    await auditor.get('Patient?_count=1');
    await t.api.drainAudit(); // read AuditEvents are stored from the queue moments after the read
    const list = await auditor.get('AuditEvent?_count=5');
    expect(list.status).toBe(200);
    expect(ids(list.body).length).toBeGreaterThan(0);
    const one = list.body.entry[0].resource as AuditEvent;
    expect((await auditor.get(`AuditEvent/${one.id}`)).status).toBe(200);

    const before = await countData(t);
    const event: AuditEvent = { resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: new Date().toISOString(), agent: [{ requestor: true }], source: { observer: { display: 'x' } } };
    for (const client of [a, auditor]) {
      expectOutcome(await client.post('AuditEvent', event), 403);
      expectOutcome(await client.put(`AuditEvent/${one.id}`, { ...one, outcome: '0' }), 403);
      expectOutcome(await client.put(`AuditEvent/new-one`, { ...event, id: 'new-one' }), 403);
      expectOutcome(await client.patch(`AuditEvent/${one.id}`, [{ op: 'replace', path: '/outcome', value: '8' }]), 403);
      expectOutcome(await client.del(`AuditEvent/${one.id}`), 403);
      expectOutcome(await client.del(`AuditEvent?_id=${one.id}`), 403);
      const tx = await client.post('', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: event, request: { method: 'POST', url: 'AuditEvent' } }] });
      expectOutcome(tx, 403);
    }
    expect(await countData(t)).toEqual(before);
    expect((await auditor.get(`AuditEvent/${one.id}`)).body.meta.versionId).toBe(one.meta?.versionId);
  });
});
