// Issue 7 end to end: recovery care plans shared across sectors. Org A owns the plan; org B is in
// its care team; org C is not. Built with the careplan module on the real API (PGlite or
// PostgreSQL), clients with real tokens.
import type { Bundle, CarePlan, CareTeam, Composition, Consent, Extension, Goal, Observation, OperationOutcome, Parameters, Patient, Provenance } from '@medplum/fhirtypes';
import request from 'supertest';
import { createTestApi } from '@tic/api/testing';
import type { TestApi } from '@tic/api/testing';
import type { Fhir } from '../helpers.ts';
import { expectOutcome, fhir, ids } from '../helpers.ts';
import { careplanModule, EXT, planAudience, PROFILE, SYSTEM } from '../../../packages/careplan/src/index.ts';

let t: TestApi;
let a: Fhir;
let b: Fhir;
let c: Fhir;
let patient: Patient;
let team: CareTeam;
let ownWords: Goal;
let proGoal: Goal;
let phq9: Observation;
let plan: CarePlan;

const ref = (r: { resourceType: string; id?: string }) => ({ reference: `${r.resourceType}/${r.id}` });
const role = (code: string) => [{ coding: [{ system: SYSTEM.role, code }] }];
const stageExt = (code: string, recorded: string): Extension => ({ url: EXT.stage, extension: [{ url: 'stage', valueCoding: { system: SYSTEM.stage, code } }, { url: 'recorded', valueDateTime: recorded }] });
const ifMatch = (r: { meta?: { versionId?: string } }) => ({ 'If-Match': `W/"${r.meta?.versionId ?? ''}"` });
const provenanceHeader = (who: string, extra: Partial<Provenance> = {}) => ({
  'X-Provenance': JSON.stringify({ resourceType: 'Provenance', recorded: new Date().toISOString(), target: [{ reference: 'Goal/placeholder' }], agent: [{ type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type', code: 'author' }] }, who: { reference: who } }], ...extra }),
});

async function ok<T>(res: { status: number; body: unknown }, status = 200): Promise<T> {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as T;
}

beforeAll(async () => {
  t = await createTestApi({ modules: [careplanModule()] });
  a = fhir(t, await t.client('a'));
  b = fhir(t, await t.client('b'));
  c = fhir(t, await t.client('c'));
  patient = await a.create<Patient>({ resourceType: 'Patient', gender: 'other' });
  const subject = ref(patient);
  team = await a.create<CareTeam>({
    resourceType: 'CareTeam',
    status: 'active',
    subject,
    participant: [
      { role: role('person'), member: subject },
      { role: role('care-coordinator'), member: { reference: 'Organization/org-a' } },
      { role: role('professional'), member: { reference: 'Organization/org-b' } },
    ],
  });
  phq9 = await a.create<Observation>({
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '44261-6', display: 'Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]' }] },
    subject,
    effectiveDateTime: '2025-02-01T10:00:00Z',
    valueQuantity: { value: 12, unit: '{score}' },
  });
  ownWords = await a.create<Goal>({
    resourceType: 'Goal',
    lifecycleStatus: 'active',
    category: [{ coding: [{ system: SYSTEM.chime, code: 'connectedness' }] }],
    description: { text: 'I want to go to the Thursday peer group.' },
    subject,
    expressedBy: subject,
    outcomeReference: [ref(phq9)],
  });
  proGoal = await a.create<Goal>({ resourceType: 'Goal', lifecycleStatus: 'proposed', category: [{ coding: [{ system: SYSTEM.chime, code: 'empowerment' }] }], description: { text: 'Stable housing' }, subject });
  plan = await a.create<CarePlan>({
    resourceType: 'CarePlan',
    status: 'active',
    intent: 'plan',
    category: [{ coding: [{ system: SYSTEM.category, code: 'recovery' }] }],
    title: 'Recovery plan',
    subject,
    period: { start: '2025-01-06' },
    author: { reference: 'Organization/org-a' },
    careTeam: [ref(team)],
    goal: [ref(ownWords), ref(proGoal)],
    extension: [
      stageExt('preparation', '2025-01-06'),
      { url: EXT.strength, valueCodeableConcept: { text: 'I am good at fixing bikes.' } },
      { url: EXT.whatHelps, valueCodeableConcept: { text: 'Walking by the harbour.' } },
      { url: EXT.crisisPreference, extension: [{ url: 'type', valueCoding: { system: SYSTEM.crisisPreferenceType, code: 'avoid' } }, { url: 'detail', valueString: 'Do not touch me without asking.' }] },
      { url: EXT.crisisPreference, extension: [{ url: 'type', valueCoding: { system: SYSTEM.crisisPreferenceType, code: 'contact' } }, { url: 'contact', valueReference: { reference: 'Organization/org-b', display: 'Org B peer team' } }] },
    ],
  });
}, 120_000);
afterAll(async () => t?.close());

describe('profiles on the write path', () => {
  it('claims the recovery profile for a plan with the recovery category', () => {
    expect(plan.meta?.profile).toContain(PROFILE.carePlan);
    expect(ownWords.meta?.profile).toContain(PROFILE.goal);
    expect(team.meta?.profile).toContain(PROFILE.careTeam);
  });
  it('refuses a bad plan with 422 and an expression at the element', async () => {
    const { id: _id, meta: _meta, ...body } = plan;
    const bad = expectOutcome(await a.post('CarePlan', { ...body, intent: 'order' }), 422);
    expect(bad.issue.flatMap((i) => i.expression ?? [])).toContain('CarePlan.intent');
    const badStage = expectOutcome(await a.post('CarePlan', { ...body, extension: [stageExt('enlightenment', '2025-01-01')] }), 422);
    expect(badStage.issue[0].expression).toEqual(['CarePlan.extension[0].extension[0].valueCoding']);
  });
  it('refuses a family member without the person\'s consent, and accepts one with it', async () => {
    const related = { reference: 'RelatedPerson/rp-1' };
    const body: CareTeam = { resourceType: 'CareTeam', status: 'active', subject: ref(patient), participant: [{ role: role('person'), member: ref(patient) }, { role: role('family-member'), member: related }] };
    const refused = expectOutcome(await a.post('CareTeam', body), 422);
    expect(refused.issue[0].expression).toEqual(['CareTeam.participant[1]']);
    const consent = await a.create<Consent>({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ text: 'Privacy consent' }],
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      patient: ref(patient),
      provision: { type: 'permit', actor: [{ role: { text: 'family member' }, reference: related }, { role: { text: 'care team' }, reference: { reference: 'Organization/org-a' } }, { role: { text: 'care team' }, reference: { reference: 'Organization/org-b' } }] },
    });
    body.participant![1].extension = [{ url: EXT.memberConsent, valueReference: ref(consent) }];
    await ok(await a.post('CareTeam', body), 201);
    // Clean up: this Consent must not limit the sharing tests below.
    await ok(await a.del(`Consent/${consent.id}`), 204);
  });
});

