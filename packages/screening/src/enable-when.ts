// Evaluates Questionnaire.item.enableWhen against the answers of a response (R4 semantics).
import type { QuestionnaireItem, QuestionnaireItemEnableWhen } from '@medplum/fhirtypes';
import type { Answer } from './items.ts';
import { sameValue, valueProperty } from './items.ts';

function compare(answer: Answer, condition: QuestionnaireItemEnableWhen, answerProp: string): number | undefined {
  const prop = valueProperty(answer);
  if (!prop || prop.replace(/^value/, '') !== answerProp.replace(/^answer/, '')) return undefined;
  const a = (answer as Record<string, unknown>)[prop];
  const b = (condition as unknown as Record<string, unknown>)[answerProp];
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (prop === 'valueQuantity') {
    const qa = a as { value?: number; code?: string };
    const qb = b as { value?: number; code?: string };
    if (qa.value === undefined || qb.value === undefined || qa.code !== qb.code) return undefined;
    return qa.value - qb.value;
  }
  return undefined;
}

export function conditionMet(condition: QuestionnaireItemEnableWhen, answers: Answer[]): boolean {
  const answerProp = Object.keys(condition).find((k) => k.startsWith('answer') && k.length > 6);
  if (condition.operator === 'exists') return (answers.length > 0) === (condition.answerBoolean === true);
  if (!answerProp || answers.length === 0) return false;
  const equal = (a: Answer): boolean => sameValue(a, condition as unknown as Record<string, unknown>, answerProp);
  switch (condition.operator) {
    case '=':
      return answers.some(equal);
    case '!=':
      return !answers.some(equal);
    case '>':
    case '<':
    case '>=':
    case '<=':
      return answers.some((a) => {
        const c = compare(a, condition, answerProp);
        if (c === undefined) return false;
        return condition.operator === '>' ? c > 0 : condition.operator === '<' ? c < 0 : condition.operator === '>=' ? c >= 0 : c <= 0;
      });
    default:
      return false;
  }
}

/** Whether the item's own enableWhen conditions hold (parents are the caller's concern). */
export function enableWhenHolds(item: QuestionnaireItem, answers: Map<string, Answer[]>): boolean {
  const conditions = item.enableWhen ?? [];
  if (conditions.length === 0) return true;
  const results = conditions.map((c) => conditionMet(c, answers.get(c.question) ?? []));
  return item.enableBehavior === 'all' ? results.every(Boolean) : results.some(Boolean);
}

/** linkIds of the items that are enabled, walking the tree (a disabled parent disables its children). */
export function enabledLinkIds(items: QuestionnaireItem[] | undefined, answers: Map<string, Answer[]>): Set<string> {
  const enabled = new Set<string>();
  const walk = (list: QuestionnaireItem[] | undefined): void => {
    for (const item of list ?? []) {
      if (!enableWhenHolds(item, answers)) continue;
      enabled.add(item.linkId);
      walk(item.item);
    }
  };
  walk(items);
  return enabled;
}
