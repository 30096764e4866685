// What a score could be if the declined items had been answered: the response is rebuilt with
// every declined (or enabled but missing) weighted item at its lowest / highest weight, and with
// every declined unweighted gate (e.g. "ever experienced a traumatic event?") tried at each of its
// options, since a gate decides which items count at all.
import type {
  Questionnaire,
  QuestionnaireItem,
  QuestionnaireItemAnswerOption,
  QuestionnaireResponse,
  QuestionnaireResponseItem,
} from '@medplum/fhirtypes';
import { enabledLinkIds } from './enable-when.ts';
import type { Answer } from './items.ts';
import { isDeclined, questionnaireItemsByLinkId, responseItems, valueProperty, weightedOptions } from './items.ts';

const MAX_GATE_SCENARIOS = 64;

function optionAnswer(option: QuestionnaireItemAnswerOption): Answer {
  const prop = valueProperty(option);
  return prop ? ({ [prop]: (option as Record<string, unknown>)[prop] } as Answer) : {};
}

export interface DeclinedSummary {
  /** linkIds of enabled items answered "Prefer not to answer" that bear on scores (weighted, or gates). */
  declined: string[];
  /** linkIds of declined items without weights that other items' enableWhen depend on. */
  gates: string[];
}

export function summariseDeclined(q: Questionnaire, qr: QuestionnaireResponse): DeclinedSummary {
  const byLinkId = questionnaireItemsByLinkId(q);
  const gateLinkIds = new Set([...byLinkId.values()].flatMap((i) => (i.enableWhen ?? []).map((c) => c.question)));
  const declined: string[] = [];
  const gates: string[] = [];
  for (const rItem of responseItems(qr)) {
    if (!(rItem.answer ?? []).some(isDeclined)) continue;
    const qItem = byLinkId.get(rItem.linkId);
    if (!qItem) continue;
    if (weightedOptions(qItem).length > 0) declined.push(rItem.linkId);
    else if (gateLinkIds.has(rItem.linkId) && (qItem.answerOption?.length ?? 0) > 1) {
      declined.push(rItem.linkId);
      gates.push(rItem.linkId);
    }
  }
  return { declined, gates };
}

type Choose = (item: QuestionnaireItem) => QuestionnaireItemAnswerOption | undefined;

/** The response with declined answers replaced (gates from `assignment`, weighted items by `choose`). */
function substitute(q: Questionnaire, qr: QuestionnaireResponse, assignment: Map<string, QuestionnaireItemAnswerOption>, choose: Choose): QuestionnaireResponse {
  const byLinkId = questionnaireItemsByLinkId(q);
  const answersOf = (items: QuestionnaireResponseItem[]): Map<string, Answer[]> => {
    const map = new Map<string, Answer[]>();
    for (const i of items) if (i.answer?.length) map.set(i.linkId, i.answer);
    return map;
  };
  let flat = responseItems(qr).map((r): QuestionnaireResponseItem => {
    const qItem = byLinkId.get(r.linkId);
    if (!qItem || !r.answer?.some(isDeclined)) return { linkId: r.linkId, answer: r.answer };
    const gate = assignment.get(r.linkId);
    const option = gate ?? choose(qItem);
    return { linkId: r.linkId, answer: option ? [optionAnswer(option)] : r.answer };
  });
  // Enabled items without an answer (newly enabled by a gate scenario) take the chosen weight too.
  for (let round = 0; round < 3; round++) {
    const enabled = enabledLinkIds(q.item, answersOf(flat));
    const answered = new Set(flat.filter((r) => r.answer?.length).map((r) => r.linkId));
    const fills: QuestionnaireResponseItem[] = [];
    for (const linkId of enabled) {
      const qItem = byLinkId.get(linkId);
      if (!qItem || answered.has(linkId) || qItem.readOnly || weightedOptions(qItem).length === 0) continue;
      const option = choose(qItem);
      if (option) fills.push({ linkId, answer: [optionAnswer(option)] });
    }
    flat = flat.filter((r) => enabled.has(r.linkId) || !byLinkId.has(r.linkId));
    if (fills.length === 0) break;
    flat = [...flat, ...fills];
  }
  return rebuild(q.item ?? [], flat);

  function rebuild(qItems: QuestionnaireItem[], items: QuestionnaireResponseItem[]): QuestionnaireResponse {
    // The answered items of each linkId, in their order (one pass instead of a filter per item).
    const answered = new Map<string, QuestionnaireResponseItem[]>();
    for (const r of items) {
      if (!r.answer?.length) continue;
      const list = answered.get(r.linkId);
      if (list) list.push(r);
      else answered.set(r.linkId, [r]);
    }
    const nest = (list: QuestionnaireItem[]): QuestionnaireResponseItem[] =>
      list.flatMap((qItem): QuestionnaireResponseItem[] => {
        const mine = answered.get(qItem.linkId) ?? [];
        const children = qItem.item?.length ? nest(qItem.item) : [];
        if (mine.length === 0 && children.length === 0) return [];
        const out: QuestionnaireResponseItem = { linkId: qItem.linkId };
        const answer = mine.flatMap((r) => r.answer ?? []);
        if (answer.length) out.answer = answer;
        if (children.length) out.item = children;
        return [out];
      });
    return { ...qr, item: nest(qItems) };
  }
}

const lowest: Choose = (item) => weightedOptions(item)[0]?.option;
const highest: Choose = (item) => weightedOptions(item).at(-1)?.option;

function gateScenarios(q: Questionnaire, gates: string[]): Map<string, QuestionnaireItemAnswerOption>[] {
  const byLinkId = questionnaireItemsByLinkId(q);
  let scenarios: Map<string, QuestionnaireItemAnswerOption>[] = [new Map()];
  for (const linkId of gates) {
    const options = (byLinkId.get(linkId)?.answerOption ?? []).filter((o) => !o.valueCoding || !isDeclined({ valueCoding: o.valueCoding }));
    const next: Map<string, QuestionnaireItemAnswerOption>[] = [];
    for (const s of scenarios) for (const o of options) next.push(new Map([...s, [linkId, o]]));
    if (next.length > MAX_GATE_SCENARIOS) break;
    scenarios = next;
  }
  return scenarios;
}

/** The response rebuilt for every gate scenario, declined items at their lowest (low) and highest (high) weight. */
export function boundResponses(q: Questionnaire, qr: QuestionnaireResponse, gates: string[]): { low: QuestionnaireResponse[]; high: QuestionnaireResponse[] } {
  const scenarios = gateScenarios(q, gates);
  return { low: scenarios.map((s) => substitute(q, qr, s, lowest)), high: scenarios.map((s) => substitute(q, qr, s, highest)) };
}
