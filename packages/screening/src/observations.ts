// Builds the Observations of a scored QuestionnaireResponse (SDC observation-based extraction):
// one per answered item marked observationExtract, one per score. Pure: nothing is stored here.
//
// The extension's value (SDC 4.0.0, the observation-extract-relationship codes): `true` or
// `independent`, an Observation of its own; `component`, a component of the Observation of the
// nearest enclosing item that is extracted (a group item with a code becomes such a panel
// Observation, written only when it has components), or, with none enclosing it, an Observation of
// its own; `member` and `derived` (an Observation of its own that the parent refers to, or that
// refers to the parent) are refused with 422 not-supported before anything is written, rather than
// extracted without the relationship the Questionnaire asks for.
import type {
  CodeableConcept,
  Coding,
  Observation,
  ObservationComponent,
  Quantity,
  Questionnaire,
  QuestionnaireItem,
  QuestionnaireResponse,
  QuestionnaireResponseItem,
  Reference,
  Resource,
} from '@medplum/fhirtypes';
import {
  ACT_CODE,
  CONFIDENTIALITY,
  DATA_ABSENT_REASON,
  DECLINED_CODE,
  OBSERVATION_CATEGORY,
  OBSERVATION_EXTRACT,
  OBSERVATION_IDENTIFIER_SYSTEM,
  OBSERVATION_INTERPRETATION,
  SCREENING_CODES,
} from './constants.ts';
import { issuesError } from '@tic/fhir';
import { derivedIdentifier, responseKey } from './identifiers.ts';
import type { Answer } from './items.ts';
import { isDeclined, questionnaireItemsByLinkId } from './items.ts';
import type { Interpretation, ScoreResult } from './score-response.ts';

export const SECURITY_LABELS: Coding[] = [
  { system: CONFIDENTIALITY, code: 'R', display: 'restricted' },
  { system: ACT_CODE, code: 'BH', display: 'behavioral health information sensitivity' },
];

const interpretationDisplay: Record<Interpretation, string> = { POS: 'Positive', NEG: 'Negative', IND: 'Indeterminate' };

export function interpretationConcept(code: Interpretation): CodeableConcept {
  return { coding: [{ system: OBSERVATION_INTERPRETATION, code, display: interpretationDisplay[code] }] };
}

const screeningCode = (code: string, display: string): CodeableConcept => ({ coding: [{ system: SCREENING_CODES, code, display }] });

/** Self-administered when the Patient is the source (or, with no source, the author); clinician when a practitioner is. */
export function administrationMode(qr: QuestionnaireResponse): CodeableConcept | undefined {
  const who = qr.source?.reference ?? qr.author?.reference ?? '';
  if (who.startsWith('Patient/')) return screeningCode('self-administered', 'Self-administered');
  if (who.startsWith('Practitioner/') || who.startsWith('PractitionerRole/')) return screeningCode('clinician-administered', 'Clinician-administered');
  return undefined;
}

const performerTypes = ['Practitioner/', 'PractitionerRole/', 'Organization/', 'CareTeam/', 'Patient/', 'RelatedPerson/'];

function numberValue(n: number): Pick<ObservationComponent, 'valueInteger' | 'valueQuantity'> {
  return Number.isInteger(n) ? { valueInteger: n } : { valueQuantity: { value: n } };
}

function answerValue(answer: Answer): Partial<Observation> | undefined {
  if (answer.valueCoding) return { valueCodeableConcept: { coding: [answer.valueCoding], text: answer.valueCoding.display } };
  if (answer.valueInteger !== undefined) return { valueInteger: answer.valueInteger };
  if (answer.valueDecimal !== undefined) return { valueQuantity: { value: answer.valueDecimal } };
  if (answer.valueBoolean !== undefined) return { valueBoolean: answer.valueBoolean };
  if (answer.valueString !== undefined) return { valueString: answer.valueString };
  if (answer.valueDate !== undefined) return { valueDateTime: answer.valueDate };
  if (answer.valueDateTime !== undefined) return { valueDateTime: answer.valueDateTime };
  if (answer.valueTime !== undefined) return { valueTime: answer.valueTime };
  if (answer.valueQuantity !== undefined) return { valueQuantity: answer.valueQuantity };
  return undefined;
}

/** How an item is extracted (SDC 4.0.0 observation-extract-relationship, `true` as `independent`); undefined: not at all. */
type ExtractMode = 'independent' | 'component' | 'member' | 'derived';

function extractMode(item: QuestionnaireItem): ExtractMode | undefined {
  const ext = item.extension?.find((e) => e.url === OBSERVATION_EXTRACT);
  if (!ext) return undefined;
  if (ext.valueBoolean !== undefined) return ext.valueBoolean ? 'independent' : undefined;
  const code = ext.valueCode;
  return code === 'independent' || code === 'component' || code === 'member' || code === 'derived' ? code : undefined;
}

