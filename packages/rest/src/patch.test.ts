import type { OperationOutcomeError } from '@tic/fhir';
import { statusForOutcome } from '@tic/fhir';
import { applyJsonPatch } from './patch.ts';

const status = (f: () => unknown): number => {
  try {
    f();
    return 200;
  } catch (e) {
    return statusForOutcome(e as OperationOutcomeError);
  }
};

describe('applyJsonPatch', () => {
  const patient = { resourceType: 'Patient', id: 'p', name: [{ family: 'A' }] };
  it('applies add, replace, remove, move, copy and test', () => {
    const out = applyJsonPatch(patient, [
      { op: 'add', path: '/active', value: true },
      { op: 'add', path: '/name/-', value: { family: 'B' } },
      { op: 'replace', path: '/name/0/family', value: 'C' },
      { op: 'copy', from: '/name/1', path: '/name/2' },
      { op: 'move', from: '/name/2', path: '/name/0' },
      { op: 'remove', path: '/name/1' },
      { op: 'test', path: '/active', value: true },
    ]);
    expect(out).toEqual({ resourceType: 'Patient', id: 'p', active: true, name: [{ family: 'B' }, { family: 'B' }] });
    expect(patient.name).toHaveLength(1);
  });
  it('refuses patches that replace the whole document with a non-object, or walk through one', () => {
    expect(status(() => applyJsonPatch(patient, [{ op: 'add', path: '', value: 0 }, { op: 'remove', path: '/x' }]))).toBe(422);
    expect(status(() => applyJsonPatch(patient, [{ op: 'add', path: '', value: [1] }]))).toBe(422);
    expect(status(() => applyJsonPatch(patient, [{ op: 'replace', path: '/name/0/family/x', value: 1 }]))).toBe(422);
  });
  it('refuses bad operations and prototype paths with 400, failed tests with 422', () => {
    expect(status(() => applyJsonPatch(patient, { op: 'add' }))).toBe(400);
    expect(status(() => applyJsonPatch(patient, [{ op: 'frobnicate', path: '/a' }]))).toBe(400);
    expect(status(() => applyJsonPatch(patient, [{ op: 'add', path: '/__proto__/x', value: 1 }]))).toBe(400);
    expect(status(() => applyJsonPatch(patient, [{ op: 'test', path: '/id', value: 'q' }]))).toBe(422);
  });
});
