// observationShape: what stays (codes, answer options, outcomes, reference types) and what is
// masked (values copied from the validated response, numbers) when the store validates each shape
// of the derived Observations once.
import type { Observation, Questionnaire, QuestionnaireResponse, Resource } from '@medplum/fhirtypes';
import { buildObservations, observationShape } from './observations.ts';
import { instrument, respond, uniform } from './fixtures.ts';
import { scoreResponse } from './score-response.ts';

const pcl = instrument('pcl-5');

function observations(q: Questionnaire, qr: QuestionnaireResponse): Observation[] {
  return buildObservations(q, { ...qr, id: qr.id ?? 'r1' }, scoreResponse(q, qr));
}

const shapes = (os: Resource[]) => os.map(observationShape);

describe('observationShape', () => {
  const one = respond(pcl, uniform(20, 1), { identifier: { system: 'urn:ehr', value: 'a' }, subject: { reference: 'Patient/p1', display: 'Ana' } });

  it('is the same for another person, author, time, identifier and total in the same band', () => {
    const other = respond(pcl, uniform(20, 1, { 20: 2 }), {
      id: 'r2',
      identifier: { system: 'urn:ehr', value: 'b' },
      subject: { reference: 'Patient/someone-else', display: 'Someone Else' },
      author: { reference: 'Practitioner/dr2' },
      authored: '2026-01-02T03:04:05+01:00',
    });
    const a = shapes(observations(pcl, one));
    const b = shapes(observations(pcl, other));
    // q20 was answered differently; the score (20 vs 21, both negative) has the same shape.
    expect(a.filter((s, i) => s !== b[i])).toHaveLength(1);
    expect(a[20]).toBe(b[20]);
    expect(a[19]).not.toBe(b[19]);
  });

  it('differs for another answer option, another outcome or another kind of subject or author', () => {
    const base = shapes(observations(pcl, one));
    const positive = shapes(observations(pcl, respond(pcl, uniform(20, 3))));
    expect(positive[20]).not.toBe(base[20]);
    const group = shapes(observations(pcl, { ...one, subject: { reference: 'Group/g1' } }));
    expect(group.every((s, i) => s !== base[i])).toBe(true);
    const byPatient = shapes(observations(pcl, { ...one, author: { reference: 'Patient/p1' } }));
    expect(byPatient.every((s, i) => s !== base[i])).toBe(true);
    const contained = shapes(observations(pcl, { ...one, subject: { reference: '#p' } }));
    expect(contained.every((s, i) => s !== base[i])).toBe(true);
  });

  it('keeps partial totals apart from complete ones, and is undefined for other resources', () => {
    const partial = shapes(observations(pcl, respond(pcl, uniform(20, 1, { 3: 'declined' }))));
    expect(partial[19]).not.toBe(shapes(observations(pcl, one))[20]);
    expect(observationShape({ resourceType: 'Patient' })).toBeUndefined();
    const [o] = observations(pcl, one);
    expect(observationShape({ ...o, id: 'a' })).toBe(observationShape({ ...o, id: 'b' }));
  });
});
