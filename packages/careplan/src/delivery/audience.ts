// Who may receive a recovery plan: the organisations of its care teams within the person's consent,
// by the same rule as the plan's sharing (teamOrganisations, withinConsent). Read as the server
// itself: a Consent the asking organisation cannot see still limits the sending.
import type { CarePlan, CareTeam, Consent, Goal, PractitionerRole, Resource } from '@medplum/fhirtypes';
import type { ConsentSubject, ResourceRepository } from '@tic/fhir';
import { refKey, refType } from '../recognise.ts';
import { consentSubject, teamOrganisations, withinConsent } from '../sharing.ts';
import { inTurn } from '../in-turn.ts';

export interface PlanAudience {
  /** Organisations represented in the plan's active care teams. */
  team: string[];
  /** Those of them the person's consents allow to see the plan and everything its summary carries. */
  allowed: string[];
}

async function readRef<T extends Resource>(repo: ResourceRepository, reference: string | undefined): Promise<T | undefined> {
  const key = refKey(reference);
  if (!key || reference?.includes('://')) return undefined;
  const [type, id] = key.split('/');
  return repo.read<T>(type as T['resourceType'], id).catch(() => undefined);
}

/** `system` must read as the server (every Consent of the person counts). */
export async function planAudience(system: ResourceRepository, plan: CarePlan, now: Date): Promise<PlanAudience> {
  const teams = (await inTurn((plan.careTeam ?? []), (r) => readRef<CareTeam>(system, r.reference))).filter((t): t is CareTeam => !!t);
  const roleRefs = teams.flatMap((t) => (t.participant ?? []).map((p) => p.member?.reference).filter((r): r is string => refType(r) === 'PractitionerRole'));
  const roles = (await inTurn(roleRefs, (r) => readRef<PractitionerRole>(system, r))).filter((r): r is PractitionerRole => !!r);
  const patient = refKey(plan.subject?.reference);
  const consents = patient ? await system.search<Consent>('Consent', { patient, _count: '200' }) : [];
  const team = teamOrganisations(teams, roles, now);
  // The summary carries the plan, goals, care teams, measures and the person: a recipient must be
  // permitted every one of them (a Consent withholding some kind or resource from it stops the sending).
  const goals = (await inTurn((plan.goal ?? []), (r) => readRef<Goal>(system, r.reference))).filter((g): g is Goal => !!g);
  const measures = (await inTurn(goals.flatMap((g) => g.outcomeReference ?? []), (r) => readRef<Resource>(system, r.reference))).filter((m): m is Resource => !!m);
  const carried: ConsentSubject[] = [plan, ...goals, ...teams, ...measures].map(consentSubject);
  if (patient) carried.push({ resourceType: 'Patient', id: patient.split('/')[1] });
  const allowed = plan.status === 'entered-in-error' ? [] : team.filter((org) => carried.every((r) => withinConsent([org], consents, now, r).length === 1));
  return { team, allowed };
}