describe('visibility: care-team organisations only', () => {
  it('lets org B (in the care team) read the plan, its goals, team and measures', async () => {
    for (const r of [plan, ownWords, proGoal, team, phq9, patient]) expect((await b.get(`${r.resourceType}/${r.id}`)).status).toBe(200);
  });
  it('hides everything from org C by read, search, _include, history, operations and Provenance', async () => {
    for (const r of [plan, ownWords, proGoal, team, phq9]) {
      expect((await c.get(`${r.resourceType}/${r.id}`)).status).toBe(404);
      expect((await c.get(`${r.resourceType}/${r.id}/_history`)).status).toBe(404);
      expect((await c.get(`${r.resourceType}/${r.id}/_history/1`)).status).toBe(404);
    }
    const search = await ok<Bundle>(await c.get(`CarePlan?subject=Patient/${patient.id}&_include=CarePlan:goal&_include=CarePlan:care-team`));
    expect(search.entry ?? []).toEqual([]);
    expect(ids(await ok<Bundle>(await c.get(`Goal?subject=Patient/${patient.id}`)))).toEqual([]);
    expect(ids(await ok<Bundle>(await c.get(`Provenance?target=CarePlan/${plan.id}`)))).toEqual([]);
    expect((await c.get(`CarePlan/${plan.id}/$summary`)).status).toBe(404);
    expect((await c.get(`CarePlan/${plan.id}/$stage-history`)).status).toBe(404);
    expect((await c.put(`CarePlan/${plan.id}`, { ...plan, title: 'taken over' })).status).toBe(403);
    expect((await c.put(`CarePlan/${plan.id}`, { ...plan, title: 'taken over' }, ifMatch(plan))).status).not.toBe(200);
    expect((await a.get(`CarePlan/${plan.id}`)).body.title).toBe('Recovery plan');
  });
  it('lets org B search with _include and read history', async () => {
    const search = await ok<Bundle>(await b.get(`CarePlan?subject=Patient/${patient.id}&_include=CarePlan:goal&_include=CarePlan:care-team`));
    expect(ids(search, 'CarePlan')).toEqual([plan.id]);
    expect(ids(search, 'Goal').sort()).toEqual([ownWords.id, proGoal.id].sort());
    expect(ids(search, 'CareTeam')).toEqual([team.id]);
    expect((await b.get(`CarePlan/${plan.id}/_history`)).status).toBe(200);
  });
  it('follows the person\'s consent: a deny for org B hides the plan from B until it is lifted', async () => {
    const consent = await a.create<Consent>({
      resourceType: 'Consent',
      status: 'active',
      scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
      category: [{ text: 'Privacy consent' }],
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
      patient: ref(patient),
      provision: { type: 'permit', provision: [{ type: 'deny', actor: [{ role: { text: 'care team' }, reference: { reference: 'Organization/org-b' } }] }] },
    });
    expect((await b.get(`CarePlan/${plan.id}`)).status).toBe(404);
    expect((await b.get(`Goal/${ownWords.id}`)).status).toBe(404);
    await ok(await a.put(`Consent/${consent.id}`, { ...consent, provision: { type: 'permit' } }, ifMatch(consent)));
    expect((await b.get(`CarePlan/${plan.id}`)).status).toBe(200);
    await ok(await a.del(`Consent/${consent.id}`), 204);
  });
});

