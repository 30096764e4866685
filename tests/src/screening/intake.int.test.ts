// Issue 5 end to end, intake: QuestionnaireResponses POSTed to the real API are validated against
// their Questionnaire, scored, and their Observations stored in the same transaction; declined
// items; invalid responses store nothing; who answered; amended responses; $extract; $lastn;
// the instruments seeded once and searchable; organisation isolation.
//
// Screening data is labelled R (restricted) + BH, so only clients allowed to read restricted data
// see it: the organisation's EHR here is the `sensitive` client (Organization/org-sensitive).
// Client `a` (org-a, no `sensitive` flag) may submit but cannot read back.
import type { Bundle, Observation, Parameters, Patient, Questionnaire, QuestionnaireResponse } from '@medplum/fhirtypes';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import { createApi } from '@tic/api/app';
import { loadConfig } from '../../../services/api/src/config.ts';
import type { Fhir } from '../helpers.ts';
import { countData, expectOutcome, fhir, ids, unique } from '../helpers.ts';
import type { InstrumentId, Spec } from './screening.ts';
import {
  BASE,
  DECLINED,
  INSTRUMENTS,
  NO,
  SCREENING_CODES,
  YES,
  codeOf,
  component,
  fetchQuestionnaires,
  hasLabels,
  interpretationOf,
  observationsOf,
  ok,
  response,
  scoreOf,
  weights,
} from './screening.ts';

let t: TestApi;
let s: Fhir; // org-sensitive's EHR: may read R-labelled data
let a: Fhir; // org-a, may not read R-labelled data
let b: Fhir; // org-b
let qs: Record<InstrumentId, Questionnaire>;

beforeAll(async () => {
  t = await createTestApi();
  s = fhir(t, await t.client('sensitive'));
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
  qs = await fetchQuestionnaires(s);
}, 120_000);
afterAll(async () => t?.close());

async function newPatient(client: Fhir = s): Promise<string> {
  const p = await client.create<Patient>({ resourceType: 'Patient', gender: 'unknown' });
  return `Patient/${p.id}`;
}

/** POSTs a response for a new patient as `client`; returns the stored response and its Observations. */
async function submit(id: InstrumentId, answers: Record<string, Spec>, extra: Partial<QuestionnaireResponse> = {}, client: Fhir = s) {
  const subject = extra.subject ?? { reference: await newPatient(client) };
  const qr = await ok<QuestionnaireResponse>(await client.post('QuestionnaireResponse', response(qs[id], answers, { subject, ...extra })), 201);
  return { qr, observations: await observationsOf(client, qr.id!) };
}

const SCORE_CODE: Record<InstrumentId, string> = {
  'pc-ptsd-5': '102017-1',
  'pcl-5': '101698-9',
  ace: '112442-9',
  'phq-9': '44261-6',
  'gad-7': '70274-6',
  'qpr-15': 'qpr-15-total',
};

