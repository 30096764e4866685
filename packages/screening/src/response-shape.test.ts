import type { QuestionnaireResponse } from '@medplum/fhirtypes';
import { instrument, respond } from './fixtures.ts';
import { responseShape } from './response-shape.ts';

describe('responseShape', () => {
  const q = instrument('pcl-5');
  const base = (weights: number[], extra: Partial<QuestionnaireResponse> = {}) =>
    respond(q, Object.fromEntries((q.item ?? []).filter((i) => i.answerOption?.length).map((i, k) => [i.linkId, weights[k % weights.length]])), extra);

  it('is the same for responses differing only in who, when, which identifier and which options were chosen', () => {
    const a = base([0, 1, 2], { id: 'a1', subject: { reference: 'Patient/1', display: 'Ann' }, identifier: { system: 'urn:x', value: 'v-1' }, authored: '2025-03-01T10:00:00Z' });
    const b = base([4, 3], { id: 'b2-x.y', subject: { reference: 'Patient/other-id', display: 'Bob Smith' }, identifier: { system: 'urn:x', value: 'v:2' }, authored: '2026-11-26' });
    expect(responseShape(b, q)).toBe(responseShape(a, q));
  });

  it('keeps what it cannot prove valid: a Coding that is no option, extra elements, a malformed time or id, another reference type', () => {
    const ok = base([1]);
    const shape = responseShape(ok, q);
    const first = ok.item![0];
    const variants: QuestionnaireResponse[] = [
      { ...ok, item: [{ ...first, answer: [{ valueCoding: { ...first.answer![0].valueCoding!, code: 'LA-nope' } }] }, ...ok.item!.slice(1)] },
      { ...ok, item: [{ ...first, answer: [{ valueCoding: { ...first.answer![0].valueCoding!, userSelected: 'yes' as unknown as boolean } }] }, ...ok.item!.slice(1)] },
      { ...ok, item: [{ ...first, answer: [{ ...first.answer![0], valueString: 'also' }] }, ...ok.item!.slice(1)] },
      { ...ok, authored: '2025-13-01' },
      { ...ok, id: 'not an id' },
      { ...ok, subject: { reference: 'Group/1' } },
      { ...ok, subject: { reference: 'Patient/1', display: ' padded' } },
      { ...ok, identifier: { system: 'urn:x', value: 'line\nbreak' } },
      { ...ok, status: 'unknown-status' as QuestionnaireResponse['status'] },
    ];
    for (const v of variants) expect(responseShape(v, q)).not.toBe(shape);
  });

  it('is undefined for other resources', () => {
    expect(responseShape({ resourceType: 'Patient' }, q)).toBeUndefined();
  });
});