describe('visibility: nested Consent provisions', () => {
  const privacy = (provision: Consent['provision']): Consent => ({
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ text: 'Privacy consent' }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    patient: ref(patient),
    provision,
  });
  const teamActor = (org: string) => ({ role: { text: 'care team' }, reference: { reference: org } });
  it('a nested deny for a period running now takes the plan from org B for that period', async () => {
    const now = Date.now();
    const consent = await a.create<Consent>(privacy({ type: 'permit', actor: [teamActor('Organization/org-a'), teamActor('Organization/org-b')], provision: [{ type: 'deny', period: { start: new Date(now - 3_600_000).toISOString(), end: new Date(now + 3_600_000).toISOString() } }] }));
    for (const r of [plan, ownWords, team, phq9]) expect((await b.get(`${r.resourceType}/${r.id}`)).status).toBe(404);
    // The same deny over a period that has ended leaves B its view.
    const ended = { start: new Date(now - 7_200_000).toISOString(), end: new Date(now - 3_600_000).toISOString() };
    await ok(await a.put(`Consent/${consent.id}`, { ...consent, provision: { ...consent.provision, provision: [{ type: 'deny', period: ended }] } }, ifMatch(consent)));
    expect((await b.get(`CarePlan/${plan.id}`)).status).toBe(200);
    await ok(await a.del(`Consent/${consent.id}`), 204);
    expect((await b.get(`CarePlan/${plan.id}`)).status).toBe(200);
  });
  it('a nested deny for a kind of data keeps the measures from org B, not the plan', async () => {
    const consent = await a.create<Consent>(privacy({ type: 'permit', provision: [{ type: 'deny', actor: [teamActor('Organization/org-b')], class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }] }));
    for (const r of [plan, ownWords, proGoal, team]) expect((await b.get(`${r.resourceType}/${r.id}`)).status).toBe(200);
    expect((await b.get(`Observation/${phq9.id}`)).status).toBe(404);
    // The plan's summary (which carries the measures) is not sent where the Consent withholds part of it.
    const audience = await planAudience(t.api.systemRepository(), plan, new Date());
    expect(audience.team).toContain('Organization/org-b');
    expect(audience.allowed).toEqual(['Organization/org-a']);
    await ok(await a.del(`Consent/${consent.id}`), 204);
    expect((await b.get(`Observation/${phq9.id}`)).status).toBe(200);
  });
});

describe('provenance', () => {
  it('writes a Provenance for the plan with agent, organisation, time, activity and reason', async () => {
    const found = await ok<Bundle>(await a.get(`Provenance?target=CarePlan/${plan.id}`));
    const p = found.entry?.map((e) => e.resource as Provenance).find((x) => x.target[0].reference === `CarePlan/${plan.id}/_history/1`);
    expect(p).toBeDefined();
    expect(p!.agent.some((ag) => ag.onBehalfOf?.reference === 'Organization/org-a' && ag.who.identifier?.value === 'client-a')).toBe(true);
    expect(p!.activity?.coding?.[0].code).toBe('CREATE');
    expect(p!.reason?.[0].coding?.[0].code).toBe('TREAT');
    expect(p!.recorded).toBeDefined();
  });
});

