// Issue 2: the RESTful interactions over HTTP: capabilities, create/read/vread/update/delete,
// history with paging, conditional create/update, If-Match, PATCH, Prefer, concurrency, health.
import request from 'supertest';
import type { Bundle, CapabilityStatement, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countVersions, expectOutcome, fhir, unique } from './helpers.ts';

let t: TestApi;
let a: Fhir;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
}, 120_000);
afterAll(async () => t?.close());

describe('capabilities and health', () => {
  it('serves a CapabilityStatement without a token', async () => {
    const res = await request(t.api.app).get('/fhir/metadata');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
    const cs = res.body as CapabilityStatement;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
    const patient = cs.rest?.[0].resource?.find((r) => r.type === 'Patient');
    expect(patient?.interaction?.map((i) => i.code)).toEqual(expect.arrayContaining(['read', 'vread', 'update', 'delete', 'create', 'search-type', 'history-instance']));
    expect(patient?.searchParam?.map((p) => p.name)).toEqual(expect.arrayContaining(['_id', '_lastUpdated', 'identifier', 'name']));
    expect(cs.rest?.[0].interaction?.map((i) => i.code)).toEqual(expect.arrayContaining(['transaction', 'batch']));
  });

  it('answers /healthz and /readyz', async () => {
    expect((await request(t.api.app).get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await request(t.api.app).get('/readyz');
    expect(ready.status).toBe(200);
    t.api.setReady(false);
    expect((await request(t.api.app).get('/readyz')).status).toBe(503);
    t.api.setReady(true);
  });
});

describe('create, read, vread, update, delete', () => {
  it('creates with a server-assigned id, Location, ETag and Last-Modified', async () => {
    const res = await a.post('Patient', { resourceType: 'Patient', id: 'client-chosen', gender: 'female' });
    expect(res.status).toBe(201);
    expect(res.body.id).not.toBe('client-chosen');
    expect(res.headers['etag']).toBe('W/"1"');
    expect(res.headers['location']).toBe(`${t.publicUrl}/fhir/Patient/${res.body.id}/_history/1`);
    expect(new Date(res.headers['last-modified']).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(res.body.meta.versionId).toBe('1');
  });

  it('reads, updates, vreads and deletes (then 410 Gone)', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const read = await a.get(`Patient/${p.id}`);
    expect(read.status).toBe(200);
    expect(read.headers['etag']).toBe('W/"1"');
    const upd = await a.put(`Patient/${p.id}`, { ...read.body, gender: 'other' });
    expect(upd.status).toBe(200);
    expect(upd.headers['etag']).toBe('W/"2"');
    expect(upd.body.gender).toBe('other');
    const v1 = await a.get(`Patient/${p.id}/_history/1`);
    expect(v1.status).toBe(200);
    expect(v1.body.gender).toBe('male');
    expect((await a.get(`Patient/${p.id}/_history/2`)).body.gender).toBe('other');
    expectOutcome(await a.get(`Patient/${p.id}/_history/9`), 404);
    const del = await a.del(`Patient/${p.id}`);
    expect(del.status).toBe(204);
    expectOutcome(await a.get(`Patient/${p.id}`), 410);
    // The old versions stay readable.
    expect((await a.get(`Patient/${p.id}/_history/1`)).status).toBe(200);
    // Deleting again is idempotent.
    expect((await a.del(`Patient/${p.id}`)).status).toBe(204);
    expectOutcome(await a.get('Patient/does-not-exist'), 404);
  });

  it('creates on update with a client id (201), then updates (200)', async () => {
    const id = unique('cou-');
    const res = await a.put(`Patient/${id}`, { resourceType: 'Patient', id, gender: 'unknown' });
    expect(res.status).toBe(201);
    expect(res.headers['etag']).toBe('W/"1"');
    expect(res.headers['location']).toBe(`${t.publicUrl}/fhir/Patient/${id}/_history/1`);
    const again = await a.put(`Patient/${id}`, { resourceType: 'Patient', id, gender: 'female' });
    expect(again.status).toBe(200);
    expect(again.headers['etag']).toBe('W/"2"');
  });

  it('supports conditional read with If-None-Match', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    expect((await a.get(`Patient/${p.id}`, { 'If-None-Match': 'W/"1"' })).status).toBe(304);
  });
});

describe('history', () => {
  it('answers instance, type and system history with working next links', async () => {
    const b = fhir(t, await t.client('c'));
    const p = await b.create<Patient>({ resourceType: 'Patient', gender: 'female' });
    for (const g of ['male', 'other', 'unknown', 'female']) {
      const r = await b.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, gender: g });
      expect(r.status).toBe(200);
    }
    await b.del(`Patient/${p.id}`);
    const inst = await b.get(`Patient/${p.id}/_history`);
    expect(inst.status).toBe(200);
    const bundle = inst.body as Bundle;
    expect(bundle.type).toBe('history');
    expect(bundle.entry).toHaveLength(6);
    expect(bundle.entry?.[0].request?.method).toBe('DELETE');
    expect(bundle.entry?.[5].response?.etag).toBe('W/"1"');

    // Paging: 2 per page, follow next links through all 6 versions.
    const seen: string[] = [];
    let url: string | undefined = `Patient/${p.id}/_history?_count=2`;
    for (let pages = 0; url && pages < 10; pages++) {
      const res = await b.get(url);
      expect(res.status).toBe(200);
      for (const e of (res.body as Bundle).entry ?? []) seen.push(e.response!.etag!);
      const next = (res.body as Bundle).link?.find((l) => l.relation === 'next')?.url;
      url = next ? next.replace(t.publicUrl, '') : undefined;
    }
    expect(seen).toEqual(['W/"6"', 'W/"5"', 'W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']);

    // _at: the version current at a moment (kept in the paging links); a malformed value is a 400.
    const third = bundle.entry!.find((e) => e.response?.etag === 'W/"3"')!;
    const at = await b.get(`Patient/${p.id}/_history?_at=${encodeURIComponent(third.response!.lastModified!)}&_count=1`);
    expect(at.status).toBe(200);
    expect((at.body as Bundle).entry?.map((e) => e.response?.etag)).toEqual(['W/"3"']);
    expect((at.body as Bundle).link?.find((l) => l.relation === 'self')?.url).toContain('_at=');
    const year = await b.get(`Patient/${p.id}/_history?_at=${new Date().getUTCFullYear()}`);
    expect(year.body.entry).toHaveLength(6);
    expectOutcome(await b.get(`Patient/${p.id}/_history?_at=yesterday`), 400);

    const type = await b.get('Patient/_history?_count=3');
    expect(type.status).toBe(200);
    expect(type.body.entry).toHaveLength(3);
    expect(type.body.link.find((l: { relation: string }) => l.relation === 'next')).toBeDefined();
    const sys = await b.get('_history?_count=2');
    expect(sys.status).toBe(200);
    expect(sys.body.type).toBe('history');
    expect(sys.body.entry.length).toBe(2);
    const next = await b.get(sys.body.link.find((l: { relation: string }) => l.relation === 'next').url.replace(t.publicUrl, ''));
    expect(next.status).toBe(200);
    expect(next.body.entry.length).toBeGreaterThan(0);
  });
});

