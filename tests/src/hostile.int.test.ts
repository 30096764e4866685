// Issue 4: hostile input: id format, JSON shape limits, prototype keys, SQL injection through every
// part of a search, and the per-client rate limit.
import request from 'supertest';
import type { Bundle, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi, TestClient } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countData, expectOutcome, fhir, unique } from './helpers.ts';

let t: TestApi;
let a: Fhir;
let b: Fhir;
let clientB: TestClient;
let secret: Patient;
const secretName = unique('Secretname');

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
  clientB = await t.client('b');
  b = fhir(t, clientB);
  secret = await a.create<Patient>({ resourceType: 'Patient', name: [{ family: secretName }], identifier: [{ system: 'urn:test:mrn', value: secretName }] });
}, 120_000);
afterAll(async () => t?.close());

describe('ids', () => {
  const bad = ['a'.repeat(65), 'has space', 'under_score', 'ünïcode', 'semi;colon', "quote'", '..', 'a/b', '%00', 'x%27%20OR%201%3D1'];
  it.each(bad)('refuses id %j on read, PUT and in a transaction, storing nothing', async (id) => {
    const before = await countData(t);
    const path = `Patient/${encodeURIComponent(id)}`;
    const read = await b.get(path);
    expect([400, 404]).toContain(read.status);
    const put = await b.put(path, { resourceType: 'Patient', id });
    expect([400, 404]).toContain(put.status);
    expect(put.body.resourceType).toBe('OperationOutcome');
    const tx = await b.post('', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } }] });
    expect([400, 404]).toContain(tx.status);
    expect(await countData(t)).toEqual(before);
  });

  it('an id in the body of a create is ignored; a malformed one there is never stored', async () => {
    const res = await b.post('Patient', { resourceType: 'Patient', id: "x' OR '1'='1" });
    expect(res.status).toBe(201);
    expect(res.body.id).toMatch(/^[A-Za-z0-9\-.]{1,64}$/);
  });
});

describe('JSON shape', () => {
  const send = (body: string) => request(t.api.app).post('/fhir/Patient').set('Authorization', clientB.auth).set('Content-Type', 'application/fhir+json').send(body);

  it('rejects deep nesting with 400', async () => {
    const before = await countData(t);
    const deep = `{"resourceType":"Patient","extension":${'[{"url":"x","extension":'.repeat(300)}[]${'}]'.repeat(300)}}`;
    expectOutcome(await send(deep), 400);
    expectOutcome(await send('['.repeat(100_000) + ']'.repeat(100_000)), 400);
    expect(await countData(t)).toEqual(before);
  });

  it('rejects huge arrays with 400', async () => {
    const before = await countData(t);
    expectOutcome(await send(JSON.stringify({ resourceType: 'Patient', name: Array.from({ length: 50_000 }, () => ({ family: 'x' })) })), 400);
    expect(await countData(t)).toEqual(before);
  });

  it('rejects __proto__, constructor and prototype keys anywhere', async () => {
    const before = await countData(t);
    for (const body of [
      '{"resourceType":"Patient","__proto__":{"admin":true}}',
      '{"resourceType":"Patient","name":[{"__proto__":{"x":1}}]}',
      '{"resourceType":"Patient","constructor":{"prototype":{"polluted":true}}}',
      '{"resourceType":"Patient","name":[{"family":"x","constructor":{}}]}',
    ]) {
      expectOutcome(await send(body), 400);
    }
    const tx = await b.post('', '{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","__proto__":{"x":1}},"request":{"method":"POST","url":"Patient"}}]}');
    expectOutcome(tx, 400);
    const patch = await request(t.api.app)
      .patch(`/fhir/Patient/${(await b.create<Patient>({ resourceType: 'Patient' })).id}`)
      .set('Authorization', clientB.auth)
      .set('Content-Type', 'application/json-patch+json')
      .send('[{"op":"add","path":"/__proto__/polluted","value":true}]');
    expect(patch.status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await countData(t)).resources).toBe(before.resources + 1);
  });
});

