// Issue 5 end to end, per-organisation settings: cut-offs and the positive-screen protocol, from a
// SCREENING_CONFIG_FILE given to the real API. A positive (or indeterminate) screen creates a
// follow-up Task (and a health-concern Condition where configured) in the same transaction; a
// retried POST, alone or in a transaction Bundle, does not repeat it nor duplicate Observations.
//
// Reads of screening data (labelled R + BH) go through the `sensitive` client (org-sensitive);
// what org-a (no `sensitive` flag) stored is checked as the server (systemRepository).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Bundle, Condition, Observation, Patient, Questionnaire, QuestionnaireResponse, Resource, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { countData, expectOutcome, fhir, ids, unique } from '../helpers.ts';
import type { InstrumentId, Spec } from './screening.ts';
import { NO, YES, codeOf, component, fetchQuestionnaires, hasLabels, interpretationOf, observationsOf, ok, response, scoreOf, weights } from './screening.ts';

const config = {
  defaults: { protocols: [{ questionnaire: '*', on: ['positive'], task: { dueWithinHours: 72 } }] },
  organisations: {
    'Organization/org-sensitive': {
      protocols: [
        { questionnaire: 'pc-ptsd-5', on: ['positive', 'indeterminate'], task: { owner: 'CareTeam/ct-sensitive', dueWithinHours: 24, priority: 'urgent' }, condition: {} },
        { questionnaire: '*', on: ['positive'], task: { dueWithinHours: 168 } },
      ],
    },
    'Organization/org-a': {
      cutoffs: { 'pc-ptsd-5': 4, 'https://tic-exchange.org/fhir/Questionnaire/pcl-5#total': 31 },
      protocols: [{ questionnaire: 'pc-ptsd-5', on: ['positive'], task: { owner: 'CareTeam/ct-a', dueWithinHours: 48, priority: 'asap' } }],
    },
  },
};

