// Who may read a recovery plan: the organisations represented in its care team, within the
// person's consent. The plan, its goals, care teams, the goals' measures, the person and the
// Provenances of all of them are shared with those organisations (resource_share rows under the
// reason "careplan:{id}"), recomputed in the transaction of every write that can change the answer.
// Only what the writing client can itself read is ever shared.
import type { CarePlan, CareTeam, Consent, ConsentProvision, Goal, PractitionerRole, Provenance, Resource } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { shareReason } from './constants.ts';
import { refKey, refType } from './recognise.ts';

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

const names = (provision: ConsentProvision, org: string): boolean => (provision.actor ?? []).some((a) => refKey(a.reference?.reference) === org);

/** What one Consent says about `org` seeing the person's data: permit, deny, or nothing. */
export function consentDecision(consent: Consent, org: string, now: Date): 'permit' | 'deny' | undefined {
  if (consent.status !== 'active') return undefined;
  const root = consent.provision;
  if (!root) return 'permit';
  if (!inPeriod(root.period, now)) return undefined;
  for (const nested of root.provision ?? []) {
    if (inPeriod(nested.period, now) && names(nested, org)) return nested.type === 'deny' ? 'deny' : 'permit';
  }
  const applies = !root.actor?.length || names(root, org);
  if (!applies) return undefined;
  return root.type === 'deny' ? 'deny' : 'permit';
}

/**
 * The organisations allowed by the person's consents: all of them when the person has no
 * Consent on record; otherwise those some active Consent permits and none denies (a revoked or
 * inactive Consent permits nothing).
 */
export function withinConsent(orgs: string[], consents: Consent[], now: Date): string[] {
  if (consents.length === 0) return orgs;
  return orgs.filter((org) => {
    const decisions = consents.map((c) => consentDecision(c, org, now));
    return decisions.includes('permit') && !decisions.includes('deny');
  });
}

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
  const teams = (await Promise.all((plan.careTeam ?? []).map((r) => readRef<CareTeam>(repo, r.reference)))).filter((t): t is CareTeam => !!t);
  const roleRefs = teams.flatMap((t) => (t.participant ?? []).map((p) => p.member?.reference).filter((r): r is string => refType(r) === 'PractitionerRole'));
  const roles = (await Promise.all(roleRefs.map((r) => readRef<PractitionerRole>(repo, r)))).filter((r): r is PractitionerRole => !!r);
  const patient = refKey(plan.subject?.reference);
  const consents = patient ? await repo.search<Consent>('Consent', { patient, _count: '200' }) : [];
  const orgs = plan.status === 'entered-in-error' ? [] : withinConsent(teamOrganisations(teams, roles, now), consents, now);
  const goals = (await Promise.all((plan.goal ?? []).map((r) => readRef<Goal>(repo, r.reference)))).filter((g): g is Goal => !!g);
  const measures = (await Promise.all(goals.flatMap((g) => (g.outcomeReference ?? []).map((r) => readRef<Resource>(repo, r.reference))))).filter((m): m is Resource => !!m);
  const person = patient ? await readRef<Resource>(repo, patient) : undefined;
  const provenances = (await Promise.all([plan, ...goals, ...teams].map((r) => repo.search<Provenance>('Provenance', { target: `${r.resourceType}/${r.id}`, _count: '1000' })))).flat();
  const shared: Resource[] = [plan, ...goals, ...teams, ...measures, ...(person ? [person] : []), ...consents, ...provenances];

  await repo.unshare(reason);
  const seen = new Set<string>();
  for (const r of shared) {
    const key = `${r.resourceType}/${r.id}`;
    if (seen.has(key)) continue;
    seen.add(key);
    for (const org of orgs) await repo.share(r.resourceType, r.id!, org, reason);
  }
  return orgs;
}