describe('instruments are seeded once and searchable', () => {
  it('finds each Questionnaire by url, url|version, name and title; PC-PTSD-5 by item code', async () => {
    for (const id of INSTRUMENTS) {
      const q = qs[id];
      expect(q.version).toBe('1.0.0');
      expect(q.status).toBe('active');
      const byVersion = await ok<Bundle>(await s.get(`Questionnaire?url=${encodeURIComponent(q.url!)}&version=1.0.0`));
      expect(ids(byVersion)).toEqual([q.id]);
      expect(ids(await ok<Bundle>(await s.get(`Questionnaire?name=${q.name}`)))).toEqual([q.id]);
      expect(ids(await ok<Bundle>(await s.get(`Questionnaire?title=${encodeURIComponent(q.title!)}`)))).toContain(q.id);
    }
    expect(ids(await ok<Bundle>(await s.get('Questionnaire?title:contains=PTSD'))).sort()).toEqual([qs['pc-ptsd-5'].id, qs['pcl-5'].id].sort());
    // Questionnaire `code` searches the item codes (R4: Questionnaire.item.code).
    expect(ids(await ok<Bundle>(await s.get('Questionnaire?code=http://loinc.org|102017-1')))).toEqual([qs['pc-ptsd-5'].id]);
    expect(ids(await ok<Bundle>(await s.get('Questionnaire?code=http://loinc.org|44261-6')))).toEqual([qs['phq-9'].id]);
    // Any client may read them (reference data, not patient data).
    expect((await b.get(`Questionnaire/${qs.ace.id}`)).status).toBe(200);
  });

  it('a second API started on the same database does not duplicate them', async () => {
    // Same database, its own data directory (and so audit journal, <dataDir>/audit-journal), removed
    // once the second API has stopped and closed its journal.
    const dataDir = mkdtempSync(join(tmpdir(), 'tic-test-data-'));
    const config = loadConfig({ PUBLIC_URL: t.publicUrl, DATA_DIR: dataDir, DEMO_DATA: 'false', LOG_LEVEL: 'silent' });
    const before = await countData(t);
    try {
      const second = await createApi({ config, db: t.db.db, logger: pino({ level: 'silent' }) });
      await second.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
    expect((await countData(t)).resources).toBe(before.resources);
    for (const id of INSTRUMENTS) {
      const found = await ok<Bundle>(await s.get(`Questionnaire?url=${encodeURIComponent(`${BASE}/Questionnaire/${id}`)}&version=1.0.0`));
      expect(ids(found)).toHaveLength(1);
    }
    const cs = await ok<Bundle>(await s.get(`CodeSystem?url=${encodeURIComponent(SCREENING_CODES)}`));
    expect(ids(cs)).toHaveLength(1);
    // The project extensions the Questionnaires use are defined (and seeded once too).
    for (const ext of ['screening-cutoff', 'screening-band', 'screening-cluster']) {
      const sd = await ok<Bundle>(await s.get(`StructureDefinition?url=${encodeURIComponent(`${BASE}/StructureDefinition/${ext}`)}`));
      expect(ids(sd)).toHaveLength(1);
    }
  });
});

describe('known answer sets: score, interpretation, cut-off, Observation shape', () => {
  // [instrument, answers, total, interpretation (undefined: none), cut-off, item Observations]
  const cases: [string, InstrumentId, () => Record<string, Spec>, number, string | undefined, number | undefined, number][] = [
    ['PC-PTSD-5 at the cut-off (3)', 'pc-ptsd-5', () => ({ exposure: YES, q1: 1, q2: 1, q3: 1, q4: 0, q5: 0 }), 3, 'POS', 3, 6],
    ['PC-PTSD-5 just below (2)', 'pc-ptsd-5', () => ({ exposure: YES, q1: 1, q2: 0, q3: 1, q4: 0, q5: 0 }), 2, 'NEG', 3, 6],
    ['PC-PTSD-5 all five', 'pc-ptsd-5', () => ({ exposure: YES, q1: 1, q2: 1, q3: 1, q4: 1, q5: 1 }), 5, 'POS', 3, 6],
    ['PCL-5 at 33', 'pcl-5', () => weights(qs['pcl-5'], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]), 33, 'POS', 33, 20],
    ['PCL-5 at 32', 'pcl-5', () => weights(qs['pcl-5'], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]), 32, 'NEG', 33, 20],
    ['PCL-5 all zero', 'pcl-5', () => weights(qs['pcl-5'], 0), 0, 'NEG', 33, 20],
    ['PCL-5 all extreme', 'pcl-5', () => weights(qs['pcl-5'], 4), 80, 'POS', 33, 20],
    ['ACE 4 of 10', 'ace', () => weights(qs.ace, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]), 4, 'POS', 4, 0],
    ['ACE 3 of 10', 'ace', () => weights(qs.ace, [1, 0, 1, 0, 1, 0, 0, 0, 0, 0]), 3, 'NEG', 4, 0],
    // The difficulty item is answered but neither coded nor marked for extraction: no Observation.
    ['PHQ-9 at 10', 'phq-9', () => ({ ...weights(qs['phq-9'], [2, 2, 1, 1, 1, 1, 1, 1, 0]), difficulty: { system: `${BASE}/CodeSystem/screening-answers`, code: 'somewhat-difficult' } }), 10, 'POS', 10, 9],
    ['PHQ-9 at 9', 'phq-9', () => weights(qs['phq-9'], 1), 9, 'NEG', 10, 9],
    ['GAD-7 at 10', 'gad-7', () => weights(qs['gad-7'], [3, 3, 1, 1, 1, 1, 0]), 10, 'POS', 10, 7],
    ['GAD-7 at 9', 'gad-7', () => weights(qs['gad-7'], [3, 3, 1, 1, 1, 0, 0]), 9, 'NEG', 10, 7],
    ['QPR-15 (no cut-off)', 'qpr-15', () => weights(qs['qpr-15'], 3), 45, undefined, undefined, 0],
  ];

  it.each(cases)('%s', async (_name, id, answers, total, interpretation, cutoff, itemCount) => {
    const { qr, observations } = await submit(id, answers(), { author: { reference: 'Practitioner/dr-x' } });
    expect(hasLabels(qr)).toBe(true);
    expect(observations).toHaveLength(itemCount + 1);
    const score = scoreOf(observations, SCORE_CODE[id]);
    expect(score.valueInteger).toBe(total);
    expect(interpretationOf(score)).toBe(interpretation);
    expect(component(score, 'cutoff-applied')?.valueInteger).toBe(cutoff);
    expect(component(score, 'declined-items')).toBeUndefined();
    for (const o of observations) {
      expect(o.status).toBe('final');
      expect(o.category?.[0].coding?.[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' });
      expect(hasLabels(o)).toBe(true);
      expect(o.subject).toEqual(qr.subject);
      expect(o.effectiveDateTime).toBe(qr.authored);
      expect(o.performer).toEqual([{ reference: 'Practitioner/dr-x' }]);
      expect(o.derivedFrom).toEqual([{ reference: `QuestionnaireResponse/${qr.id}` }]);
    }
    // Item Observations carry the item's code and the answer given.
    const items = observations.filter((o) => o !== score);
    const itemCodes = new Set(qs[id].item!.flatMap((i) => (i.code ?? []).map((c) => c.code)));
    for (const o of items) {
      expect(itemCodes.has(codeOf(o))).toBe(true);
      expect(o.valueCodeableConcept?.coding?.[0].code).toBeDefined();
    }
  });

  it('PHQ-9 records its severity band; PCL-5 its DSM-5 cluster pattern', async () => {
    const phq = scoreOf((await submit('phq-9', weights(qs['phq-9'], [2, 2, 2, 2, 2, 2, 1, 1, 1]))).observations, '44261-6');
    expect(phq.valueInteger).toBe(15);
    expect(component(phq, 'severity')?.valueCodeableConcept?.coding?.[0].code).toBe('moderately-severe');
    // Total 20 (below 33) but every cluster met: the pattern is positive while the total is negative.
    const pcl = scoreOf((await submit('pcl-5', weights(qs['pcl-5'], [2, 0, 0, 0, 0, 2, 0, 2, 2, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0]))).observations, '101698-9');
    expect(pcl.valueInteger).toBe(12);
    expect(interpretationOf(pcl)).toBe('NEG');
    const pattern = component(pcl, 'cluster-pattern');
    expect(pattern?.valueBoolean).toBe(true);
    expect(pattern?.interpretation?.[0].coding?.[0].code).toBe('POS');
    expect(component(pcl, 'pcl-5-cluster-d')?.valueInteger).toBe(2);
  });
});

