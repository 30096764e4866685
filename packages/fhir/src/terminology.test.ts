import type { CodeSystem, ValueSet } from '@medplum/fhirtypes';
import { createTerminology, Terminology } from './terminology.ts';

// Test-only terminology under example.org (not domain codes).
const CS = 'http://example.org/fhir/CodeSystem/test-hierarchy';
const hierarchy: CodeSystem = {
  resourceType: 'CodeSystem',
  url: CS,
  status: 'active',
  content: 'complete',
  concept: [
    { code: 'animal', concept: [{ code: 'mammal', concept: [{ code: 'dog' }, { code: 'cat' }] }, { code: 'bird' }] },
    { code: 'plant' },
    // hierarchy by property instead of nesting
    { code: 'tree', property: [{ code: 'parent', valueCode: 'plant' }] },
    { code: 'oak', property: [{ code: 'subsumedBy', valueCode: 'tree' }] },
  ],
};
const vs = (id: string, compose: ValueSet['compose']): ValueSet => ({ resourceType: 'ValueSet', url: `http://example.org/fhir/ValueSet/${id}`, status: 'active', compose });
const url = (id: string): string => `http://example.org/fhir/ValueSet/${id}`;

describe('Terminology', () => {
  const t = new Terminology([
    hierarchy,
    vs('whole', { include: [{ system: CS }] }),
    vs('explicit', { include: [{ system: CS, concept: [{ code: 'dog' }, { code: 'oak' }] }] }),
    vs('is-a-mammal', { include: [{ system: CS, filter: [{ property: 'concept', op: 'is-a', value: 'mammal' }] }] }),
    vs('descendent-of-mammal', { include: [{ system: CS, filter: [{ property: 'concept', op: 'descendent-of', value: 'mammal' }] }] }),
    vs('is-a-plant', { include: [{ system: CS, filter: [{ property: 'concept', op: 'is-a', value: 'plant' }] }] }),
    vs('animals-but-cats', { include: [{ system: CS, filter: [{ property: 'concept', op: 'is-a', value: 'animal' }] }], exclude: [{ system: CS, concept: [{ code: 'cat' }] }] }),
    vs('import', { include: [{ valueSet: [url('explicit')] }, { system: 'http://example.org/other', concept: [{ code: 'x' }] }] }),
    vs('intersect', { include: [{ valueSet: [url('is-a-mammal'), url('explicit')] }] }),
    vs('open-system', { include: [{ system: 'urn:ietf:bcp:13' }] }),
    vs('regex', { include: [{ system: CS, filter: [{ property: 'concept', op: 'regex', value: 'd.*' }] }] }),
    vs('imports-unknown', { include: [{ valueSet: ['http://example.org/fhir/ValueSet/nowhere'] }] }),
  ]);

  it('includes a whole CodeSystem with nested concepts', () => {
    for (const code of ['animal', 'mammal', 'dog', 'cat', 'bird', 'plant', 'oak']) expect(t.checkCode(url('whole'), CS, code)).toBe('valid');
    expect(t.checkCode(url('whole'), CS, 'rock')).toBe('invalid');
    expect(t.checkCode(url('whole'), 'http://example.org/other', 'dog')).toBe('invalid');
    expect(t.checkCode(url('whole'), undefined, 'cat')).toBe('valid');
  });

  it('includes explicit concepts only', () => {
    expect(t.checkCode(url('explicit'), CS, 'dog')).toBe('valid');
    expect(t.checkCode(url('explicit'), CS, 'cat')).toBe('invalid');
  });

  it('applies is-a and descendent-of over nesting and parent/subsumedBy properties', () => {
    expect(t.checkCode(url('is-a-mammal'), CS, 'mammal')).toBe('valid');
    expect(t.checkCode(url('is-a-mammal'), CS, 'cat')).toBe('valid');
    expect(t.checkCode(url('is-a-mammal'), CS, 'bird')).toBe('invalid');
    expect(t.checkCode(url('descendent-of-mammal'), CS, 'mammal')).toBe('invalid');
    expect(t.checkCode(url('descendent-of-mammal'), CS, 'dog')).toBe('valid');
    expect(t.checkCode(url('is-a-plant'), CS, 'oak')).toBe('valid');
    expect(t.checkCode(url('is-a-plant'), CS, 'dog')).toBe('invalid');
  });

  it('applies excludes', () => {
    expect(t.checkCode(url('animals-but-cats'), CS, 'dog')).toBe('valid');
    expect(t.checkCode(url('animals-but-cats'), CS, 'cat')).toBe('invalid');
  });

  it('imports value sets (union across includes, intersection within one)', () => {
    expect(t.checkCode(url('import'), CS, 'oak')).toBe('valid');
    expect(t.checkCode(url('import'), 'http://example.org/other', 'x')).toBe('valid');
    expect(t.checkCode(url('import'), CS, 'cat')).toBe('invalid');
    expect(t.checkCode(url('intersect'), CS, 'dog')).toBe('valid');
    expect(t.checkCode(url('intersect'), CS, 'oak')).toBe('invalid');
  });

  it('answers unknown rather than invalid for what cannot be enumerated offline', () => {
    expect(t.checkCode(url('open-system'), 'urn:ietf:bcp:13', 'text/plain')).toBe('unknown');
    expect(t.checkCode(url('open-system'), 'http://example.org/other', 'x')).toBe('invalid');
    expect(t.checkCode(url('regex'), CS, 'dog')).toBe('unknown');
    expect(t.checkCode(url('imports-unknown'), CS, 'dog')).toBe('unknown');
    expect(t.checkCode('http://example.org/fhir/ValueSet/never-defined', CS, 'dog')).toBe('unknown');
  });

  it('ignores a |version suffix and caches expansions', () => {
    expect(t.checkCode(`${url('explicit')}|1.0.0`, CS, 'dog')).toBe('valid');
    expect(t.expand(url('explicit'))).toBe(t.expand(`${url('explicit')}|2`));
  });

  it('recomputes expansions when terminology is added', () => {
    const local = new Terminology([vs('later', { include: [{ system: 'http://example.org/late' }] })]);
    expect(local.checkCode(url('later'), 'http://example.org/late', 'a')).toBe('unknown');
    local.add({ resourceType: 'CodeSystem', url: 'http://example.org/late', status: 'active', content: 'complete', concept: [{ code: 'a' }] });
    expect(local.checkCode(url('later'), 'http://example.org/late', 'a')).toBe('valid');
    expect(local.checkCode(url('later'), 'http://example.org/late', 'b')).toBe('invalid');
  });
});