describe('NUL characters', () => {
  it('in a resource, a search value or a header answer 400, never 500', async () => {
    const before = await countData(t);
    const res = await b.post('Patient', { resourceType: 'Patient', name: [{ family: 'a\u0000b' }] });
    expectOutcome(res, 400);
    const tx = await b.post('', { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Patient', identifier: [{ value: '\u0000' }] }, request: { method: 'POST', url: 'Patient' } }] });
    expectOutcome(tx, 400);
    expect(await countData(t)).toEqual(before);
    expectOutcome(await b.get('Patient?name=%00'), 400);
    expectOutcome(await b.get('Patient?%00=x'), 400);
    expectOutcome(await b.post('Patient', { resourceType: 'Patient' }, { 'If-None-Exist': 'name=%00' }), 400);
    // In a property name too; a backslash followed by "u0000" is no NUL.
    expect(expectOutcome(await b.post('Patient', { resourceType: 'Patient', name: [{ family: 'x', 'a\u0000': 1 }] }), 400).issue[0].diagnostics).toMatch(/NUL/);
    expect((await b.post('Patient', { resourceType: 'Patient', name: [{ family: 'a\\u0000b' }] })).status).toBe(201);
  });
});

describe('prototype property names in queries and resources', () => {
  it('parameter names like toString, valueOf, __proto__ and constructor answer normally', async () => {
    for (const q of ['Patient?valueOf=0', 'Patient?toString', 'Patient?__proto__=1', 'Patient?constructor=x', 'Patient?hasOwnProperty:exact=1', 'Patient?_sort=toString', 'Patient/_history?toString=1']) {
      const res = await b.get(q);
      expect(res.status).toBeLessThan(500);
    }
    const batch = await b.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient?toString=1&__proto__=2' } }] });
    expect(batch.body.entry[0].response.status).toMatch(/^200/);
    const cond = await b.post('Patient', { resourceType: 'Patient' }, { 'If-None-Exist': 'valueOf=1' });
    expect(cond.status).toBeLessThan(500);
  });

  it('a Bundle resource whose entry is not an array answers 400', async () => {
    expectOutcome(await b.post('Bundle', { resourceType: 'Bundle', type: 'collection', entry: '' }), 400);
    expectOutcome(await b.post('', { resourceType: 'Bundle', type: 'transaction', entry: '' }), 400);
    expectOutcome(await b.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: 'GET Patient' }] }), 400);
  });
});

