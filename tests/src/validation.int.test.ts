// Issue 2: validation on every write and through $validate; malformed requests answer an
// OperationOutcome with the right status and store nothing.
import request from 'supertest';
import type { OperationOutcome, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi, TestClient } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, expectOutcome, fhir } from './helpers.ts';

let t: TestApi;
let a: Fhir;
let client: TestClient;

beforeAll(async () => {
  t = await createTestApi();
  client = await t.client('a');
  a = fhir(t, client);
}, 120_000);
afterAll(async () => t?.close());

const expressions = (oo: OperationOutcome) => (oo.issue ?? []).flatMap((i) => [...(i.expression ?? []), ...(i.location ?? [])]);

const invalid: Array<[string, unknown, string]> = [
  ['required binding', { resourceType: 'Patient', gender: 'robot' }, 'Patient.gender'],
  ['datatype', { resourceType: 'Patient', birthDate: 'yesterday' }, 'Patient.birthDate'],
  ['datatype (boolean)', { resourceType: 'Patient', active: 'yes' }, 'Patient.active'],
  ['unknown element', { resourceType: 'Patient', favouriteColour: 'blue' }, 'Patient.favouriteColour'],
  ['cardinality (array expected)', { resourceType: 'Patient', name: { family: 'X' } }, 'Patient.name'],
  ['cardinality (min 1)', { resourceType: 'Observation', code: { text: 'x' } }, 'Observation.status'],
];

describe('validation', () => {
  it.each(invalid)('refuses an invalid resource on create, update and $validate (%s)', async (_name, body, expression) => {
    const before = await countData(t);
    const type = (body as { resourceType: string }).resourceType;
    const created = expectOutcome(await a.post(type, body), 400);
    expect(expressions(created).join(' ')).toContain(expression);
    const put = expectOutcome(await a.put(`${type}/v-${type.length}`, { ...(body as object), id: `v-${type.length}` }), 400);
    expect(expressions(put).join(' ')).toContain(expression);
    const v = await a.post(`${type}/$validate`, body);
    expect(v.status).toBe(200);
    expect(v.body.resourceType).toBe('OperationOutcome');
    expect(v.body.issue.some((i: { severity: string }) => i.severity === 'error')).toBe(true);
    expect(expressions(v.body).join(' ')).toContain(expression);
    expect(await countData(t)).toEqual(before);
  });

  it('Patient.gender "robot" answers 400 with expression Patient.gender', async () => {
    const oo = expectOutcome(await a.post('Patient', { resourceType: 'Patient', gender: 'robot' }), 400);
    expect(oo.issue?.[0].expression).toContain('Patient.gender');
  });

  it('$validate passes a valid resource and accepts Parameters', async () => {
    const ok = await a.post('Patient/$validate', { resourceType: 'Patient', gender: 'female' });
    expect(ok.status).toBe(200);
    expect(ok.body.issue.every((i: { severity: string }) => i.severity !== 'error')).toBe(true);
    const params = await a.post('Patient/$validate', { resourceType: 'Parameters', parameter: [{ name: 'resource', resource: { resourceType: 'Patient', gender: 'robot' } }] });
    expect(params.status).toBe(200);
    expect(params.body.issue.some((i: { severity: string }) => i.severity === 'error')).toBe(true);
  });
});

describe('bad input', () => {
  const raw = (method: 'post' | 'put', path: string, contentType: string | undefined, body: string) => {
    let r = request(t.api.app)[method](`/fhir/${path}`).set('Authorization', client.auth);
    if (contentType) r = r.set('Content-Type', contentType);
    return r.send(body);
  };

  it('malformed JSON: 400', async () => {
    const before = await countData(t);
    expectOutcome(await raw('post', 'Patient', 'application/fhir+json', '{"resourceType":"Patient",'), 400);
    expectOutcome(await raw('post', 'Patient', 'application/fhir+json', 'null'), 400);
    expectOutcome(await raw('post', 'Patient', 'application/fhir+json', '[1,2]'), 400);
    expectOutcome(await raw('post', 'Patient', 'application/fhir+json', '"Patient"'), 400);
    expect(await countData(t)).toEqual(before);
  });

  it('resourceType not matching the URL: 400', async () => {
    expectOutcome(await a.post('Patient', { resourceType: 'Observation', status: 'final', code: { text: 'x' } }), 400);
    expectOutcome(await a.put('Patient/x1', { resourceType: 'Observation', id: 'x1', status: 'final', code: { text: 'x' } }), 400);
    expectOutcome(await a.post('Patient', { gender: 'female' }), 400);
  });

  it('id mismatch or missing id on PUT: 400', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    expectOutcome(await a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: 'other' }), 400);
    expectOutcome(await a.put(`Patient/${p.id}`, { resourceType: 'Patient' }), 400);
    expect((await a.get(`Patient/${p.id}`)).body.meta.versionId).toBe('1');
  });

  it('unknown resource type: 404', async () => {
    expectOutcome(await a.get('Nonsense'), 404);
    expectOutcome(await a.get('Nonsense/1'), 404);
    expectOutcome(await a.post('Nonsense', { resourceType: 'Nonsense' }), 404);
    expectOutcome(await a.get('patient/1'), 404);
  });

  it('unsupported media type: 415', async () => {
    const before = await countData(t);
    expectOutcome(await raw('post', 'Patient', 'application/xml', '<Patient xmlns="http://hl7.org/fhir"/>'), 415);
    expectOutcome(await raw('post', 'Patient', 'text/plain', '{"resourceType":"Patient"}'), 415);
    expectOutcome(await raw('put', 'Patient/x2', undefined, '{"resourceType":"Patient","id":"x2"}'), 415);
    expectOutcome(await a.get('Patient?_format=xml'), 415);
    expect(await countData(t)).toEqual(before);
  });

  it('body over 5 MB: 413', async () => {
    const before = await countData(t);
    const big = JSON.stringify({ resourceType: 'Patient', text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${'x'.repeat(5 * 1024 * 1024 + 10)}</div>` } });
    expectOutcome(await raw('post', 'Patient', 'application/fhir+json', big), 413);
    expect(await countData(t)).toEqual(before);
  });

  it('wrong methods answer 405', async () => {
    expectOutcome(await a.del('_history'), 405);
  });

  it('no such endpoint answers an OperationOutcome 404', async () => {
    const res = await request(t.api.app).get('/nowhere').set('Authorization', client.auth);
    expectOutcome(res, 404);
  });
});
