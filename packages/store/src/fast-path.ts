// A direct evaluator for the search-parameter expressions that are plain element paths (160 of
// 186 in the common resources): "Observation.code", "Patient.name", "Observation.effective",
// "(Observation.value.ofType(Quantity))", "Task.for.where(resolve() is Patient)",
// "Patient.telecom.where(system='email')". Walking the JSON directly is several times faster than
// the general FHIRPath engine on the write path; anything else returns undefined and stays with
// the engine. Composite parameters use it too: their expression ("Observation",
// "Observation | Observation.component") picks the elements, and each component's path relative
// to one of them ("code", "value.ofType(Quantity)") gives the parts. indexer.test.ts checks both
// give the same rows.
import { getDataType } from '@medplum/core';
import type { TypedValue } from '@medplum/core';

export type FastPath = (resource: Record<string, unknown>) => TypedValue[];

const branchPattern = /^\(?([A-Z][A-Za-z]+)((?:\.[a-z][A-Za-z0-9]*)*)(?:\.ofType\(([A-Za-z]+)\))?\)?((?:\.[a-z][A-Za-z0-9]*)*)(?:\.where\((?:resolve\(\) is ([A-Z][A-Za-z]+)|system='([a-z]+)')\))?$/;

interface Branch {
  path: string[];
  ofType?: string;
  /** The JSON key suffix of `ofType` (Quantity, DateTime), made once. */
  ofTypeSuffix?: string;
  /**
   * Elements below the typed choice ("(Observation.value.ofType(CodeableConcept)).text": ["text"]),
   * walked as plain elements; their values' type is not known here (only string parameters).
   */
  then?: string[];
  resolveIs?: string;
  /** `resolveIs` as the pattern a local reference to that type matches (made once). */
  resolvePattern?: RegExp;
  system?: string;
  /** The element's type when the schema says it has exactly one (top-level elements). */
  type: string;
}

/** A branch with what its evaluation needs made once (evaluate). */
function prepared(b: Branch): Branch {
  if (b.ofType) b.ofTypeSuffix = capitalize(b.ofType);
  if (b.resolveIs) b.resolvePattern = new RegExp(`^${b.resolveIs}/[^/]+(/_history/[^/]+)?$`);
  return b;
}

function capitalize(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}

/** A choice element's type from its JSON key suffix: valueQuantity → Quantity, valueDateTime → dateTime. */
function choiceType(suffix: string): string {
  const primitive = ['Boolean', 'Integer', 'Decimal', 'String', 'Uri', 'Url', 'Canonical', 'Code', 'Id', 'Oid', 'Uuid', 'Markdown', 'Base64Binary', 'Instant', 'Date', 'DateTime', 'Time', 'PositiveInt', 'UnsignedInt'];
  return primitive.includes(suffix) ? suffix[0].toLowerCase() + suffix.slice(1) : suffix;
}

function compileBranch(resourceType: string, text: string): Branch | undefined {
  const m = branchPattern.exec(text.trim());
  if (!m || (m[1] !== resourceType && m[1] !== 'Resource')) return undefined;
  if ((text.match(/\(/g) ?? []).length !== (text.match(/\)/g) ?? []).length) return undefined;
  const then = m[4] ? m[4].slice(1).split('.') : undefined;
  // Elements below a typed choice only, where nothing filters them, and each of them of one type
  // (not a choice: those are walked by their JSON keys only on the main path).
  if (then && (!m[3] || m[5] || m[6] !== undefined || !singleTyped(capitalize(m[3]), then))) return undefined;
  // The resource itself (a composite's expression "Observation").
  if (!m[2]) return m[3] || m[4] || m[5] || m[6] !== undefined ? undefined : { path: [], type: resourceType };
  const path = m[2].slice(1).split('.');
  let type = '';
  if (path.length === 1 && !m[3]) {
    const element = getDataType(m[1] === 'Resource' ? resourceType : m[1])?.elements?.[path[0]];
    const types = element?.type ?? [];
    if (types.length === 1) type = types[0].code;
  }
  return prepared(then ? { path, ofType: m[3], then, type } : { path, ofType: m[3], resolveIs: m[5], system: m[6], type });
}

/** Whether each element of `path` below the data type `type` exists with exactly one type. */
function singleTyped(type: string, path: string[]): boolean {
  let current = type;
  for (const seg of path) {
    const types = getDataType(current)?.elements?.[seg]?.type ?? [];
    if (types.length !== 1) return false;
    current = types[0].code;
  }
  return true;
}

/** Compiles an expression (branches joined by " | ") into a direct evaluator, or undefined. */
export function compileFastPath(resourceType: string, expression: string): FastPath | undefined {
  const branches: Branch[] = [];
  for (const text of expression.split(/\s+\|\s+/)) {
    const b = compileBranch(resourceType, text);
    if (!b) return undefined;
    branches.push(b);
  }
  return (resource) => {
    const out: TypedValue[] = [];
    for (const b of branches) evaluate(resource, b, out);
    return out;
  };
}

const relativePattern = /^([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)*)(?:\.ofType\(([A-Za-z]+)\))?$/;

/**
 * Compiles a path relative to an element (a composite component's expression, e.g. "code",
 * "value.ofType(DateTime) | value.ofType(Period)") into a direct evaluator, or undefined.
 */