describe('declined items are never silently zero', () => {
  it('PC-PTSD-5 gate "No" ends the screen: score 0, negative, only the gate extracted', async () => {
    const { observations } = await submit('pc-ptsd-5', { exposure: NO });
    expect(observations).toHaveLength(2);
    const score = scoreOf(observations, '102017-1');
    expect(score.valueInteger).toBe(0);
    expect(interpretationOf(score)).toBe('NEG');
    expect(component(score, 'declined-items')).toBeUndefined();
    expect(scoreOf(observations, '102011-4').valueCodeableConcept?.coding?.[0].code).toBe('LA32-8');
  });

  it('a declined item that could change the result makes it indeterminate, with bounds', async () => {
    const { observations } = await submit('pc-ptsd-5', { exposure: YES, q1: 1, q2: 1, q3: 'declined', q4: 0, q5: 0 });
    // The declined item has no Observation of its own.
    expect(observations).toHaveLength(5 + 1);
    expect(observations.some((o) => codeOf(o) === '102014-8')).toBe(false);
    const score = scoreOf(observations, '102017-1');
    expect(score.valueInteger).toBe(2);
    expect(interpretationOf(score)).toBe('IND');
    expect(component(score, 'declined-items')?.valueInteger).toBe(1);
    expect(component(score, 'score-lower-bound')?.valueInteger).toBe(2);
    expect(component(score, 'score-upper-bound')?.valueInteger).toBe(3);
    expect(score.note?.[0].text).toMatch(/Partial total/);
  });

  it('declined items that cannot change the result leave it positive (or negative), marked partial', async () => {
    const pos = scoreOf((await submit('pc-ptsd-5', { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 'declined', q5: 0 })).observations, '102017-1');
    expect([pos.valueInteger, interpretationOf(pos), component(pos, 'declined-items')?.valueInteger]).toEqual([3, 'POS', 1]);
    // PHQ-9: 2 answered points, two declined items at most 3 each: 2..8 stays below 10.
    const neg = scoreOf((await submit('phq-9', weights(qs['phq-9'], [1, 1, 'declined', 'declined', 0, 0, 0, 0, 0]))).observations, '44261-6');
    expect([neg.valueInteger, interpretationOf(neg), component(neg, 'score-upper-bound')?.valueInteger]).toEqual([2, 'NEG', 8]);
  });

  it('a declined PC-PTSD-5 gate is indeterminate (0..5), not zero', async () => {
    const score = scoreOf((await submit('pc-ptsd-5', { exposure: 'declined' })).observations, '102017-1');
    expect(score.valueInteger).toBe(0);
    expect(interpretationOf(score)).toBe('IND');
    expect(component(score, 'score-upper-bound')?.valueInteger).toBe(5);
  });

  it('every item declined: indeterminate, never a negative zero', async () => {
    const score = scoreOf((await submit('gad-7', weights(qs['gad-7'], 'declined'))).observations, '70274-6');
    expect(score.valueInteger).toBe(0);
    expect(interpretationOf(score)).toBe('IND');
    expect(component(score, 'declined-items')?.valueInteger).toBe(7);
  });
});

