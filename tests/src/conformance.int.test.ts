// Issue 2: a real FHIR client (fhir-kit-client) against a real HTTP server on 127.0.0.1.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { Client } from 'fhir-kit-client';
import type { Bundle, CapabilityStatement, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import { freePort, unique } from './helpers.ts';

let t: TestApi;
let server: Server;
let client: Client;


beforeAll(async () => {
  const port = await freePort();
  t = await createTestApi({ publicUrl: `http://127.0.0.1:${port}` });
  server = createServer(t.api.app);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const a = await t.client('a');
  client = new Client({ baseUrl: `${t.publicUrl}/fhir`, customHeaders: { Authorization: a.auth } });
}, 120_000);
afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await t?.close();
});

/** fhir-kit-client rejects with { response: { status, data } } on HTTP errors. */
async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    const status = (e as { response?: { status?: number } }).response?.status;
    if (!status) throw e;
    return status;
  }
}

describe('fhir-kit-client against the server', () => {
  it('reads the CapabilityStatement', async () => {
    const cs = (await client.capabilityStatement()) as unknown as CapabilityStatement;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.fhirVersion).toBe('4.0.1');
  });

  it('create, read, vread, update, patch, delete, history', async () => {
    const created = (await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', gender: 'female' } })) as unknown as Patient;
    expect(created.id).toBeDefined();
    const read = (await client.read({ resourceType: 'Patient', id: created.id! })) as unknown as Patient;
    expect(read.gender).toBe('female');
    const updated = (await client.update({ resourceType: 'Patient', id: created.id!, body: { ...read, gender: 'male' } })) as unknown as Patient;
    expect(updated.meta?.versionId).toBe('2');
    const patched = (await client.patch({ resourceType: 'Patient', id: created.id!, jsonPatch: [{ op: 'replace', path: '/gender', value: 'other' }] })) as unknown as Patient;
    expect(patched.gender).toBe('other');
    const v1 = (await client.vread({ resourceType: 'Patient', id: created.id!, version: '1' })) as unknown as Patient;
    expect(v1.gender).toBe('female');
    const history = (await client.history({ resourceType: 'Patient', id: created.id! })) as unknown as Bundle;
    expect(history.entry).toHaveLength(3);
    const typeHistory = (await client.typeHistory({ resourceType: 'Patient' })) as unknown as Bundle;
    expect(typeHistory.type).toBe('history');
    await client.delete({ resourceType: 'Patient', id: created.id! });
    expect(await statusOf(client.read({ resourceType: 'Patient', id: created.id! }))).toBe(410);
  });

  it('searches and follows next pages', async () => {
    const tag = unique('fkc-');
    for (let i = 0; i < 5; i++) await client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: `${tag}-${i}` }], meta: { tag: [{ system: 'urn:test:tag', code: tag }] } } });
    let page = (await client.search({ resourceType: 'Patient', searchParams: { _tag: `urn:test:tag|${tag}`, _count: 2 } })) as unknown as Bundle;
    const seen = new Set<string>();
    for (let n = 0; n < 10; n++) {
      for (const e of page.entry ?? []) seen.add(e.resource!.id!);
      const next = client.nextPage({ bundle: page as never });
      if (!next) break;
      page = (await next) as unknown as Bundle;
    }
    expect(seen.size).toBe(5);
    const one = (await client.search({ resourceType: 'Patient', searchParams: { identifier: `urn:test:mrn|${tag}-2` } })) as unknown as Bundle;
    expect(one.entry).toHaveLength(1);
  });

  it('conditional update through the client', async () => {
    const value = unique('fkcu-');
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value }] };
    const created = (await client.update({ resourceType: 'Patient', searchParams: { identifier: `urn:test:mrn|${value}` }, body })) as unknown as Patient;
    const again = (await client.update({ resourceType: 'Patient', searchParams: { identifier: `urn:test:mrn|${value}` }, body: { ...body, active: true } })) as unknown as Patient;
    expect(again.id).toBe(created.id);
    expect(again.meta?.versionId).toBe('2');
  });

  it('transaction and batch', async () => {
    const res = (await client.transaction({
      body: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          { fullUrl: 'urn:uuid:8f0c7c7e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient' }, request: { method: 'POST', url: 'Patient' } },
          { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'urn:uuid:8f0c7c7e-0000-4000-8000-000000000001' } }, request: { method: 'POST', url: 'Observation' } },
        ],
      } as never,
    })) as unknown as Bundle;
    expect(res.type).toBe('transaction-response');
    expect(res.entry?.[1].resource?.resourceType).toBe('Observation');
    const batch = (await client.batch({ body: { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient?_count=1' } }] } as never })) as unknown as Bundle;
    expect(batch.type).toBe('batch-response');
    expect(batch.entry?.[0].response?.status).toMatch(/^200/);
  });

  it('runs an operation ($validate)', async () => {
    const oo = (await client.operation({ name: '$validate', resourceType: 'Patient', input: { resourceType: 'Patient', gender: 'robot' } as never })) as unknown as OperationOutcome;
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue?.some((i) => i.severity === 'error' && i.expression?.includes('Patient.gender'))).toBe(true);
  });

  it('gets 401 without a token, with WWW-Authenticate', async () => {
    const anonymous = new Client({ baseUrl: `${t.publicUrl}/fhir` });
    const res = await fetch(`${t.publicUrl}/fhir/Patient`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await statusOf(anonymous.search({ resourceType: 'Patient' }))).toBe(401);
  });
});
