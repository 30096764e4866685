// Canonical URLs and codes of the referral module (see fhir-profiles/CodeSystem-*.json).
export const BASE = 'https://tic-exchange.org/fhir';
export const SECTOR_SYSTEM = `${BASE}/CodeSystem/sector`;
export const TIC_CAPABILITY_SYSTEM = `${BASE}/CodeSystem/tic-capability`;
export const CAPACITY_STATUS_SYSTEM = `${BASE}/CodeSystem/referral-capacity-status`;
export const BUSINESS_STATUS_SYSTEM = `${BASE}/CodeSystem/referral-business-status`;

/** HealthcareService capacity: complex extension with `status` (Coding) and `lastUpdated` (dateTime). */
export const CAPACITY_EXTENSION = `${BASE}/StructureDefinition/service-capacity`;
/** HealthcareService cultural fit: CodeableConcept (text), e.g. "Arabic-speaking women's group". */
export const CULTURAL_FIT_EXTENSION = `${BASE}/StructureDefinition/cultural-fit`;
/** Bundle.entry.search of $match: one complex extension per reason (factor, points, detail). */
export const MATCH_REASON_EXTENSION = `${BASE}/StructureDefinition/match-reason`;
/** Identifier system for resources imported from an Open Referral HSDS export. */
export const HSDS_IDENTIFIER_SYSTEM = `${BASE}/NamingSystem/hsds-id`;
/** Identifier system of referral Tasks and ServiceRequests (business identifiers for idempotent delivery). */
export const REFERRAL_IDENTIFIER_SYSTEM = `${BASE}/NamingSystem/referral-id`;

export const SECTORS = ['health', 'mental-health', 'social-care', 'housing', 'justice', 'education', 'employment', 'peer-support', 'community'] as const;
export type Sector = (typeof SECTORS)[number];

export const TIC_LEVELS: Record<string, number> = {
  'trauma-aware': 1,
  'trauma-sensitive': 2,
  'trauma-responsive': 3,
  'trauma-informed': 4,
};

export const CAPACITY_STATUSES = ['accepting', 'waitlist', 'closed'] as const;
export type CapacityStatus = (typeof CAPACITY_STATUSES)[number];

export const TASK_CODE_SYSTEM = 'http://hl7.org/fhir/CodeSystem/task-code';
export const CONSENT_SCOPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/consentscope';
export const RESOURCE_TYPES_SYSTEM = 'http://hl7.org/fhir/resource-types';
export const LANGUAGE_SYSTEM = 'urn:ietf:bcp:47';

export const BUSINESS_STATUS = {
  awaitingConsent: { code: 'awaiting-consent', text: 'awaiting consent' },
  consented: { code: 'consented', text: 'consented' },
  deliveryPending: { code: 'delivery-pending', text: 'delivery pending' },
  delivered: { code: 'delivered', text: 'delivered' },
  deliveryFailed: { code: 'delivery-failed', text: 'delivery failed' },
} as const;

export type BusinessStatusKey = keyof typeof BUSINESS_STATUS;

export function businessStatus(key: BusinessStatusKey): { coding: Array<{ system: string; code: string; display: string }>; text: string } {
  const s = BUSINESS_STATUS[key];
  return { coding: [{ system: BUSINESS_STATUS_SYSTEM, code: s.code, display: s.text }], text: s.text };
}

export function businessStatusCode(task: { businessStatus?: { coding?: Array<{ system?: string; code?: string }> } }): string | undefined {
  return task.businessStatus?.coding?.find((c) => c.system === BUSINESS_STATUS_SYSTEM)?.code;
}