describe('invalid responses are refused with the item named, and nothing is stored', () => {
  const invalid: [string, () => QuestionnaireResponse, number, string][] = [
    ['an unknown linkId', () => response(qs['gad-7'], weights(qs['gad-7'], 1), { item: [...response(qs['gad-7'], weights(qs['gad-7'], 1)).item!, { linkId: 'q99', answer: [{ valueCoding: YES }] }] }), 400, 'QuestionnaireResponse.item[7]'],
    ['a code that is not an option', () => { const r = response(qs['phq-9'], weights(qs['phq-9'], 1)); r.item![2].answer = [{ valueCoding: { system: 'http://loinc.org', code: 'LA33-6' } }]; return r; }, 400, 'QuestionnaireResponse.item[2].answer[0]'],
    ['the wrong answer type', () => { const r = response(qs['pcl-5'], weights(qs['pcl-5'], 1)); r.item![4].answer = [{ valueInteger: 2 }]; return r; }, 400, 'QuestionnaireResponse.item[4].answer[0]'],
    ['a required item missing', () => response(qs.ace, { ...weights(qs.ace, 0), 'sexual-abuse': undefined as unknown as Spec }), 400, "QuestionnaireResponse.item.where(linkId='sexual-abuse')"],
    ['two answers to an item that does not repeat', () => { const r = response(qs['gad-7'], weights(qs['gad-7'], 1)); r.item![0].answer!.push({ valueCoding: r.item![1].answer![0].valueCoding }); return r; }, 400, 'QuestionnaireResponse.item[0].answer[1]'],
    ['a declined item with another answer', () => { const r = response(qs['gad-7'], weights(qs['gad-7'], 1)); r.item![0].answer!.push({ valueCoding: DECLINED }); return r; }, 400, 'QuestionnaireResponse.item[0].answer[1]'],
    ['answers to items the gate disabled', () => response(qs['pc-ptsd-5'], { exposure: NO, q1: 1 }), 422, 'QuestionnaireResponse.item[1].answer[0]'],
  ];

  it.each(invalid)('%s', async (_name, build, status, expression) => {
    const subject = { reference: await newPatient() };
    const before = await countData(t);
    const qr = { ...build(), subject, identifier: { system: 'urn:test', value: unique() } };
    const outcome = expectOutcome(await s.post('QuestionnaireResponse', qr), status);
    expect(outcome.issue.flatMap((i) => i.expression ?? [])).toContain(expression);
    // Inside a transaction too: all or nothing.
    const bundle: Bundle = { resourceType: 'Bundle', type: 'transaction', entry: [{ resource: qr, request: { method: 'POST', url: 'QuestionnaireResponse' } }] };
    expect((await s.post('', bundle)).status).toBeGreaterThanOrEqual(400);
    expect(await countData(t)).toEqual(before);
  });

  it('an unknown Questionnaire or a missing Patient subject is 422; nothing stored', async () => {
    const before = await countData(t);
    const unknown = { ...response(qs['gad-7'], weights(qs['gad-7'], 1)), questionnaire: `${BASE}/Questionnaire/nope|1.0.0`, subject: { reference: await newPatient() } };
    const after = await countData(t);
    expectOutcome(await s.post('QuestionnaireResponse', unknown), 422);
    expectOutcome(await s.post('QuestionnaireResponse', response(qs['gad-7'], weights(qs['gad-7'], 1), { subject: { reference: 'Group/g1' } })), 422);
    expect((await countData(t)).resources).toBe(after.resources);
    expect(after.resources).toBe(before.resources + 1); // the patient
  });

  it('an in-progress response is stored but not scored', async () => {
    const { qr, observations } = await submit('pcl-5', { q1: 4, q2: 4 }, { status: 'in-progress' });
    expect(qr.status).toBe('in-progress');
    expect(observations).toEqual([]);
  });
});