export function compileRelativeFastPath(expression: string): FastPath | undefined {
  const branches: Branch[] = [];
  for (const text of expression.split(/\s+\|\s+/)) {
    const m = relativePattern.exec(text.trim());
    if (!m) return undefined;
    branches.push(prepared({ path: m[1].split('.'), ofType: m[2], type: '' }));
  }
  return (element) => {
    const out: TypedValue[] = [];
    for (const b of branches) evaluate(element, b, out);
    return out;
  };
}

/**
 * The branches of a plain-path expression as comparable keys ("code", "component.code",
 * "value.ofType(Quantity)"; "" for the resource itself), or undefined when some branch is not a
 * plain path or filters its values (where(...)). Relative to the resource for `resourceType`,
 * relative to an element when `resourceType` is undefined (a composite component's expression).
 * Two expressions with the same keys select the same values with the same types (indexer.ts
 * serves composite and union parameters from the rows of such parameters).
 */
export function branchKeys(resourceType: string | undefined, expression: string): string[] | undefined {
  const keys: string[] = [];
  for (const text of expression.split(/\s+\|\s+/)) {
    let b: Branch | undefined;
    if (resourceType === undefined) {
      const m = relativePattern.exec(text.trim());
      b = m ? { path: m[1].split('.'), ofType: m[2], type: '' } : undefined;
    } else {
      b = compileBranch(resourceType, text);
    }
    if (!b || b.resolveIs || b.system !== undefined || b.then) return undefined;
    keys.push(b.path.join('.') + (b.ofType ? `.ofType(${capitalize(b.ofType)})` : ''));
  }
  return keys;
}

/**
 * The branches of an expression whose every branch is a plain path filtered by target type
 * ("Observation.subject.where(resolve() is Patient)"), as branchKeys would give the paths without
 * the filter, and that one target type; undefined otherwise (indexer.ts serves such reference
 * parameters from the rows of the parameters with those keys).
 */
export function resolvedBranchKeys(resourceType: string, expression: string): { keys: string[]; targetType: string } | undefined {
  const keys: string[] = [];
  let targetType: string | undefined;
  for (const text of expression.split(/\s+\|\s+/)) {
    const b = compileBranch(resourceType, text);
    if (!b || !b.resolveIs || b.system !== undefined || b.path.length === 0 || b.then) return undefined;
    if (targetType !== undefined && targetType !== b.resolveIs) return undefined;
    targetType = b.resolveIs;
    keys.push(b.path.join('.') + (b.ofType ? `.ofType(${capitalize(b.ofType)})` : ''));
  }
  return targetType ? { keys, targetType } : undefined;
}

function evaluate(resource: Record<string, unknown>, b: Branch, out: TypedValue[]): void {
  // One element present under its own name (Observation.code, .subject, .status): its values
  // straight to `out`, without the arrays of the general walk below.
  if (b.path.length === 1 && !b.ofType && !b.then && resource !== null && typeof resource === 'object') {
    const v = resource[b.path[0]];
    if (v !== undefined) {
      if (Array.isArray(v)) for (const x of v) emit(b, b.type, x, out);
      else emit(b, b.type, v, out);
      return;
    }
  }
  let current: unknown[] = [resource];
  let type = b.type;
  for (let i = 0; i < b.path.length; i++) {
    const seg = b.path[i];
    const last = i === b.path.length - 1;
    const next: unknown[] = [];
    for (const node of current) {
      if (node === null || typeof node !== 'object') continue;
      const obj = node as Record<string, unknown>;
      if (last && b.ofType) {
        const v = obj[seg + b.ofTypeSuffix!];
        if (v !== undefined) push(next, v);
        type = b.ofType;
        continue;
      }
      const v = obj[seg];
      if (v !== undefined) {
        push(next, v);
        continue;
      }
      // A choice element: effective → effectiveDateTime / effectivePeriod ...
      for (const key of Object.keys(obj)) {
        if (key.length > seg.length && key.startsWith(seg) && key[seg.length] >= 'A' && key[seg.length] <= 'Z') {
          push(next, obj[key]);
          if (last) type = choiceType(key.slice(seg.length));
        }
      }
    }
    current = next;
    if (current.length === 0) return;
  }
  if (b.then) {
    for (const seg of b.then) {
      const next: unknown[] = [];
      for (const node of current) {
        if (node === null || typeof node !== 'object') continue;
        const v = (node as Record<string, unknown>)[seg];
        if (v !== undefined) push(next, v);
      }
      current = next;
      if (current.length === 0) return;
    }
    type = '';
  }
  for (const v of current) emit(b, type, v, out);
}

/** One value of a branch to `out`, unless its where(...) filter leaves it out. */
function emit(b: Branch, type: string, v: unknown, out: TypedValue[]): void {
  if (b.resolveIs) {
    const ref = (v as { reference?: unknown })?.reference;
    if (typeof ref !== 'string' || !b.resolvePattern!.test(ref)) return;
  }
  if (b.system !== undefined && (v as { system?: unknown })?.system !== b.system) return;
  out.push({ type, value: v });
}

function push(into: unknown[], v: unknown): void {
  if (Array.isArray(v)) for (const x of v) into.push(x);
  else into.push(v);
}