let t: TestApi;
let s: Fhir; // org-sensitive
let a: Fhir; // org-a
let b: Fhir; // org-b (defaults)
let qs: Record<InstrumentId, Questionnaire>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tic-screening-'));
  const file = join(dir, 'screening.json');
  writeFileSync(file, JSON.stringify(config));
  t = await createTestApi({ env: { SCREENING_CONFIG_FILE: file } });
  s = fhir(t, await t.client('sensitive'));
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
  qs = await fetchQuestionnaires(s);
}, 120_000);
let dir: string | undefined;
afterAll(async () => {
  await t?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const system = () => t.api.systemRepository();

async function newPatient(client: Fhir): Promise<string> {
  return `Patient/${(await client.create<Patient>({ resourceType: 'Patient' })).id}`;
}

/** Everything stored about a patient, as the server sees it. */
async function storedFor(subject: string) {
  const repo = system();
  return {
    responses: await repo.search<QuestionnaireResponse>('QuestionnaireResponse', { subject, _count: '100' }),
    observations: await repo.search<Observation>('Observation', { subject, _count: '100' }),
    tasks: await repo.search<Task>('Task', { patient: subject, _count: '100' }),
    conditions: await repo.search<Condition>('Condition', { subject, _count: '100' }),
  };
}

const FOUR_OF_FIVE: Record<string, Spec> = { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 1, q5: 0 };
const THREE_OF_FIVE: Record<string, Spec> = { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 0, q5: 0 };

describe('per-organisation cut-offs', () => {
  it('the same answers (3 of 5) are positive for org-sensitive (default 3) and negative for org-a (4); the cut-off used is recorded', async () => {
    const sSubject = await newPatient(s);
    const sQr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], THREE_OF_FIVE, { subject: { reference: sSubject } })), 201);
    const sScore = scoreOf(await observationsOf(s, sQr.id!), '102017-1');
    expect([sScore.valueInteger, interpretationOf(sScore), component(sScore, 'cutoff-applied')?.valueInteger]).toEqual([3, 'POS', 3]);

    const aSubject = await newPatient(a);
    const aQr = await ok<QuestionnaireResponse>(await a.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], THREE_OF_FIVE, { subject: { reference: aSubject } })), 201);
    const aScore = scoreOf((await storedFor(aSubject)).observations, '102017-1');
    expect(aScore.derivedFrom?.[0].reference).toBe(`QuestionnaireResponse/${aQr.id}`);
    expect([aScore.valueInteger, interpretationOf(aScore), component(aScore, 'cutoff-applied')?.valueInteger]).toEqual([3, 'NEG', 4]);
    // A negative screen starts no protocol.
    expect((await storedFor(aSubject)).tasks).toEqual([]);

    // 4 of 5 reaches org-a's cut-off: positive, and org-a's protocol runs.
    const aQr2 = await ok<QuestionnaireResponse>(await a.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: aSubject } })), 201);
    const stored = await storedFor(aSubject);
    const aScore2 = stored.observations.find((o) => codeOf(o) === '102017-1' && o.derivedFrom?.[0].reference === `QuestionnaireResponse/${aQr2.id}`)!;
    expect([interpretationOf(aScore2), component(aScore2, 'cutoff-applied')?.valueInteger]).toEqual(['POS', 4]);
    expect(stored.tasks).toHaveLength(1);
    expect(stored.tasks[0]).toMatchObject({ owner: { reference: 'CareTeam/ct-a' }, priority: 'asap', focus: { reference: `Observation/${aScore2.id}` } });

    // $extract as org-a applies org-a's settings too (nothing stored).
    const extracted = await ok<Bundle<Observation>>(await a.post('QuestionnaireResponse/$extract', response(qs['pc-ptsd-5'], THREE_OF_FIVE, { subject: { reference: aSubject } })));
    const exScore = extracted.entry!.map((e) => e.resource!).find((o) => codeOf(o) === '102017-1')!;
    expect([interpretationOf(exScore), component(exScore, 'cutoff-applied')?.valueInteger]).toEqual(['NEG', 4]);
  });

  it('a cut-off keyed by canonical URL#linkId (PCL-5 31 for org-a)', async () => {
    const answers = weights(qs['pcl-5'], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]); // 31
    const aSubject = await newPatient(a);
    await ok(await a.post('QuestionnaireResponse', response(qs['pcl-5'], answers, { subject: { reference: aSubject } })), 201);
    const aScore = scoreOf((await storedFor(aSubject)).observations, '101698-9');
    expect([aScore.valueInteger, interpretationOf(aScore), component(aScore, 'cutoff-applied')?.valueInteger]).toEqual([31, 'POS', 31]);
    const bSubject = await newPatient(b);
    await ok(await b.post('QuestionnaireResponse', response(qs['pcl-5'], answers, { subject: { reference: bSubject } })), 201);
    const bScore = scoreOf((await storedFor(bSubject)).observations, '101698-9');
    expect([interpretationOf(bScore), component(bScore, 'cutoff-applied')?.valueInteger]).toEqual(['NEG', 33]);
  });
});

