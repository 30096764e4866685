// Issue 2: batch and transaction Bundles. A transaction is atomic, resolves urn:uuid and conditional
// references, follows the processing order and, when any entry fails, answers that entry's error
// with nothing written.
import type { Bundle, BundleEntry, Observation, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, expectOutcome, fhir, unique } from './helpers.ts';

let t: TestApi;
let a: Fhir;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
}, 120_000);
afterAll(async () => t?.close());

const MRN = 'urn:test:mrn';
const tx = (entry: BundleEntry[], type: 'transaction' | 'batch' = 'transaction'): Bundle => ({ resourceType: 'Bundle', type, entry });
const obs = (subject: string, extra: Partial<Observation> = {}): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
  subject: { reference: subject },
  ...extra,
});

async function searchCount(query: string): Promise<number> {
  const res = await a.get(query);
  expect(res.status).toBe(200);
  return (res.body.entry ?? []).filter((e: BundleEntry) => e.search?.mode === 'match').length;
}

describe('transaction', () => {
  it('creates resources and resolves urn:uuid references', async () => {
    const value = unique('tx-');
    const res = await a.post('', tx([
      { fullUrl: 'urn:uuid:0b8a3c4e-1111-4a2b-9c3d-000000000001', resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      { fullUrl: 'urn:uuid:0b8a3c4e-1111-4a2b-9c3d-000000000002', resource: obs('urn:uuid:0b8a3c4e-1111-4a2b-9c3d-000000000001'), request: { method: 'POST', url: 'Observation' } },
    ]));
    expect(res.status).toBe(200);
    const bundle = res.body as Bundle;
    expect(bundle.type).toBe('transaction-response');
    expect(bundle.entry?.map((e) => e.response?.status)).toEqual(['201 Created', '201 Created']);
    const patientLocation = bundle.entry![0].response!.location!;
    const patientId = /Patient\/([^/]+)/.exec(patientLocation)![1];
    const o = bundle.entry![1].resource as Observation;
    expect(o.subject?.reference).toBe(`Patient/${patientId}`);
    expect(await searchCount(`Observation?subject=Patient/${patientId}`)).toBe(1);
  });

  it('resolves conditional references and conditional creates inside the Bundle', async () => {
    const value = unique('cr-');
    const p = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: MRN, value }] });
    const res = await a.post('', tx([
      { resource: obs(`Patient?identifier=${MRN}|${value}`), request: { method: 'POST', url: 'Observation' } },
      { fullUrl: 'urn:uuid:0b8a3c4e-2222-4a2b-9c3d-000000000001', resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${MRN}|${value}` } },
      { resource: obs('urn:uuid:0b8a3c4e-2222-4a2b-9c3d-000000000001'), request: { method: 'POST', url: 'Observation' } },
    ]));
    expect(res.status).toBe(200);
    expect(res.body.entry[1].response.status).toMatch(/^200/);
    expect(res.body.entry[0].resource.subject.reference).toBe(`Patient/${p.id}`);
    expect(res.body.entry[2].resource.subject.reference).toBe(`Patient/${p.id}`);
    expect(await searchCount(`Patient?identifier=${MRN}|${value}`)).toBe(1);
    expect(await searchCount(`Observation?subject=Patient/${p.id}`)).toBe(2);
  });

  it('follows the processing order: DELETE, POST, PUT/PATCH, GET', async () => {
    const old = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const toUpdate = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const res = await a.post('', tx([
      // Listed first, but GET runs last and so sees the update.
      { request: { method: 'GET', url: `Patient/${toUpdate.id}` } },
      { resource: { resourceType: 'Patient', id: toUpdate.id, gender: 'female' }, request: { method: 'PUT', url: `Patient/${toUpdate.id}` } },
      { request: { method: 'DELETE', url: `Patient/${old.id}` } },
    ]));
    expect(res.status).toBe(200);
    expect(res.body.entry[0].resource.gender).toBe('female');
    expect(res.body.entry[1].response.status).toMatch(/^200/);
    expect(res.body.entry[2].response.status).toMatch(/^20[04]/);
    expectOutcome(await a.get(`Patient/${old.id}`), 410);
  });

  it('PATCH entries (Binary JSON Patch) and PUT with a urn:uuid fullUrl', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const id = unique('put-');
    const patch = Buffer.from(JSON.stringify([{ op: 'replace', path: '/gender', value: 'female' }])).toString('base64');
    const res = await a.post('', tx([
      { resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: patch } as never, request: { method: 'PATCH', url: `Patient/${p.id}` } },
      { fullUrl: 'urn:uuid:0b8a3c4e-3333-4a2b-9c3d-000000000001', resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
      { resource: obs('urn:uuid:0b8a3c4e-3333-4a2b-9c3d-000000000001'), request: { method: 'POST', url: 'Observation' } },
    ]));
    expect(res.status).toBe(200);
    expect((await a.get(`Patient/${p.id}`)).body.gender).toBe('female');
    expect(res.body.entry[2].resource.subject.reference).toBe(`Patient/${id}`);
  });

  const failing: Array<[string, (value: string, existing: Patient) => BundleEntry, number]> = [
    ['invalid resource', () => ({ resource: { resourceType: 'Patient', gender: 'robot' } as never, request: { method: 'POST', url: 'Patient' } }), 400],
    ['read of a missing resource', () => ({ request: { method: 'GET', url: 'Patient/does-not-exist' } }), 404],
    ['stale If-Match', (_v, p) => ({ resource: { resourceType: 'Patient', id: p.id, gender: 'other' }, request: { method: 'PUT', url: `Patient/${p.id}`, ifMatch: 'W/"7"' } }), 412],
    ['unresolvable conditional reference', (v) => ({ resource: obs(`Patient?identifier=${MRN}|none-${v}`), request: { method: 'POST', url: 'Observation' } }), 404],
    ['unknown resource type', () => ({ resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Nonsense' } }), 404],
    ['type mismatch', () => ({ resource: { resourceType: 'Observation' } as never, request: { method: 'POST', url: 'Patient' } }), 400],
    ['delete of another organisation\'s resource', (_v, p) => ({ request: { method: 'DELETE', url: `Patient/${p.id}` } }), 404],
  ];

  it.each(failing)('answers the failing entry\'s error (%s) and writes nothing', async (_name, entry, status) => {
    const value = unique('fail-');
    // "existing" belongs to organisation b for the cross-organisation case, to a otherwise.
    const owner = _name.startsWith('delete') ? fhir(t, await t.client('b')) : a;
    const existing = await owner.create<Patient>({ resourceType: 'Patient' });
    const before = await countData(t);
    const res = await a.post('', tx([
      { fullUrl: 'urn:uuid:0b8a3c4e-4444-4a2b-9c3d-000000000001', resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: obs('urn:uuid:0b8a3c4e-4444-4a2b-9c3d-000000000001'), request: { method: 'POST', url: 'Observation' } },
      { resource: { resourceType: 'Patient', id: existing.id, active: true }, request: { method: 'PUT', url: `Patient/${existing.id}` } },
      entry(value, existing),
    ]));
    const oo = expectOutcome(res, status);
    expect(JSON.stringify(oo)).toMatch(/entry\[3\]|Bundle\.entry/);
    expect(await searchCount(`Patient?identifier=${MRN}|${value}`)).toBe(0);
    expect((await owner.get(`Patient/${existing.id}`)).body.meta.versionId).toBe('1');
    expect(await countData(t)).toEqual(before);
  });

  const tenEntries = (value: string): BundleEntry[] => {
    const patient = `urn:uuid:${crypto.randomUUID()}`;
    return [
      { fullUrl: patient, resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      ...Array.from({ length: 9 }, (_, n): BundleEntry => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: obs(patient, { valueQuantity: { value: 60 + n } }), request: { method: 'POST', url: 'Observation' } })),
    ];
  };

  // lastModified comes from the Last-Modified header (whole seconds).
  it('writes plain creates together: urn:uuid references resolved, Location/ETag/lastModified per entry, an AuditEvent for each', async () => {
    const value = unique('ten-');
    const res = await a.post('', tx(tenEntries(value)));
    expect(res.status).toBe(200);
    const entries = (res.body as Bundle).entry!;
    const patientId = /Patient\/([^/]+)/.exec(entries[0].response!.location!)![1];
    entries.forEach((e, n) => {
      expect(e.response).toEqual({ status: '201 Created', location: expect.stringMatching(new RegExp(`/${e.resource!.resourceType}/${e.resource!.id}/_history/1$`)), etag: 'W/"1"', lastModified: new Date(Math.floor(Date.parse(e.resource!.meta!.lastUpdated!) / 1000) * 1000).toISOString() });
      if (n > 0) expect((e.resource as Observation).subject?.reference).toBe(`Patient/${patientId}`);
    });
    expect(await searchCount(`Observation?subject=Patient/${patientId}&_count=20`)).toBe(9);
    expect(await searchCount(`Observation?subject:Patient.identifier=${MRN}|${value}&_count=20`)).toBe(9);
    await t.api.drainAudit();
    const audited = (await t.db.db.query<{ content: string }>("select content from resource where resource_type = 'AuditEvent'")).rows.map((r) => r.content).join('\n');
    for (const e of entries) expect(audited).toContain(`"${e.resource!.resourceType}/${e.resource!.id}/_history/1"`);
  });

  it('an invalid resource in entry 7 writes none of the ten and answers with entry 7 located', async () => {
    const value = unique('bad7-');
    const entries = tenEntries(value);
    (entries[7].resource as Observation).status = 'bogus' as never;
    const before = await countData(t);
    const oo = expectOutcome(await a.post('', tx(entries)), 400);
    expect(oo.issue[0].diagnostics).toContain('Bundle.entry[7]');
    expect(oo.issue.flatMap((i) => i.expression ?? [])).toContain('Bundle.entry[7].resource.status');
    expect(await countData(t)).toEqual(before);
    expect(await searchCount(`Patient?identifier=${MRN}|${value}`)).toBe(0);
  });

  it('keeps hooked creates, conditional creates and updates in order around the plain creates', async () => {
    const value = unique('mix-');
    const p = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const patient = `urn:uuid:${crypto.randomUUID()}`;
    const sr = `urn:uuid:${crypto.randomUUID()}`;
    const res = await a.post('', tx([
      { request: { method: 'GET', url: `Patient/${p.id}` } },
      { resource: { resourceType: 'Task', status: 'requested', intent: 'order', for: { reference: patient }, focus: { reference: sr } } as never, request: { method: 'POST', url: 'Task' } },
      { fullUrl: sr, resource: { resourceType: 'ServiceRequest', status: 'active', intent: 'order', subject: { reference: patient } } as never, request: { method: 'POST', url: 'ServiceRequest' } },
      { resource: { resourceType: 'Patient', id: p.id, gender: 'female' }, request: { method: 'PUT', url: `Patient/${p.id}` } },
      { fullUrl: patient, resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: obs(patient), request: { method: 'POST', url: 'Observation', ifNoneExist: `identifier=${MRN}|${value}` } },
      { resource: obs(patient), request: { method: 'POST', url: 'Observation' } },
    ]));
    expect(res.status).toBe(200);
    const e = (res.body as Bundle).entry!;
    expect(e.map((x) => x.response?.status.split(' ')[0])).toEqual(['200', '201', '201', '200', '201', '201', '201']);
    expect(e[0].resource).toMatchObject({ gender: 'female', meta: { versionId: '2' } });
    const patientRef = `Patient/${e[4].resource!.id}`;
    expect(e[1].resource).toMatchObject({ for: { reference: patientRef }, focus: { reference: `ServiceRequest/${e[2].resource!.id}` } });
    for (const n of [2, 5, 6]) expect(JSON.stringify(e[n].resource)).toContain(`"reference":"${patientRef}"`);
  });

  it('rejects duplicate fullUrls and nested Bundles', async () => {
    const u = 'urn:uuid:0b8a3c4e-5555-4a2b-9c3d-000000000001';
    expectOutcome(await a.post('', tx([
      { fullUrl: u, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
      { fullUrl: u, resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
    ])), 400);
    expectOutcome(await a.post('', tx([{ resource: tx([]), request: { method: 'POST', url: '' } }])), 400);
    expectOutcome(await a.post('', { resourceType: 'Bundle', type: 'collection' }), 400);
  });
});

describe('batch', () => {
  it('runs entries independently: failures answer per entry, successes are kept', async () => {
    const value = unique('batch-');
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    const res = await a.post('', tx([
      { resource: { resourceType: 'Patient', identifier: [{ system: MRN, value }] }, request: { method: 'POST', url: 'Patient' } },
      { resource: { resourceType: 'Patient', gender: 'robot' } as never, request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'GET', url: `Patient/${p.id}` } },
      { request: { method: 'GET', url: 'Patient/missing-one' } },
      { request: { method: 'GET', url: `Patient?identifier=${MRN}|${value}` } },
    ], 'batch'));
    expect(res.status).toBe(200);
    expect(res.body.type).toBe('batch-response');
    const statuses = res.body.entry.map((e: BundleEntry) => e.response?.status.split(' ')[0]);
    expect(statuses).toEqual(['201', '400', '200', '404', '200']);
    expect(res.body.entry[1].response.outcome.resourceType).toBe('OperationOutcome');
    expect(await searchCount(`Patient?identifier=${MRN}|${value}`)).toBe(1);
  });
});
