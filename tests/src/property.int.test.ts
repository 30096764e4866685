// Issue 4: property-based tests. Random and malformed resources, Bundles and search strings are
// thrown at the server: never a 500, never a partial write, and the server stays up.
import fc from 'fast-check';
import request from 'supertest';
import type { Response } from 'supertest';
import type { Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, fhir } from './helpers.ts';

// Hundreds of requests per property: PGlite under a parallel jest run needs the headroom.
jest.setTimeout(240_000);

let t: TestApi;
let a: Fhir;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
}, 120_000);
afterAll(async () => t?.close());

const RUNS = Number(process.env.PROPERTY_RUNS ?? 120);

function noServerError(res: Response, what: string): void {
  if (res.status >= 500) throw new Error(`${what} answered ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`);
  expect(res.headers['content-type'] ?? '').toMatch(/application\/fhir\+json|^$/);
}

const types = ['Patient', 'Observation', 'Questionnaire', 'QuestionnaireResponse', 'Task', 'CarePlan', 'Bundle', 'Parameters', 'Binary', 'Nope', 'patient', ''];
const keys = ['resourceType', 'id', 'meta', 'name', 'gender', 'birthDate', 'identifier', 'status', 'code', 'subject', 'valueQuantity', 'extension', 'contained', 'text', 'active', 'telecom', 'item', 'entry', 'type', 'reference', 'x', '_birthDate', 'value', 'system', 'security', 'tag'];
const leaf = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('male', 'robot', '2020-01-01', '2020-13-45', 'Patient/1', 'urn:uuid:x', 'final', 'http://loinc.org', 'R', 'V', "' OR 1=1 --", '\u0000', '🙂', ''),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
);
const json: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 5 }),
})).value;

/** A resource-like object: a (possibly wrong) resourceType with random elements. */
const resource = fc.record({ resourceType: fc.constantFrom(...types), rest: fc.dictionary(fc.constantFrom(...keys), json, { maxKeys: 6 }) }).map(({ resourceType, rest }) => ({ ...rest, resourceType }));

/** A valid Patient with one element replaced by something random. */
const mutatedPatient = fc.record({ key: fc.constantFrom(...keys), value: json }).map(({ key, value }) => ({ resourceType: 'Patient', name: [{ family: 'Prop' }], gender: 'female', [key]: value }));

describe('property: random writes', () => {
  it('random resources POSTed and PUT never cause a 500; refused ones store nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(resource, mutatedPatient), fc.constantFrom('post', 'put'), async (body, method) => {
        const type = typeof body.resourceType === 'string' && /^[A-Za-z]+$/.test(body.resourceType) ? body.resourceType : 'Patient';
        const before = await countData(t);
        const res = method === 'post' ? await a.post(type, body) : await a.put(`${type}/prop-${Math.abs(JSON.stringify(body).length)}`, { ...body, id: `prop-${Math.abs(JSON.stringify(body).length)}` });
        noServerError(res, `${method} ${JSON.stringify(body).slice(0, 200)}`);
        if (res.status >= 400) expect(await countData(t)).toEqual(before);
      }),
      { numRuns: RUNS },
    );
  });

  it('malformed JSON text never causes a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 60 }), fc.json().map((j) => j.slice(0, Math.max(0, j.length - 1)))), async (text) => {
        const before = await countData(t);
        const res = await request(t.api.app).post('/fhir/Patient').set('Authorization', (await clientAuth())).set('Content-Type', 'application/fhir+json').send(text);
        noServerError(res, `body ${JSON.stringify(text)}`);
        if (res.status >= 400) expect(await countData(t)).toEqual(before);
      }),
      { numRuns: RUNS },
    );
  });

  it('random JSON Patches never cause a 500 and never half-apply', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Patchable' }], gender: 'male' });
    const op = fc.record({
      op: fc.constantFrom('add', 'remove', 'replace', 'move', 'copy', 'test', 'bogus'),
      path: fc.oneof(fc.constantFrom('/gender', '/name/0/family', '/name/-', '/id', '/resourceType', '/meta/versionId', '/x', '', '/name/9', '/__proto__/x', '/active'), fc.string({ maxLength: 10 })),
      from: fc.constantFrom('/gender', '/name/0', '/nope', undefined),
      value: json,
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 4 }), async (ops) => {
        const current = (await a.get(`Patient/${p.id}`)).body;
        const res = await a.patch(`Patient/${p.id}`, ops);
        noServerError(res, `patch ${JSON.stringify(ops).slice(0, 300)}`);
        const after = (await a.get(`Patient/${p.id}`)).body;
        if (res.status >= 400) expect(after).toEqual(current);
        else expect(Number(after.meta.versionId)).toBe(Number(current.meta.versionId) + 1);
      }),
      { numRuns: RUNS },
    );
  });
});

let cachedAuth: string | undefined;
async function clientAuth(): Promise<string> {
  cachedAuth ??= (await t.client('a')).auth;
  return cachedAuth;
}