function notSupported(item: QuestionnaireItem, mode: ExtractMode): never {
  throw issuesError(
    [
      {
        severity: 'error',
        code: 'not-supported',
        diagnostics: `Questionnaire item ${item.linkId} asks for observation-based extraction with the relationship '${mode}', which this server does not implement (it extracts 'independent' items and 'component's); nothing was stored`,
        expression: [`Questionnaire.item.where(linkId = '${item.linkId}')`],
      },
    ],
    422,
  );
}

function base(q: Questionnaire, qr: QuestionnaireResponse, key: string, part: string, item: QuestionnaireItem): Observation {
  const obs: Observation = {
    resourceType: 'Observation',
    meta: { security: SECURITY_LABELS.map((c) => ({ ...c })) },
    identifier: [derivedIdentifier(OBSERVATION_IDENTIFIER_SYSTEM, key, part)],
    status: qr.status === 'amended' ? 'amended' : 'final',
    category: [{ coding: [{ system: OBSERVATION_CATEGORY, code: 'survey', display: 'Survey' }] }],
    code: { coding: (item.code ?? []).map((c) => ({ ...c })), text: item.text ?? q.title },
  };
  if (qr.subject) obs.subject = qr.subject as Observation['subject'];
  if (qr.encounter) obs.encounter = qr.encounter;
  if (qr.authored) obs.effectiveDateTime = qr.authored;
  const author = qr.author?.reference;
  if (author && performerTypes.some((t) => author.startsWith(t))) obs.performer = [qr.author as Reference<never>];
  const mode = administrationMode(qr);
  if (mode) obs.method = mode;
  if (qr.id) obs.derivedFrom = [{ reference: `QuestionnaireResponse/${qr.id}` }];
  else if (qr.identifier) obs.derivedFrom = [{ type: 'QuestionnaireResponse', identifier: qr.identifier }];
  return obs;
}

function scoreObservation(q: Questionnaire, qr: QuestionnaireResponse, key: string, s: ScoreResult): Observation {
  const obs = base(q, qr, key, s.linkId, s.item);
  Object.assign(obs, numberValue(s.total));
  const component: ObservationComponent[] = [];
  if (s.interpretation) obs.interpretation = [interpretationConcept(s.interpretation)];
  if (s.cutoff) {
    component.push({ code: screeningCode('cutoff-applied', 'Cut-off applied'), ...numberValue(s.cutoff.value) });
  }
  if (s.declined.length > 0) {
    component.push({ code: screeningCode('declined-items', 'Declined items'), valueInteger: s.declined.length });
    component.push({ code: screeningCode('score-lower-bound', 'Lowest possible score'), ...numberValue(s.lower) });
    component.push({ code: screeningCode('score-upper-bound', 'Highest possible score'), ...numberValue(s.upper) });
    obs.note = [{ text: `Partial total: ${s.declined.length} item(s) answered "Prefer not to answer"; the score could be ${s.lower} to ${s.upper}.` }];
  }
  if (s.severity) component.push({ code: screeningCode('severity', 'Severity band'), valueCodeableConcept: { coding: [s.severity], text: s.severity.display } });
  for (const c of s.clusters ?? []) {
    component.push({ code: { coding: [c.code] }, valueInteger: c.endorsed, interpretation: [interpretationConcept(c.interpretation)] });
  }
  if (s.clusterPattern) {
    const pattern: ObservationComponent = { code: screeningCode('cluster-pattern', 'Provisional symptom cluster pattern'), interpretation: [interpretationConcept(s.clusterPattern)] };
    if (s.clusterPattern === 'IND') pattern.dataAbsentReason = { coding: [{ system: DATA_ABSENT_REASON, code: DECLINED_CODE, display: 'Asked But Declined' }] };
    else pattern.valueBoolean = s.clusterPattern === 'POS';
    component.push(pattern);
  }
  if (component.length) obs.component = component;
  return obs;
}

/**
 * The Observations of a response: item Observations first (in the response's order; a panel
 * Observation just before the items of its group that are Observations of their own), then one per
 * score.
 */
