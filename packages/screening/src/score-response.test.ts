import { instrument, respond, uniform, YES, NO } from './fixtures.ts';
import type { CutoffResolver } from './score-response.ts';
import { scoreResponse } from './score-response.ts';

const only = (id: string, answers: Parameters<typeof respond>[1], cutoffFor?: CutoffResolver) => {
  const q = instrument(id);
  const [result] = scoreResponse(q, respond(q, answers), cutoffFor);
  return result;
};

describe('PC-PTSD-5', () => {
  const gateYes = (n: number, rest: Record<string, 0 | 1 | 'declined'> = {}) => ({ exposure: YES, ...uniform(5, 0, Object.fromEntries(Array.from({ length: n }, (_, i) => [i + 1, 1]))), ...rest });

  it('scores 3 Yes as positive at the default cut-off 3, recorded as from the Questionnaire', () => {
    const r = only('pc-ptsd-5', gateYes(3));
    expect(r).toMatchObject({ total: 3, lower: 3, upper: 3, interpretation: 'POS', declined: [] });
    expect(r.cutoff).toEqual({ value: 3, direction: 'at-or-above', source: 'questionnaire' });
  });

  it('scores 2 Yes as negative at cut-off 3', () => {
    expect(only('pc-ptsd-5', gateYes(2))).toMatchObject({ total: 2, interpretation: 'NEG' });
  });

  it('applies an organisation cut-off of 4: 3 is negative, 4 positive', () => {
    const four: CutoffResolver = () => 4;
    expect(only('pc-ptsd-5', gateYes(3), four)).toMatchObject({ total: 3, interpretation: 'NEG', cutoff: { value: 4, source: 'organisation' } });
    expect(only('pc-ptsd-5', gateYes(4), four)).toMatchObject({ total: 4, interpretation: 'POS' });
  });

  it('ends the screen with score 0 and negative when there was no trauma exposure', () => {
    expect(only('pc-ptsd-5', { exposure: NO })).toMatchObject({ total: 0, lower: 0, upper: 0, interpretation: 'NEG', declined: [] });
  });

  it('is indeterminate when declined items could reach the cut-off, and marks the total partial', () => {
    const r = only('pc-ptsd-5', gateYes(2, { q5: 'declined' }));
    expect(r).toMatchObject({ total: 2, lower: 2, upper: 3, interpretation: 'IND', declined: ['q5'] });
  });

  it('is positive when the answered items already reach the cut-off despite declined ones', () => {
    expect(only('pc-ptsd-5', gateYes(3, { q4: 'declined', q5: 'declined' }))).toMatchObject({ total: 3, interpretation: 'POS' });
  });

  it('is negative when even every declined item at its maximum stays below the cut-off', () => {
    const r = only('pc-ptsd-5', { exposure: YES, ...uniform(5, 0, { 4: 'declined', 5: 'declined' }) });
    expect(r).toMatchObject({ total: 0, lower: 0, upper: 2, interpretation: 'NEG', declined: ['q4', 'q5'] });
  });

  it('a declined exposure question leaves the screen indeterminate (0 to 5), never a silent 0', () => {
    expect(only('pc-ptsd-5', { exposure: 'declined' })).toMatchObject({ total: 0, lower: 0, upper: 5, interpretation: 'IND', declined: ['exposure'] });
  });
});

describe('PCL-5', () => {
  it('scores all items "Moderately" as 40, positive, with every DSM-5 cluster met', () => {
    const r = only('pcl-5', uniform(20, 2));
    expect(r).toMatchObject({ total: 40, interpretation: 'POS', clusterPattern: 'POS' });
    expect(r.clusters?.map((c) => [c.code.code, c.endorsed, c.interpretation])).toEqual([
      ['pcl-5-cluster-b', 5, 'POS'],
      ['pcl-5-cluster-c', 2, 'POS'],
      ['pcl-5-cluster-d', 7, 'POS'],
      ['pcl-5-cluster-e', 6, 'POS'],
    ]);
  });

  it('has its cut-off boundary at 33: 32 negative, 33 positive', () => {
    // 12 items at 2 and 8 at 1 = 32; one more point = 33.
    const base = uniform(20, 1, Object.fromEntries(Array.from({ length: 12 }, (_, i) => [i + 1, 2])));
    expect(only('pcl-5', base)).toMatchObject({ total: 32, interpretation: 'NEG' });
    expect(only('pcl-5', { ...base, q20: 2 })).toMatchObject({ total: 33, interpretation: 'POS' });
  });

  it('reports the cluster pattern not met when a cluster cannot be met (no avoidance)', () => {
    const r = only('pcl-5', uniform(20, 4, { 6: 0, 7: 1 }));
    expect(r.total).toBe(73);
    expect(r.clusterPattern).toBe('NEG');
    expect(r.clusters?.find((c) => c.code.code === 'pcl-5-cluster-c')).toMatchObject({ endorsed: 0, endorsedAtMost: 0, interpretation: 'NEG' });
  });

  it('leaves the cluster pattern indeterminate when a declined item decides it', () => {
    const r = only('pcl-5', uniform(20, 3, { 6: 0, 7: 'declined' }));
    expect(r.clusters?.find((c) => c.code.code === 'pcl-5-cluster-c')).toMatchObject({ endorsed: 0, endorsedAtMost: 1, interpretation: 'IND' });
    expect(r.clusterPattern).toBe('IND');
    expect(r).toMatchObject({ total: 54, lower: 54, upper: 58, interpretation: 'POS' });
  });
});

