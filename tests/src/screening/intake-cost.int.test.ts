// What one scored intake costs the database: the SQL statements (each one round trip) a PCL-5
// response POSTed alone sends, counted at the pg driver, and the rows it stores. PostgreSQL only
// (the count is of pg client queries).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Observation, Patient, Questionnaire, QuestionnaireResponse, Task } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { countStatements, fhir, unique } from '../helpers.ts';
import { fetchQuestionnaires, observationsOf, ok, response, YES } from './screening.ts';

const repoRoot = join(process.cwd(), '..');
// Skipped without DATABASE_URL: the count is of the pg driver's queries (PGlite has none); CI sets it.
const run = process.env.DATABASE_URL ? describe : describe.skip;

run('scored intake: statements per response', () => {
  let t: TestApi;
  let s: Fhir;
  let dir: string | undefined;
  const counter = countStatements();
  const statements = counter.statements;
  beforeAll(async () => {
    // A protocol for positive screens: a follow-up Task and a health-concern Condition.
    dir = mkdtempSync(join(tmpdir(), 'tic-intake-cost-'));
    const file = join(dir, 'screening.json');
    writeFileSync(file, JSON.stringify({ defaults: { protocols: [{ questionnaire: '*', on: ['positive'], task: { dueWithinHours: 72 }, condition: {} }] } }));
    t = await createTestApi({ kind: 'postgres', env: { SCREENING_CONFIG_FILE: file } });
    s = fhir(t, await t.client('sensitive'));
    counter.install();
  }, 120_000);
  afterAll(async () => {
    counter.restore();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a PCL-5 response with 21 Observations takes 6 statements, not one per Observation, and no validation once its shape passed', async () => {
    const patient = await s.create<Patient>({ resourceType: 'Patient' });
    const qr = JSON.parse(readFileSync(join(repoRoot, 'fhir-profiles/examples/QuestionnaireResponse-pcl-5-clinician.json'), 'utf8')) as QuestionnaireResponse;
    delete qr.id;
    qr.subject = { reference: `Patient/${patient.id}` };
    qr.identifier = { system: 'https://ehr.example.org/screening', value: unique() };
    // Warm-up (first use compiles and caches), then measure a second response with the audit
    // queue's background drain stopped, so only the request's own statements are counted.
    await ok(await s.post('QuestionnaireResponse', qr), 201);
    await t.api.pauseAudit();
    qr.identifier = { system: 'https://ehr.example.org/screening', value: unique() };
    statements.length = 0;
    const validator = t.api.validator;
    const assertValid = validator.assertValid.bind(validator);
    const validated: string[] = [];
    validator.assertValid = (r) => {
      validated.push(r.resourceType);
      assertValid(r);
    };
    const stored = await ok<QuestionnaireResponse>(await s.post('QuestionnaireResponse', qr), 201);
    const during = [...statements];
    validator.assertValid = assertValid;
    // Its shape (the first response's: another identifier) and its Observations' shapes were
    // validated with the first response.
    expect(validated).toEqual([]);
    const observations = (await observationsOf(s, stored.id!)) as Observation[];
    expect(observations).toHaveLength(21);
    // BEGIN, the response, the lock on its identifier, the look-up of earlier Observations, all 21
    // Observations in one statement, COMMIT.
    const listing = during.map((sql) => sql.replace(/\s+/g, ' ').slice(0, 100));
    expect({ count: during.length, listing }).toEqual({ count: Math.min(during.length, 6), listing });

    // A response of another shape is validated in full: an element no Coding has is refused.
    validator.assertValid = (r) => {
      validated.push(r.resourceType);
      assertValid(r);
    };
    const odd = structuredClone(qr);
    odd.identifier = { system: 'https://ehr.example.org/screening', value: unique() };
    (odd.item![0].answer![0].valueCoding as Record<string, unknown>).colour = 'red';
    const refused = await s.post('QuestionnaireResponse', odd);
    validator.assertValid = assertValid;
    expect(refused.status).toBe(400);
    expect(validated).toEqual(['QuestionnaireResponse']);
  });

  it('a positive screen with its protocol adds the Task and the Condition (looked up with the Observations)', async () => {
    const qs = (await fetchQuestionnaires(s)) as Record<string, Questionnaire>;
    const patient = await s.create<Patient>({ resourceType: 'Patient' });
    const post = () =>
      s.post('QuestionnaireResponse', response(qs['pc-ptsd-5'], { exposure: YES, q1: 1, q2: 1, q3: 1, q4: 1, q5: 0 }, { subject: { reference: `Patient/${patient.id}` }, identifier: { system: 'urn:cost', value: unique() } }));
    await ok(await post(), 201);
    statements.length = 0;
    await ok(await post(), 201);
    const during = [...statements];
    const tasks = await t.api.systemRepository().search<Task>('Task', { patient: `Patient/${patient.id}` });
    expect(tasks).toHaveLength(2);
    // BEGIN, response, lock, one look-up (Observations, Task, Condition), Observations, Task, Condition, COMMIT.
    const listing = during.map((sql) => sql.replace(/\s+/g, ' ').slice(0, 100));
    expect({ count: during.length, listing }).toEqual({ count: Math.min(during.length, 8), listing });
  });
});
