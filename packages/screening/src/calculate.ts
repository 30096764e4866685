// Evaluates a score item's sdc-questionnaire-calculatedExpression with the HL7 fhirpath engine.
// weight() resolves itemWeight from %questionnaire (passed as an environment variable) and the R4 model.
//
// Expressions are compiled once (cached by their text, so an edited Questionnaire gets its new
// expression compiled). The sum-of-weights expression every hosted instrument uses,
//   %resource.repeat(item).where(linkId in ('q1' | ...)).answer.value.where(system != '<dar>').weight().sum()
// is also evaluated directly on the JSON, for the responses where the engine's answer is plain:
// each linkId once (at the top or nested in other items, as repeat(item) reaches them), Coding
// answers weighted by the matching answerOption's itemWeight/ordinalValue (valueDecimal, whole
// numbers) of the Questionnaire item weight() finds for them. Anything else goes to the engine,
// which is 10-40 times slower (about 2.3 ms per evaluation for a PCL-5 response; the bounds of a
// partial total take several).
// calculate.test.ts checks both give the same score on every instrument.
import type { Questionnaire, QuestionnaireItem, QuestionnaireResponse, QuestionnaireResponseItem } from '@medplum/fhirtypes';
import { unprocessable } from '@tic/fhir';
import { compile } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';
import { CALCULATED_EXPRESSION, ITEM_WEIGHT, ORDINAL_VALUE } from './constants.ts';

export function calculatedExpression(item: QuestionnaireItem): string | undefined {
  const ext = item.extension?.find((e) => e.url === CALCULATED_EXPRESSION);
  const expr = ext?.valueExpression;
  return expr && (expr.language === 'text/fhirpath' || expr.language === undefined) ? expr.expression : undefined;
}

/** The score, or undefined when this response needs the engine. */
type DirectScore = (q: Questionnaire, qr: QuestionnaireResponse) => number | undefined;

interface CompiledScore {
  engine?: (resource: unknown, vars: Record<string, unknown>) => unknown[];
  /** Why the engine could not compile the expression (reported when it is evaluated). */
  error?: string;
  direct?: DirectScore;
}

const MAX_CACHED = 1000;
const cache = new Map<string, CompiledScore>();

function compiled(expression: string): CompiledScore {
  let c = cache.get(expression);
  if (c) return c;
  c = { direct: compileDirect(expression) };
  try {
    c.engine = compile(expression, r4, { async: false }) as CompiledScore['engine'];
  } catch (err) {
    c.error = (err as Error).message;
  }
  if (cache.size >= MAX_CACHED) cache.clear();
  cache.set(expression, c);
  return c;
}

const SUM_OF_WEIGHTS =
  /^%resource\.repeat\(item\)\.where\(linkId in \(('[^'\\]*'(?:\s*\|\s*'[^'\\]*')*)\)\)\.answer\.value\.where\(system != '([^'\\]*)'\)\.weight\(\)\.sum\(\)$/;

/** The R4 score extensions weight() reads, in the engine's order of preference (the first present wins). */
const SCORE_EXTENSIONS = new Set([ORDINAL_VALUE, ITEM_WEIGHT]);

function compileDirect(expression: string): DirectScore | undefined {
  const m = SUM_OF_WEIGHTS.exec(expression.trim());
  if (!m) return undefined;
  const linkIds = new Set(m[1].split('|').map((s) => s.trim().slice(1, -1)));
  const excludedSystem = m[2];
  return (q, qr) => {
    let sum = 0;
    const seen = new Set<string>();
    // repeat(item) reaches every item through `item` (not through an answer's items); `path`: the
    // linkIds of the item's ancestors, from the top.
    const walk = (items: QuestionnaireResponseItem[] | undefined, path: string[]): boolean => {
      for (const item of items ?? []) {
        if (linkIds.has(item.linkId)) {
          // repeat() drops items equal to one it has: a linkId seen twice is the engine's to weigh.
          if (seen.has(item.linkId)) return false;
          seen.add(item.linkId);
          const qItem = item.answer?.length ? itemByPath(q, path, item.linkId) : undefined;
          for (const answer of item.answer ?? []) {
            const weight = answerWeight(qItem, answer as Record<string, unknown>, excludedSystem);
            if (weight === undefined) return false;
            sum += weight;
          }
        }
        if (item.item && !walk(item.item, [...path, item.linkId])) return false;
      }
      return true;
    };
    return walk(qr.item, []) ? sum : undefined;
  };
}

