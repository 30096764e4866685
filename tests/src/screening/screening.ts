// Helpers for the screening end-to-end tests: QuestionnaireResponses built from the Questionnaires
// the API itself serves (answers chosen by their itemWeight), and readers of the Observations the
// screening module stores.
import type { Bundle, Coding, Observation, Questionnaire, QuestionnaireItem, QuestionnaireResponse, QuestionnaireResponseItem, Resource } from '@medplum/fhirtypes';
import type { Fhir } from '../helpers.ts';

export const BASE = 'https://tic-exchange.org/fhir';
export const SCREENING_CODES = `${BASE}/CodeSystem/screening-codes`;
export const DAR = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';
export const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
export const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
export const INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
export const ITEM_WEIGHT = 'http://hl7.org/fhir/StructureDefinition/itemWeight';
export const YES: Coding = { system: 'http://loinc.org', code: 'LA33-6', display: 'Yes' };
export const NO: Coding = { system: 'http://loinc.org', code: 'LA32-8', display: 'No' };
export const DECLINED: Coding = { system: DAR, code: 'asked-declined', display: 'Prefer not to answer' };

export const INSTRUMENTS = ['pc-ptsd-5', 'pcl-5', 'ace', 'phq-9', 'gad-7', 'qpr-15'] as const;
export type InstrumentId = (typeof INSTRUMENTS)[number];

/** An answer: a weight (the option with that itemWeight), "declined", or a Coding as is. */
export type Spec = number | 'declined' | Coding;

export function canonical(id: InstrumentId): string {
  return `${BASE}/Questionnaire/${id}|1.0.0`;
}

/** The Questionnaires as the API serves them (searched by url). */
export async function fetchQuestionnaires(client: Fhir): Promise<Record<InstrumentId, Questionnaire>> {
  const out = {} as Record<InstrumentId, Questionnaire>;
  for (const id of INSTRUMENTS) {
    const res = await client.get(`Questionnaire?url=${encodeURIComponent(`${BASE}/Questionnaire/${id}`)}`);
    if (res.status !== 200) throw new Error(`Questionnaire search answered ${res.status}`);
    const found = (res.body as Bundle<Questionnaire>).entry?.map((e) => e.resource!) ?? [];
    if (found.length !== 1) throw new Error(`expected one Questionnaire ${id}, found ${found.length}`);
    out[id] = found[0];
  }
  return out;
}

function weightOf(o: { extension?: { url: string; valueDecimal?: number; valueInteger?: number }[] }): number | undefined {
  const e = o.extension?.find((x) => x.url === ITEM_WEIGHT);
  return e?.valueDecimal ?? e?.valueInteger;
}

function coding(item: QuestionnaireItem, spec: Spec): Coding {
  if (spec === 'declined') return DECLINED;
  if (typeof spec === 'object') return spec;
  const option = item.answerOption?.find((o) => weightOf(o) === spec);
  if (!option?.valueCoding) throw new Error(`item ${item.linkId} has no option weighted ${spec}`);
  return option.valueCoding;
}

/** The question items (choice) of a Questionnaire, in order. */
export function questions(q: Questionnaire): QuestionnaireItem[] {
  const out: QuestionnaireItem[] = [];
  const walk = (items: QuestionnaireItem[] | undefined) => {
    for (const i of items ?? []) {
      if (i.type === 'choice') out.push(i);
      walk(i.item);
    }
  };
  walk(q.item);
  return out;
}

/** A response to `q` answering the items of `answers` (linkId → spec), in Questionnaire order. */
export function response(q: Questionnaire, answers: Record<string, Spec>, extra: Partial<QuestionnaireResponse> = {}): QuestionnaireResponse {
  const item: QuestionnaireResponseItem[] = [];
  for (const qi of questions(q)) {
    const spec = answers[qi.linkId];
    if (spec === undefined) continue;
    item.push({ linkId: qi.linkId, text: qi.text, answer: [{ valueCoding: coding(qi, spec) }] });
  }
  return {
    resourceType: 'QuestionnaireResponse',
    questionnaire: `${q.url}|${q.version}`,
    status: 'completed',
    authored: '2025-03-01T10:00:00Z',
    item,
    ...extra,
  };
}

/** Every weighted question of `q` answered with the weights given in order (or one weight for all). */
export function weights(q: Questionnaire, values: Spec[] | Spec): Record<string, Spec> {
  const weighted = questions(q).filter((i) => i.answerOption?.some((o) => weightOf(o) !== undefined));
  const out: Record<string, Spec> = {};
  weighted.forEach((i, k) => {
    out[i.linkId] = Array.isArray(values) ? values[k] : values;
  });
  return out;
}

export function codeOf(r: { code?: { coding?: Coding[] } }): string | undefined {
  return r.code?.coding?.[0]?.code;
}

export function component(o: Observation, code: string) {
  return o.component?.find((c) => c.code.coding?.some((x) => x.code === code));
}

export function interpretationOf(o: Observation): string | undefined {
  return o.interpretation?.[0]?.coding?.find((c) => c.system === INTERPRETATION)?.code;
}

export function hasLabels(r: Resource): boolean {
  const s = r.meta?.security ?? [];
  return s.some((c) => c.system === CONF && c.code === 'R') && s.some((c) => c.system === ACT && c.code === 'BH');
}

/** The Observations derived from a stored response, as `client` may see them. */
export async function observationsOf(client: Fhir, qrId: string): Promise<Observation[]> {
  const res = await client.get(`Observation?derived-from=QuestionnaireResponse/${qrId}&_count=100`);
  if (res.status !== 200) throw new Error(`Observation search answered ${res.status}: ${JSON.stringify(res.body)}`);
  return ((res.body as Bundle<Observation>).entry ?? []).map((e) => e.resource!);
}

/** The score Observation (the one with an integer value and the score code) of a set. */
export function scoreOf(observations: Observation[], code: string): Observation {
  const found = observations.filter((o) => codeOf(o) === code);
  if (found.length !== 1) throw new Error(`expected one Observation ${code}, found ${found.length}`);
  return found[0];
}

export async function ok<T>(res: { status: number; body: unknown }, status = 200): Promise<T> {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as T;
}