describe('SDC 4.0.0 extraction relationships in a Questionnaire a client stores', () => {
  const EXTRACT = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract';
  const testCode = (c: string) => [{ system: 'urn:tic-test:codes', code: c }];
  async function storeQuestionnaire(childMode: string): Promise<string> {
    const url = `urn:tic-test:questionnaire:${unique()}`;
    const q: Questionnaire = {
      resourceType: 'Questionnaire',
      url,
      status: 'active',
      title: 'Relationship test',
      item: [
        {
          linkId: 'panel',
          type: 'group',
          text: 'Panel',
          code: testCode('panel'),
          extension: [{ url: EXTRACT, valueBoolean: true }],
          item: ['a', 'b'].map((linkId) => ({ linkId, type: 'integer' as const, text: `Item ${linkId}`, code: testCode(linkId), extension: [{ url: EXTRACT, valueCode: childMode }] })),
        },
      ],
    };
    await ok(await s.post('Questionnaire', q), 201);
    return url;
  }
  const answers = (questionnaire: string, subject: string): QuestionnaireResponse => ({
    resourceType: 'QuestionnaireResponse',
    questionnaire,
    status: 'completed',
    subject: { reference: subject },
    identifier: { system: 'urn:test', value: unique() },
    item: [{ linkId: 'panel', item: [{ linkId: 'a', answer: [{ valueInteger: 1 }] }, { linkId: 'b', answer: [{ valueInteger: 2 }] }] }],
  });

  it('`component` items become components of one panel Observation, stored with the response', async () => {
    const url = await storeQuestionnaire('component');
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', answers(url, await newPatient())), 201);
    const observations = await observationsOf(s, qr.id!);
    expect(observations).toHaveLength(1);
    expect(observations[0].code.coding).toEqual(testCode('panel'));
    expect(observations[0].component?.map((c) => [c.code.coding?.[0]?.code, c.valueInteger])).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
    expect(hasLabels(observations[0])).toBe(true);
  });

  it('a new version of a stored Questionnaire (same url and version) applies to the next response at once', async () => {
    const url = await storeQuestionnaire('component');
    const first = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', answers(url, await newPatient())), 201);
    expect(await observationsOf(s, first.id!)).toHaveLength(1);
    // The server keeps the stored Questionnaire it last saw per id and versionId: an update is a new versionId.
    const stored = (await s.get(`Questionnaire?url=${encodeURIComponent(url)}`)).body as Bundle<Questionnaire>;
    const q = stored.entry![0].resource!;
    for (const child of q.item![0].item!) child.extension = [{ url: EXTRACT, valueCode: 'member' }];
    await ok(await s.put(`Questionnaire/${q.id}`, q), 200);
    expectOutcome(await s.post('QuestionnaireResponse', answers(url, await newPatient())), 422);
  });

  it('`member` is refused with 422 not-supported naming the item, and nothing is stored', async () => {
    const url = await storeQuestionnaire('member');
    const subject = await newPatient();
    const before = await countData(t);
    const outcome = expectOutcome(await s.post('QuestionnaireResponse', answers(url, subject)), 422);
    expect(outcome.issue[0]).toMatchObject({ code: 'not-supported', expression: ["Questionnaire.item.where(linkId = 'a')"] });
    expect(await countData(t)).toEqual(before);
  });
});