describe('createTerminology (R4 core)', () => {
  const core = createTerminology();

  it('expands core value sets offline', () => {
    expect(core.checkCode('http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1', undefined, 'female')).toBe('valid');
    expect(core.checkCode('http://hl7.org/fhir/ValueSet/administrative-gender', undefined, 'robot')).toBe('invalid');
    expect(core.checkCode('http://hl7.org/fhir/ValueSet/condition-clinical', 'http://terminology.hl7.org/CodeSystem/condition-clinical', 'remission')).toBe('valid');
  });

  it('expands core value sets built from is-a filters', () => {
    // sibling-relationship-codes = v3-RoleCode is-a SIB (data from the shipped R4 terminology).
    const sib = 'http://hl7.org/fhir/ValueSet/sibling-relationship-codes';
    const roleCode = 'http://terminology.hl7.org/CodeSystem/v3-RoleCode';
    expect(core.checkCode(sib, roleCode, 'SIB')).toBe('valid');
    expect(core.checkCode(sib, roleCode, 'TWINSIS')).toBe('valid');
    expect(core.checkCode(sib, roleCode, 'MTH')).toBe('invalid');
  });

  it('leaves value sets over external code systems open', () => {
    expect(core.checkCode('http://hl7.org/fhir/ValueSet/mimetypes', 'urn:ietf:bcp:13', 'application/fhir+json')).toBe('unknown');
    expect(core.checkCode('http://hl7.org/fhir/ValueSet/mimetypes', undefined, 'application/fhir+json')).toBe('unknown');
  });
});