describe('concurrent edits from two organisations', () => {
  it('answers 412 with the current version to the stale writer; after re-reading, both changes are kept', async () => {
    const current = await ok<CarePlan>(await a.get(`CarePlan/${plan.id}`));
    const fromA: CarePlan = { ...current, extension: [...(current.extension ?? []), { url: EXT.strength, valueCodeableConcept: { text: 'I keep going.' } }] };
    const fromB: CarePlan = { ...current, extension: [...(current.extension ?? []), { url: EXT.whatHelps, valueCodeableConcept: { text: 'Music in the evening.' } }] };
    const [ra, rb] = await Promise.all([a.put(`CarePlan/${plan.id}`, fromA, ifMatch(current)), b.put(`CarePlan/${plan.id}`, fromB, ifMatch(current))]);
    expect([ra.status, rb.status].sort()).toEqual([200, 412]);
    const [loser, loserBody] = ra.status === 412 ? [a, fromA] : [b, fromB];
    const oo = (ra.status === 412 ? ra.body : rb.body) as OperationOutcome;
    expect(oo.issue[0].diagnostics).toMatch(/current version is \d+|changed concurrently/);
    const again = await ok<CarePlan>(await loser.get(`CarePlan/${plan.id}`));
    const added = loserBody.extension!.at(-1)!;
    await ok(await loser.put(`CarePlan/${plan.id}`, { ...again, extension: [...(again.extension ?? []), added] }, ifMatch(again)));
    const final = await ok<CarePlan>(await a.get(`CarePlan/${plan.id}`));
    const texts = (final.extension ?? []).map((e) => e.valueCodeableConcept?.text);
    expect(texts).toContain('I keep going.');
    expect(texts).toContain('Music in the evening.');
  });
  it('answers 412 naming the current version when If-Match is stale', async () => {
    const current = await ok<CarePlan>(await b.get(`CarePlan/${plan.id}`));
    const stale = expectOutcome(await b.put(`CarePlan/${plan.id}`, current, { 'If-Match': 'W/"1"' }), 412);
    expect(stale.issue[0].diagnostics).toContain(`current version is ${current.meta?.versionId}`);
  });
  it('answers 428 to an update of a recovery plan or goal without If-Match, by PUT and by PATCH, and changes nothing', async () => {
    const current = await ok<CarePlan>(await a.get(`CarePlan/${plan.id}`));
    const refused = expectOutcome(await a.put(`CarePlan/${plan.id}`, { ...current, description: 'no if-match' }), 428);
    expect(refused.issue[0].code).toBe('required');
    const patch = await request(t.api.app)
      .patch(`/fhir/CarePlan/${plan.id}`)
      .set('Authorization', (await t.client('a')).auth)
      .set('Content-Type', 'application/json-patch+json')
      .send(JSON.stringify([{ op: 'add', path: '/description', value: 'patched without if-match' }]));
    expect(patch.status).toBe(428);
    expectOutcome(await a.put(`Goal/${proGoal.id}`, { ...proGoal, lifecycleStatus: 'active' }), 428);
    const after = await ok<CarePlan>(await a.get(`CarePlan/${plan.id}`));
    expect(after.meta?.versionId).toBe(current.meta?.versionId);
  });
});

describe('recovery stage', () => {
  it('moves forwards and backwards, records the date, and reads the history back', async () => {
    let current = await ok<CarePlan>(await a.get(`CarePlan/${plan.id}`));
    const setStage = (p: CarePlan, code: string): CarePlan => ({ ...p, extension: (p.extension ?? []).map((e) => (e.url === EXT.stage ? stageExt(code, (e.extension ?? []).find((s) => s.url === 'recorded')!.valueDateTime!) : e)) });
    current = await ok<CarePlan>(await b.put(`CarePlan/${plan.id}`, setStage(current, 'rebuilding'), ifMatch(current)));
    const recorded = current.extension!.find((e) => e.url === EXT.stage)!.extension!.find((s) => s.url === 'recorded')!.valueDateTime!;
    expect(recorded).not.toBe('2025-01-06');
    current = await ok<CarePlan>(await a.put(`CarePlan/${plan.id}`, setStage(current, 'awareness'), ifMatch(current)));
    const history = await ok<Parameters>(await b.get(`CarePlan/${plan.id}/$stage-history`));
    const moves = (history.parameter ?? []).map((p) => Object.fromEntries((p.part ?? []).map((x) => [x.name, x.valueCoding?.code ?? x.valueCode ?? x.valueString ?? x.valueReference?.reference ?? x.valueDateTime])));
    expect(moves.map((m) => [m.stage, m.direction])).toEqual([
      ['preparation', 'initial'],
      ['rebuilding', 'forward'],
      ['awareness', 'backward'],
    ]);
    expect(moves[1].organization).toBe('Organization/org-b');
    expect(moves[2].organization).toBe('Organization/org-a');
  });
});