describe('positive-screen protocol', () => {
  it('a positive PC-PTSD-5 creates a follow-up Task and an unconfirmed health-concern Condition', async () => {
    const subject = await newPatient(s);
    const started = Date.now();
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject } })), 201);
    const score = scoreOf(await observationsOf(s, qr.id!), '102017-1');

    const tasks = (await ok<Bundle<Task>>(await s.get(`Task?patient=${subject}`))).entry!.map((e) => e.resource!);
    expect(tasks).toHaveLength(1);
    const task = tasks[0];
    expect(task).toMatchObject({
      status: 'requested',
      intent: 'order',
      priority: 'urgent',
      focus: { reference: `Observation/${score.id}` },
      for: { reference: subject },
      owner: { reference: 'CareTeam/ct-sensitive' },
      requester: { reference: 'Organization/org-sensitive' },
    });
    expect(task.code?.coding?.[0].code).toBe('screening-follow-up');
    const due = Date.parse(task.restriction!.period!.end!);
    expect(due).toBeGreaterThanOrEqual(started + 24 * 3600_000 - 1000);
    expect(due).toBeLessThanOrEqual(Date.now() + 24 * 3600_000 + 1000);
    expect(hasLabels(task)).toBe(true);
    expect(task.description).toMatch(/not a diagnosis/);

    const conditions = (await ok<Bundle<Condition>>(await s.get(`Condition?subject=${subject}`))).entry!.map((e) => e.resource!);
    expect(conditions).toHaveLength(1);
    const c = conditions[0];
    expect(c.verificationStatus?.coding?.[0].code).toBe('unconfirmed');
    expect(c.category?.[0].coding?.[0].code).toBe('health-concern');
    expect(c.evidence?.[0].detail).toEqual([{ reference: `Observation/${score.id}` }]);
    expect(c.code?.text).toMatch(/not a diagnosis/);
    expect(hasLabels(c)).toBe(true);
    // Nobody else sees them.
    expect(ids(await ok<Bundle>(await b.get(`Task?patient=${subject}`)))).toEqual([]);
    expect((await b.get(`Task/${task.id}`)).status).toBe(404);
    expect(ids(await ok<Bundle>(await b.get(`Condition?subject=${subject}`)))).toEqual([]);
  });

  it('indeterminate starts the PC-PTSD-5 protocol (configured so); negative starts nothing', async () => {
    const ind = await newPatient(s);
    await ok(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], { exposure: YES, q1: 1, q2: 1, q3: 'declined', q4: 0, q5: 0 }, { subject: { reference: ind } })), 201);
    const indTasks = (await ok<Bundle<Task>>(await s.get(`Task?patient=${ind}`))).entry ?? [];
    expect(indTasks).toHaveLength(1);
    expect(indTasks[0].resource!.description).toMatch(/^Indeterminate/);
    const neg = await newPatient(s);
    await ok(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], { exposure: NO }, { subject: { reference: neg } })), 201);
    expect(ids(await ok<Bundle>(await s.get(`Task?patient=${neg}`)))).toEqual([]);
    expect(ids(await ok<Bundle>(await s.get(`Condition?subject=${neg}`)))).toEqual([]);
    // The "*" protocol of org-sensitive: positive PHQ-9 → a Task due within a week, no Condition.
    const phq = await newPatient(s);
    await ok(await s.post('QuestionnaireResponse', response(qs['phq-9'], weights(qs['phq-9'], 2), { subject: { reference: phq } })), 201);
    const phqTasks = (await ok<Bundle<Task>>(await s.get(`Task?patient=${phq}`))).entry!.map((e) => e.resource!);
    expect(phqTasks).toHaveLength(1);
    expect(phqTasks[0].owner).toEqual({ reference: 'Organization/org-sensitive' });
    expect(ids(await ok<Bundle>(await s.get(`Condition?subject=${phq}`)))).toEqual([]);
  });

  it('a retried POST with the same identifier neither repeats the protocol nor duplicates Observations', async () => {
    const subject = await newPatient(s);
    const qr = response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject }, identifier: { system: 'https://ehr.example.org/screening', value: unique() } });
    const first = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', qr), 201);
    const firstObs = await observationsOf(s, first.id!);
    expect(firstObs).toHaveLength(7);
    const second = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', qr), 201);
    const stored = await storedFor(subject);
    expect(stored.observations.map((o) => o.id).sort()).toEqual(firstObs.map((o) => o.id).sort());
    expect(stored.observations.every((o) => o.derivedFrom?.[0].reference === `QuestionnaireResponse/${second.id}`)).toBe(true);
    expect(stored.tasks).toHaveLength(1);
    expect(stored.conditions).toHaveLength(1);
  });

  it('a conditional create (If-None-Exist on the identifier) retried stores nothing the second time', async () => {
    const subject = await newPatient(s);
    const qr = response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject }, identifier: { system: 'https://ehr.example.org/screening', value: unique() } });
    const ifNoneExist = { 'If-None-Exist': `identifier=${qr.identifier!.system}|${qr.identifier!.value}` };
    const first = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', qr, ifNoneExist), 201);
    const before = await countData(t);
    const retry = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', qr, ifNoneExist), 200);
    expect(retry.id).toBe(first.id);
    expect(await countData(t)).toEqual(before);
    const stored = await storedFor(subject);
    expect([stored.responses.length, stored.observations.length, stored.tasks.length, stored.conditions.length]).toEqual([1, 7, 1, 1]);
  });

  it('the same for a client without the `sensitive` flag (org-a): its hooks still find what it stored', async () => {
    const subject = await newPatient(a);
    const qr = response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject }, identifier: { system: 'https://ehr-a.example.org/screening', value: unique() } });
    await ok(await a.post('QuestionnaireResponse', qr), 201);
    await ok(await a.post('QuestionnaireResponse', qr), 201);
    const stored = await storedFor(subject);
    expect(stored.responses).toHaveLength(2);
    expect(stored.observations).toHaveLength(7);
    expect(stored.tasks).toHaveLength(1);
  });

  it('inside a transaction Bundle with the Patient (urn:uuid), retried: one Patient, one Task, no duplicate Observations', async () => {
    const mrn = unique('mrn');
    const patientUrn = 'urn:uuid:0b6a6f7e-5d4c-4c1b-9c53-2f2d6c0e9a11';
    const qrIdentifier = { system: 'https://ehr.example.org/screening', value: unique() };
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { fullUrl: patientUrn, resource: { resourceType: 'Patient', identifier: [{ system: 'https://ehr.example.org/mrn', value: mrn }] }, request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=https://ehr.example.org/mrn|${mrn}` } },
        {
          fullUrl: 'urn:uuid:7f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b',
          resource: response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: patientUrn }, source: { reference: patientUrn }, identifier: qrIdentifier }),
          request: { method: 'POST', url: 'QuestionnaireResponse' },
        },
      ],
    };
    const result = await ok<Bundle>(await s.post('', bundle));
    expect(result.entry?.map((e) => e.response?.status?.slice(0, 3))).toEqual(['201', '201']);
    const idOf = (location: string | undefined, type: string) => new RegExp(`${type}/([^/]+)`).exec(location ?? '')?.[1];
    const patientId = idOf(result.entry![0].response!.location, 'Patient');
    const subject = `Patient/${patientId}`;
    const qrId = idOf(result.entry![1].response!.location, 'QuestionnaireResponse')!;
    const observations = await observationsOf(s, qrId);
    expect(observations).toHaveLength(7);
    for (const o of observations) {
      expect(o.subject).toEqual({ reference: subject });
      expect(o.method?.coding?.[0].code).toBe('self-administered');
    }
    const retried = await ok<Bundle>(await s.post('', bundle));
    expect(retried.entry?.map((e) => e.response?.status?.slice(0, 3))).toEqual(['200', '201']);
    const stored = await storedFor(subject);
    expect(stored.responses).toHaveLength(2);
    expect(stored.observations).toHaveLength(7);
    expect(stored.tasks).toHaveLength(1);
    expect(stored.conditions).toHaveLength(1);
    expect(stored.tasks[0].focus).toEqual({ reference: `Observation/${scoreOf(stored.observations, '102017-1').id}` });
  });

  it('an amendment that turns a negative positive starts the protocol once; amending again does not repeat it', async () => {
    const subject = await newPatient(s);
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], { exposure: YES, q1: 1, q2: 0, q3: 0, q4: 0, q5: 0 }, { subject: { reference: subject } })), 201);
    expect((await storedFor(subject)).tasks).toHaveLength(0);
    const amend = (answers: Record<string, Spec>) => ({ ...response(qs['pc-ptsd-5'], answers), id: qr.id, subject: qr.subject, status: 'amended' as const });
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, amend(FOUR_OF_FIVE)));
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, amend({ ...FOUR_OF_FIVE, q5: 1 })));
    const stored = await storedFor(subject);
    expect(stored.tasks).toHaveLength(1);
    expect(stored.observations).toHaveLength(7);
    const score = scoreOf(stored.observations, '102017-1');
    expect([score.valueInteger, score.meta?.versionId]).toEqual([5, '3']);
  });
});