describe('SQL injection through search', () => {
  const payloads = [
    "' OR '1'='1",
    "'; DROP TABLE resource; --",
    "x' UNION SELECT content, null, null FROM resource --",
    '1) OR (1=1',
    "\\'; select pg_sleep(5); --",
    '%27%20OR%201=1--',
    '$1',
    '$$ OR true $$',
    "E'\\x27'",
    '\u0000',
    "');COMMIT;DELETE FROM resource;--",
  ];

  async function expectSafe(path: string): Promise<void> {
    const res = await b.get(path);
    if (res.status >= 500) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
    expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
    const text = JSON.stringify(res.body);
    expect(text).not.toContain(secret.id);
    // The name may be echoed in a self link only if b itself sent it; it never sends it here.
    expect(text).not.toContain(secretName);
    // No database error text in the answer (the self link may echo what b sent; leave it out).
    const { link: _link, ...rest } = res.body as Bundle;
    void _link;
    expect(JSON.stringify(rest)).not.toMatch(/syntax error at|relation "|column "|invalid input syntax|unterminated|permission denied/i);
  }

  it('values of every parameter type', async () => {
    for (const p of payloads) {
      const v = encodeURIComponent(p);
      for (const q of [
        `Patient?name=${v}`,
        `Patient?family:exact=${v}`,
        `Patient?identifier=${v}`,
        `Patient?identifier=${v}|${v}`,
        `Patient?_id=${v}`,
        `Patient?birthdate=${v}`,
        `Patient?birthdate=ge${v}`,
        `Patient?_lastUpdated=${v}`,
        `Observation?subject=${v}`,
        `Observation?subject=Patient/${v}`,
        `Observation?value-quantity=${v}`,
        `Observation?value-quantity=5|${v}|${v}`,
        `Patient?_count=${v}`,
        `Patient?_offset=${v}`,
        `Patient?_cursor=${v}`,
        `Patient?_total=${v}`,
        `Patient?_summary=${v}`,
        `Patient?_elements=${v}`,
        `Patient/_history?_since=${v}`,
        `Patient/_history?_at=${v}`,
        `Patient/_history?_count=${v}`,
        `?_type=${v}`,
      ]) {
        await expectSafe(q);
      }
    }
  });

  it('parameter names, modifiers, _sort and _include', async () => {
    for (const p of payloads) {
      const v = encodeURIComponent(p);
      for (const q of [
        `Patient?${v}=x`,
        `Patient?name:${v}=x`,
        `Patient?identifier:${v}=x`,
        `Patient?_sort=${v}`,
        `Patient?_sort=-${v}`,
        `Patient?_sort=name,${v}`,
        `Observation?_include=${v}`,
        `Observation?_include=Observation:${v}`,
        `Observation?_include=Observation:subject:${v}`,
        `Patient?_revinclude=${v}:subject`,
        `Patient?_revinclude=Observation:${v}`,
        `Patient?_has:${v}:subject:code=x`,
        `Observation?subject:${v}.name=x`,
        `Observation?subject.${v}=x`,
      ]) {
        await expectSafe(q);
      }
    }
  });

  it('the same through POST _search, batch entries and conditional requests', async () => {
    for (const p of payloads.slice(0, 5)) {
      const form = new URLSearchParams([['name', p], ['_sort', p], [p, p]]).toString();
      const res = await request(t.api.app).post('/fhir/Patient/_search').set('Authorization', clientB.auth).type('form').send(form);
      expect(res.status).toBeLessThan(500);
      expect(JSON.stringify(res.body)).not.toContain(secret.id);
      const batch = await b.post('', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: `Patient?${form}` } }] });
      expect(batch.status).toBe(200);
      expect(JSON.stringify(batch.body)).not.toContain(secret.id);
      const del = await b.del(`Patient?name=${encodeURIComponent(p)}`);
      expect(del.status).toBeLessThan(500);
    }
    // The data is all still there.
    expect((await a.get(`Patient/${secret.id}`)).status).toBe(200);
    const r = await t.db.db.query<{ n: string }>(`select count(*)::text as n from resource`);
    expect(Number(r.rows[0].n)).toBeGreaterThan(0);
  });
});

describe('rate limit', () => {
  let limited: TestApi;
  beforeAll(async () => {
    limited = await createTestApi({ env: { RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '2' } });
  }, 120_000);
  afterAll(async () => limited?.close());

  it('answers 429 with Retry-After once a client exceeds its burst, per client', async () => {
    const c = await limited.client('a');
    const d = await limited.client('b');
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await request(limited.api.app).get('/fhir/Patient').set('Authorization', c.auth);
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers['retry-after'];
        expectOutcome(res, 429);
      }
    }
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses).toContain(429);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    // Another client has its own bucket.
    expect((await request(limited.api.app).get('/fhir/Patient').set('Authorization', d.auth)).status).toBe(200);
    // The refusals are in the client's audit trail.
    await limited.api.drainAudit();
    const audited = await limited.db.db.query<{ content: string }>(`select content from resource where resource_type = 'AuditEvent' and owner_org = 'Organization/org-a'`);
    expect(audited.rows.some((r) => /HTTP 429/.test(r.content))).toBe(true);
    // And the limited one recovers.
    await new Promise((r) => setTimeout(r, 1100 * Number(retryAfter)));
    expect((await request(limited.api.app).get('/fhir/Patient').set('Authorization', c.auth)).status).toBe(200);
  });
});

describe('races', () => {
  it('concurrent conditional updates that match nothing create one resource', async () => {
    const value = unique('cu-race-');
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }] };
    const results = await Promise.all([1, 2, 3, 4].map(() => b.put(`Patient?identifier=urn:test:mrn|${value}`, body)));
    for (const r of results) expect(r.status).toBeLessThan(500);
    const found = (await b.get(`Patient?identifier=urn:test:mrn|${value}`)).body as Bundle;
    expect(found.entry).toHaveLength(1);
  });
});