describe('who answered', () => {
  it('records self-administered (source = the Patient) and clinician-administered', async () => {
    const subject = await newPatient();
    const self = await submit('gad-7', weights(qs['gad-7'], 0), { subject: { reference: subject }, source: { reference: subject }, author: { reference: subject } });
    for (const o of self.observations) expect(o.method?.coding?.[0]).toMatchObject({ system: SCREENING_CODES, code: 'self-administered' });
    expect(scoreOf(self.observations, '70274-6').performer).toEqual([{ reference: subject }]);
    const clin = await submit('gad-7', weights(qs['gad-7'], 0), { subject: { reference: subject }, author: { reference: 'PractitionerRole/nurse-1' } });
    for (const o of clin.observations) expect(o.method?.coding?.[0]).toMatchObject({ system: SCREENING_CODES, code: 'clinician-administered' });
    expect(scoreOf(clin.observations, '70274-6').performer).toEqual([{ reference: 'PractitionerRole/nurse-1' }]);
  });
});

describe('amended responses', () => {
  it('are re-scored; their Observations are new versions of the same resources', async () => {
    const { qr, observations } = await submit('pc-ptsd-5', { exposure: YES, q1: 1, q2: 1, q3: 0, q4: 0, q5: 0 }, { identifier: { system: 'urn:test', value: unique() } });
    const score = scoreOf(observations, '102017-1');
    expect(interpretationOf(score)).toBe('NEG');
    const amended = { ...response(qs['pc-ptsd-5'], { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 1, q5: 0 }), id: qr.id, subject: qr.subject, identifier: qr.identifier, status: 'amended' as const };
    const put = await ok<QuestionnaireResponse>(await s.put(`QuestionnaireResponse/${qr.id}`, amended));
    expect(put.meta?.versionId).toBe('2');
    const after = await observationsOf(s, qr.id!);
    expect(after.map((o) => o.id).sort()).toEqual(observations.map((o) => o.id).sort());
    const rescored = scoreOf(after, '102017-1');
    expect(rescored.id).toBe(score.id);
    expect([rescored.valueInteger, interpretationOf(rescored), rescored.status, rescored.meta?.versionId]).toEqual([4, 'POS', 'amended', '2']);
    const history = await ok<Bundle<Observation>>(await s.get(`Observation/${score.id}/_history`));
    expect(history.entry?.map((e) => e.resource?.valueInteger)).toEqual([4, 2]);
    // q3 changed from No to Yes: its Observation too.
    const q3 = after.find((o) => codeOf(o) === '102014-8');
    expect([q3?.valueCodeableConcept?.coding?.[0].code, q3?.meta?.versionId]).toEqual(['LA33-6', '2']);
  });

  it('an answer withdrawn (declined) on amendment leaves no stale item Observation', async () => {
    const { qr, observations } = await submit('gad-7', weights(qs['gad-7'], 2));
    expect(observations).toHaveLength(8);
    const amended = { ...response(qs['gad-7'], weights(qs['gad-7'], [2, 2, 2, 2, 2, 2, 'declined'])), id: qr.id, subject: qr.subject, status: 'amended' as const };
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, amended));
    const all = await observationsOf(s, qr.id!);
    expect(all).toHaveLength(8);
    // The withdrawn answer's Observation is kept, marked entered-in-error (its history shows the answer).
    expect(all.find((o) => codeOf(o) === '69736-7')?.status).toBe('entered-in-error');
    const after = all.filter((o) => o.status !== 'entered-in-error');
    expect(after).toHaveLength(7);
    const score = scoreOf(after, '70274-6');
    expect([score.valueInteger, interpretationOf(score)]).toEqual([12, 'POS']);
  });
});