describe('an amendment that turns a positive screen negative', () => {
  it('cancels the open follow-up Task (history kept) and leaves the health concern as recorded; positive again opens the same Task', async () => {
    const subject = await newPatient(s);
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject } })), 201);
    const [task] = (await storedFor(subject)).tasks;
    expect(task.status).toBe('requested');
    const amend = (answers: Record<string, Spec>) => ({ ...response(qs['pc-ptsd-5'], answers), id: qr.id, subject: qr.subject, status: 'amended' as const });
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, amend({ exposure: YES, q1: 1, q2: 0, q3: 0, q4: 0, q5: 0 })));
    const after = await storedFor(subject);
    expect(interpretationOf(scoreOf(after.observations, '102017-1'))).toBe('NEG');
    expect(after.tasks.map((x) => [x.id, x.status, x.statusReason?.text])).toEqual([[task.id, 'cancelled', 'The amended screening result no longer meets the cut-off']]);
    expect(after.conditions.map((c) => c.verificationStatus?.coding?.[0].code)).toEqual(['unconfirmed']);
    const history = await system().history<Task>('Task', task.id!);
    expect(history.map((x) => x.status)).toEqual(['cancelled', 'requested']);
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, amend(FOUR_OF_FIVE)));
    expect((await storedFor(subject)).tasks.map((x) => [x.id, x.status])).toEqual([[task.id, 'requested']]);
  });

  it('leaves a follow-up that someone has started', async () => {
    const subject = await newPatient(s);
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject } })), 201);
    const [task] = (await storedFor(subject)).tasks;
    await system().update<Task>({ ...task, status: 'in-progress' });
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, { ...response(qs['pc-ptsd-5'], { exposure: NO }), id: qr.id, subject: qr.subject, status: 'amended' }));
    expect((await storedFor(subject)).tasks.map((x) => x.status)).toEqual(['in-progress']);
  });
});