describe('conditional interactions', () => {
  it('conditional create: an existing match answers 200 and writes nothing', async () => {
    const value = unique('mrn-');
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }] };
    const first = await a.post('Patient', body, { 'If-None-Exist': `identifier=urn:test:mrn|${value}` });
    expect(first.status).toBe(201);
    const patientVersions = () => countVersions(t, 'Patient');
    const before = await patientVersions();
    const second = await a.post('Patient', body, { 'If-None-Exist': `identifier=urn:test:mrn|${value}` });
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    const search = await a.get(`Patient?identifier=urn:test:mrn|${value}`);
    expect(search.body.entry).toHaveLength(1);
    expect(await patientVersions()).toBe(before);
  });

  it('concurrent conditional creates with the same If-None-Exist store one resource', async () => {
    const value = unique('race-');
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }] };
    const results = await Promise.all([1, 2, 3, 4].map(() => a.post('Patient', body, { 'If-None-Exist': `identifier=urn:test:mrn|${value}` })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 201]);
    expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
    expect((await a.get(`Patient?identifier=urn:test:mrn|${value}`)).body.entry).toHaveLength(1);
  });

  it('conditional update: creates when nothing matches, updates the one match', async () => {
    const value = unique('cu-');
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }], gender: 'female' };
    const c = await a.put(`Patient?identifier=urn:test:mrn|${value}`, body);
    expect(c.status).toBe(201);
    const u = await a.put(`Patient?identifier=urn:test:mrn|${value}`, { ...body, gender: 'male' });
    expect(u.status).toBe(200);
    expect(u.body.id).toBe(c.body.id);
    expect(u.headers['etag']).toBe('W/"2"');
  });

  it('conditional delete removes the match', async () => {
    const value = unique('cd-');
    const p = await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }] });
    expect((await a.del(`Patient?identifier=urn:test:mrn|${value}`)).status).toBe(204);
    expectOutcome(await a.get(`Patient/${p.id}`), 410);
  });

  it('If-Match: 412 when stale, 200 when current', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient' });
    const ok = await a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, gender: 'male' }, { 'If-Match': 'W/"1"' });
    expect(ok.status).toBe(200);
    expectOutcome(await a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, gender: 'female' }, { 'If-Match': 'W/"1"' }), 412);
    expect((await a.get(`Patient/${p.id}`)).body.gender).toBe('male');
    expectOutcome(await a.del(`Patient/${p.id}`, { 'If-Match': 'W/"1"' }), 412);
  });

  it('two concurrent updates with the same If-Match: exactly one 200, the other 412', async () => {
    for (let round = 0; round < 5; round++) {
      const p = await a.create<Patient>({ resourceType: 'Patient' });
      const [r1, r2] = await Promise.all([
        a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, gender: 'male' }, { 'If-Match': 'W/"1"' }),
        a.put(`Patient/${p.id}`, { resourceType: 'Patient', id: p.id, gender: 'female' }, { 'If-Match': 'W/"1"' }),
      ]);
      expect([r1.status, r2.status].sort()).toEqual([200, 412]);
      const read = await a.get(`Patient/${p.id}`);
      expect(read.body.meta.versionId).toBe('2');
    }
  });
});

