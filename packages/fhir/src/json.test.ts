import { parseJsonBody } from './json.ts';
import type { OperationOutcomeError} from './outcomes.ts';
import { statusForOutcome } from './outcomes.ts';
import { allResourceTypes, isKnownResourceType, searchParametersFor } from './definitions.ts';

function rejects(text: string): OperationOutcomeError {
  try {
    parseJsonBody(text);
  } catch (e) {
    return e as OperationOutcomeError;
  }
  throw new Error('expected rejection');
}

describe('parseJsonBody', () => {
  it('parses ordinary JSON', () => {
    expect(parseJsonBody('{"resourceType":"Patient","name":[{"family":"X"}]}')).toEqual({ resourceType: 'Patient', name: [{ family: 'X' }] });
  });
  it('rejects malformed JSON with 400', () => {
    expect(statusForOutcome(rejects('{"a":'))).toBe(400);
  });
  it('rejects prototype-polluting keys', () => {
    expect(rejects('{"__proto__":{"x":1}}').message).toMatch(/__proto__/);
    expect(rejects('{"a":{"constructor":{"prototype":{}}}}').message).toMatch(/constructor/);
  });
  it('rejects deep nesting and huge arrays', () => {
    expect(rejects('['.repeat(200) + ']'.repeat(200)).message).toMatch(/nested/);
    expect(rejects(JSON.stringify({ a: new Array(20_000).fill(1) })).message).toMatch(/array/);
  });
});

describe('definitions', () => {
  it('knows the R4 resource types from the definitions', () => {
    const types = allResourceTypes();
    expect(types).toContain('Patient');
    expect(types).toContain('QuestionnaireResponse');
    expect(types).not.toContain('DomainResource');
    expect(types.length).toBeGreaterThan(140);
    expect(isKnownResourceType('Foo')).toBe(false);
  });
  it('knows search parameters', () => {
    expect(searchParametersFor('Observation')['code']?.type).toBe('token');
  });
});
