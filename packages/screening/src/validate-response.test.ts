import type { OperationOutcomeError } from '@tic/fhir';
import { statusForOutcome } from '@tic/fhir';
import { DECLINED, instrument, NO, respond, uniform, YES } from './fixtures.ts';
import { responseIssues, validateQuestionnaireResponse } from './validate-response.ts';

const pc = instrument('pc-ptsd-5');
const phq = instrument('phq-9');

function failure(fn: () => void): OperationOutcomeError {
  try {
    fn();
  } catch (err) {
    return err as OperationOutcomeError;
  }
  throw new Error('expected a validation error');
}

describe('validateQuestionnaireResponse', () => {
  it('accepts a complete response, declined items included', () => {
    expect(responseIssues(respond(pc, { exposure: YES, ...uniform(5, 1, { 3: 'declined' }) }), pc)).toEqual([]);
    expect(responseIssues(respond(pc, { exposure: NO }), pc)).toEqual([]);
    expect(responseIssues(respond(pc, { exposure: 'declined' }), pc)).toEqual([]);
  });

  it('rejects an unknown linkId with 400 pointing at the item', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item?.unshift({ linkId: 'q99', answer: [{ valueCoding: DECLINED }] });
    const err = failure(() => validateQuestionnaireResponse(qr, phq));
    expect(statusForOutcome(err)).toBe(400);
    expect(err.outcome.issue?.[0]).toMatchObject({ code: 'invalid', expression: ['QuestionnaireResponse.item[0]'] });
  });

  it('rejects a wrong answer type', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item![2].answer = [{ valueInteger: 2 }];
    const err = failure(() => validateQuestionnaireResponse(qr, phq));
    expect(err.outcome.issue?.[0]).toMatchObject({ code: 'value', expression: ['QuestionnaireResponse.item[2].answer[0]'] });
  });

  it('rejects a coded answer that is not one of the options', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item![4].answer = [{ valueCoding: YES }];
    const err = failure(() => validateQuestionnaireResponse(qr, phq));
    expect(statusForOutcome(err)).toBe(400);
    expect(err.outcome.issue?.[0]).toMatchObject({ code: 'code-invalid', expression: ['QuestionnaireResponse.item[4].answer[0]'] });
  });

  it('rejects answers to items disabled by the exposure gate with 422', () => {
    const qr = respond(pc, { exposure: NO, q1: 1 });
    const err = failure(() => validateQuestionnaireResponse(qr, pc));
    expect(statusForOutcome(err)).toBe(422);
    expect(err.outcome.issue?.[0]).toMatchObject({ code: 'business-rule', expression: ['QuestionnaireResponse.item[1].answer[0]'] });
  });

  it('rejects a completed response that misses a required enabled item', () => {
    const qr = respond(pc, { exposure: YES, ...uniform(4, 0) });
    const err = failure(() => validateQuestionnaireResponse(qr, pc));
    expect(err.outcome.issue).toHaveLength(1);
    expect(err.outcome.issue?.[0]).toMatchObject({ code: 'required', expression: ["QuestionnaireResponse.item.where(linkId='q5')"] });
  });

  it('lets an in-progress response miss required items', () => {
    expect(responseIssues(respond(pc, { exposure: YES, q1: 1 }, { status: 'in-progress' }), pc)).toEqual([]);
  });

  it('points at an item that is present without an answer', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item![8].answer = [];
    expect(responseIssues(qr, phq)[0]).toMatchObject({ code: 'required', expression: ['QuestionnaireResponse.item[8]'] });
  });

  it('respects repeats: two answers to a single-answer item', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item![0].answer!.push({ valueCoding: qr.item![0].answer![0].valueCoding });
    expect(responseIssues(qr, phq)[0]).toMatchObject({ code: 'structure', expression: ['QuestionnaireResponse.item[0].answer[1]'] });
  });

  it('rejects an answer to a display item', () => {
    const qr = respond(phq, uniform(9, 1));
    qr.item!.push({ linkId: 'instructions', answer: [{ valueString: 'x' }] });
    expect(responseIssues(qr, phq)[0]).toMatchObject({ code: 'invalid', expression: ['QuestionnaireResponse.item[9].answer[0]'] });
  });

  it('lists every problem in one OperationOutcome', () => {
    const qr = respond(phq, uniform(8, 1));
    qr.item![0].answer = [{ valueString: 'often' }];
    const issues = responseIssues(qr, phq);
    expect(issues.map((i) => i.code).sort()).toEqual(['required', 'value']);
  });
});
