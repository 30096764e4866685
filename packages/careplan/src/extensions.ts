// The plan's structured extensions (stage, strengths, what helps, crisis preferences): reading
// them, and checking their sub-extensions, which the profiles cannot (no slicing in the validator).
import type { CarePlan, CodeableConcept, Coding, Extension, OperationOutcomeIssue, Reference } from '@medplum/fhirtypes';
import type { CrisisPreferenceType, Stage } from './constants.ts';
import { CHIME, CRISIS_PREFERENCE_TYPES, EXT, STAGES, SYSTEM } from './constants.ts';
import { refType } from './recognise.ts';

export interface StageRecord {
  stage: Stage;
  coding: Coding;
  recorded: string;
  note?: string;
}

export interface CrisisPreference {
  type: CrisisPreferenceType;
  detail?: string;
  contact?: Reference;
  recorded?: string;
}

const sub = (ext: Extension, url: string): Extension[] => (ext.extension ?? []).filter((e) => e.url === url);

export function readStage(plan: CarePlan): StageRecord | undefined {
  const ext = (plan.extension ?? []).find((e) => e.url === EXT.stage);
  if (!ext) return undefined;
  const coding = sub(ext, 'stage')[0]?.valueCoding;
  const recorded = sub(ext, 'recorded')[0]?.valueDateTime;
  if (!coding?.code || !(STAGES as readonly string[]).includes(coding.code) || !recorded) return undefined;
  const note = sub(ext, 'note')[0]?.valueString;
  return { stage: coding.code as Stage, coding, recorded, ...(note ? { note } : {}) };
}

/** The plan with its stage extension's `recorded` set to `when`. */
export function withStageRecorded(plan: CarePlan, when: string): CarePlan {
  return {
    ...plan,
    extension: (plan.extension ?? []).map((e) =>
      e.url === EXT.stage ? { ...e, extension: [...(e.extension ?? []).filter((s) => s.url !== 'recorded'), { url: 'recorded', valueDateTime: when }] } : e,
    ),
  };
}

export const readStrengths = (plan: CarePlan): CodeableConcept[] => (plan.extension ?? []).filter((e) => e.url === EXT.strength).flatMap((e) => (e.valueCodeableConcept ? [e.valueCodeableConcept] : []));
export const readWhatHelps = (plan: CarePlan): CodeableConcept[] => (plan.extension ?? []).filter((e) => e.url === EXT.whatHelps).flatMap((e) => (e.valueCodeableConcept ? [e.valueCodeableConcept] : []));

export function readCrisisPreferences(plan: CarePlan): CrisisPreference[] {
  return (plan.extension ?? [])
    .filter((e) => e.url === EXT.crisisPreference)
    .flatMap((e) => {
      const type = sub(e, 'type')[0]?.valueCoding?.code;
      if (!type || !(CRISIS_PREFERENCE_TYPES as readonly string[]).includes(type)) return [];
      const p: CrisisPreference = { type: type as CrisisPreferenceType };
      const detail = sub(e, 'detail')[0]?.valueString;
      const contact = sub(e, 'contact')[0]?.valueReference;
      const recorded = sub(e, 'recorded')[0]?.valueDateTime;
      if (detail) p.detail = detail;
      if (contact) p.contact = contact;
      if (recorded) p.recorded = recorded;
      return [p];
    });
}

const issue = (diagnostics: string, expression: string): OperationOutcomeIssue => ({ severity: 'error', code: 'business-rule', diagnostics, expression: [expression] });

function checkSubExtensions(ext: Extension, at: string, allowed: Record<string, { value: keyof Extension; min: number }>, issues: OperationOutcomeIssue[]): void {
  if (Object.keys(ext).some((k) => k.startsWith('value'))) issues.push(issue('This complex extension takes sub-extensions, not a value', at));
  (ext.extension ?? []).forEach((s, i) => {
    const rule = allowed[s.url];
    if (!rule) issues.push(issue(`Unknown sub-extension "${s.url}"; allowed: ${Object.keys(allowed).join(', ')}`, `${at}.extension[${i}]`));
    else if (s[rule.value] === undefined) issues.push(issue(`Sub-extension "${s.url}" needs ${String(rule.value)}`, `${at}.extension[${i}]`));
  });
  for (const [url, rule] of Object.entries(allowed)) {
    const n = sub(ext, url).length;
    if (n < rule.min) issues.push(issue(`Sub-extension "${url}" is required`, `${at}.extension`));
    if (n > 1) issues.push(issue(`Sub-extension "${url}" may appear only once`, `${at}.extension`));
  }
}

