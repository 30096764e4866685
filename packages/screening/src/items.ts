// Small helpers over Questionnaire / QuestionnaireResponse items: lookups, answers, weights.
import type {
  Coding,
  Extension,
  Questionnaire,
  QuestionnaireItem,
  QuestionnaireItemAnswerOption,
  QuestionnaireResponse,
  QuestionnaireResponseItem,
  QuestionnaireResponseItemAnswer,
} from '@medplum/fhirtypes';
import { DATA_ABSENT_REASON, DECLINED_CODE, ITEM_WEIGHT, ORDINAL_VALUE } from './constants.ts';

export type Answer = QuestionnaireResponseItemAnswer;

export const DECLINED_CODING: Coding = { system: DATA_ABSENT_REASON, code: DECLINED_CODE, display: 'Prefer not to answer' };

export function isDeclined(answer: Answer): boolean {
  return answer.valueCoding?.system === DATA_ABSENT_REASON && answer.valueCoding.code === DECLINED_CODE;
}

/** The value[x] property name of an answer or answer option ("valueCoding", ...), if any. */
export function valueProperty(value: object): string | undefined {
  return Object.keys(value).find((k) => k.startsWith('value') && k.length > 5);
}

export function sameCoding(a: Coding | undefined, b: Coding | undefined): boolean {
  if (!a || !b || a.code !== b.code) return false;
  return !a.system || !b.system || a.system === b.system;
}

/** Whether an answer has the same value as an answer option (or an enableWhen answer[x]). */
export function sameValue(answer: Answer, option: Record<string, unknown>, optionProp: string): boolean {
  const prop = valueProperty(answer);
  if (!prop) return false;
  const a = (answer as Record<string, unknown>)[prop];
  const b = option[optionProp];
  if (prop === 'valueCoding' && optionProp.endsWith('Coding')) return sameCoding(a as Coding, b as Coding);
  if (prop.replace(/^value/, '') !== optionProp.replace(/^(value|answer)/, '')) return false;
  if (typeof a === 'object' || typeof b === 'object') return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
}

export function findOption(item: QuestionnaireItem, answer: Answer): QuestionnaireItemAnswerOption | undefined {
  return item.answerOption?.find((o) => {
    const prop = valueProperty(o);
    return prop !== undefined && sameValue(answer, o as Record<string, unknown>, prop);
  });
}

export function extensionsOf(element: { extension?: Extension[] } | undefined, url: string): Extension[] {
  return element?.extension?.filter((e) => e.url === url) ?? [];
}

export function optionWeight(option: QuestionnaireItemAnswerOption): number | undefined {
  const ext = option.extension?.find((e) => e.url === ITEM_WEIGHT || e.url === ORDINAL_VALUE);
  return ext?.valueDecimal ?? ext?.valueInteger;
}

/** Answer options that carry a weight, lowest and highest weight first/last. */
export function weightedOptions(item: QuestionnaireItem): { option: QuestionnaireItemAnswerOption; weight: number }[] {
  const out: { option: QuestionnaireItemAnswerOption; weight: number }[] = [];
  for (const option of item.answerOption ?? []) {
    const weight = optionWeight(option);
    if (weight !== undefined) out.push({ option, weight });
  }
  return out.sort((a, b) => a.weight - b.weight);
}

export function answerWeight(item: QuestionnaireItem, answer: Answer): number | undefined {
  const option = findOption(item, answer);
  return option ? optionWeight(option) : undefined;
}

const itemsByLinkId = new WeakMap<Questionnaire, Map<string, QuestionnaireItem>>();

/**
 * Every Questionnaire item by linkId (linkIds are unique within a Questionnaire). Built once per
 * Questionnaire object (scoring asks for it many times per response); callers do not change it.
 */
export function questionnaireItemsByLinkId(q: Questionnaire): Map<string, QuestionnaireItem> {
  const cached = itemsByLinkId.get(q);
  if (cached) return cached;
  const map = new Map<string, QuestionnaireItem>();
  const walk = (items: QuestionnaireItem[] | undefined): void => {
    for (const item of items ?? []) {
      map.set(item.linkId, item);
      walk(item.item);
    }
  };
  walk(q.item);
  itemsByLinkId.set(q, map);
  return map;
}

/** Every response item with its linkId, depth first (groups, nested answers included). */
export function responseItems(qr: QuestionnaireResponse): QuestionnaireResponseItem[] {
  const out: QuestionnaireResponseItem[] = [];
  const walk = (items: QuestionnaireResponseItem[] | undefined): void => {
    for (const item of items ?? []) {
      out.push(item);
      walk(item.item);
      for (const answer of item.answer ?? []) walk(answer.item);
    }
  };
  walk(qr.item);
  return out;
}

/** Answers by linkId over the whole response (what enableWhen looks at). */
export function answersByLinkId(qr: QuestionnaireResponse): Map<string, Answer[]> {
  const map = new Map<string, Answer[]>();
  for (const item of responseItems(qr)) {
    if (item.answer?.length) map.set(item.linkId, [...(map.get(item.linkId) ?? []), ...item.answer]);
  }
  return map;
}
