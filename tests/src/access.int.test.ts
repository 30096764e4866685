// Issue 4: a client of one organisation cannot see or change another's data by any route; shared
// reference data (owner NULL, e.g. the seeded Questionnaires) is visible to all.
import type { Bundle, BundleEntry, Observation, Patient, Questionnaire } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, fhir, ids, unique } from './helpers.ts';

let t: TestApi;
let a: Fhir;
let b: Fhir;
const mrn = unique('iso-');
let patientA: Patient;
let obsA: Observation;
let patientB: Patient;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
  patientA = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: mrn }], gender: 'female' });
  await a.put(`Patient/${patientA.id}`, { ...patientA, gender: 'male' });
  obsA = await a.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${patientA.id}` } });
  patientB = await b.create<Patient>({ resourceType: 'Patient', gender: 'other' });
}, 120_000);
afterAll(async () => t?.close());

const allResourceIds = (bundle: Bundle): string[] => (bundle.entry ?? []).map((e) => e.resource?.id ?? e.fullUrl ?? '').filter(Boolean);

/** Every resource (not Bundle/OperationOutcome) anywhere in a response body. */
function resourcesIn(value: unknown, out: Array<{ resourceType: string; id?: string }> = []): Array<{ resourceType: string; id?: string }> {
  if (Array.isArray(value)) value.forEach((v) => resourcesIn(v, out));
  else if (value && typeof value === 'object') {
    const r = value as { resourceType?: unknown; id?: string };
    if (typeof r.resourceType === 'string' && r.resourceType !== 'Bundle' && r.resourceType !== 'OperationOutcome') out.push({ resourceType: r.resourceType, id: r.id });
    Object.values(value).forEach((v) => resourcesIn(v, out));
  }
  return out;
}

/** The answer holds none of organisation a's resources (echoing a requested id is not a leak). */
function expectNoLeak(body: unknown): void {
  const found = resourcesIn(body).map((r) => r.id);
  expect(found).not.toContain(patientA.id);
  expect(found).not.toContain(obsA.id);
  // Nor their contents, e.g. a's identifier inside some other resource.
  const text = JSON.stringify(resourcesIn(body).filter((r) => r.id !== undefined && r.resourceType !== 'Patient'));
  expect(text).not.toContain(patientA.id);
}

describe('organisation isolation', () => {
  it('read and vread answer 404, as for a resource that does not exist', async () => {
    for (const path of [`Patient/${patientA.id}`, `Patient/${patientA.id}/_history/1`, `Observation/${obsA.id}`]) {
      const res = await b.get(path);
      expect(res.status).toBe(404);
      expectNoLeak(res.body);
    }
  });

  it('search, _include and _revinclude find nothing of the other organisation', async () => {
    for (const q of [
      `Patient?identifier=urn:test:mrn|${mrn}`,
      `Patient?_id=${patientA.id}`,
      `Observation?subject=Patient/${patientA.id}`,
      `Observation?_include=Observation:subject`,
      `Patient?_revinclude=Observation:subject`,
      `Patient?_id=${patientB.id}&_revinclude=Observation:subject`,
      `Observation?_total=accurate`,
      `?_type=Patient`,
    ]) {
      const res = await b.get(q);
      expect(res.status).toBe(200);
      expectNoLeak(res.body);
    }
    const own = await b.get(`Patient?_id=${patientB.id}`);
    expect(ids(own.body)).toEqual([patientB.id]);
  });

  it('_include and _revinclude across organisations do not pull in the other side', async () => {
    // b points at a's Patient; a points at b's Patient. Neither include may cross over.
    const obsB = await b.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'y' }, subject: { reference: `Patient/${patientA.id}` } });
    const obsAtoB = await a.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'z' }, subject: { reference: `Patient/${patientB.id}` } });
    const inc = await b.get(`Observation?_id=${obsB.id}&_include=Observation:subject&_include=Observation:patient`);
    expect(ids(inc.body)).toEqual([obsB.id]);
    expectNoLeak(inc.body);
    const rev = await b.get(`Patient?_id=${patientB.id}&_revinclude=Observation:subject&_revinclude=Observation:patient`);
    expect(ids(rev.body)).toEqual([patientB.id]);
    expect(ids(rev.body)).not.toContain(obsAtoB.id);
    const wild = await b.get(`Observation?_id=${obsB.id}&_include=*`);
    expectNoLeak(wild.body);
    const iter = await b.get(`Observation?_id=${obsB.id}&_include=Observation:subject&_revinclude:iterate=Observation:subject`);
    expect(iter.status).toBeLessThan(500);
    expectNoLeak(iter.body);
    expect(ids(iter.body)).not.toContain(obsAtoB.id);
  });

  it('chained and reverse-chained search cannot probe the other organisation\'s data', async () => {
    const probe = await b.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'probe' }, subject: { reference: `Patient/${patientA.id}` } });
    const chained = await b.get(`Observation?_id=${probe.id}&subject:Patient.identifier=urn:test:mrn|${mrn}`);
    expect(chained.status).toBeLessThan(500);
    if (chained.status === 200) expect(ids(chained.body)).toEqual([]);
    const gender = await b.get(`Observation?_id=${probe.id}&subject:Patient.gender=male`);
    if (gender.status === 200) expect(ids(gender.body)).toEqual([]);
    // Reverse chain: does a's Observation point at b's Patient? b must not be able to tell.
    await a.create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'urn:test:code', code: 'secret-code' }] }, subject: { reference: `Patient/${patientB.id}` } });
    const rev = await b.get(`Patient?_id=${patientB.id}&_has:Observation:subject:code=urn:test:code|secret-code`);
    expect(rev.status).toBeLessThan(500);
    if (rev.status === 200) expect(ids(rev.body)).toEqual([]);
  });

  it('history (instance, type, system) shows nothing of the other organisation', async () => {
    expect((await b.get(`Patient/${patientA.id}/_history`)).status).toBe(404);
    for (const q of ['Patient/_history', 'Observation/_history', '_history', '_history?_count=1000']) {
      const res = await b.get(q);
      expect(res.status).toBeLessThan(500);
      expectNoLeak(res.body);
    }
  });

  it('update, PATCH and delete of the other organisation\'s resource are refused and change nothing', async () => {
    const before = await countData(t);
    const put = await b.put(`Patient/${patientA.id}`, { resourceType: 'Patient', id: patientA.id, gender: 'unknown' });
    expect([403, 404]).toContain(put.status);
    expect((await b.patch(`Patient/${patientA.id}`, [{ op: 'replace', path: '/gender', value: 'unknown' }])).status).toBe(404);
    expect((await b.del(`Patient/${patientA.id}`)).status).toBe(404);
    expect((await b.put(`Patient/${patientA.id}`, { resourceType: 'Patient', id: patientA.id }, { 'If-Match': 'W/"2"' })).status).toBeGreaterThanOrEqual(400);
    const current = await a.get(`Patient/${patientA.id}`);
    expect(current.body.gender).toBe('male');
    expect(current.body.meta.versionId).toBe('2');
    expect(await countData(t)).toEqual(before);
  });

  it('conditional update and conditional delete do not match the other organisation\'s resources', async () => {
    // Conditional delete: nothing matches for b, so nothing is deleted.
    expect((await b.del(`Patient?identifier=urn:test:mrn|${mrn}`)).status).toBe(204);
    expect((await a.get(`Patient/${patientA.id}`)).status).toBe(200);
    // Conditional update: no match for b, so b creates its own resource; a's is untouched.
    const cu = await b.put(`Patient?identifier=urn:test:mrn|${mrn}`, { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: mrn }], gender: 'unknown' });
    expect(cu.status).toBe(201);
    expect(cu.body.id).not.toBe(patientA.id);
    expect((await a.get(`Patient/${patientA.id}`)).body.meta.versionId).toBe('2');
    expect(ids((await a.get(`Patient?identifier=urn:test:mrn|${mrn}`)).body)).toEqual([patientA.id]);
    // Conditional create: b's If-None-Exist does not find a's resource either (and returns its own).
    const cc = await b.post('Patient', { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: mrn }] }, { 'If-None-Exist': `identifier=urn:test:mrn|${mrn}` });
    expect(cc.body.id).toBe(cu.body.id);
    // PUT with a client id that another organisation already uses: refused, not overwritten.
    const taken = await b.put(`Patient/${patientA.id}`, { resourceType: 'Patient', id: patientA.id });
    expect([403, 404, 409]).toContain(taken.status);
  });

  it('batch entries see nothing of the other organisation', async () => {
    const res = await b.post('', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [
        { request: { method: 'GET', url: `Patient/${patientA.id}` } },
        { request: { method: 'GET', url: `Patient?identifier=urn:test:mrn|${mrn}` } },
        { request: { method: 'GET', url: `Patient/${patientA.id}/_history` } },
        { request: { method: 'DELETE', url: `Observation/${obsA.id}` } },
        { resource: { resourceType: 'Patient', id: patientA.id }, request: { method: 'PUT', url: `Patient/${patientA.id}` } },
      ],
    });
    expect(res.status).toBe(200);
    const statuses = res.body.entry.map((e: BundleEntry) => Number(e.response?.status.split(' ')[0]));
    expect(statuses[0]).toBe(404);
    expect(statuses[2]).toBe(404);
    expect(statuses[3]).toBe(404);
    expect([403, 404]).toContain(statuses[4]);
    expect(ids(res.body.entry[1].resource)).not.toContain(patientA.id);
    expectNoLeak(res.body);
    expect((await a.get(`Observation/${obsA.id}`)).status).toBe(200);
  });

  it('transactions cannot reach the other organisation\'s resources, including by conditional reference', async () => {
    const before = await countData(t);
    const read = await b.post('', { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'GET', url: `Patient/${patientA.id}` } }] });
    expect(read.status).toBe(404);
    expectNoLeak(read.body);
    const ref = await b.post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient?_id=${patientA.id}` } }, request: { method: 'POST', url: 'Observation' } }],
    });
    expect(ref.status).toBe(404);
    const patch = await b.post('', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ resource: { resourceType: 'Binary', contentType: 'application/json-patch+json', data: Buffer.from('[{"op":"replace","path":"/gender","value":"unknown"}]').toString('base64') }, request: { method: 'PATCH', url: `Patient/${patientA.id}` } }],
    });
    expect(patch.status).toBe(404);
    expect(await countData(t)).toEqual(before);
  });

  it('shared reference data (seeded Questionnaires) is visible to every organisation but not writable', async () => {
    const fromA = await a.get('Questionnaire?_count=50');
    const fromB = await b.get('Questionnaire?_count=50');
    expect(ids(fromA.body).length).toBeGreaterThan(0);
    expect(ids(fromB.body).sort()).toEqual(ids(fromA.body).sort());
    const q = fromB.body.entry[0].resource as Questionnaire;
    expect((await b.get(`Questionnaire/${q.id}`)).status).toBe(200);
    const put = await b.put(`Questionnaire/${q.id}`, { ...q, title: 'changed' });
    expect(put.status).toBe(403);
    expect((await b.del(`Questionnaire/${q.id}`)).status).toBe(403);
    expect((await a.get(`Questionnaire/${q.id}`)).body.title).toBe(q.title);
  });

  it('reading one\'s own data still works', async () => {
    expect((await a.get(`Patient/${patientA.id}/_history`)).body.entry).toHaveLength(2);
    expect(allResourceIds((await a.get(`Observation?_include=Observation:subject&_id=${obsA.id}`)).body)).toEqual(expect.arrayContaining([obsA.id, patientA.id]));
  });
});
