// Does a FHIR Consent permit disclosure of a referral to an organisation? Pure.
// Covered: status active, scope patient-privacy, for this patient, provision type permit (the
// default), its period running now, and the organisation named in provision.actor. What may be
// disclosed beyond the referral itself (Task, ServiceRequest, minimal Patient) is named by
// provision.class (resource types) and provision.data (individual resources). Nested provisions
// are not interpreted: a Consent with nested provisions must be split by the author.
import type { Consent } from '@medplum/fhirtypes';
import { CONSENT_SCOPE_SYSTEM, RESOURCE_TYPES_SYSTEM } from './codes.ts';

export interface ConsentCoverage {
  consent: Consent;
  /** Resource types the Consent names in provision.class. */
  classes: Set<string>;
  /** References (Type/id) the Consent names in provision.data. */
  data: Set<string>;
  /** When the permission ends (provision.period.end), if it does. */
  end?: string;
}

export function isPatientPrivacy(consent: Consent): boolean {
  return (consent.scope?.coding ?? []).some((c) => c.system === CONSENT_SCOPE_SYSTEM && c.code === 'patient-privacy');
}

function relative(reference: string | undefined): string | undefined {
  if (!reference) return undefined;
  const parts = reference.split('/');
  return parts.length >= 2 ? `${parts[parts.length - 2]}/${parts[parts.length - 1]}` : undefined;
}

export function consentCovers(consent: Consent, patient: string, organization: string, now: Date): ConsentCoverage | undefined {
  if (consent.status !== 'active' || !isPatientPrivacy(consent)) return undefined;
  if (relative(consent.patient?.reference) !== relative(patient)) return undefined;
  const p = consent.provision;
  if (!p || (p.type ?? 'permit') !== 'permit') return undefined;
  if (p.period?.start && Date.parse(p.period.start) > now.getTime()) return undefined;
  if (p.period?.end && Date.parse(p.period.end) <= now.getTime()) return undefined;
  if (!(p.actor ?? []).some((a) => relative(a.reference?.reference) === relative(organization))) return undefined;
  const classes = new Set((p.class ?? []).filter((c) => !c.system || c.system === RESOURCE_TYPES_SYSTEM).map((c) => c.code).filter((c): c is string => !!c));
  const data = new Set((p.data ?? []).map((d) => relative(d.reference?.reference)).filter((r): r is string => !!r));
  return { consent, classes, data, ...(p.period?.end ? { end: p.period.end } : {}) };
}

/** The widest coverage among several Consents (union of data, latest end; open-ended wins). */
export function coverageOf(consents: Consent[], patient: string, organization: string, now: Date): ConsentCoverage | undefined {
  const covering = consents.map((c) => consentCovers(c, patient, organization, now)).filter((c): c is ConsentCoverage => !!c);
  if (covering.length === 0) return undefined;
  const classes = new Set(covering.flatMap((c) => [...c.classes]));
  const data = new Set(covering.flatMap((c) => [...c.data]));
  const ends = covering.map((c) => c.end);
  const end = ends.some((e) => e === undefined) ? undefined : ends.sort((a, b) => Date.parse(b!) - Date.parse(a!))[0];
  return { consent: covering[0].consent, classes, data, ...(end ? { end } : {}) };
}

/** May this supporting resource travel with the referral under the coverage? */
export function permitsSupporting(coverage: ConsentCoverage, reference: string): boolean {
  const rel = relative(reference);
  if (!rel) return false;
  return coverage.data.has(rel) || coverage.classes.has(rel.split('/')[0]);
}
