// Who may read a recovery plan: the organisations represented in its care team, within the
// person's consent. The plan, its goals, care teams, the goals' measures, the person, the
// person's Consents and the Provenances of all of them are shared with those organisations
// (resource_share rows under the reason "careplan:{id}"), each resource as far as the Consents
// permit it to that organisation, recomputed in the transaction of every write that can change
// the answer. Only what the writing client can itself read is ever shared.
import type { CarePlan, CareTeam, Consent, Goal, PractitionerRole, Provenance, Resource } from '@medplum/fhirtypes';
import type { ConsentSubject, ResourceRepository } from '@tic/fhir';
import { consentOutcome, decideConsents } from '@tic/fhir';
import { isSystemContext, Repository } from '@tic/store';
import { shareReason } from './constants.ts';
import { refKey, refType } from './recognise.ts';
import { inTurn } from './in-turn.ts';

const inPeriod = (period: { start?: string; end?: string } | undefined, now: Date): boolean =>
  !period || ((!period.start || new Date(period.start) <= now) && (!period.end || new Date(period.end) >= now));

/** Organisations ("Organization/{id}") represented in the care teams: members, onBehalfOf, managing organisations. */
export function teamOrganisations(teams: CareTeam[], roles: PractitionerRole[], now: Date): string[] {
  const orgs = new Set<string>();
  const roleOrg = new Map(roles.map((r) => [`PractitionerRole/${r.id}`, refKey(r.organization?.reference)]));
  for (const team of teams) {
    if (team.status && !['active', 'proposed'].includes(team.status)) continue;
    if (!inPeriod(team.period, now)) continue;
    for (const m of team.managingOrganization ?? []) if (refType(m.reference) === 'Organization') orgs.add(refKey(m.reference)!);
    for (const p of team.participant ?? []) {
      if (!inPeriod(p.period, now)) continue;
      const member = refKey(p.member?.reference);
      if (member?.startsWith('Organization/')) orgs.add(member);
      if (member?.startsWith('PractitionerRole/') && roleOrg.get(member)) orgs.add(roleOrg.get(member)!);
      const behalf = refKey(p.onBehalfOf?.reference);
      if (behalf?.startsWith('Organization/')) orgs.add(behalf);
    }
  }
  return [...orgs].sort();
}

/** The question asked of the Consents about one resource (its content lets code and securityLabel criteria be evaluated). */
export const consentSubject = (r: Resource): ConsentSubject => ({ resourceType: r.resourceType, ...(r.id ? { id: r.id } : {}), content: r });

const PLAN_DATA: ConsentSubject = { resourceType: 'CarePlan' };

/**
 * What one Consent says about `org` seeing `resource` (by default: a recovery plan), by the R4
 * provision rules of @tic/fhir (nested provisions are exceptions to their parent, the most
 * specific applying one decides, what cannot be evaluated withholds): permit, deny, or nothing.
 */
export function consentDecision(consent: Consent, org: string, now: Date, resource: ConsentSubject = PLAN_DATA): 'permit' | 'deny' | undefined {
  const o = consentOutcome(consent, { organization: org, resource, now });
  return o === 'none' ? undefined : o;
}

/**
 * May `org` see `resource` under the person's consents? When the person has no Consent on record:
 * yes, open-ended. Otherwise only when some active Consent permits it and none denies it (a
 * Consent that is not active permits nothing); `until`: when that may next change.
 */
export function consentWindow(org: string, consents: Consent[], now: Date, resource: ConsentSubject = PLAN_DATA): { permitted: boolean; until?: string } {
  if (consents.length === 0) return { permitted: true };
  const d = decideConsents(consents, { organization: org, resource, now });
  return { permitted: d.decision === 'permit', ...(d.until ? { until: d.until } : {}) };
}

/** The organisations allowed to see `resource` (by default: a recovery plan) by the person's consents (see consentWindow). */
export function withinConsent(orgs: string[], consents: Consent[], now: Date, resource: ConsentSubject = PLAN_DATA): string[] {
  return orgs.filter((org) => consentWindow(org, consents, now, resource).permitted);
}

const systemOf = (repo: ResourceRepository): ResourceRepository => (repo instanceof Repository ? repo.asSystem() : repo);

async function readRef<T extends Resource>(repo: ResourceRepository, reference: string | undefined): Promise<T | undefined> {
  const key = refKey(reference);
  if (!key || reference?.includes('://')) return undefined;
  const [type, id] = key.split('/');
  return repo.read<T>(type as T['resourceType'], id).catch(() => undefined);
}

/**
 * Recomputes who may read the plan and everything it brings along. Everything is read first
 * (the writer may itself see some of it only through the plan's current shares), then the
 * plan's shares are replaced. The person's Consents are shared too, so a care-team member who
 * edits the plan later applies the same consent.
 */
export async function sharePlan(repo: ResourceRepository, plan: CarePlan, now = new Date()): Promise<string[]> {
  if (!repo.share || !repo.unshare) throw new Error('The repository cannot share resources (ResourceRepository.share/unshare)');
  const reason = shareReason(plan.id!);
  const teams = (await inTurn((plan.careTeam ?? []), (r) => readRef<CareTeam>(repo, r.reference))).filter((t): t is CareTeam => !!t);
  const roleRefs = teams.flatMap((t) => (t.participant ?? []).map((p) => p.member?.reference).filter((r): r is string => refType(r) === 'PractitionerRole'));
  const roles = (await inTurn(roleRefs, (r) => readRef<PractitionerRole>(repo, r))).filter((r): r is PractitionerRole => !!r);
  const patient = refKey(plan.subject?.reference);
  // The person's Consents decide as the server reads them (one the writer cannot see still limits
  // the sharing); those the writer can read are shared along.
  const consents = patient ? await systemOf(repo).search<Consent>('Consent', { patient, _count: '200' }) : [];
  const readable = patient && repo instanceof Repository && !isSystemContext(repo.ctx) ? await repo.search<Consent>('Consent', { patient, _count: '200' }) : consents;
  const team = plan.status === 'entered-in-error' ? [] : teamOrganisations(teams, roles, now);
  const orgs = withinConsent(team, consents, now, consentSubject(plan));
  const goals = (await inTurn((plan.goal ?? []), (r) => readRef<Goal>(repo, r.reference))).filter((g): g is Goal => !!g);
  const measures = (await inTurn(goals.flatMap((g) => g.outcomeReference ?? []), (r) => readRef<Resource>(repo, r.reference))).filter((m): m is Resource => !!m);
  const person = patient ? await readRef<Resource>(repo, patient) : undefined;
  const provenances = (await inTurn([plan, ...goals, ...teams], (r) => repo.search<Provenance>('Provenance', { target: `${r.resourceType}/${r.id}`, _count: '1000' }))).flat();
  const shared: Resource[] = [plan, ...goals, ...teams, ...measures, ...(person ? [person] : []), ...readable, ...provenances];

  await repo.unshare(reason);
  const seen = new Set<string>();
  for (const r of shared) {
    const key = `${r.resourceType}/${r.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    // Each resource on its own: a Consent may withhold some kinds (class, code, label, data) or
    // periods; a share expires when the answer for it may next change.
    for (const org of team) {
      const w = consentWindow(org, consents, now, consentSubject(r));
      if (w.permitted) await repo.share(r.resourceType, r.id!, org, reason, w.until ? new Date(w.until) : undefined);
    }
  }
  return orgs;
}
