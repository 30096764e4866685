// Rules the profiles cannot express: reference target types (the validator does not check
// targetProfile) and the consent a family member or informal caregiver needs to join a care team.
import type { CarePlan, CareTeam, Consent, Goal, OperationOutcomeIssue, Reference } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { CONSENT_ROLES, EXT, SYSTEM } from './constants.ts';
import { refKey, refType } from './recognise.ts';

const issue = (diagnostics: string, expression: string): OperationOutcomeIssue => ({ severity: 'error', code: 'business-rule', diagnostics, expression: [expression] });

function checkRef(ref: Reference | undefined, allowed: string[], at: string, issues: OperationOutcomeIssue[]): void {
  if (!ref?.reference) return;
  const t = refType(ref.reference);
  if (!t || !allowed.includes(t)) issues.push(issue(`Must reference ${allowed.join(' or ')}`, at));
}

export function checkPlanReferences(plan: CarePlan): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  checkRef(plan.subject, ['Patient'], 'CarePlan.subject', issues);
  plan.careTeam?.forEach((r, i) => checkRef(r, ['CareTeam'], `CarePlan.careTeam[${i}]`, issues));
  plan.goal?.forEach((r, i) => checkRef(r, ['Goal'], `CarePlan.goal[${i}]`, issues));
  return issues;
}

export function checkGoalReferences(goal: Goal): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  checkRef(goal.subject, ['Patient'], 'Goal.subject', issues);
  checkRef(goal.expressedBy, ['Patient', 'RelatedPerson', 'Practitioner', 'PractitionerRole'], 'Goal.expressedBy', issues);
  goal.outcomeReference?.forEach((r, i) => checkRef(r, ['Observation'], `Goal.outcomeReference[${i}]`, issues));
  if (goal.expressedBy?.reference && refType(goal.expressedBy.reference) === 'Patient' && refKey(goal.expressedBy.reference) !== refKey(goal.subject.reference)) {
    issues.push(issue('A goal in the person\'s own words is expressed by its subject', 'Goal.expressedBy'));
  }
  return issues;
}

/** True when the participant's role needs the person's consent (family member, informal caregiver). */
export function needsConsent(p: NonNullable<CareTeam['participant']>[number]): boolean {
  return (p.role ?? []).some((r) => (r.coding ?? []).some((c) => c.system === SYSTEM.role && CONSENT_ROLES.includes(c.code ?? '')));
}

export async function checkCareTeam(team: CareTeam, repo: ResourceRepository): Promise<OperationOutcomeIssue[]> {
  const issues: OperationOutcomeIssue[] = [];
  checkRef(team.subject, ['Patient'], 'CareTeam.subject', issues);
  const participants = team.participant ?? [];
  for (let i = 0; i < participants.length; i++) {
    const p = participants[i];
    const at = `CareTeam.participant[${i}]`;
    checkRef(p.member, ['Patient', 'RelatedPerson', 'Practitioner', 'PractitionerRole', 'Organization'], `${at}.member`, issues);
    checkRef(p.onBehalfOf, ['Organization'], `${at}.onBehalfOf`, issues);
    if (!needsConsent(p)) continue;
    const ext = (p.extension ?? []).find((e) => e.url === EXT.memberConsent);
    const key = refKey(ext?.valueReference?.reference);
    if (!ext || !key || !key.startsWith('Consent/')) {
      issues.push(issue("A family member or informal caregiver joins the care team only with the person's consent: reference it in the recovery-team-member-consent extension", at));
      continue;
    }
    const consent = await repo.read<Consent>('Consent', key.slice('Consent/'.length)).catch(() => undefined);
    const extAt = `${at}.extension[${(p.extension ?? []).indexOf(ext)}].valueReference`;
    if (!consent) issues.push(issue('The referenced Consent was not found', extAt));
    else if (consent.status !== 'active') issues.push(issue('The referenced Consent is not active', extAt));
    else if (refKey(consent.patient?.reference) !== refKey(team.subject?.reference)) issues.push(issue("The referenced Consent is not the care team subject's", extAt));
  }
  return issues;
}
