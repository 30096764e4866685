// The direct evaluation of the sum-of-weights score expression must give exactly what the fhirpath
// engine gives: every hosted instrument, many responses (declined, omitted and gated answers) and
// the rebuilt lowest/highest responses the bounds are scored on; responses outside the plain case
// go to the engine.
import type { Coding, Questionnaire, QuestionnaireItem, QuestionnaireResponse } from '@medplum/fhirtypes';
import { boundResponses, summariseDeclined } from './bounds.ts';
import { evaluateScore, evaluateScoreWithEngine, evaluatesDirectly } from './calculate.ts';
import { instrument, DECLINED } from './fixtures.ts';
import { scoreItems } from './score-response.ts';

const INSTRUMENTS = ['pc-ptsd-5', 'pcl-5', 'ace', 'phq-9', 'gad-7', 'qpr-15'];

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function questions(q: Questionnaire): QuestionnaireItem[] {
  return (q.item ?? []).filter((i) => i.type === 'choice');
}

/** Each question answered with a random option (declined among them), or left out. */
function randomResponse(q: Questionnaire, next: () => number): QuestionnaireResponse {
  const item = questions(q).flatMap((qi) => {
    const options = [...(qi.answerOption ?? []).map((o) => o.valueCoding as Coding), DECLINED];
    if (next() < 0.1) return [];
    return [{ linkId: qi.linkId, answer: [{ valueCoding: options[Math.floor(next() * options.length)] }] }];
  });
  return { resourceType: 'QuestionnaireResponse', status: 'completed', questionnaire: `${q.url}|${q.version}`, item };
}

describe('score expressions: direct evaluation = the fhirpath engine', () => {
  it.each(INSTRUMENTS)('%s: 150 random responses and their bound responses', (id) => {
    const q = instrument(id);
    const [score] = scoreItems(q);
    const next = random(id.length * 7919);
    let direct = 0;
    for (let n = 0; n < 150; n++) {
      const qr = randomResponse(q, next);
      const bounds = boundResponses(q, qr, summariseDeclined(q, qr).gates);
      for (const r of [qr, ...bounds.low, ...bounds.high]) {
        expect(evaluateScore(q, r, score)).toBe(evaluateScoreWithEngine(q, r, score));
        if (evaluatesDirectly(q, r, score)) direct++;
      }
    }
    // Not vacuous: the plain responses are all evaluated directly.
    expect(direct).toBeGreaterThan(300);
  });

  /** The instrument with its questions inside one group (as a Questionnaire with sections has them), and a response to it. */
  const grouped = (q: Questionnaire): Questionnaire => ({
    ...q,
    item: [{ linkId: 'section', type: 'group', item: questions(q) }, ...(q.item ?? []).filter((i) => i.type !== 'choice')],
  });
  const groupedResponse = (qr: QuestionnaireResponse): QuestionnaireResponse => ({ ...qr, item: [{ linkId: 'section', item: qr.item }] });

  it.each(INSTRUMENTS)('%s with its questions inside a group: 150 random responses, evaluated directly, as the engine does', (id) => {
    const q = instrument(id);
    const nested = grouped(q);
    const [score] = scoreItems(nested);
    const next = random(id.length * 104729);
    let direct = 0;
    for (let n = 0; n < 150; n++) {
      const qr = groupedResponse(randomResponse(q, next));
      expect(evaluateScore(nested, qr, score)).toBe(evaluateScoreWithEngine(nested, qr, score));
      if (evaluatesDirectly(nested, qr, score)) direct++;
    }
    expect(direct).toBe(150);
  });

  describe('outside the plain case, the same result (from the engine)', () => {
    const q = instrument('pcl-5');
    const [score] = scoreItems(q);
    const option = (linkId: string, i: number) => q.item!.find((x) => x.linkId === linkId)!.answerOption![i].valueCoding!;
    const base = (): QuestionnaireResponse => ({
      resourceType: 'QuestionnaireResponse',
      status: 'completed',
      item: [
        { linkId: 'q1', answer: [{ valueCoding: option('q1', 3) }] },
        { linkId: 'q2', answer: [{ valueCoding: option('q2', 2) }] },
      ],
    });
    const cases: [string, (qr: QuestionnaireResponse) => void, boolean][] = [
      ['plain', () => undefined, true],
      ['a Coding without a system (dropped by where())', (qr) => (qr.item![1].answer![0].valueCoding = { code: option('q2', 2).code }), true],
      ['a declined answer', (qr) => (qr.item![1].answer![0].valueCoding = DECLINED), true],
      ['an answer without a value', (qr) => (qr.item![1].answer = [{}]), true],
      ['two answers to one item', (qr) => qr.item![1].answer!.push({ valueCoding: option('q2', 4) }), true],
      ['the same item twice (repeat() keeps one of equal items)', (qr) => qr.item!.push(structuredClone(qr.item![1])), false],
      ['a scored item nested in an item the Questionnaire does not nest it in (weight() finds no item: an error)', (qr) => (qr.item = [{ linkId: 'instructions', item: qr.item }]), false],
      ['a scored item nested in an item the Questionnaire does not have (an error)', (qr) => (qr.item = [{ linkId: 'nowhere', item: qr.item }]), false],
      ['the same item at the top and again nested in another (repeat() drops equal items: the engine decides)', (qr) => qr.item!.push({ linkId: 'instructions', item: [structuredClone(qr.item![1])] }), false],
      ['a Coding carrying its own weight', (qr) => (qr.item![0].answer![0].valueCoding = { ...option('q1', 3), extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/itemWeight', valueDecimal: 9 }] }), false],
    ];
    /** The score, or the error's message. */
    const outcome = (f: () => number): number | string => {
      try {
        return f();
      } catch (e) {
        return (e as Error).message;
      }
    };
    it.each(cases)('%s', (_name, change, plain) => {
      const qr = base();
      change(qr);
      expect(evaluatesDirectly(q, qr, score)).toBe(plain);
      expect(outcome(() => evaluateScore(q, qr, score))).toEqual(outcome(() => evaluateScoreWithEngine(q, qr, score)));
    });

    it('an answer that is not an option is left to the engine (which cannot weigh it)', () => {
      const qr = base();
      qr.item![0].answer![0].valueCoding = { system: 'http://loinc.org', code: 'not-an-option' };
      expect(evaluatesDirectly(q, qr, score)).toBe(false);
      expect(outcome(() => evaluateScore(q, qr, score))).toEqual(outcome(() => evaluateScoreWithEngine(q, qr, score)));
    });
  });
});
