// Which resources are recovery plans, goals and care teams: those claiming the profile, or
// carrying the recovery category / a CHIME category / a recovery role. The profile is added
// when missing, so the server enforces it on every write.
import type { CarePlan, CareTeam, CodeableConcept, Goal, Resource } from '@medplum/fhirtypes';
import { PROFILE, SYSTEM } from './constants.ts';

export const hasCoding = (concepts: CodeableConcept[] | undefined, system: string, code?: string): boolean =>
  (concepts ?? []).some((c) => (c.coding ?? []).some((x) => x.system === system && (code === undefined || x.code === code)));

const claims = (r: Resource, profile: string): boolean => (r.meta?.profile ?? []).some((p) => p === profile || p.startsWith(`${profile}|`));

export function isRecoveryPlan(r: Resource): r is CarePlan {
  return r.resourceType === 'CarePlan' && (claims(r, PROFILE.carePlan) || hasCoding(r.category, SYSTEM.category, 'recovery'));
}

export function isRecoveryGoal(r: Resource): r is Goal {
  return r.resourceType === 'Goal' && (claims(r, PROFILE.goal) || hasCoding(r.category, SYSTEM.chime));
}

export function isRecoveryCareTeam(r: Resource): r is CareTeam {
  return r.resourceType === 'CareTeam' && (claims(r, PROFILE.careTeam) || (r.participant ?? []).some((p) => hasCoding(p.role, SYSTEM.role)));
}

export function isRecoveryResource(r: Resource): boolean {
  return isRecoveryPlan(r) || isRecoveryGoal(r) || isRecoveryCareTeam(r);
}

/** The resource with `profile` in meta.profile. */
export function withProfile<T extends Resource>(r: T, profile: string): T {
  if (claims(r, profile)) return r;
  return { ...r, meta: { ...r.meta, profile: [...(r.meta?.profile ?? []), profile] } };
}

export function profileFor(r: Resource): string | undefined {
  if (isRecoveryPlan(r)) return PROFILE.carePlan;
  if (isRecoveryGoal(r)) return PROFILE.goal;
  if (isRecoveryCareTeam(r)) return PROFILE.careTeam;
  return undefined;
}

/** "Type/id" of a literal reference (a versioned or absolute one too), or undefined. */
export function refKey(reference: string | undefined): string | undefined {
  if (!reference) return undefined;
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(reference);
  return m ? `${m[1]}/${m[2]}` : undefined;
}

export function refType(reference: string | undefined): string | undefined {
  return refKey(reference)?.split('/')[0];
}
