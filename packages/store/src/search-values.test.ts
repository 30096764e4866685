import type { Observation, Patient } from '@medplum/fhirtypes';
import { OperationOutcomeError } from '@tic/fhir';
import { applyElements, SUBSETTED, summarize } from './search-elements.ts';
import { parseQuery } from './search-query.ts';
import { numberHalfUnit, splitOr, splitPrefix, splitToken, uriAncestors } from './search-values.ts';

describe('search values', () => {
  it('splits prefixes only before numbers and dates', () => {
    expect(splitPrefix('ge2020-01')).toEqual(['ge', '2020-01']);
    expect(splitPrefix('2020')).toEqual(['eq', '2020']);
    expect(splitPrefix('ap-5')).toEqual(['ap', '-5']);
    expect(splitPrefix('lteapot')).toEqual(['eq', 'lteapot']);
  });
  it('splits OR lists and tokens honouring escapes', () => {
    expect(splitOr('a,b\\,c')).toEqual(['a', 'b,c']);
    expect(splitToken('s|c')).toEqual({ system: 's', code: 'c' });
    expect(splitToken('|c')).toEqual({ system: '', code: 'c' });
    expect(splitToken('s|')).toEqual({ system: 's', code: '' });
    expect(splitToken(splitOr('a\\|b')[0])).toEqual({ code: 'a|b' });
  });
  it('derives number precision', () => {
    expect(numberHalfUnit('100')).toBe('0.5');
    expect(numberHalfUnit('100.0')).toBe('0.05');
    expect(numberHalfUnit('1e2')).toBe('50');
    expect(numberHalfUnit('0.001')).toBe('0.0005');
  });
  it('lists uri ancestors at path boundaries', () => {
    expect(uriAncestors('http://a.org/fhir/ValueSet/1')).toEqual(['http://a.org/fhir/ValueSet/1', 'http://a.org/fhir/ValueSet', 'http://a.org/fhir', 'http://a.org']);
  });
});

describe('parseQuery', () => {
  const q = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, [v]]));
  it('parses chains, _has and includes into known identifiers only', () => {
    const p = parseQuery('Observation', q({ 'subject:Patient.name': 'x', _include: 'Observation:subject', _sort: '-date,_id' }), true);
    expect(p.filters[0]).toMatchObject({ kind: 'chain', code: 'subject', targets: [{ type: 'Patient' }] });
    expect(p.include).toEqual([{ sourceType: 'Observation', code: 'subject', targetType: undefined, iterate: false, reverse: false }]);
    expect(p.sort.map((s) => [s.name, s.desc])).toEqual([
      ['date', true],
      ['_id', false],
    ]);
    const h = parseQuery('Patient', q({ '_has:Observation:patient:code': '1234' }), true);
    expect(h.filters[0]).toMatchObject({ kind: 'has', sourceType: 'Observation', code: 'patient', filter: { kind: 'param', code: 'code' } });
  });
  it('narrows an untyped chain to the targets having the parameter', () => {
    const p = parseQuery('Observation', q({ 'subject.birthdate': '1980' }), true);
    expect(p.filters[0]).toMatchObject({ kind: 'chain', targets: [{ type: 'Patient' }] });
  });
  it('rejects what it does not know under strict handling', () => {
    const bads: Array<Record<string, string>> = [{ x: '1' }, { 'name:nope': 'a' }, { 'subject.foo': 'a' }, { 'subject:Patient.organization.name': 'a' }, { _count: '-1' }, { _total: 'all' }];
    for (const bad of bads) {
      expect(() => parseQuery('Observation', q(bad), true)).toThrow(OperationOutcomeError);
    }
    const lenient = parseQuery('Observation', q({ x: '1', status: 'final' }));
    expect(lenient.warnings).toHaveLength(1);
    expect(lenient.applied).toEqual([['status', 'final']]);
  });
});

describe('_elements and _summary', () => {
  const obs: Observation = {
    resourceType: 'Observation',
    id: 'o',
    meta: { versionId: '1' },
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">x</div>' },
    status: 'final',
    code: { text: 'c' },
    valueQuantity: { value: 1 },
    note: [{ text: 'n' }],
  };
  it('keeps listed elements, id and meta, and marks SUBSETTED', () => {
    const r = applyElements(obs, ['status', 'value']);
    expect(Object.keys(r).sort()).toEqual(['id', 'meta', 'resourceType', 'status', 'valueQuantity']);
    expect(r.meta?.tag).toEqual([SUBSETTED]);
    expect(r.meta?.versionId).toBe('1');
    expect(applyElements(obs, ['Observation.note']).note).toEqual(obs.note);
  });
  it('summary true keeps isSummary elements only; data drops text; false keeps all', () => {
    const s = summarize(obs, 'true');
    expect(s.note).toBeUndefined();
    expect(s.text).toBeUndefined();
    expect(s.valueQuantity).toEqual({ value: 1 });
    expect(s.meta?.tag).toEqual([SUBSETTED]);
    expect(summarize(obs, 'data').text).toBeUndefined();
    expect(summarize(obs, 'data').note).toEqual(obs.note);
    expect(summarize(obs, 'false')).toBe(obs);
    const p: Patient = { resourceType: 'Patient', id: 'p', name: [{ family: 'x' }], photo: [{ url: 'http://x' }] };
    expect(summarize(p, 'true')).toEqual({ resourceType: 'Patient', id: 'p', name: [{ family: 'x' }], meta: { tag: [SUBSETTED] } });
    expect(summarize(obs, 'text')).toMatchObject({ text: obs.text, status: 'final', code: obs.code });
  });
});
