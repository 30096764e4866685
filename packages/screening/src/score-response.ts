// Scores a QuestionnaireResponse from the data in its Questionnaire: each item with a
// calculatedExpression is a score; its screening-cutoff, screening-band and screening-cluster
// extensions say how to interpret it. Declined items are never silently scored as zero.
import type { Coding, Questionnaire, QuestionnaireItem, QuestionnaireResponse, QuestionnaireResponseItem } from '@medplum/fhirtypes';
import { boundResponses, summariseDeclined } from './bounds.ts';
import { calculatedExpression, evaluateScore } from './calculate.ts';
import { BAND_EXTENSION, CLUSTER_EXTENSION, CUTOFF_EXTENSION } from './constants.ts';
import { answerWeight, extensionsOf, questionnaireItemsByLinkId, responseItems } from './items.ts';

/** v3-ObservationInterpretation codes: positive, negative, indeterminate. */
export type Interpretation = 'POS' | 'NEG' | 'IND';
export type CutoffDirection = 'at-or-above' | 'at-or-below';

export interface AppliedCutoff {
  value: number;
  direction: CutoffDirection;
  /** Where the value came from: the Questionnaire's default or the organisation's configuration. */
  source: 'questionnaire' | 'organisation';
}

export interface ClusterResult {
  code: Coding;
  /** Items endorsed among the answered ones / at most, counting declined items as endorsed. */
  endorsed: number;
  endorsedAtMost: number;
  required: number;
  interpretation: Interpretation;
}

export interface ScoreResult {
  linkId: string;
  item: QuestionnaireItem;
  /** Sum over the answered items only. */
  total: number;
  /** Range the score could take had the declined items been answered. */
  lower: number;
  upper: number;
  /** Declined items (linkIds) that bear on the score; non-empty means the total is partial. */
  declined: string[];
  cutoff?: AppliedCutoff;
  interpretation?: Interpretation;
  /** The severity band, only when the whole possible range lies in one band. */
  severity?: Coding;
  clusters?: ClusterResult[];
  /** All clusters met (POS), one cannot be met (NEG), else IND. */
  clusterPattern?: Interpretation;
}

/** Cut-off override for a score item; undefined keeps the Questionnaire's default. */
export type CutoffResolver = (q: Questionnaire, item: QuestionnaireItem) => number | undefined;

function sub(ext: { extension?: { url: string }[] }, url: string): Record<string, unknown> | undefined {
  return ext.extension?.find((e) => e.url === url) as Record<string, unknown> | undefined;
}

export function defaultCutoff(item: QuestionnaireItem): { value: number; direction: CutoffDirection } | undefined {
  const ext = extensionsOf(item, CUTOFF_EXTENSION)[0];
  if (!ext) return undefined;
  const v = sub(ext, 'value');
  const value = (v?.valueDecimal ?? v?.valueInteger) as number | undefined;
  if (value === undefined) return undefined;
  const direction = sub(ext, 'direction')?.valueCode === 'at-or-below' ? 'at-or-below' : 'at-or-above';
  return { value, direction };
}

export function interpret(lower: number, upper: number, cutoff: { value: number; direction: CutoffDirection }): Interpretation {
  if (cutoff.direction === 'at-or-above') return lower >= cutoff.value ? 'POS' : upper < cutoff.value ? 'NEG' : 'IND';
  return upper <= cutoff.value ? 'POS' : lower > cutoff.value ? 'NEG' : 'IND';
}

function band(item: QuestionnaireItem, score: number): Coding | undefined {
  for (const ext of extensionsOf(item, BAND_EXTENSION)) {
    const min = sub(ext, 'min')?.valueDecimal as number | undefined;
    const max = sub(ext, 'max')?.valueDecimal as number | undefined;
    if ((min === undefined || score >= min) && (max === undefined || score <= max)) return sub(ext, 'severity')?.valueCoding as Coding | undefined;
  }
  return undefined;
}

/** `items`: the response's items (responseItems), walked once for all its clusters. */
function endorsedCount(q: Questionnaire, items: QuestionnaireResponseItem[], linkIds: Set<string>, threshold: number): number {
  const byLinkId = questionnaireItemsByLinkId(q);
  let count = 0;
  for (const rItem of items) {
    if (!linkIds.has(rItem.linkId)) continue;
    const qItem = byLinkId.get(rItem.linkId);
    if (!qItem) continue;
    if ((rItem.answer ?? []).some((a) => (answerWeight(qItem, a) ?? Number.NEGATIVE_INFINITY) >= threshold)) count++;
  }
  return count;
}

function clusters(q: Questionnaire, item: QuestionnaireItem, bounds: { low: QuestionnaireResponse[]; high: QuestionnaireResponse[] }): ClusterResult[] {
  const extensions = extensionsOf(item, CLUSTER_EXTENSION);
  if (extensions.length === 0) return [];
  const low = bounds.low.map(responseItems);
  const high = bounds.high.map(responseItems);
  return extensions.map((ext) => {
    const linkIds = new Set((ext.extension ?? []).filter((e) => e.url === 'item').map((e) => e.valueString ?? ''));
    const required = (sub(ext, 'minEndorsed')?.valueInteger as number | undefined) ?? 1;
    const threshold = (sub(ext, 'endorsedAtWeight')?.valueDecimal as number | undefined) ?? 1;
    const endorsed = Math.min(...low.map((items) => endorsedCount(q, items, linkIds, threshold)));
    const endorsedAtMost = Math.max(...high.map((items) => endorsedCount(q, items, linkIds, threshold)));
    const interpretation: Interpretation = endorsed >= required ? 'POS' : endorsedAtMost < required ? 'NEG' : 'IND';
    return { code: (sub(ext, 'code')?.valueCoding as Coding) ?? {}, endorsed, endorsedAtMost, required, interpretation };
  });
}

/** The score items of a Questionnaire (items with a calculatedExpression), in document order. */
export function scoreItems(q: Questionnaire): QuestionnaireItem[] {
  return [...questionnaireItemsByLinkId(q).values()].filter((i) => calculatedExpression(i) !== undefined);
}

export function scoreResponse(q: Questionnaire, qr: QuestionnaireResponse, cutoffFor?: CutoffResolver): ScoreResult[] {
  const items = scoreItems(q);
  if (items.length === 0) return [];
  const { declined, gates } = summariseDeclined(q, qr);
  const bounds = boundResponses(q, qr, gates);
  return items.map((item) => {
    const score = (r: QuestionnaireResponse): number => evaluateScore(q, r, item);
    const total = score(qr);
    const lower = Math.min(...bounds.low.map(score));
    const upper = Math.max(...bounds.high.map(score));
    const result: ScoreResult = { linkId: item.linkId, item, total, lower, upper, declined: lower === upper ? [] : declined };
    const fallback = defaultCutoff(item);
    if (fallback) {
      const override = cutoffFor?.(q, item);
      result.cutoff = override === undefined ? { ...fallback, source: 'questionnaire' } : { value: override, direction: fallback.direction, source: 'organisation' };
      result.interpretation = interpret(lower, upper, result.cutoff);
    }
    const low = band(item, lower);
    const high = band(item, upper);
    if (low && high && low.code === high.code && low.system === high.system) result.severity = low;
    const cl = clusters(q, item, bounds);
    if (cl.length) {
      result.clusters = cl;
      result.clusterPattern = cl.some((c) => c.interpretation === 'NEG') ? 'NEG' : cl.every((c) => c.interpretation === 'POS') ? 'POS' : 'IND';
    }
    return result;
  });
}
