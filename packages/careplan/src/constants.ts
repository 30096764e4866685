// Canonical URLs and code systems of the recovery care plan profiles (fhir-profiles/).
export const BASE = 'https://tic-exchange.org/fhir';

export const PROFILE = {
  carePlan: `${BASE}/StructureDefinition/recovery-careplan`,
  goal: `${BASE}/StructureDefinition/recovery-goal`,
  careTeam: `${BASE}/StructureDefinition/recovery-careteam`,
} as const;

export const EXT = {
  stage: `${BASE}/StructureDefinition/recovery-stage`,
  strength: `${BASE}/StructureDefinition/recovery-strength`,
  whatHelps: `${BASE}/StructureDefinition/recovery-what-helps`,
  crisisPreference: `${BASE}/StructureDefinition/recovery-crisis-preference`,
  memberConsent: `${BASE}/StructureDefinition/recovery-team-member-consent`,
} as const;

export const SYSTEM = {
  category: `${BASE}/CodeSystem/recovery-category`,
  stage: `${BASE}/CodeSystem/recovery-stage`,
  chime: `${BASE}/CodeSystem/chime`,
  role: `${BASE}/CodeSystem/recovery-care-team-role`,
  crisisPreferenceType: `${BASE}/CodeSystem/recovery-crisis-preference-type`,
  document: `${BASE}/CodeSystem/recovery-document`,
  /** Identifies API clients acting as Provenance agents. */
  clientId: `${BASE}/sid/client-id`,
} as const;

/** Andresen's stages in their usual order (moves either way are allowed; order only names the direction). */
export const STAGES = ['moratorium', 'awareness', 'preparation', 'rebuilding', 'growth'] as const;
export type Stage = (typeof STAGES)[number];

export const CHIME = ['connectedness', 'hope-and-optimism', 'identity', 'meaning-in-life', 'empowerment'] as const;

export const CRISIS_PREFERENCE_TYPES = ['helps-when-distressed', 'avoid', 'alternative-to-restrictive-practice', 'contact'] as const;
export type CrisisPreferenceType = (typeof CRISIS_PREFERENCE_TYPES)[number];

/** Care team roles that need the person's recorded consent. */
export const CONSENT_ROLES = ['family-member', 'informal-caregiver'];

/** HL7 code systems used in Provenance (FHIR R4 core terminology). */
export const HL7 = {
  dataOperation: 'http://terminology.hl7.org/CodeSystem/v3-DataOperation',
  actReason: 'http://terminology.hl7.org/CodeSystem/v3-ActReason',
  participantType: 'http://terminology.hl7.org/CodeSystem/provenance-participant-type',
} as const;

/** The resource_share reason under which a plan and everything it brings along are shared. */
export const shareReason = (carePlanId: string): string => `careplan:${carePlanId}`;