describe('QuestionnaireResponse/$extract', () => {
  it('type level (body and Parameters) and instance level return a transaction Bundle and store nothing', async () => {
    const subject = { reference: await newPatient() };
    const qr = response(qs['phq-9'], weights(qs['phq-9'], 2), { subject, identifier: { system: 'urn:test', value: unique() } });
    const before = await countData(t);
    const viaBody = await ok<Bundle<Observation>>(await s.post('QuestionnaireResponse/$extract', qr));
    const params: Parameters = { resourceType: 'Parameters', parameter: [{ name: 'questionnaire-response', resource: qr }] };
    const viaParams = await ok<Bundle<Observation>>(await s.post('QuestionnaireResponse/$extract', params));
    for (const bundle of [viaBody, viaParams]) {
      expect(bundle.resourceType).toBe('Bundle');
      expect(bundle.type).toBe('transaction');
      expect(bundle.entry).toHaveLength(10);
      const score = bundle.entry!.map((e) => e.resource!).find((o) => codeOf(o) === '44261-6')!;
      expect([score.valueInteger, interpretationOf(score)]).toEqual([18, 'POS']);
      for (const e of bundle.entry!) expect(e.request?.method).toBe('PUT');
    }
    expect(await countData(t)).toEqual(before);

    const stored = await submit('phq-9', weights(qs['phq-9'], 1), { subject });
    const beforeInstance = await countData(t);
    const instance = await ok<Bundle<Observation>>(await s.post(`QuestionnaireResponse/${stored.qr.id}/$extract`, { resourceType: 'Parameters' }));
    expect(instance.entry).toHaveLength(10);
    expect(instance.entry!.map((e) => e.resource!.derivedFrom?.[0].reference)).toEqual(Array(10).fill(`QuestionnaireResponse/${stored.qr.id}`));
    expect((await countData(t)).resources).toBe(beforeInstance.resources);
    // Invalid input: refused like a POST.
    const wrong = response(qs['pc-ptsd-5'], { exposure: NO, q2: 1 }, { subject });
    expectOutcome(await s.post('QuestionnaireResponse/$extract', wrong), 422);
  });

  it('the Bundle it returns can be POSTed as a transaction', async () => {
    const subject = { reference: await newPatient() };
    const qr = response(qs['gad-7'], weights(qs['gad-7'], 1), { subject, identifier: { system: 'urn:test', value: unique() } });
    const bundle = await ok<Bundle>(await s.post('QuestionnaireResponse/$extract', qr));
    const result = await ok<Bundle>(await s.post('', bundle));
    expect(result.type).toBe('transaction-response');
    expect(result.entry?.every((e) => e.response?.status?.startsWith('201'))).toBe(true);
    // Idempotent: the conditional updates find the same Observations.
    const again = await ok<Bundle>(await s.post('', bundle));
    expect(again.entry?.every((e) => e.response?.status?.startsWith('200'))).toBe(true);
  });
});

