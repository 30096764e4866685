// The search engine's contract: every parameter type, modifier and prefix with expected match
// sets, on PGlite and PostgreSQL. Fixtures are created once; each assertion names the exact set.
import type { Observation, Organization, Patient, Questionnaire, QuestionnaireResponse, Resource, RiskAssessment } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import type { SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, statusOf, testDatabaseKinds } from './testing.ts';

const BASE = 'http://fhir.test/fhir';
const system: RequestContext = { system: true, baseUrl: BASE };
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';

type Q = Record<string, string | string[]>;
const norm = (q: Q): Record<string, string[]> => Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));

describe.each(testDatabaseKinds())('search on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext = system) => new Repository(t.db, ctx, { modules: [] });
  const page = (type: string, q: Q, ctx: RequestContext = system, strict = false): Promise<SearchResult> => searchResources(t.db, ctx, [], type, norm(q), strict);
  const ids = async (type: string, q: Q, ctx: RequestContext = system): Promise<string[]> =>
    (await page(type, q, ctx)).entries.filter((e) => e.mode === 'match').map((e) => e.resource.id!).sort();
  const set = (...rs: Resource[]) => rs.map((r) => r.id!).sort();

  let org: Organization, p1: Patient, p2: Patient, p3: Patient, p4: Patient;
  let o1: Observation, o2: Observation, o3: Observation, o4: Observation;
  let r1: RiskAssessment, r2: RiskAssessment, r3: RiskAssessment, r4: RiskAssessment;
  let q1: Questionnaire, q2: Questionnaire, qr1: QuestionnaireResponse;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const r = repo();
    org = await r.create<Organization>({ resourceType: 'Organization', name: 'Clinic' });
    p1 = await r.create<Patient>({
      resourceType: 'Patient',
      meta: {
        tag: [{ system: 'urn:tag', code: 't1' }],
        profile: ['http://example.org/fhir/StructureDefinition/p'],
        source: 'http://src.example/a',
        security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HTEST' }],
      },
      name: [{ family: 'Müller', given: ['Ana'] }],
      birthDate: '1980-05-17',
      gender: 'female',
      active: true,
      identifier: [{ system: 'urn:mrn', value: 'M1', type: { coding: [{ system: V2_0203, code: 'MR' }] } }],
      managingOrganization: { reference: `Organization/${org.id}` },
    });
    p2 = await r.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Mueller', given: ['Bob'] }], birthDate: '1980-05', gender: 'male', identifier: [{ system: 'urn:other', value: 'M1' }] });
    p3 = await r.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Smith', given: ['Carl'] }], birthDate: '1980', identifier: [{ value: 'NOSYS' }] });
    p4 = await r.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Smithson' }], birthDate: '1981-01-01', identifier: [{ system: 'urn:mrn', value: 'M4' }] });
    const obs = (o: Partial<Observation>) => r.create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code: '9999-9' }] }, ...o });
    o1 = await obs({
      subject: { reference: `Patient/${p1.id}` },
      code: { coding: [{ system: LOINC, code: '1234-5', display: 'Café Score' }], text: 'Total café score' },
      effectiveDateTime: '2026-03-04T10:00:00Z',
      valueQuantity: { value: 5.4, system: UCUM, code: 'mg', unit: 'mg' },
    });
    o2 = await obs({ subject: { reference: `Patient/${p2.id}` }, effectivePeriod: { start: '2026-03-04T09:00:00Z', end: '2026-03-04T11:00:00Z' }, valueQuantity: { value: 5.4, system: UCUM, code: 'g' } });
    o3 = await obs({ subject: { reference: `http://other.example/fhir/Patient/${p1.id}` }, effectivePeriod: { start: '2026-03-05' }, valueQuantity: { value: 7, unit: 'mg' } });
    o4 = await obs({ subject: { identifier: { system: 'urn:mrn', value: 'M1' } }, status: 'preliminary' });
    const risk = (p: number) =>
      r.create<RiskAssessment>({ resourceType: 'RiskAssessment', status: 'final', subject: { reference: `Patient/${p1.id}` }, prediction: [{ probabilityDecimal: p }] });
    r1 = await risk(100);
    r2 = await risk(99.5);
    r3 = await risk(100.5);
    r4 = await risk(99.4);
    q1 = await r.create<Questionnaire>({ resourceType: 'Questionnaire', status: 'active', url: 'http://example.org/fhir/Questionnaire/phq' });
    q2 = await r.create<Questionnaire>({ resourceType: 'Questionnaire', status: 'active', url: 'http://example.org/fhir/Questionnaire/phq/v2' });
    qr1 = await r.create<QuestionnaireResponse>({ resourceType: 'QuestionnaireResponse', status: 'completed', questionnaire: 'http://example.org/fhir/Questionnaire/phq|1.0' });
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  describe('token', () => {
    it('system|code, |code, system| and code', async () => {
      expect(await ids('Patient', { identifier: 'urn:mrn|M1' })).toEqual(set(p1));
      expect(await ids('Patient', { identifier: 'M1' })).toEqual(set(p1, p2));
      expect(await ids('Patient', { identifier: '|NOSYS' })).toEqual(set(p3));
      expect(await ids('Patient', { identifier: '|M1' })).toEqual([]);
      expect(await ids('Patient', { identifier: 'urn:mrn|' })).toEqual(set(p1, p4));
      expect(await ids('Patient', { identifier: 'urn:mrn|M1,urn:mrn|M4' })).toEqual(set(p1, p4));
      expect(await ids('Patient', { gender: 'male' })).toEqual(set(p2));
      expect(await ids('Patient', { active: 'true' })).toEqual(set(p1));
    });
    it(':not matches resources without the value, including those with no value', async () => {
      expect(await ids('Patient', { 'gender:not': 'male' })).toEqual(set(p1, p3, p4));
      expect(await ids('Patient', { 'gender:not': 'male,female' })).toEqual(set(p3, p4));
    });
    it(':text searches display and text, accent- and case-insensitively', async () => {
      expect(await ids('Observation', { 'code:text': 'CAFE' })).toEqual(set(o1));
      expect(await ids('Observation', { 'code:text': 'score' })).toEqual(set(o1));
      expect(await ids('Observation', { 'code:text': 'xyz' })).toEqual([]);
    });
    it(':of-type on identifiers', async () => {
      expect(await ids('Patient', { 'identifier:of-type': `${V2_0203}|MR|M1` })).toEqual(set(p1));
      expect(await ids('Patient', { 'identifier:of-type': `${V2_0203}|MR|M4` })).toEqual([]);
    });
    it('codes of CodeableConcepts', async () => {
      expect(await ids('Observation', { code: `${LOINC}|1234-5` })).toEqual(set(o1));
      expect(await ids('Observation', { code: '9999-9', status: 'final' })).toEqual(set(o2, o3));
    });
  });

  describe('string', () => {
    it('default: case- and accent-insensitive starts-with on any part', async () => {
      expect(await ids('Patient', { family: 'mu' })).toEqual(set(p1, p2));
      expect(await ids('Patient', { family: 'MÜL' })).toEqual(set(p1));
      expect(await ids('Patient', { name: 'ana' })).toEqual(set(p1));
      expect(await ids('Patient', { name: 'smith' })).toEqual(set(p3, p4));
      expect(await ids('Patient', { family: '%' })).toEqual([]);
      expect(await ids('Patient', { family: 'smi_h' })).toEqual([]);
    });
    it(':exact and :contains', async () => {
      expect(await ids('Patient', { 'family:exact': 'Müller' })).toEqual(set(p1));
      expect(await ids('Patient', { 'family:exact': 'müller' })).toEqual([]);
      expect(await ids('Patient', { 'family:contains': 'LL' })).toEqual(set(p1, p2));
      expect(await ids('Patient', { 'family:contains': 'mith' })).toEqual(set(p3, p4));
    });
  });

  describe('reference', () => {
    it('Type/id, id, absolute URL, :Type and :identifier', async () => {
      expect(await ids('Observation', { subject: `Patient/${p1.id}` })).toEqual(set(o1));
      expect(await ids('Observation', { subject: p1.id! })).toEqual(set(o1));
      expect(await ids('Observation', { subject: `${BASE}/Patient/${p1.id}` })).toEqual(set(o1));
      expect(await ids('Observation', { subject: `http://other.example/fhir/Patient/${p1.id}` })).toEqual(set(o3));
      expect(await ids('Observation', { 'subject:Patient': p1.id! })).toEqual(set(o1));
      expect(await ids('Observation', { 'subject:Group': p1.id! })).toEqual([]);
      expect(await ids('Observation', { 'subject:identifier': 'urn:mrn|M1' })).toEqual(set(o4));
      expect(await ids('Observation', { patient: `Patient/${p2.id}` })).toEqual(set(o2));
    });
    it('canonical references with and without version', async () => {
      expect(await ids('QuestionnaireResponse', { questionnaire: 'http://example.org/fhir/Questionnaire/phq' })).toEqual(set(qr1));
      expect(await ids('QuestionnaireResponse', { questionnaire: 'http://example.org/fhir/Questionnaire/phq|1.0' })).toEqual(set(qr1));
      expect(await ids('QuestionnaireResponse', { questionnaire: 'http://example.org/fhir/Questionnaire/phq|2.0' })).toEqual([]);
    });
    it('chains one level, with or without the target type', async () => {
      expect(await ids('Observation', { 'subject:Patient.name': 'müller' })).toEqual(set(o1));
      expect(await ids('Observation', { 'subject:Patient.family': 'mue' })).toEqual(set(o2));
      expect(await ids('Observation', { 'patient.birthdate': '1980' })).toEqual(set(o1, o2));
      expect(await ids('Observation', { 'subject.name': 'mu' })).toEqual(set(o1, o2));
      expect(await ids('Observation', { 'subject:Patient.identifier': 'urn:mrn|M1' })).toEqual(set(o1));
    });
    it('reverse chains with _has', async () => {
      expect(await ids('Patient', { '_has:Observation:subject:code': `${LOINC}|1234-5` })).toEqual(set(p1));
      expect(await ids('Patient', { '_has:Observation:patient:_id': o2.id! })).toEqual(set(p2));
      expect(await ids('Patient', { '_has:RiskAssessment:subject:probability': 'gt100' })).toEqual(set(p1));
      expect(await ids('Patient', { '_has:Observation:subject:status': 'cancelled' })).toEqual([]);
    });
  });

  describe('date', () => {
    // Resource ranges: p1 1980-05-17 (a day), p2 1980-05 (a month), p3 1980 (a year), p4 1981-01-01.
    it.each([
      ['1980-05-17', ['p1']],
      ['1980-05', ['p1', 'p2']],
      ['1980', ['p1', 'p2', 'p3']],
      ['ne1980-05', ['p3', 'p4']],
      ['gt1980-05', ['p3', 'p4']],
      ['lt1980-05', ['p3']],
      ['ge1980-05', ['p1', 'p2', 'p3', 'p4']],
      ['le1980-05', ['p1', 'p2', 'p3']],
      ['sa1980-05', ['p4']],
      ['eb1980-05', []],
      ['eb1980-05-18', ['p1']],
      ['ge1980-05-18', ['p2', 'p3', 'p4']],
      ['le1980-05-16', ['p2', 'p3']],
      ['gt1980-12-31', ['p4']],
      ['lt1981-01-01', ['p1', 'p2', 'p3']],
      ['1980-05-17T12:00:00Z', []],
    ])('birthdate=%s', async (value, expected) => {
      const byName: Record<string, Patient> = { p1, p2, p3, p4 };
      expect(await ids('Patient', { birthdate: value })).toEqual(set(...expected.map((n) => byName[n])));
    });
    it('dateTime, Period and open Period with time precision and time zones', async () => {
      expect(await ids('Observation', { date: '2026-03-04' })).toEqual(set(o1, o2));
      expect(await ids('Observation', { date: '2026-03-04T10:00' })).toEqual(set(o1));
      expect(await ids('Observation', { date: '2026-03-04T11:00:00+01:00' })).toEqual(set(o1));
      expect(await ids('Observation', { date: 'gt2026-03-04T10:30:00Z' })).toEqual(set(o2, o3));
      expect(await ids('Observation', { date: 'lt2026-03-04T09:30:00Z' })).toEqual(set(o2));
      expect(await ids('Observation', { date: 'sa2026-03-04' })).toEqual(set(o3));
      expect(await ids('Observation', { date: 'eb2026-03-05' })).toEqual(set(o1, o2));
      expect(await ids('Observation', { date: 'ge2026-03-06' })).toEqual(set(o3));
      expect(await ids('Observation', { date: ['ge2026-03-04', 'lt2026-03-05'] })).toEqual(set(o1, o2));
    });
    it('ap widens by 10% of the distance from now', async () => {
      const now = Date.parse('1981-01-01T00:00:00Z');
      const r = await searchResources(t.db, system, [], 'Patient', { birthdate: ['ap1981-01-01'] }, { now });
      expect(r.entries.map((e) => e.resource.id).sort()).toEqual(set(p3, p4));
    });
    it('_lastUpdated with prefixes', async () => {
      const updated = p1.meta!.lastUpdated!;
      const later = new Date(Date.parse(updated) + 1).toISOString();
      expect(await ids('Patient', { _lastUpdated: `le${updated}`, family: 'müller' })).toEqual(set(p1));
      expect(await ids('Patient', { _lastUpdated: `gt${updated}`, family: 'müller' })).toEqual([]);
      expect(await ids('Patient', { _lastUpdated: `ge${later}`, family: 'müller' })).toEqual([]);
      expect(await ids('Patient', { _lastUpdated: updated.slice(0, 10), family: 'müller' })).toEqual(set(p1));
    });
  });

  describe('number and quantity', () => {
    it.each([
      ['100', ['r1', 'r2']],
      ['100.0', ['r1']],
      ['gt100', ['r3']],
      ['lt100', ['r2', 'r4']],
      ['ge100', ['r1', 'r3']],
      ['le99.5', ['r2', 'r4']],
      ['ne100', ['r3', 'r4']],
      ['ap100', ['r1', 'r2', 'r3', 'r4']],
      ['1e2', ['r1', 'r2', 'r3', 'r4']],
    ])('probability=%s', async (value, expected) => {
      const byName: Record<string, RiskAssessment> = { r1, r2, r3, r4 };
      expect(await ids('RiskAssessment', { probability: value })).toEqual(set(...expected.map((n) => byName[n])));
    });
    it('quantity with units', async () => {
      expect(await ids('Observation', { 'value-quantity': '5.4' })).toEqual(set(o1, o2));
      expect(await ids('Observation', { 'value-quantity': `5.4|${UCUM}|mg` })).toEqual(set(o1));
      expect(await ids('Observation', { 'value-quantity': '5.4||g' })).toEqual(set(o2));
      expect(await ids('Observation', { 'value-quantity': 'gt5' })).toEqual(set(o1, o2, o3));
      expect(await ids('Observation', { 'value-quantity': `lt6|${UCUM}|mg` })).toEqual(set(o1));
    });
  });

  describe('uri and common parameters', () => {
    it('uri exact, :below and :above', async () => {
      expect(await ids('Questionnaire', { url: 'http://example.org/fhir/Questionnaire/phq' })).toEqual(set(q1));
      expect(await ids('Questionnaire', { 'url:below': 'http://example.org/fhir' })).toEqual(set(q1, q2));
      expect(await ids('Questionnaire', { 'url:below': 'http://example.org/fhir/Questionnaire/ph' })).toEqual([]);
      expect(await ids('Questionnaire', { 'url:above': 'http://example.org/fhir/Questionnaire/phq/v2/x' })).toEqual(set(q1, q2));
      expect(await ids('Questionnaire', { 'url:above': 'http://example.org/fhir/Questionnaire/phq' })).toEqual(set(q1));
    });
    it('_id, _tag, _profile, _security, _source', async () => {
      expect(await ids('Patient', { _id: `${p1.id},${p2.id}` })).toEqual(set(p1, p2));
      expect(await ids('Patient', { _tag: 'urn:tag|t1' })).toEqual(set(p1));
      expect(await ids('Patient', { _profile: 'http://example.org/fhir/StructureDefinition/p' })).toEqual(set(p1));
      expect(await ids('Patient', { _security: 'HTEST' })).toEqual(set(p1));
      expect(await ids('Patient', { _source: 'http://src.example/a' })).toEqual(set(p1));
    });
    it(':missing on any parameter', async () => {
      expect(await ids('Patient', { 'gender:missing': 'true' })).toEqual(set(p3, p4));
      expect(await ids('Patient', { 'gender:missing': 'false' })).toEqual(set(p1, p2));
      expect(await ids('Observation', { 'value-quantity:missing': 'true' })).toEqual(set(o4));
      expect(await ids('Observation', { 'subject:missing': 'false', 'date:missing': 'true' })).toEqual([]);
      expect(await ids('Observation', { 'date:missing': 'true' })).toEqual(set(o4));
    });
  });

  describe('results', () => {
    it('sorts by several parameters and descending', async () => {
      const r = await page('Patient', { _sort: 'family,-birthdate', _id: [p1, p2, p3, p4].map((p) => p.id).join(',') });
      expect(r.entries.map((e) => e.resource.id)).toEqual([p2.id, p1.id, p3.id, p4.id]);
      const d = await page('Patient', { _sort: '-birthdate', _id: [p1, p2, p3, p4].map((p) => p.id).join(',') });
      expect(d.entries.map((e) => e.resource.id)).toEqual([p4.id, p3.id, p2.id, p1.id]);
    });
    it('_total none, estimate and accurate, and _summary=count', async () => {
      expect((await page('Patient', { family: 'mu', _total: 'accurate', _count: '1' })).total).toBe(2);
      expect((await page('Patient', { family: 'mu', _total: 'estimate', _count: '1' })).total).toBe(2);
      expect((await page('Patient', { family: 'mu', _total: 'none' })).total).toBeUndefined();
      const c = await page('Patient', { family: 'mu', _summary: 'count' });
      expect(c.total).toBe(2);
      expect(c.entries).toHaveLength(0);
      expect(c.summaryCount).toBe(true);
    });
    it('_include, _revinclude and :iterate', async () => {
      const inc = await page('Observation', { _id: o1.id!, _include: 'Observation:subject' });
      expect(inc.entries.map((e) => [e.mode, e.resource.id])).toEqual([
        ['match', o1.id],
        ['include', p1.id],
      ]);
      const rev = await page('Patient', { _id: p1.id!, _revinclude: 'Observation:subject' });
      expect(rev.entries.filter((e) => e.mode === 'include').map((e) => e.resource.id)).toEqual([o1.id]);
      const it2 = await page('Observation', { _id: o1.id!, _include: 'Observation:subject', '_include:iterate': 'Patient:organization' });
      expect(it2.entries.filter((e) => e.mode === 'include').map((e) => e.resource.id).sort()).toEqual(set(p1, org));
      const noIterate = await page('Observation', { _id: o1.id!, _include: 'Observation:subject', _revinclude: 'RiskAssessment:subject' });
      expect(noIterate.entries.filter((e) => e.mode === 'include').map((e) => e.resource.id)).toEqual([p1.id]);
      const revIterate = await page('Observation', { _id: o1.id!, _include: 'Observation:subject', '_revinclude:iterate': 'RiskAssessment:subject' });
      expect(revIterate.entries.filter((e) => e.mode === 'include').map((e) => e.resource.id).sort()).toEqual(set(p1, r1, r2, r3, r4));
    });
    it('passes _summary and _elements through for the REST layer', async () => {
      const r = await page('Patient', { _id: p1.id!, _summary: 'true', _elements: 'name,birthDate' });
      expect(r.summary).toBe('true');
      expect(r.elements).toEqual(['name', 'birthDate']);
    });
  });

  describe('paging', () => {
    const tag = 'urn:paging|run';
    let made: Patient[] = [];
    beforeAll(async () => {
      made = [];
      for (let i = 0; i < 25; i++) {
        made.push(await repo().create<Patient>({ resourceType: 'Patient', meta: { tag: [{ system: 'urn:paging', code: 'run' }] }, name: [{ family: `Page${String(i % 7)}` }], birthDate: `19${50 + (i % 5)}` }));
      }
      // Search order is (last_updated, id): resources created within the same millisecond come in id order.
      made.sort((x, y) => (x.meta!.lastUpdated! < y.meta!.lastUpdated! ? -1 : x.meta!.lastUpdated! > y.meta!.lastUpdated! ? 1 : x.id! < y.id! ? -1 : x.id! > y.id! ? 1 : 0));
    });

    async function walk(q: Q, between?: () => Promise<void>): Promise<string[]> {
      const seen: string[] = [];
      let r = await page('Patient', { ...q, _count: '10' });
      for (let guard = 0; guard < 20; guard++) {
        seen.push(...r.entries.map((e) => e.resource.id!));
        if (!r.nextCursor) break;
        if (between) await between();
        r = await page('Patient', { ...q, _count: '10', _cursor: r.nextCursor });
      }
      return seen;
    }

    it('keyset pages stay correct while resources are inserted between requests', async () => {
      const added: Patient[] = [];
      try {
        const seen = await walk({ _tag: tag }, async () => {
          added.push(await repo().create<Patient>({ resourceType: 'Patient', meta: { tag: [{ system: 'urn:paging', code: 'run' }] } }));
        });
        // Oldest first: the original 25 in order, then those added while paging, no repeats.
        expect(seen.slice(0, 25)).toEqual(made.map((p) => p.id));
        expect(new Set(seen).size).toBe(seen.length);
        expect(seen.slice(25)).toEqual(added.map((p) => p.id).slice(0, seen.length - 25));
      } finally {
        for (const p of added) await repo().delete('Patient', p.id!);
      }
    });

    it('newest-first pages neither repeat nor skip when newer resources arrive', async () => {
      const seen = await walk({ _tag: tag, _sort: '-_lastUpdated' }, async () => {
        await repo().create<Patient>({ resourceType: 'Patient', meta: { tag: [{ system: 'urn:paging', code: 'late' }] }, name: [{ family: 'Late' }] });
      });
      expect(seen).toEqual([...made].reverse().map((p) => p.id));
    });

    it('cursor pages over a parameter sort equal one big sorted page, and previous links go back', async () => {
      const all = (await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '100' })).entries.map((e) => e.resource.id);
      expect(all).toHaveLength(25);
      const first = await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '10' });
      expect(first.prevCursor).toBeUndefined();
      const second = await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '10', _cursor: first.nextCursor! });
      const third = await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '10', _cursor: second.nextCursor! });
      expect([...first.entries, ...second.entries, ...third.entries].map((e) => e.resource.id)).toEqual(all);
      expect(third.hasMore).toBe(false);
      expect(third.nextCursor).toBeUndefined();
      const back = await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '10', _cursor: third.prevCursor! });
      expect(back.entries.map((e) => e.resource.id)).toEqual(second.entries.map((e) => e.resource.id));
      const back2 = await page('Patient', { _tag: tag, _sort: 'family,-birthdate', _count: '10', _cursor: back.prevCursor! });
      expect(back2.entries.map((e) => e.resource.id)).toEqual(first.entries.map((e) => e.resource.id));
      expect(back2.prevCursor).toBeUndefined();
    });

    it('_offset paging still works, _count defaults to 20 and is capped at 1000', async () => {
      const a = await page('Patient', { _tag: tag, _count: '10', _offset: '20' });
      expect(a.entries.map((e) => e.resource.id)).toEqual(made.slice(20).map((p) => p.id));
      const d = await page('Patient', { _tag: tag });
      expect(d.entries).toHaveLength(20);
      expect(d.hasMore).toBe(true);
      expect((await page('Patient', { _tag: tag, _count: '5000' })).count).toBe(1000);
    });

    it('rejects a cursor from another search', async () => {
      const first = await page('Patient', { _tag: tag, _count: '5' });
      expect(await statusOf(page('Patient', { _tag: tag, _sort: 'family', _cursor: first.nextCursor! }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { _tag: tag, _cursor: 'bm90LWpzb24' }, system, true))).toBe(400);
    });
  });

  describe('errors', () => {
    it('unknown or malformed parameters: 400 when strict, warnings otherwise', async () => {
      expect(await statusOf(page('Patient', { nope: 'x' }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { birthdate: 'yesterday' }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { 'family:below': 'x' }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { _sort: 'nope' }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { _include: 'Patient:name' }, system, true))).toBe(400);
      const lenient = await page('Patient', { nope: 'x', family: 'smith', 'birthdate:exact': '1980' });
      expect(lenient.warnings).toHaveLength(2);
      expect(lenient.applied).toEqual([['family', 'smith']]);
      expect(lenient.entries.map((e) => e.resource.id).sort()).toEqual(set(p3, p4));
    });
    it('names that exist on Object.prototype are unknown parameters', async () => {
      expect(await statusOf(page('Patient', { constructor: 'x' }, system, true))).toBe(400);
      expect(await statusOf(page('Patient', { toString: 'x' }, system, true))).toBe(400);
    });
  });

  describe('SQL injection', () => {
    const attacks = ["'; DROP TABLE resource; --", "x' OR '1'='1", '1) OR (1=1', '$1', "\\'; SELECT pg_sleep(5); --", '%', '_'];
    it('through values: treated as data, no match, nothing breaks', async () => {
      for (const a of attacks) {
        expect(await ids('Patient', { family: a })).toEqual([]);
        expect(await ids('Patient', { identifier: a })).toEqual([]);
        expect(await ids('Patient', { 'family:contains': a })).toEqual([]);
        expect(await ids('Observation', { subject: a })).toEqual([]);
        expect(await ids('Observation', { 'subject:Patient.name': a })).toEqual([]);
        expect(await ids('Patient', { '_has:Observation:subject:code': a })).toEqual([]);
        expect(await ids('Questionnaire', { 'url:above': a })).toEqual([]);
      }
    });
    it('through names, modifiers, sort, include and cursor specs: rejected', async () => {
      const bad: Q[] = [
        { "family' OR 1=1 --": 'x' },
        { "family:exact' OR '1'='1": 'x' },
        { 'subject:Patient.name) OR (1=1': 'x' },
        { "_has:Observation:subject:code' OR 1=1--": 'x' },
        { "_has:Observation';DROP TABLE resource;--:subject:code": 'x' },
        { _sort: 'family;DROP TABLE resource' },
        { _sort: "-family' --" },
        { _include: "Patient:organization' OR 1=1 --" },
        { _include: 'Patient:organization:Organization;DROP TABLE resource' },
        { _revinclude: "Observation:subject'--" },
        { _cursor: Buffer.from(JSON.stringify({ s: '_lastUpdated', d: 'n', k: ["2020-01-01'); DROP TABLE resource; --", 'x'] })).toString('base64url') },
        { _elements: 'name,(select 1)' },
      ];
      for (const q of bad) {
        expect(await statusOf(page('Patient', q, system, true))).toBe(400);
        const lenient = await page('Patient', { ...q, _id: p1.id! });
        expect(lenient.warnings.length).toBeGreaterThan(0);
        expect(lenient.entries.map((e) => e.resource.id)).toEqual([p1.id]);
      }
      const r = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM resource');
      expect(Number(r.rows[0].n)).toBeGreaterThan(10);
    });
  });
});
