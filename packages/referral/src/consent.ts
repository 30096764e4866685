// Does the person's consent let a referral, and what it carries, reach the receiving organisation?
// Pure. The person's active patient-privacy Consents are evaluated together by the R4 provision
// rules of @tic/fhir (consent.ts: nested provisions are exceptions to their parent, the most
// specific applying one decides, what cannot be evaluated withholds, a deny in any Consent wins),
// with the referral's minimum-necessary reading on top:
// - the referral itself (Task, ServiceRequest, minimal Patient, the permitting Consent) is
//   disclosed when a permit applies to the receiver and a provision on its path names the receiver
//   in actor; a permit's class/code/securityLabel/data do not narrow it (they name what travels
//   besides), a deny's do (a deny without them withholds the referral itself);
// - supporting data (reasons, supporting info, Task inputs) only when, in addition, a provision on
//   the permit's path names it by class (resource type or profile), code, securityLabel or data.
import type { Consent, Task } from '@medplum/fhirtypes';
import type { ConsentPolicy, ConsentSubject } from '@tic/fhir';
import { decideConsents, relativeReference } from '@tic/fhir';
import { CONSENT_SCOPE_SYSTEM } from './codes.ts';

export interface ConsentCoverage {
  /** A Consent that permits the referral (it travels with it). */
  consent: Consent;
  /** The person's active patient-privacy Consents, every one of which is applied. */
  consents: Consent[];
  organization: string;
  now: Date;
  /** When the referral's own disclosure may next change (ISO): its share rows expire then. */
  end?: string;
}

const REFERRAL: ConsentPolicy = { requireActor: true, ignorePermitData: true };
const SUPPORTING: ConsentPolicy = { requireActor: true, requireData: true };

export function isPatientPrivacy(consent: Consent): boolean {
  return (consent.scope?.coding ?? []).some((c) => c.system === CONSENT_SCOPE_SYSTEM && c.code === 'patient-privacy');
}

/** The coverage of the referral under the person's Consents (those of other patients or scopes are left out). */
export function coverageOf(consents: Consent[], patient: string, organization: string, now: Date, task?: Task): ConsentCoverage | undefined {
  const relevant = consents.filter((c) => c.status === 'active' && isPatientPrivacy(c) && relativeReference(c.patient?.reference) === relativeReference(patient));
  const resource: ConsentSubject = task ? { resourceType: 'Task', id: task.id, content: task } : { resourceType: 'Task' };
  const d = decideConsents(relevant, { organization, resource, now }, REFERRAL);
  if (d.decision !== 'permit') return undefined;
  return { consent: d.consent!, consents: relevant, organization, now, ...(d.until ? { end: d.until } : {}) };
}

export function consentCovers(consent: Consent, patient: string, organization: string, now: Date, task?: Task): ConsentCoverage | undefined {
  return coverageOf([consent], patient, organization, now, task);
}

/**
 * May this resource travel with the referral? `part`: "referral" for the Task, ServiceRequest,
 * Patient and Consent, "supporting" for supporting data. Answers when the permission may next
 * change, or undefined when it is not permitted.
 */
export function permits(coverage: ConsentCoverage, resource: ConsentSubject, part: 'referral' | 'supporting'): { until?: string } | undefined {
  const d = decideConsents(coverage.consents, { organization: coverage.organization, resource, now: coverage.now }, part === 'referral' ? REFERRAL : SUPPORTING);
  if (d.decision !== 'permit') return undefined;
  return d.until ? { until: d.until } : {};
}

/** May this supporting resource (reference only, no content) travel with the referral? */
export function permitsSupporting(coverage: ConsentCoverage, reference: string): boolean {
  const rel = relativeReference(reference);
  if (!rel) return false;
  const [resourceType, id] = rel.split('/');
  return !!permits(coverage, { resourceType, id }, 'supporting');
}
