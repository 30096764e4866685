// The recovery profiles in fhir-profiles/: the examples validate; each kind of bad plan, goal and
// care team is refused with an expression pointing at the element (validator for what the
// profiles say; checkPlanExtensions/check* for what they cannot, e.g. sub-extensions).
import type { CarePlan, CareTeam, CodeSystem, Goal, OperationOutcomeIssue, Resource, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import { createValidator } from '@tic/fhir';
import type { Validator } from '@tic/fhir';
import { loadConformanceResources, loadExamples } from '@tic/fhir-profiles';
import { checkGoalReferences, checkPlanReferences } from './checks.ts';
import { EXT, SYSTEM } from './constants.ts';
import { checkPlanExtensions } from './extensions.ts';

let validator: Validator;
beforeAll(() => {
  const conformance = loadConformanceResources();
  validator = createValidator({
    profiles: conformance.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition'),
    terminology: conformance.filter((r): r is ValueSet | CodeSystem => r.resourceType === 'ValueSet' || r.resourceType === 'CodeSystem'),
  });
});

const recoveryExample = <T extends Resource>(id: string): T => structuredClone(loadExamples().find((r) => r.id === id)) as T;
const errors = (r: Resource): OperationOutcomeIssue[] => validator.validate(r).filter((i) => i.severity === 'error');
const expressions = (issues: OperationOutcomeIssue[]): string[] => issues.flatMap((i) => i.expression ?? []);

describe('examples', () => {
  it.each(['recovery-careplan-example', 'recovery-careplan-team-example', 'recovery-goal-connectedness', 'recovery-goal-empowerment'])('%s validates against its profile', (id) => {
    const r = recoveryExample(id);
    expect(r.meta?.profile?.[0]).toMatch(/^https:\/\/tic-exchange\.org\/fhir\/StructureDefinition\/recovery-/);
    expect(validator.validate(r)).toEqual([]);
  });
  it('the example plan passes the extension and reference rules', () => {
    const plan = recoveryExample<CarePlan>('recovery-careplan-example');
    expect(checkPlanExtensions(plan)).toEqual([]);
    expect(checkPlanReferences(plan)).toEqual([]);
  });
});

describe('bad recovery plans', () => {
  const plan = () => recoveryExample<CarePlan>('recovery-careplan-example');
  it.each<[string, (p: CarePlan) => CarePlan, string]>([
    ['intent other than plan', (p) => ({ ...p, intent: 'order' }), 'CarePlan.intent'],
    ['no category', (p) => ({ ...p, category: undefined }), 'CarePlan.category'],
    ['a category that is not recovery', (p) => ({ ...p, category: [{ coding: [{ system: 'http://example.org', code: 'x' }] }] }), 'CarePlan.category[0]'],
    ['no period', (p) => ({ ...p, period: undefined }), 'CarePlan.period'],
    ['no author', (p) => ({ ...p, author: undefined }), 'CarePlan.author'],
    ['no care team', (p) => ({ ...p, careTeam: undefined }), 'CarePlan.careTeam'],
    ['no subject', (p) => ({ ...p, subject: undefined as never }), 'CarePlan.subject'],
  ])('refuses %s', (_name, change, expression) => {
    const issues = errors(change(plan()));
    expect(expressions(issues)).toContain(expression);
  });

  const stageExt = (stage: string, system: string = SYSTEM.stage) => ({ url: EXT.stage, extension: [{ url: 'stage', valueCoding: { system, code: stage } }, { url: 'recorded', valueDateTime: '2025-02-01' }] });
  it.each<[string, (p: CarePlan) => CarePlan, string]>([
    ['an unknown stage', (p) => ({ ...p, extension: [stageExt('enlightenment')] }), 'CarePlan.extension[0].extension[0].valueCoding'],
    ['a stage from another system', (p) => ({ ...p, extension: [stageExt('growth', 'http://example.org')] }), 'CarePlan.extension[0].extension[0].valueCoding'],
    ['a stage without its recorded date', (p) => ({ ...p, extension: [{ url: EXT.stage, extension: [{ url: 'stage', valueCoding: { system: SYSTEM.stage, code: 'growth' } }] }] }), 'CarePlan.extension[0].extension'],
    ['two current stages', (p) => ({ ...p, extension: [stageExt('growth'), stageExt('awareness')] }), 'CarePlan.extension[1]'],
    ['an unknown stage sub-extension', (p) => ({ ...p, extension: [{ ...stageExt('growth'), extension: [...stageExt('growth').extension, { url: 'mood', valueString: 'x' }] }] }), 'CarePlan.extension[0].extension[2]'],
    ['a strength without the person\'s words', (p) => ({ ...p, extension: [{ url: EXT.strength, valueCodeableConcept: { coding: [{ system: SYSTEM.chime, code: 'identity' }] } }] }), 'CarePlan.extension[0].valueCodeableConcept.text'],
    ['a strength coded outside CHIME', (p) => ({ ...p, extension: [{ url: EXT.whatHelps, valueCodeableConcept: { text: 'music', coding: [{ system: SYSTEM.chime, code: 'wealth' }] } }] }), 'CarePlan.extension[0].valueCodeableConcept.coding[0]'],
    ['a crisis preference of unknown type', (p) => ({ ...p, extension: [{ url: EXT.crisisPreference, extension: [{ url: 'type', valueCoding: { system: SYSTEM.crisisPreferenceType, code: 'sedate' } }, { url: 'detail', valueString: 'x' }] }] }), 'CarePlan.extension[0].extension[0].valueCoding'],
    ['a crisis preference without detail', (p) => ({ ...p, extension: [{ url: EXT.crisisPreference, extension: [{ url: 'type', valueCoding: { system: SYSTEM.crisisPreferenceType, code: 'avoid' } }] }] }), 'CarePlan.extension[0].extension'],
    ['a contact preference naming a Patient', (p) => ({ ...p, extension: [{ url: EXT.crisisPreference, extension: [{ url: 'type', valueCoding: { system: SYSTEM.crisisPreferenceType, code: 'contact' } }, { url: 'contact', valueReference: { reference: 'Patient/x' } }] }] }), 'CarePlan.extension[0].extension[1].valueReference'],
  ])('refuses %s', (_name, change, expression) => {
    expect(expressions(checkPlanExtensions(change(plan())))).toContain(expression);
  });

  it.each<[string, (p: CarePlan) => CarePlan, string]>([
    ['a subject that is not a Patient', (p) => ({ ...p, subject: { reference: 'Group/g1' } }), 'CarePlan.subject'],
    ['a careTeam that is not a CareTeam', (p) => ({ ...p, careTeam: [{ reference: 'Organization/o1' }] }), 'CarePlan.careTeam[0]'],
    ['a goal that is not a Goal', (p) => ({ ...p, goal: [{ reference: 'Goal/g1' }, { reference: 'Condition/c1' }] }), 'CarePlan.goal[1]'],
  ])('refuses %s', (_name, change, expression) => {
    expect(expressions(checkPlanReferences(change(plan())))).toEqual([expression]);
  });
});

describe('bad recovery goals', () => {
  const goal = () => recoveryExample<Goal>('recovery-goal-connectedness');
  it('refuses a goal without a CHIME category, or outside CHIME', () => {
    expect(expressions(errors({ ...goal(), category: undefined }))).toContain('Goal.category');
    expect(expressions(errors({ ...goal(), category: [{ coding: [{ system: SYSTEM.chime, code: 'wealth' }] }] }))).toContain('Goal.category[0]');
  });
  it('refuses a goal without description', () => {
    expect(expressions(errors({ ...goal(), description: undefined as never }))).toContain('Goal.description');
  });
  it('refuses measures that are not Observations and own words attributed to someone else', () => {
    expect(expressions(checkGoalReferences({ ...goal(), outcomeReference: [{ reference: 'Condition/c1' }] }))).toEqual(['Goal.outcomeReference[0]']);
    expect(expressions(checkGoalReferences({ ...goal(), expressedBy: { reference: 'Patient/someone-else' } }))).toEqual(['Goal.expressedBy']);
    expect(expressions(checkGoalReferences({ ...goal(), expressedBy: { reference: 'Device/d1' } }))).toEqual(['Goal.expressedBy']);
  });
});

describe('bad recovery care teams', () => {
  const team = () => recoveryExample<CareTeam>('recovery-careplan-team-example');
  it('refuses a participant without a recovery role, without a member, and a team without subject', () => {
    const t = team();
    t.participant![1].role = [{ text: 'boss' }];
    expect(expressions(errors(t))).toContain('CareTeam.participant[1].role[0]');
    const u = team();
    delete u.participant![2].member;
    expect(expressions(errors(u))).toContain('CareTeam.participant[2].member');
    expect(expressions(errors({ ...team(), subject: undefined }))).toContain('CareTeam.subject');
  });
});
