// Evaluates a score item's sdc-questionnaire-calculatedExpression with the HL7 fhirpath engine.
// weight() resolves itemWeight from %questionnaire (passed as an environment variable) and the R4 model.
import type { Questionnaire, QuestionnaireItem, QuestionnaireResponse } from '@medplum/fhirtypes';
import { unprocessable } from '@tic/fhir';
import { evaluate } from 'fhirpath';
import r4 from 'fhirpath/fhir-context/r4/index.js';
import { CALCULATED_EXPRESSION } from './constants.ts';

export function calculatedExpression(item: QuestionnaireItem): string | undefined {
  const ext = item.extension?.find((e) => e.url === CALCULATED_EXPRESSION);
  const expr = ext?.valueExpression;
  return expr && (expr.language === 'text/fhirpath' || expr.language === undefined) ? expr.expression : undefined;
}

/** The numeric value of the expression (an empty result, e.g. sum() of nothing, counts as 0). */
export function evaluateScore(q: Questionnaire, qr: QuestionnaireResponse, item: QuestionnaireItem): number {
  const expression = calculatedExpression(item);
  if (!expression) throw unprocessable(`Questionnaire item ${item.linkId} has no FHIRPath calculatedExpression`);
  let result: unknown[];
  try {
    // The engine annotates its input; give it copies so callers' resources stay untouched.
    const resource = structuredClone(qr);
    result = evaluate(resource, expression, { questionnaire: structuredClone(q), resource }, r4, { async: false });
  } catch (err) {
    throw unprocessable(`The score expression of item ${item.linkId} could not be evaluated: ${(err as Error).message}`);
  }
  if (result.length === 0) return 0;
  const value = Number(result[0]);
  if (result.length > 1 || Number.isNaN(value)) throw unprocessable(`The score expression of item ${item.linkId} did not give one number`);
  return value;
}