describe('ACE', () => {
  const yesCount = (n: number) => {
    const q = instrument('ace');
    const ids = (q.item ?? []).filter((i) => i.type === 'choice').map((i) => i.linkId);
    return Object.fromEntries(ids.map((id, i) => [id, i < n ? 1 : 0])) as Record<string, 0 | 1>;
  };
  it('counts categories: 4 is high risk (positive) at the default 4, 3 is not', () => {
    expect(only('ace', yesCount(4))).toMatchObject({ total: 4, interpretation: 'POS', cutoff: { value: 4 } });
    expect(only('ace', yesCount(3))).toMatchObject({ total: 3, interpretation: 'NEG' });
    expect(only('ace', yesCount(10))).toMatchObject({ total: 10 });
  });
});

describe('PHQ-9', () => {
  it('10 is positive and moderate; 9 negative and mild', () => {
    expect(only('phq-9', uniform(9, 1, { 1: 2 }))).toMatchObject({ total: 10, interpretation: 'POS', severity: { code: 'moderate' } });
    expect(only('phq-9', uniform(9, 1))).toMatchObject({ total: 9, interpretation: 'NEG', severity: { code: 'mild' } });
  });

  it('reports the severity bands 0-4, 15-19, 20-27', () => {
    expect(only('phq-9', uniform(9, 0)).severity?.code).toBe('minimal');
    expect(only('phq-9', uniform(9, 2, { 1: 1, 2: 1, 3: 1 })).severity?.code).toBe('moderately-severe');
    expect(only('phq-9', uniform(9, 3))).toMatchObject({ total: 27, severity: { code: 'severe' } });
  });

  it('leaves the band out when declined items span two bands', () => {
    const r = only('phq-9', uniform(9, 1, { 9: 'declined' }));
    expect(r).toMatchObject({ total: 8, lower: 8, upper: 11, interpretation: 'IND' });
    expect(r.severity).toBeUndefined();
  });

  it('does not score the unweighted difficulty question', () => {
    const q = instrument('phq-9');
    const qr = respond(q, { ...uniform(9, 1), difficulty: { system: 'https://tic-exchange.org/fhir/CodeSystem/screening-answers', code: 'very-difficult' } });
    expect(scoreResponse(q, qr)[0]).toMatchObject({ total: 9, declined: [] });
  });
});

describe('GAD-7', () => {
  it('10 is positive and moderate, 21 severe, 4 minimal', () => {
    expect(only('gad-7', uniform(7, 1, { 1: 3, 2: 3, 3: 0 }))).toMatchObject({ total: 10, interpretation: 'POS', severity: { code: 'moderate' } });
    expect(only('gad-7', uniform(7, 3))).toMatchObject({ total: 21, severity: { code: 'severe' } });
    expect(only('gad-7', uniform(7, 0, { 1: 2, 2: 2 }))).toMatchObject({ total: 4, interpretation: 'NEG', severity: { code: 'minimal' } });
  });
});

describe('QPR-15', () => {
  it('gives the total with no cut-off and no interpretation', () => {
    const r = only('qpr-15', uniform(15, 3, { 1: 4, 2: 0 }));
    expect(r.total).toBe(43); // 13 x 3 + 4 + 0
    expect(r.cutoff).toBeUndefined();
    expect(r.interpretation).toBeUndefined();
  });

  it('reports the possible range when items are declined', () => {
    expect(only('qpr-15', uniform(15, 2, { 15: 'declined' }))).toMatchObject({ total: 28, lower: 28, upper: 32, declined: ['q15'] });
  });
});