/** The weight one answer adds (0 when where() drops it), or undefined when the engine must decide. */
function answerWeight(qItem: QuestionnaireItem | undefined, answer: Record<string, unknown>, excludedSystem: string): number | undefined {
  let valueKey: string | undefined;
  for (const key in answer) {
    if (key.length > 5 && key.startsWith('value')) {
      if (valueKey) return undefined;
      valueKey = key;
    }
  }
  if (valueKey === undefined) return 0;
  if (valueKey !== 'valueCoding') return undefined;
  const coding = answer.valueCoding as { system?: unknown; code?: unknown; extension?: unknown } | null;
  if (!coding || typeof coding !== 'object' || coding.extension !== undefined) return undefined;
  // where(system != x): a Coding without a system gives an empty comparison, which where() drops.
  if (coding.system === undefined || coding.system === excludedSystem) return 0;
  const option = qItem?.answerOption?.find((o) => o.valueCoding?.code === coding.code && o.valueCoding?.system === coding.system);
  if (!option) return undefined;
  const ext = option.extension?.find((e) => SCORE_EXTENSIONS.has(e.url));
  const weight = ext?.valueDecimal;
  return typeof weight === 'number' && Number.isInteger(weight) ? weight : undefined;
}

const topLevel = new WeakMap<Questionnaire, Map<string, QuestionnaireItem>>();

/**
 * The Questionnaire item weight() weighs an answer by (fhirpath's getQItemByLinkIds): the topmost
 * ancestor's linkId looked up breadth first, then each further linkId among the children, the first
 * match at each step. Undefined when the path leads nowhere (the engine then fails the evaluation).
 */
function itemByPath(q: Questionnaire, path: string[], linkId: string): QuestionnaireItem | undefined {
  if (path.length === 0) return topLevelItem(q, linkId);
  let node = topLevelItem(q, path[0]!);
  for (let i = 1; i <= path.length && node; i++) {
    const next = i < path.length ? path[i] : linkId;
    node = node.item?.find((o) => o.linkId === next);
  }
  return node;
}

/** The engine looks a topmost linkId up breadth first: the first item with that linkId. */
function topLevelItem(q: Questionnaire, linkId: string): QuestionnaireItem | undefined {
  let map = topLevel.get(q);
  if (!map) {
    map = new Map();
    let level = q.item ?? [];
    while (level.length > 0) {
      for (const item of level) if (!map.has(item.linkId)) map.set(item.linkId, item);
      level = level.flatMap((i) => i.item ?? []);
    }
    topLevel.set(q, map);
  }
  return map.get(linkId);
}

/** The score with the fhirpath engine alone (tests compare the direct evaluation with it). */
export function evaluateScoreWithEngine(q: Questionnaire, qr: QuestionnaireResponse, item: QuestionnaireItem): number {
  return evaluate(q, qr, item, true);
}

/** The numeric value of the expression (an empty result, e.g. sum() of nothing, counts as 0). */
export function evaluateScore(q: Questionnaire, qr: QuestionnaireResponse, item: QuestionnaireItem): number {
  return evaluate(q, qr, item, false);
}

/** Whether the score of this response is evaluated without the engine (tests). */
export function evaluatesDirectly(q: Questionnaire, qr: QuestionnaireResponse, item: QuestionnaireItem): boolean {
  const expression = calculatedExpression(item);
  return expression !== undefined && compiled(expression).direct?.(q, qr) !== undefined;
}

function evaluate(q: Questionnaire, qr: QuestionnaireResponse, item: QuestionnaireItem, engineOnly: boolean): number {
  const expression = calculatedExpression(item);
  if (!expression) throw unprocessable(`Questionnaire item ${item.linkId} has no FHIRPath calculatedExpression`);
  const c = compiled(expression);
  if (!engineOnly) {
    const direct = c.direct?.(q, qr);
    if (direct !== undefined) return direct;
  }
  let result: unknown[];
  try {
    if (!c.engine) throw new Error(c.error ?? 'the expression could not be compiled');
    // The engine annotates its input; give it copies so callers' resources stay untouched.
    const resource = structuredClone(qr);
    result = c.engine(resource, { questionnaire: structuredClone(q), resource });
  } catch (err) {
    throw unprocessable(`The score expression of item ${item.linkId} could not be evaluated: ${(err as Error).message}`);
  }
  if (result.length === 0) return 0;
  const value = Number(result[0]);
  if (result.length > 1 || Number.isNaN(value)) throw unprocessable(`The score expression of item ${item.linkId} did not give one number`);
  return value;
}
