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

describe('buildObservations: SDC 4.0.0 extraction relationships', () => {
  const EXTRACT = 'http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract';
  const code = (c: string) => [{ system: 'urn:test:codes', code: c }];
  const extract = (value: boolean | string) => [{ url: EXTRACT, ...(typeof value === 'boolean' ? { valueBoolean: value } : { valueCode: value }) }];
  const question = (linkId: string, mode?: boolean | string) => ({ linkId, text: `Question ${linkId}`, type: 'integer' as const, code: code(linkId), ...(mode === undefined ? {} : { extension: extract(mode) }) });
  const questionnaire = (item: Questionnaire['item']): Questionnaire => ({ resourceType: 'Questionnaire', status: 'active', url: 'urn:test:q', title: 'Test', item });
  const response = (item: QuestionnaireResponse['item']): QuestionnaireResponse => ({
    resourceType: 'QuestionnaireResponse',
    id: 'r1',
    status: 'completed',
    questionnaire: 'urn:test:q',
    identifier: { system: 'urn:ehr', value: 'x' },
    subject: { reference: 'Patient/p1' },
    item,
  });
  const int = (linkId: string, n: number) => ({ linkId, answer: [{ valueInteger: n }] });
  const build = (q: Questionnaire, qr: QuestionnaireResponse) => buildObservations(q, qr, []);
  const codes = (os: Observation[]) => os.map((o) => o.code.coding?.[0]?.code);

  it('writes `component` items into the panel Observation of their group, and `true` / `independent` items as Observations of their own', () => {
    const q = questionnaire([
      { linkId: 'panel', type: 'group', text: 'Panel', code: code('panel'), extension: extract(true), item: [question('a', 'component'), question('b', 'component'), question('c', 'independent'), question('d', true)] },
    ]);
    const os = build(q, response([{ linkId: 'panel', item: [int('a', 1), int('b', 2), int('c', 3), int('d', 4)] }]));
    expect(codes(os)).toEqual(['panel', 'c', 'd']);
    const [panel, c] = os;
    expect(panel.valueInteger).toBeUndefined();
    expect(panel.component).toEqual([
      { code: { coding: code('a'), text: 'Question a' }, valueInteger: 1 },
      { code: { coding: code('b'), text: 'Question b' }, valueInteger: 2 },
    ]);
    expect(panel.derivedFrom).toEqual([{ reference: 'QuestionnaireResponse/r1' }]);
    expect(panel.identifier?.[0]?.value).not.toBe(c.identifier?.[0]?.value);
    expect(c.valueInteger).toBe(3);
    expect(c.component).toBeUndefined();
  });

  it('leaves out declined and unanswered components, and writes no panel without any', () => {
    const q = questionnaire([{ linkId: 'panel', type: 'group', code: code('panel'), extension: extract(true), item: [question('a', 'component'), question('b', 'component')] }]);
    const declined = { linkId: 'a', answer: [{ valueCoding: { system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason', code: 'asked-declined' } }] };
    expect(build(q, response([{ linkId: 'panel', item: [declined, int('b', 2)] }]))[0].component).toEqual([{ code: { coding: code('b'), text: 'Question b' }, valueInteger: 2 }]);
    expect(build(q, response([{ linkId: 'panel', item: [declined] }]))).toEqual([]);
  });

  it('makes a `component` item with no extracted item around it an Observation of its own; a component nested under an answer joins that answer`s Observation', () => {
    const q = questionnaire([question('a', 'component'), { ...question('b', true), item: [question('b1', 'component')] }]);
    const os = build(q, response([int('a', 1), { linkId: 'b', answer: [{ valueInteger: 2, item: [int('b1', 5)] }] }]));
    expect(codes(os)).toEqual(['a', 'b']);
    expect(os[0].valueInteger).toBe(1);
    expect(os[1].component).toEqual([{ code: { coding: code('b1'), text: 'Question b1' }, valueInteger: 5 }]);
  });

  it('still extracts items inside a group that is not extracted itself, as before', () => {
    const q = questionnaire([{ linkId: 'g', type: 'group', item: [question('a', true), question('b')] }]);
    expect(codes(build(q, response([{ linkId: 'g', item: [int('a', 1), int('b', 2)] }])))).toEqual(['a']);
  });

  it.each(['member', 'derived'])('refuses `%s` with 422 not-supported naming the item, rather than dropping the relationship', (mode) => {
    const q = questionnaire([{ linkId: 'panel', type: 'group', code: code('panel'), extension: extract(true), item: [question('a', mode)] }]);
    let error: unknown;
    try {
      build(q, response([{ linkId: 'panel', item: [int('a', 1)] }]));
    } catch (e) {
      error = e;
    }
    const oo = error as { status?: number; outcome?: { issue: Array<{ code: string; expression?: string[] }> } };
    expect(oo.status).toBe(422);
    expect(oo.outcome?.issue[0]).toMatchObject({ code: 'not-supported', expression: ["Questionnaire.item.where(linkId = 'a')"] });
  });

  it('ignores codes outside the relationship value set and `false`, as it ignores items without the extension', () => {
    const q = questionnaire([question('a', 'sometimes'), question('b', false), question('c')]);
    expect(build(q, response([int('a', 1), int('b', 2), int('c', 3)]))).toEqual([]);
  });

  it('keeps the shipped instruments as they were: 20 PCL-5 item Observations and the score', () => {
    const os = observations(pcl, respond(pcl, uniform(20, 2)));
    expect(os).toHaveLength(21);
    expect(os.every((o) => o.component === undefined || o === os[20])).toBe(true);
  });
});