describe('a response entered in error', () => {
  it('retracts its Observations, cancels the unstarted follow-up Task and withdraws the health concern', async () => {
    const subject = await newPatient(s);
    const qr = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject } })), 201);
    expect((await storedFor(subject)).tasks.map((x) => x.status)).toEqual(['requested']);
    await ok(await s.put(`QuestionnaireResponse/${qr.id}`, { ...qr, status: 'entered-in-error' }));
    const stored = await storedFor(subject);
    expect(stored.observations).toHaveLength(7);
    expect(stored.observations.every((o) => o.status === 'entered-in-error')).toBe(true);
    expect(stored.tasks.map((x) => x.status)).toEqual(['cancelled']);
    expect(stored.conditions.map((c) => [c.verificationStatus?.coding?.[0].code, c.clinicalStatus])).toEqual([['entered-in-error', undefined]]);
    // Nothing new was started.
    expect(stored.tasks).toHaveLength(1);
  });
});

describe('all or nothing', () => {
  it('a transaction whose other entry fails stores neither the response nor its Observations nor the Task', async () => {
    const subject = await newPatient(s);
    const before = await countData(t);
    const bundle: Bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { resource: response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject } }), request: { method: 'POST', url: 'QuestionnaireResponse' } },
        { resource: { resourceType: 'Patient', birthDate: 'not-a-date' } as Resource, request: { method: 'POST', url: 'Patient' } },
      ],
    };
    const res = await s.post('', bundle);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(await countData(t)).toEqual(before);
    const stored = await storedFor(subject);
    expect([stored.responses.length, stored.observations.length, stored.tasks.length]).toEqual([0, 0, 0]);
    expectOutcome(res, res.status);
  });
});

describe('concurrent retries', () => {
  it('two POSTs of the same response at once still give one set of Observations and one Task', async () => {
    const subject = await newPatient(s);
    const qr = response(qs['pc-ptsd-5'], FOUR_OF_FIVE, { subject: { reference: subject }, identifier: { system: 'https://ehr.example.org/screening', value: unique() } });
    const results = await Promise.all([s.post('QuestionnaireResponse', qr), s.post('QuestionnaireResponse', qr), s.post('QuestionnaireResponse', qr)]);
    expect(results.map((r) => r.status)).toEqual([201, 201, 201]);
    const stored = await storedFor(subject);
    expect([stored.responses.length, stored.observations.length, stored.tasks.length, stored.conditions.length]).toEqual([3, 7, 1, 1]);
  });
});