describe('property: Bundles', () => {
  const goodEntry = fc.constantFrom(
    { fullUrl: 'urn:uuid:6a3e6f6e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', gender: 'female' }, request: { method: 'POST', url: 'Patient' } },
    { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:6a3e6f6e-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
    { request: { method: 'GET', url: 'Patient?_count=1' } },
    { resource: { resourceType: 'Patient', id: 'prop-bundle-put' }, request: { method: 'PUT', url: 'Patient/prop-bundle-put' } },
  );
  const badEntry = fc.oneof(
    fc.record({ resource: resource, request: fc.record({ method: fc.constantFrom('POST', 'PUT', 'GET', 'DELETE', 'PATCH', 'HEAD', 'post', ''), url: fc.oneof(fc.constantFrom('Patient', 'Patient/1', 'Nope', '', '/', '?', 'Patient?x=%00', 'Patient?name=\u0000', '_history', '$validate', 'Patient/$validate', '../../etc'), fc.string({ maxLength: 15 })) }) }),
    json,
    fc.record({ fullUrl: fc.string({ maxLength: 10 }), request: json }),
    fc
      .constantFrom('Patient?identifier=none|none', 'urn:uuid:missing', 'Patient?', '?', 'Patient?_id=\u0000', 'Nope?x=1', 'Patient?name=%00')
      .map((reference) => ({ resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference } }, request: { method: 'POST', url: 'Observation' } })),
  );
  const bundle = fc.record({
    resourceType: fc.constantFrom('Bundle', 'Bundle', 'Bundle', 'Patient'),
    type: fc.constantFrom('transaction', 'transaction', 'batch', 'collection', 'searchset', undefined),
    entry: fc.oneof(fc.array(fc.oneof(goodEntry, badEntry), { maxLength: 5 }), json),
  });

  it('random transaction and batch Bundles never cause a 500; a failed transaction writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(bundle, async (b) => {
        const before = await countData(t);
        const res = await a.post('', b);
        noServerError(res, `bundle ${JSON.stringify(b).slice(0, 400)}`);
        if (res.status >= 400) expect(await countData(t)).toEqual(before);
        if (res.status === 200 && b.type === 'transaction') expect(res.body.type).toBe('transaction-response');
      }),
      { numRuns: RUNS },
    );
  });

  it('a transaction with one bad entry among good ones writes nothing (row counts in the database)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(goodEntry, { minLength: 1, maxLength: 4 }), fc.nat(4), async (good, at) => {
        const entries: unknown[] = good.filter((e) => e.request.method !== 'PUT' || true);
        // De-duplicate fullUrls (a duplicate is itself an error, which is fine but not the point here).
        let seen = false;
        const cleaned = entries.filter((e) => {
          const f = (e as { fullUrl?: string }).fullUrl;
          if (!f) return true;
          if (seen) return false;
          seen = true;
          return true;
        });
        cleaned.splice(Math.min(at, cleaned.length), 0, { resource: { resourceType: 'Patient', gender: 'robot' }, request: { method: 'POST', url: 'Patient' } });
        const rows = async () => (await countData(t)).versions;
        const before = await rows();
        const res = await a.post('', { resourceType: 'Bundle', type: 'transaction', entry: cleaned });
        expect(res.status).toBe(400);
        expect(await rows()).toBe(before);
      }),
      { numRuns: Math.ceil(RUNS / 2) },
    );
  });
});

describe('property: search strings', () => {
  const names = fc.oneof(
    fc.constantFrom('name', 'family', 'identifier', 'gender', 'birthdate', '_id', '_lastUpdated', '_count', '_offset', '_sort', '_include', '_revinclude', '_elements', '_summary', '_total', '_has:Observation:subject:code', 'subject', 'subject:Patient.name', 'name:exact', 'name:contains', 'name:missing', 'identifier:of-type', 'gender:not', 'birthdate:above', '_tag', '_security', '_profile', '_text', '_content', '_filter', '_query', '_cursor', '_type'),
    fc.string({ maxLength: 12 }),
  );
  const values = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.constantFrom('ge2020', 'lt2020-01-01T00:00:00Z', 'eq2020-02-30', 'sa', 'http://x|y', '|', '||', 'Patient/1', '-name', 'Observation:subject', '*', 'true', '-1', '1e308', '99999999999999999999', 'count', "' OR ''='", '\\', '%', '_', '$1'),
    fc.integer().map(String),
  );

  it('random search parameters never cause a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('Patient', 'Observation', 'Questionnaire', 'Task'), fc.array(fc.tuple(names, values), { maxLength: 4 }), async (type, params) => {
        const qs = new URLSearchParams(params).toString();
        const res = await a.get(`${type}?${qs}`);
        noServerError(res, `${type}?${qs}`);
        if (res.status === 200) expect(res.body.type).toBe('searchset');
      }),
      { numRuns: RUNS },
    );
  });

  it('raw, possibly invalid query strings never cause a 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 40, unit: 'binary-ascii' }), async (raw) => {
        const safe = raw.replace(/[#\s]/g, '');
        const res = await request(t.api.app).get(`/fhir/Patient?${encodeURI(safe)}`).set('Authorization', await clientAuth());
        noServerError(res, `Patient?${safe}`);
      }),
      { numRuns: RUNS },
    );
  });

  it('the server is still up and its data intact', async () => {
    expect((await request(t.api.app).get('/healthz')).body).toEqual({ status: 'ok' });
    expect((await request(t.api.app).get('/readyz')).status).toBe(200);
    expect((await a.get('Patient?_count=1')).status).toBe(200);
  });
});
