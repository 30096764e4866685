// Issue 2: basic search over HTTP: _id, _lastUpdated, token and reference parameters, _count with
// next links that work, _include/_revinclude, POST _search.
import type { Bundle, BundleEntry, Observation, Patient } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from './helpers.ts';
import { expectOutcome, fhir, ids, unique } from './helpers.ts';

let t: TestApi;
let a: Fhir;
const tag = unique('s-');
const patients: Patient[] = [];
let observation: Observation;
let startedAt: string;

beforeAll(async () => {
  t = await createTestApi();
  a = fhir(t, await t.client('a'));
  startedAt = new Date(Date.now() - 1000).toISOString();
  for (let i = 0; i < 7; i++) {
    patients.push(await a.create<Patient>({ resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: `${tag}-${i}` }], gender: i % 2 ? 'male' : 'female', meta: { tag: [{ system: 'urn:test:tag', code: tag }] } }));
  }
  observation = await a.create<Observation>({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
    subject: { reference: `Patient/${patients[0].id}` },
  });
}, 120_000);
afterAll(async () => t?.close());

async function search(query: string): Promise<Bundle> {
  const res = await a.get(query);
  if (res.status !== 200) throw new Error(`${query} answered ${res.status}: ${JSON.stringify(res.body)}`);
  expect(res.body.type).toBe('searchset');
  return res.body as Bundle;
}

describe('search', () => {
  it('_id', async () => {
    const b = await search(`Patient?_id=${patients[1].id},${patients[2].id}`);
    expect(ids(b).sort()).toEqual([patients[1].id, patients[2].id].sort());
  });

  it('token: identifier system|value, gender, _tag', async () => {
    expect(ids(await search(`Patient?identifier=urn:test:mrn|${tag}-3`))).toEqual([patients[3].id]);
    expect(ids(await search(`Patient?identifier=urn:other|${tag}-3`))).toEqual([]);
    expect(ids(await search(`Patient?_tag=urn:test:tag|${tag}&gender=male`)).sort()).toEqual([1, 3, 5].map((i) => patients[i].id).sort());
  });

  it('reference: subject=Patient/id and patient=id', async () => {
    expect(ids(await search(`Observation?subject=Patient/${patients[0].id}`))).toEqual([observation.id]);
    expect(ids(await search(`Observation?patient=${patients[0].id}`))).toEqual([observation.id]);
    expect(ids(await search(`Observation?subject=Patient/${patients[1].id}`))).toEqual([]);
    expect(ids(await search(`Observation?code=http://loinc.org|8867-4&subject=Patient/${patients[0].id}`))).toEqual([observation.id]);
  });

  it('_lastUpdated', async () => {
    const all = ids(await search(`Patient?_tag=urn:test:tag|${tag}&_lastUpdated=ge${startedAt}`));
    expect(all).toHaveLength(7);
    expect(ids(await search(`Patient?_tag=urn:test:tag|${tag}&_lastUpdated=lt${startedAt}`))).toHaveLength(0);
  });

  it('_count with next links that reach every match exactly once', async () => {
    const seen: string[] = [];
    let url: string | undefined = `Patient?_tag=urn:test:tag|${tag}&_count=3`;
    let pages = 0;
    while (url && pages < 10) {
      const b = await search(url);
      expect((b.entry ?? []).length).toBeLessThanOrEqual(3);
      seen.push(...ids(b));
      const next = b.link?.find((l) => l.relation === 'next')?.url;
      if (next) expect(next.startsWith(`${t.publicUrl}/fhir/Patient?`)).toBe(true);
      url = next?.replace(t.publicUrl, '');
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(patients.map((p) => p.id!).sort());
  });

  it('_include and _revinclude', async () => {
    const inc = await search(`Observation?_id=${observation.id}&_include=Observation:subject`);
    expect(inc.entry?.find((e: BundleEntry) => e.search?.mode === 'include')?.resource?.id).toBe(patients[0].id);
    const rev = await search(`Patient?_id=${patients[0].id}&_revinclude=Observation:subject`);
    expect(rev.entry?.find((e: BundleEntry) => e.search?.mode === 'include')?.resource?.id).toBe(observation.id);
  });

  it('POST _search with a form body', async () => {
    const res = await (await import('supertest')).default(t.api.app)
      .post('/fhir/Patient/_search')
      .set('Authorization', (await t.client('a')).auth)
      .type('form')
      .send(`identifier=urn:test:mrn|${tag}-4`);
    expect(res.status).toBe(200);
    expect(ids(res.body)).toEqual([patients[4].id]);
  });

  it('an unknown parameter is ignored with a warning, or refused under handling=strict', async () => {
    const b = await search(`Patient?_id=${patients[0].id}&not-a-param=1`);
    expect(ids(b, 'Patient')).toEqual([patients[0].id]);
    expectOutcome(await a.get(`Patient?not-a-param=1`, { Prefer: 'handling=strict' }), 400);
  });

  it('a malformed value is never a 500: a warning when lenient, 400 under handling=strict', async () => {
    const lenient = await search('Patient?_lastUpdated=not-a-date');
    expect(lenient.entry?.find((e) => e.search?.mode === 'outcome')?.resource?.resourceType).toBe('OperationOutcome');
    expectOutcome(await a.get('Patient?_lastUpdated=not-a-date', { Prefer: 'handling=strict' }), 400);
    const count = await a.get('Patient?_count=-1');
    expect(count.status).toBeLessThan(500);
  });
});