function checkChimeCoding(concept: CodeableConcept | undefined, at: string, issues: OperationOutcomeIssue[]): void {
  if (!concept) {
    issues.push(issue('valueCodeableConcept is required', at));
    return;
  }
  if (!concept.text?.trim()) issues.push(issue("The person's own words are required in text", `${at}.text`));
  (concept.coding ?? []).forEach((c, i) => {
    if (c.system !== SYSTEM.chime || !(CHIME as readonly string[]).includes(c.code ?? '')) issues.push(issue(`Coding must be a CHIME domain (${SYSTEM.chime})`, `${at}.coding[${i}]`));
  });
}

/** Issues with the plan's recovery extensions (empty when they are all well formed). */
export function checkPlanExtensions(plan: CarePlan): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  let stages = 0;
  (plan.extension ?? []).forEach((ext, i) => {
    const at = `CarePlan.extension[${i}]`;
    switch (ext.url) {
      case EXT.stage: {
        if (++stages > 1) issues.push(issue('A plan has one current recovery stage; earlier stages live in its history', at));
        checkSubExtensions(ext, at, { stage: { value: 'valueCoding', min: 1 }, recorded: { value: 'valueDateTime', min: 1 }, note: { value: 'valueString', min: 0 } }, issues);
        const idx = (ext.extension ?? []).findIndex((s) => s.url === 'stage');
        const coding = ext.extension?.[idx]?.valueCoding;
        if (coding && (coding.system !== SYSTEM.stage || !(STAGES as readonly string[]).includes(coding.code ?? ''))) {
          issues.push(issue(`Stage must be one of ${STAGES.join(', ')} (${SYSTEM.stage})`, `${at}.extension[${idx}].valueCoding`));
        }
        break;
      }
      case EXT.strength:
      case EXT.whatHelps:
        checkChimeCoding(ext.valueCodeableConcept, `${at}.valueCodeableConcept`, issues);
        break;
      case EXT.crisisPreference: {
        checkSubExtensions(ext, at, { type: { value: 'valueCoding', min: 1 }, detail: { value: 'valueString', min: 0 }, contact: { value: 'valueReference', min: 0 }, recorded: { value: 'valueDateTime', min: 0 } }, issues);
        const idx = (ext.extension ?? []).findIndex((s) => s.url === 'type');
        const coding = ext.extension?.[idx]?.valueCoding;
        if (!coding) break;
        if (coding.system !== SYSTEM.crisisPreferenceType || !(CRISIS_PREFERENCE_TYPES as readonly string[]).includes(coding.code ?? '')) {
          issues.push(issue(`Type must be one of ${CRISIS_PREFERENCE_TYPES.join(', ')} (${SYSTEM.crisisPreferenceType})`, `${at}.extension[${idx}].valueCoding`));
        } else if (coding.code === 'contact') {
          const contact = sub(ext, 'contact')[0]?.valueReference;
          const t = refType(contact?.reference);
          if (!contact) issues.push(issue('A "contact" preference names whom to contact in a contact sub-extension', `${at}.extension`));
          else if (contact.reference && !['RelatedPerson', 'Practitioner', 'PractitionerRole', 'Organization', 'CareTeam'].includes(t ?? '')) {
            issues.push(issue('Contact must be a RelatedPerson, Practitioner, PractitionerRole, Organization or CareTeam', `${at}.extension[${(ext.extension ?? []).findIndex((s) => s.url === 'contact')}].valueReference`));
          }
        } else if (!sub(ext, 'detail')[0]?.valueString?.trim()) {
          issues.push(issue('This preference needs its detail, in the person\'s words', `${at}.extension`));
        }
        break;
      }
      default:
        break;
    }
  });
  return issues;
}
