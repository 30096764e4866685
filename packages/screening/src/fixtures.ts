// Test-only helpers: the hosted instruments and QuestionnaireResponses built from weights.
// Not exported from the package entry.
import type { Coding, Questionnaire, QuestionnaireResponse, QuestionnaireResponseItem } from '@medplum/fhirtypes';
import { DATA_ABSENT_REASON, DECLINED_CODE } from './constants.ts';
import { screeningConformanceResources } from './instruments.ts';
import { weightedOptions } from './items.ts';

export function instrument(id: string): Questionnaire {
  const q = screeningConformanceResources().find((r) => r.resourceType === 'Questionnaire' && r.id === id);
  if (!q) throw new Error(`no instrument ${id}`);
  return q as Questionnaire;
}

export const YES: Coding = { system: 'http://loinc.org', code: 'LA33-6', display: 'Yes' };
export const NO: Coding = { system: 'http://loinc.org', code: 'LA32-8', display: 'No' };
export const DECLINED: Coding = { system: DATA_ABSENT_REASON, code: DECLINED_CODE, display: 'Prefer not to answer' };

/** An answer: a weight (picks the option with that weight), 'declined', or a Coding. */
export type AnswerSpec = number | 'declined' | Coding;

export function respond(q: Questionnaire, answers: Record<string, AnswerSpec>, extra: Partial<QuestionnaireResponse> = {}): QuestionnaireResponse {
  const item: QuestionnaireResponseItem[] = [];
  for (const qItem of q.item ?? []) {
    const spec = answers[qItem.linkId];
    if (spec === undefined) continue;
    let coding: Coding;
    if (spec === 'declined') coding = DECLINED;
    else if (typeof spec === 'number') {
      const option = weightedOptions(qItem).find((o) => o.weight === spec);
      if (!option?.option.valueCoding) throw new Error(`no option of weight ${spec} for ${qItem.linkId}`);
      coding = option.option.valueCoding;
    } else coding = spec;
    item.push({ linkId: qItem.linkId, answer: [{ valueCoding: coding }] });
  }
  return {
    resourceType: 'QuestionnaireResponse',
    questionnaire: `${q.url}|${q.version}`,
    status: 'completed',
    subject: { reference: 'Patient/p1' },
    authored: '2025-03-01T10:00:00Z',
    author: { reference: 'Practitioner/dr1' },
    item,
    ...extra,
  };
}

/** Answers for items q1..qN, all with the same weight unless overridden. */
export function uniform(n: number, weight: AnswerSpec, overrides: Record<number, AnswerSpec> = {}): Record<string, AnswerSpec> {
  const out: Record<string, AnswerSpec> = {};
  for (let i = 1; i <= n; i++) out[`q${i}`] = overrides[i] ?? weight;
  return out;
}