export function buildObservations(q: Questionnaire, qr: QuestionnaireResponse, scores: ScoreResult[]): Observation[] {
  const key = responseKey(qr);
  if (!key) return [];
  const byLinkId = questionnaireItemsByLinkId(q);
  const scored = new Set(scores.map((s) => s.linkId));
  const out: Observation[] = [];
  // `parent`: the Observation of the nearest enclosing item that is extracted, which `component`s join.
  const walk = (items: QuestionnaireResponseItem[] | undefined, parent: Observation | undefined): void => {
    for (const rItem of items ?? []) {
      const qItem = byLinkId.get(rItem.linkId);
      const mode = qItem && !scored.has(rItem.linkId) && qItem.code?.length ? extractMode(qItem) : undefined;
      if (!qItem || !mode) {
        walk(rItem.item, parent);
        for (const answer of rItem.answer ?? []) walk(answer.item, parent);
        continue;
      }
      if (mode === 'member' || mode === 'derived') notSupported(qItem, mode);
      if (mode === 'component' && parent) {
        for (const answer of rItem.answer ?? []) {
          const value = isDeclined(answer) ? undefined : answerValue(answer);
          if (value) (parent.component ??= []).push({ code: { coding: (qItem.code ?? []).map((c) => ({ ...c })), text: qItem.text }, ...value } as ObservationComponent);
          walk(answer.item, parent);
        }
        walk(rItem.item, parent);
        continue;
      }
      if (qItem.type === 'group') {
        // A panel: written only if some item joins it as a component.
        const panel = base(q, qr, key, rItem.linkId, qItem);
        const at = out.length;
        walk(rItem.item, panel);
        if (panel.component?.length) out.splice(at, 0, panel);
        continue;
      }
      (rItem.answer ?? []).forEach((answer, i) => {
        const value = isDeclined(answer) ? undefined : answerValue(answer);
        const obs = value ? { ...base(q, qr, key, i === 0 ? rItem.linkId : `${rItem.linkId}.${i}`, qItem), ...value } : undefined;
        if (obs) out.push(obs);
        walk(answer.item, obs ?? parent);
      });
      walk(rItem.item, parent);
    }
  };
  walk(qr.item, undefined);
  for (const s of scores) {
    const mode = s.item.code?.length ? extractMode(s.item) : undefined;
    if (!mode) continue;
    // A score is its own Observation (the interpretation and cut-off are its components).
    if (mode !== 'independent') notSupported(s.item, mode);
    out.push(scoreObservation(q, qr, key, s));
  }
  return out;
}

const LOCAL_REFERENCE = /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/;

function maskReference(ref: Reference | undefined): Reference | undefined {
  if (!ref) return undefined;
  const out: Record<string, unknown> = { ...ref };
  // The target type stays: it decides whether the reference is allowed here.
  if (typeof ref.reference === 'string' && LOCAL_REFERENCE.test(ref.reference)) out.reference = `${ref.reference.split('/')[0]}/#`;
  if (typeof ref.display === 'string') out.display = '#string';
  return out as Reference;
}

function maskInteger(n: number | undefined): number | string | undefined {
  return typeof n === 'number' && Number.isInteger(n) && Math.abs(n) <= 2_147_483_647 ? '#integer' : n;
}

function maskQuantity(q: Quantity | undefined): Quantity | undefined {
  return q && typeof q.value === 'number' && Number.isFinite(q.value) ? ({ ...q, value: '#decimal' } as unknown as Quantity) : q;
}

/**
 * The shape of an Observation built here from a stored (so validated) response, for
 * CreateManyOptions.shape: everything but what varies from response to response, which is masked
 * (the derived identifier's response key; subject, encounter, performer and derivedFrom ids and
 * displays, copied from the response into Reference elements; the effective time, the response's
 * validated dateTime `authored`; score and bound numbers; the partial-total note). Codes, systems,
 * displays of answers and the reference types stay, so each answer option and score outcome is
 * validated once.
 */
export function observationShape(resource: Resource): string | undefined {
  if (resource.resourceType !== 'Observation') return undefined;
  const o = resource;
  const masked: Record<string, unknown> = {
    ...o,
    id: o.id === undefined ? undefined : '#id',
    identifier: o.identifier?.map((i) => ({ ...i, value: i.value?.replace(/^[0-9a-f]{32}\./, '#.') })),
    subject: maskReference(o.subject),
    encounter: maskReference(o.encounter),
    performer: o.performer?.map(maskReference),
    derivedFrom: o.derivedFrom?.map(maskReference),
    effectiveDateTime: o.effectiveDateTime === undefined ? undefined : '#dateTime',
    valueInteger: maskInteger(o.valueInteger),
    valueQuantity: maskQuantity(o.valueQuantity),
    note: o.note?.map((n) => ({ ...n, text: typeof n.text === 'string' && n.text.length > 0 ? '#markdown' : n.text })),
    component: o.component?.map((c) => ({ ...c, valueInteger: maskInteger(c.valueInteger), valueQuantity: maskQuantity(c.valueQuantity) })),
  };
  return JSON.stringify(masked);
}