describe('Observation/$lastn', () => {
  it('returns the newest result per code for a patient (max per code)', async () => {
    const subject = { reference: await newPatient() };
    await submit('phq-9', weights(qs['phq-9'], 0), { subject, authored: '2025-01-01T10:00:00Z' });
    await submit('phq-9', weights(qs['phq-9'], 2), { subject, authored: '2025-03-01T10:00:00Z' });
    await submit('phq-9', weights(qs['phq-9'], 1), { subject, authored: '2025-02-01T10:00:00Z' });
    await submit('gad-7', weights(qs['gad-7'], 3), { subject, authored: '2025-02-15T10:00:00Z' });
    const patientId = subject.reference.split('/')[1];

    const last = await ok<Bundle<Observation>>(await s.get(`Observation/$lastn?patient=${patientId}&category=survey&code=http://loinc.org|44261-6,http://loinc.org|70274-6`));
    const scores = last.entry!.map((e) => e.resource!);
    expect(scores.map((o) => [codeOf(o), o.valueInteger]).sort()).toEqual([['44261-6', 18], ['70274-6', 21]]);

    const two = await ok<Bundle<Observation>>(await s.get(`Observation/$lastn?patient=Patient/${patientId}&category=survey&code=http://loinc.org|44261-6&max=2`));
    expect(two.entry!.map((e) => e.resource!.effectiveDateTime)).toEqual(['2025-03-01T10:00:00Z', '2025-02-01T10:00:00Z']);

    // Without code: newest per code over every survey Observation (9 PHQ-9 items + total, 7 GAD-7 + total).
    const all = await ok<Bundle<Observation>>(await s.get(`Observation/$lastn?patient=${patientId}&category=survey`));
    const perCode = all.entry!.map((e) => e.resource!);
    expect(perCode).toHaveLength(18);
    expect(perCode.find((o) => codeOf(o) === '44261-6')?.valueInteger).toBe(18);
    expect(new Set(perCode.map(codeOf)).size).toBe(18);
    expectOutcome(await s.get('Observation/$lastn?category=survey'), 400);
  });
});

describe('organisation isolation', () => {
  it("org-b never sees org-sensitive's responses or Observations, nor org-sensitive org-a's", async () => {
    const { qr, observations } = await submit('pc-ptsd-5', { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 1, q5: 1 });
    const subject = qr.subject!.reference!;
    expect(observations).toHaveLength(7);
    expect((await b.get(`QuestionnaireResponse/${qr.id}`)).status).toBe(404);
    expect((await b.get(`Observation/${observations[0].id}`)).status).toBe(404);
    expect(ids(await ok<Bundle>(await b.get(`Observation?derived-from=QuestionnaireResponse/${qr.id}`)))).toEqual([]);
    expect(ids(await ok<Bundle>(await b.get(`Observation?subject=${subject}`)))).toEqual([]);
    expect((await ok<Bundle>(await b.get(`Observation/$lastn?patient=${subject}&category=survey`))).entry ?? []).toEqual([]);
    expectOutcome(await b.post(`QuestionnaireResponse/${qr.id}/$extract`, { resourceType: 'Parameters' }), 404);

    // org-a submits (it may, although without `sensitive` it cannot read the result back).
    const aSubject = await newPatient(a);
    const mine = await ok<QuestionnaireResponse>(await a.post('QuestionnaireResponse', response(qs['gad-7'], weights(qs['gad-7'], 3), { subject: { reference: aSubject } })), 201);
    expect((await a.get(`QuestionnaireResponse/${mine.id}`)).status).toBe(404);
    expect(await observationsOf(a, mine.id!)).toEqual([]);
    // The sensitive client of another organisation does not see them either.
    expect((await s.get(`QuestionnaireResponse/${mine.id}`)).status).toBe(404);
    expect(await observationsOf(s, mine.id!)).toEqual([]);
    // They were stored and scored all the same (checked as the server).
    const stored = await t.api.systemRepository().search<Observation>('Observation', { 'derived-from': `QuestionnaireResponse/${mine.id}` });
    expect(stored).toHaveLength(8);
    expect(scoreOf(stored, '70274-6').valueInteger).toBe(21);
  });
});
