// Smoke test of the composed API: auth, create/read with headers, refusal across organisations.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import type { TestApi } from './testing.ts';
import { createTestApi } from './testing.ts';

describe('api', () => {
  let t: TestApi;
  beforeAll(async () => {
    t = await createTestApi();
  }, 120_000);
  afterAll(async () => t?.close());

  it('creates and reads a Patient with FHIR headers, and hides it from another organisation', async () => {
    const a = await t.client('a');
    const b = await t.client('b');
    const created = await request(t.api.app).post('/fhir/Patient').set('Authorization', a.auth).set('Content-Type', 'application/fhir+json').send(JSON.stringify({ resourceType: 'Patient', gender: 'female' }));
    expect(created.status).toBe(201);
    expect(created.headers['content-type']).toMatch(/application\/fhir\+json/);
    expect(created.headers['etag']).toBe('W/"1"');
    expect(created.headers['location']).toMatch(new RegExp(`^${t.publicUrl}/fhir/Patient/[0-9a-f-]+/_history/1$`));
    expect(created.headers['last-modified']).toBeDefined();
    const id = created.body.id;
    const read = await request(t.api.app).get(`/fhir/Patient/${id}`).set('Authorization', a.auth);
    expect(read.status).toBe(200);
    expect((await request(t.api.app).get(`/fhir/Patient/${id}`).set('Authorization', b.auth)).status).toBe(404);
    expect((await request(t.api.app).get(`/fhir/Patient/${id}`)).status).toBe(401);
  });

  it('applies _elements and _summary to reads and search results, tagging them SUBSETTED', async () => {
    const a = await t.client('a');
    const created = await request(t.api.app)
      .post('/fhir/Patient')
      .set('Authorization', a.auth)
      .set('Content-Type', 'application/fhir+json')
      .send(JSON.stringify({ resourceType: 'Patient', gender: 'male', birthDate: '1990-01-01', text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' } }));
    const id = created.body.id;
    const elements = await request(t.api.app).get(`/fhir/Patient/${id}?_elements=gender`).set('Authorization', a.auth);
    expect(elements.body.gender).toBe('male');
    expect(elements.body.birthDate).toBeUndefined();
    expect(elements.body.meta.tag.some((c: { code: string }) => c.code === 'SUBSETTED')).toBe(true);
    const summary = await request(t.api.app).get(`/fhir/Patient?_id=${id}&_summary=true`).set('Authorization', a.auth);
    const entry = summary.body.entry[0].resource;
    expect(entry.text).toBeUndefined();
    expect(entry.birthDate).toBe('1990-01-01');
    const count = await request(t.api.app).get(`/fhir/Patient?_id=${id}&_summary=count`).set('Authorization', a.auth);
    expect(count.body.total).toBe(1);
    expect(count.body.entry ?? []).toHaveLength(0);
  });
});

describe('createTestApi', () => {
  it('leaves no directory behind when the app does not start (and says why)', async () => {
    // tmpdir() reads TMPDIR at each call: a private one shows exactly what this start created.
    const own = mkdtempSync(join(tmpdir(), 'tic-test-tmpdir-'));
    const before = process.env.TMPDIR;
    process.env.TMPDIR = own;
    try {
      await expect(createTestApi({ env: { AUDIT_JOURNAL_SYNC_MS: 'soon' } })).rejects.toThrow('AUDIT_JOURNAL_SYNC_MS must be a number');
      expect(readdirSync(own)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      rmSync(own, { recursive: true, force: true });
    }
  });
});
