// What a transaction Bundle costs the database: the SQL statements (each one round trip) of the
// benchmark's 10-entry Bundle (a Patient and 9 Observations referring to it by urn:uuid), counted
// at the pg driver. PostgreSQL only (the count is of pg client queries).
import type { Bundle, BundleEntry, Observation } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { countStatements, fhir, unique } from './helpers.ts';

// Skipped without DATABASE_URL: the count is of the pg driver's queries (PGlite has none); CI sets it.
const run = process.env.DATABASE_URL ? describe : describe.skip;

run('transaction Bundle: statements per Bundle', () => {
  let t: TestApi;
  let a: Fhir;
  const counter = countStatements();
  const statements = counter.statements;
  beforeAll(async () => {
    t = await createTestApi({ kind: 'postgres' });
    a = fhir(t, await t.client('a'));
    counter.install();
  }, 120_000);
  afterAll(async () => {
    counter.restore();
    await t?.close();
  });

  const bundle = (): Bundle => {
    const patient = `urn:uuid:${crypto.randomUUID()}`;
    const entry: BundleEntry[] = [{ fullUrl: patient, resource: { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: unique('cost-') }] }, request: { method: 'POST', url: 'Patient' } }];
    for (let i = 0; i < 9; i++) {
      const o: Observation = { resourceType: 'Observation', status: 'final', code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: patient }, valueQuantity: { value: 60 + i, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' } };
      entry.push({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: o, request: { method: 'POST', url: 'Observation' } });
    }
    return { resourceType: 'Bundle', type: 'transaction', entry };
  };

  it('a Patient and 9 Observations take 3 statements (BEGIN, the 10 resources with their index and audit rows, COMMIT), not one per entry', async () => {
    // Warm-up (first use compiles and caches), then measure a second Bundle with the audit queue's
    // background drain stopped, so only the request's own statements are counted.
    expect((await a.post('', bundle())).status).toBe(200);
    await t.api.pauseAudit();
    statements.length = 0;
    const res = await a.post('', bundle());
    const during = [...statements];
    expect(res.status).toBe(200);
    const out = res.body as Bundle;
    expect(out.entry?.map((e) => e.response?.status)).toEqual(Array(10).fill('201 Created'));
    const patientId = /Patient\/([^/]+)/.exec(out.entry![0].response!.location!)![1];
    for (const e of out.entry!.slice(1)) expect((e.resource as Observation).subject?.reference).toBe(`Patient/${patientId}`);
    const listing = during.map((sql) => sql.replace(/\s+/g, ' ').slice(0, 100));
    expect({ count: during.length, listing }).toEqual({ count: Math.min(during.length, 3), listing });
    // Each created resource has its audit row (written in the same statement).
    const ids = out.entry!.map((e) => `${e.resource!.resourceType}/${e.resource!.id}/_history/1`);
    const audit = await t.db.db.query<{ content: string }>('select content from audit_queue');
    const recorded = audit.rows.map((r) => r.content).join('\n');
    for (const id of ids) expect(recorded).toContain(id);
  });
});