describe('PATCH and Prefer', () => {
  it('applies a JSON Patch and honours If-Match', async () => {
    const p = await a.create<Patient>({ resourceType: 'Patient', gender: 'male' });
    const res = await a.patch(`Patient/${p.id}`, [{ op: 'replace', path: '/gender', value: 'female' }, { op: 'add', path: '/active', value: true }]);
    expect(res.status).toBe(200);
    expect(res.body.gender).toBe('female');
    expect(res.body.active).toBe(true);
    expect(res.headers['etag']).toBe('W/"2"');
    expectOutcome(await a.patch(`Patient/${p.id}`, [{ op: 'replace', path: '/gender', value: 'male' }], { 'If-Match': 'W/"1"' }), 412);
    expectOutcome(await a.patch(`Patient/${p.id}`, [{ op: 'replace', path: '/id', value: 'other' }]), 400);
    // A patch producing an invalid resource is refused by validation.
    const bad = await a.patch(`Patient/${p.id}`, [{ op: 'replace', path: '/gender', value: 'robot' }]);
    expect(bad.status).toBe(400);
    expect((await a.get(`Patient/${p.id}`)).body.meta.versionId).toBe('2');
  });

  it('Prefer return=minimal | representation | OperationOutcome', async () => {
    const minimal = await a.post('Patient', { resourceType: 'Patient' }, { Prefer: 'return=minimal' });
    expect(minimal.status).toBe(201);
    expect(minimal.text).toBe('');
    expect(minimal.headers['location']).toBeDefined();
    const rep = await a.post('Patient', { resourceType: 'Patient' }, { Prefer: 'return=representation' });
    expect(rep.body.resourceType).toBe('Patient');
    const oo = await a.post('Patient', { resourceType: 'Patient' }, { Prefer: 'return=OperationOutcome' });
    expect(oo.status).toBe(201);
    expect(oo.body.resourceType).toBe('OperationOutcome');
    const id = rep.body.id;
    const upd = await a.put(`Patient/${id}`, { resourceType: 'Patient', id, active: true }, { Prefer: 'return=minimal' });
    expect(upd.status).toBe(200);
    expect(upd.text).toBe('');
    expect(upd.headers['etag']).toBe('W/"2"');
  });
});
