// Intake validation of a QuestionnaireResponse against its Questionnaire: linkIds exist, answer
// types match, coded answers are allowed options (or asked-declined), required items are answered
// when enabled, disabled items carry no answers, repeats are respected.
import type { OperationOutcomeIssue, Questionnaire, QuestionnaireItem, QuestionnaireResponse, QuestionnaireResponseItem } from '@medplum/fhirtypes';
import { issuesError } from '@tic/fhir';
import { enableWhenHolds } from './enable-when.ts';
import type { Answer } from './items.ts';
import { answersByLinkId, findOption, isDeclined, valueProperty } from './items.ts';

const valueTypes: Record<string, string[]> = {
  boolean: ['valueBoolean'],
  decimal: ['valueDecimal'],
  integer: ['valueInteger'],
  date: ['valueDate'],
  dateTime: ['valueDateTime'],
  time: ['valueTime'],
  string: ['valueString'],
  text: ['valueString'],
  url: ['valueUri'],
  attachment: ['valueAttachment'],
  reference: ['valueReference'],
  quantity: ['valueQuantity'],
};

function allowedValueTypes(item: QuestionnaireItem): string[] {
  if (item.type === 'choice' || item.type === 'open-choice') {
    const fromOptions = new Set((item.answerOption ?? []).map((o) => valueProperty(o)).filter((p): p is string => p !== undefined));
    if (fromOptions.size === 0) fromOptions.add('valueCoding');
    if (item.type === 'open-choice') fromOptions.add('valueString');
    return [...fromOptions];
  }
  return valueTypes[item.type] ?? [];
}

/** Whether a response status means "finished": only then are required items enforced. */
function isFinished(status: QuestionnaireResponse['status']): boolean {
  return status === 'completed' || status === 'amended';
}

interface Walk {
  answers: Map<string, Answer[]>;
  finished: boolean;
  issues: OperationOutcomeIssue[];
}

function issue(walk: Walk, code: OperationOutcomeIssue['code'], diagnostics: string, expression: string): void {
  walk.issues.push({ severity: 'error', code, diagnostics, expression: [expression] });
}

function checkAnswers(walk: Walk, qItem: QuestionnaireItem, rItem: QuestionnaireResponseItem, path: string, enabled: boolean): void {
  const answers = rItem.answer ?? [];
  if (answers.length === 0) return;
  if (qItem.type === 'group' || qItem.type === 'display') {
    issue(walk, 'invalid', `Item ${qItem.linkId} is a ${qItem.type} and takes no answer`, `${path}.answer[0]`);
    return;
  }
  if (!enabled) {
    issue(walk, 'business-rule', `Item ${qItem.linkId} is not enabled by the answers given and must not be answered`, `${path}.answer[0]`);
    return;
  }
  if (answers.length > 1 && !qItem.repeats) {
    issue(walk, 'structure', `Item ${qItem.linkId} does not repeat: one answer only`, `${path}.answer[1]`);
  }
  const allowed = allowedValueTypes(qItem);
  answers.forEach((answer, k) => {
    const at = `${path}.answer[${k}]`;
    if (isDeclined(answer)) {
      if (answers.length > 1) issue(walk, 'invalid', `Item ${qItem.linkId}: a declined item takes no other answer`, at);
    } else {
      const prop = valueProperty(answer);
      if (!prop || !allowed.includes(prop)) {
        issue(walk, 'value', `Item ${qItem.linkId} (${qItem.type}) expects ${allowed.join(' or ')}`, at);
      } else if (qItem.answerOption?.length && !findOption(qItem, answer) && !(qItem.type === 'open-choice' && prop === 'valueString')) {
        issue(walk, 'code-invalid', `Item ${qItem.linkId}: the answer is not one of the allowed options`, at);
      }
    }
    if (answer.item?.length) checkItems(walk, qItem.item ?? [], answer.item, at, enabled);
  });
}

function checkItems(walk: Walk, qItems: QuestionnaireItem[], rItems: QuestionnaireResponseItem[], path: string, parentEnabled: boolean): void {
  const seen = new Map<string, number>();
  rItems.forEach((rItem, i) => {
    const at = `${path}.item[${i}]`;
    const qItem = qItems.find((q) => q.linkId === rItem.linkId);
    if (!qItem) {
      issue(walk, 'invalid', `Unknown linkId ${JSON.stringify(rItem.linkId)} at this level of the Questionnaire`, at);
      return;
    }
    const count = (seen.get(rItem.linkId) ?? 0) + 1;
    seen.set(rItem.linkId, count);
    if (count > 1 && !qItem.repeats) issue(walk, 'structure', `Item ${qItem.linkId} does not repeat`, at);
    const enabled = parentEnabled && enableWhenHolds(qItem, walk.answers);
    checkAnswers(walk, qItem, rItem, at, enabled);
    if (rItem.item?.length) {
      if (!qItem.item?.length) issue(walk, 'invalid', `Item ${qItem.linkId} has no child items`, `${at}.item[0]`);
      else checkItems(walk, qItem.item, rItem.item, at, enabled);
    }
  });
  if (!walk.finished || !parentEnabled) return;
  for (const qItem of qItems) {
    if (!qItem.required || !enableWhenHolds(qItem, walk.answers)) continue;
    const index = rItems.findIndex((r) => r.linkId === qItem.linkId && (r.answer?.length || r.item?.length));
    if (index >= 0) continue;
    const present = rItems.findIndex((r) => r.linkId === qItem.linkId);
    const at = present >= 0 ? `${path}.item[${present}]` : `${path}.item.where(linkId='${qItem.linkId}')`;
    issue(walk, 'required', `Item ${qItem.linkId} is required (answer it, or record "Prefer not to answer")`, at);
  }
}

/** All problems of a response against its Questionnaire (empty when valid). */
export function responseIssues(qr: QuestionnaireResponse, q: Questionnaire): OperationOutcomeIssue[] {
  const walk: Walk = { answers: answersByLinkId(qr), finished: isFinished(qr.status), issues: [] };
  checkItems(walk, q.item ?? [], qr.item ?? [], 'QuestionnaireResponse', true);
  return walk.issues;
}

/**
 * Throws an OperationOutcomeError listing every problem: 422 when they are all business rules
 * (answers to disabled items), 400 otherwise.
 */
export function validateQuestionnaireResponse(qr: QuestionnaireResponse, q: Questionnaire): void {
  const issues = responseIssues(qr, q);
  if (issues.length === 0) return;
  const status = issues.every((i) => i.code === 'business-rule') ? 422 : 400;
  throw issuesError(issues, status);
}
