// Required value-set bindings, which @medplum/core's validator does not enforce. Medplum's walk
// already visits every element and, given `collect.tokens`, hands back each value whose element
// has a required binding (resource elements and datatype elements inside them, contained and
// Bundle entry resources included), keyed by ValueSet canonical, with its path. So the binding
// check costs no second walk: only a Set lookup per bound value.
import type { CodeableConcept, Coding, OperationOutcomeIssue, Quantity } from '@medplum/fhirtypes';
import type { Terminology } from './terminology.ts';
import { canonicalUrl } from './terminology.ts';

/** What medplum's validator collects (TypedValueWithPath). */
export interface BoundValue {
  type: string;
  value: unknown;
  path: string;
}

export type BoundValues = Record<string, BoundValue[]>;

/** Issues for every collected value that is not in its required value set. */
export function checkRequiredBindings(tokens: BoundValues, terminology: Terminology): OperationOutcomeIssue[] {
  const issues: OperationOutcomeIssue[] = [];
  for (const vsRef in tokens) {
    const values = tokens[vsRef];
    if (!values?.length) continue;
    const url = canonicalUrl(vsRef);
    for (const bound of values) {
      const problem = checkValue(url, bound, terminology);
      if (problem) issues.push({ severity: 'error', code: 'code-invalid', diagnostics: `${problem} (required binding to ${url})`, expression: [bound.path] });
    }
  }
  return issues;
}

/** A description of the problem, or undefined when the value is acceptable. */
function checkValue(url: string, bound: BoundValue, terminology: Terminology): string | undefined {
  const value = unwrap(bound.value);
  switch (bound.type) {
    case 'code':
    case 'string':
    case 'uri':
      if (typeof value !== 'string') return undefined;
      return terminology.checkCode(url, undefined, value) === 'invalid' ? 'Code is not in the value set' : undefined;
    case 'Coding':
      return checkCoding(url, value as Coding, terminology) === 'invalid' ? 'Coding is not in the value set' : undefined;
    case 'Quantity': {
      const q = value as Quantity;
      if (q?.code === undefined) return undefined;
      return terminology.checkCode(url, q.system, q.code) === 'invalid' ? 'Quantity unit is not in the value set' : undefined;
    }
    case 'CodeableConcept':
      return checkCodeableConcept(url, value as CodeableConcept, terminology);
    default:
      return undefined;
  }
}

function checkCoding(url: string, coding: Coding | undefined, terminology: Terminology): 'valid' | 'invalid' | 'unknown' {
  if (!coding || typeof coding !== 'object' || coding.code === undefined) return 'unknown';
  return terminology.checkCode(url, coding.system, coding.code);
}

/**
 * FHIR required binding on a CodeableConcept: at least one coding SHALL be from the value set.
 * A concept with text only, or only codings of other systems, does not meet a required binding.
 */
function checkCodeableConcept(url: string, concept: CodeableConcept | undefined, terminology: Terminology): string | undefined {
  if (!concept || typeof concept !== 'object') return undefined;
  const codings = concept.coding ?? [];
  if (codings.length === 0) {
    if (terminology.expand(url).open) return undefined;
    return 'CodeableConcept has no coding from the value set';
  }
  let sawInvalid = false;
  for (const coding of codings) {
    const result = checkCoding(url, coding, terminology);
    if (result !== 'invalid') return undefined;
    sawInvalid = true;
  }
  return sawInvalid ? 'No coding of the CodeableConcept is in the value set' : undefined;
}

function unwrap(value: unknown): unknown {
  // Primitives that carry extensions (`_status`) come through as boxed String objects.
  return value instanceof String ? value.valueOf() : value;
}