describe('goal wording expressed by the person', () => {
  it('refuses a professional rewording (403) but accepts a note, and a rewording authored by the person', async () => {
    let goal = await ok<Goal>(await b.get(`Goal/${ownWords.id}`));
    const reworded = { ...goal, description: { text: 'Attend group therapy weekly.' } };
    const refused = expectOutcome(await b.put(`Goal/${ownWords.id}`, reworded, ifMatch(goal)), 403);
    expect(refused.issue[0].expression).toEqual(['Goal.description']);
    expectOutcome(await b.put(`Goal/${ownWords.id}`, reworded, { ...ifMatch(goal), ...provenanceHeader('Practitioner/pr-1') }), 403);
    goal = await ok<Goal>(await b.put(`Goal/${ownWords.id}`, { ...goal, note: [{ text: 'Peer worker will come along.' }] }, ifMatch(goal)));
    goal = await ok<Goal>(await b.put(`Goal/${ownWords.id}`, { ...goal, description: { text: 'I want to go to the peer group and make one friend.' } }, { ...ifMatch(goal), ...provenanceHeader(`Patient/${patient.id}`) }));
    expect(goal.description.text).toBe('I want to go to the peer group and make one friend.');
    const provs = await ok<Bundle>(await a.get(`Provenance?target=Goal/${ownWords.id}`));
    const last = provs.entry!.map((e) => e.resource as Provenance).find((p) => p.target[0].reference === `Goal/${ownWords.id}/_history/${goal.meta?.versionId}`)!;
    expect(last.agent.map((ag) => ag.who.reference ?? ag.who.identifier?.value)).toEqual([`Patient/${patient.id}`, 'client-b']);
  });
  it('lets a professional change a goal not expressed by the person', async () => {
    const goal = await ok<Goal>(await b.get(`Goal/${proGoal.id}`));
    await ok(await b.put(`Goal/${proGoal.id}`, { ...goal, description: { text: 'Stable housing by summer' } }, ifMatch(goal)));
  });
});

describe('$summary', () => {
  it('returns a document Bundle with every section, readable without further calls', async () => {
    const doc = await ok<Bundle>(await b.get(`CarePlan/${plan.id}/$summary`));
    expect(doc.type).toBe('document');
    expect(doc.identifier?.value).toMatch(/^urn:uuid:/);
    const composition = doc.entry![0].resource as Composition;
    expect(composition.resourceType).toBe('Composition');
    expect(composition.author[0].reference).toBe('Organization/org-b');
    expect(composition.section!.map((s) => s.code?.coding?.[0].code)).toEqual(['goals', 'strengths', 'stage', 'crisis-preferences', 'care-team', 'measures']);
    const fullUrls = new Set(doc.entry!.map((e) => e.fullUrl));
    for (const s of composition.section!) for (const e of s.entry ?? []) expect(fullUrls).toContain(`${t.api.baseUrl}/${e.reference}`);
    const text = (code: string) => composition.section!.find((s) => s.code?.coding?.[0].code === code)!.text!.div;
    expect(text('goals')).toContain('make one friend');
    expect(text('strengths')).toContain('fixing bikes');
    expect(text('stage')).toContain('awareness');
    expect(text('crisis-preferences')).toContain('Do not touch me without asking.');
    expect(text('crisis-preferences')).toContain('Org B peer team');
    expect(text('care-team')).toContain('Organization/org-b');
    expect(text('measures')).toContain('12');
    expect(doc.entry!.map((e) => e.resource!.resourceType).sort()).toEqual(['CarePlan', 'CareTeam', 'Composition', 'Goal', 'Goal', 'Observation', 'Patient']);
    expect(t.api.validator.validate(doc).filter((i) => i.severity === 'error')).toEqual([]);
  });
});
