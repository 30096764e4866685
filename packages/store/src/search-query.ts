// Parses a FHIR search query (name[:modifier][.chain] = value list) into validated filters and
// result options. Nothing here builds SQL: every name, modifier, type, sort and include is checked
// against the R4 SearchParameter definitions, so only known identifiers ever reach the SQL builder
// and values stay data. Problems throw 400 under strict handling, otherwise become warnings.
import type { SearchParameter } from '@medplum/fhirtypes';
import { badRequest, isKnownResourceType, searchParametersFor } from '@tic/fhir';
import { compiledParamsFor, compositeComponents } from './indexer.ts';
import { isNumber, splitOr, splitPipes, splitPrefix, searchDateRange } from './search-values.ts';

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;

export type Filter =
  | { kind: 'id'; values: string[]; not: boolean }
  | { kind: 'lastUpdated'; values: string[] }
  | { kind: 'param'; type: string; code: string; sp: SearchParameter; modifier?: string; values: string[] }
  | { kind: 'missing'; type: string; code: string; sp: SearchParameter; missing: boolean }
  | { kind: 'chain'; type: string; code: string; targets: Array<{ type: string; filter: Filter }> }
  | { kind: 'has'; type: string; sourceType: string; code: string; filter: Filter };

export interface SortKey {
  /** '_id', '_lastUpdated' or a search parameter code. */
  name: string;
  desc: boolean;
  sp?: SearchParameter;
}

export interface IncludeSpec {
  sourceType: string;
  code: string;
  targetType?: string;
  iterate: boolean;
  reverse: boolean;
}

export type SummaryMode = 'true' | 'false' | 'text' | 'data' | 'count';
export type TotalMode = 'none' | 'estimate' | 'accurate';

export interface ParsedQuery {
  type: string;
  filters: Filter[];
  count: number;
  offset: number;
  cursor?: string;
  sort: SortKey[];
  total?: TotalMode;
  include: IncludeSpec[];
  summary?: SummaryMode;
  elements?: string[];
  warnings: string[];
  /** [key, value] pairs that were applied, in query order (for the self link). */
  applied: Array<[string, string]>;
}

/** Result parameters that change the output but not the match set. */
const ignoredResultParams = new Set(['_format', '_pretty', '_contained', '_containedType']);
/** Medplum-internal parameters in the definitions that this server does not offer. */
const internalParams = new Set(['_compartment', '_project']);
/** Modifiers each parameter type accepts (besides :missing, and :Type for references). */
const modifiersByType: Record<string, Set<string>> = {
  token: new Set(['not', 'text', 'of-type']),
  string: new Set(['exact', 'contains']),
  reference: new Set(['identifier']),
  date: new Set(),
  number: new Set(),
  quantity: new Set(),
  uri: new Set(['below', 'above']),
};
const NAME = /^[A-Za-z_][A-Za-z0-9_\-]*$/;

export function searchParam(type: string, code: string): SearchParameter | undefined {
  const params = searchParametersFor(type);
  if (!Object.hasOwn(params, code) || internalParams.has(code)) return undefined;
  return params[code];
}

function referenceTargets(sp: SearchParameter): string[] {
  return (sp.target ?? []).filter((t) => isKnownResourceType(t));
}

/** Parses one filter key (without chain prefix handled by the caller) for `type`. Throws 400. */
export function parseFilter(type: string, key: string, value: string, depth = 0): Filter {
  if (key.startsWith('_has:')) return parseHas(type, key, value, depth);
  const dot = key.indexOf('.');
  if (dot >= 0) return parseChain(type, key.slice(0, dot), key.slice(dot + 1), value, depth);
  const colon = key.indexOf(':');
  const code = colon >= 0 ? key.slice(0, colon) : key;
  const modifier = colon >= 0 ? key.slice(colon + 1) : undefined;
  if (!NAME.test(code)) throw badRequest(`Invalid search parameter name`);
  if (code === '_id') {
    if (modifier && modifier !== 'not' && modifier !== 'missing') throw badRequest(`Unsupported modifier on _id`);
    if (modifier === 'missing') return { kind: 'id', values: [], not: value === 'true' };
    const values = splitOr(value).filter((v) => v !== '');
    if (values.length === 0) throw badRequest(`Empty value for _id`);
    return { kind: 'id', values, not: modifier === 'not' };
  }
  if (code === '_lastUpdated') {
    if (modifier) throw badRequest(`Unsupported modifier on _lastUpdated`);
    const values = splitOr(value);
    for (const v of values) {
      const [prefix, d] = splitPrefix(v);
      if (!searchDateRange(prefix, d)) throw badRequest(`Invalid date value for _lastUpdated`);
    }
    return { kind: 'lastUpdated', values };
  }
  const sp = searchParam(type, code);
  if (!sp) throw badRequest(`Unknown search parameter "${code}" for ${type}`);
  if (sp.type === 'composite' || sp.type === 'special') return parseCompositeOrNear(type, code, sp, modifier, value);
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw badRequest(`:missing takes true or false`);
    return { kind: 'missing', type, code, sp, missing: value === 'true' };
  }
  if (modifier !== undefined) {
    const typeModifier = sp.type === 'reference' && isKnownResourceType(modifier);
    if (typeModifier) {
      const targets = referenceTargets(sp);
      if (targets.length > 0 && !targets.includes(modifier)) throw badRequest(`${code} cannot refer to ${modifier}`);
    } else if (!modifiersByType[sp.type]?.has(modifier)) {
      throw badRequest(`Unsupported modifier on ${code} (${sp.type})`);
    }
  }
  const values = splitOr(value);
  for (const v of values) validateValue(code, sp, modifier, v);
  return { kind: 'param', type, code, sp, modifier, values };
}

/**
 * Composite values are "part$part…" (each part in its component's own syntax, e.g.
 * `http://loinc.org|8480-6$gt100`); `near` is "latitude|longitude|distance|units". Values are
 * checked here so the SQL builder only sees well-formed ones. No modifiers (not even :missing).
 */
function parseCompositeOrNear(type: string, code: string, sp: SearchParameter, modifier: string | undefined, value: string): Filter {
  if (!compiledParamsFor(type).some((p) => p.code === code)) throw badRequest(`Search parameter ${code} (${sp.type}) is not supported`);
  if (modifier !== undefined) throw badRequest(`Unsupported modifier on ${code} (${sp.type})`);
  if (sp.type === 'special') {
    const values = splitOr(value);
    for (const v of values) parseNear(v);
    return { kind: 'param', type, code, sp, values };
  }
  const components = compositeComponents(type, sp)!;
  const values = splitUnescaped(value, ',');
  for (const v of values) {
    const parts = compositeParts(v);
    if (parts.length !== components.length) throw badRequest(`${code} needs ${components.length} parts separated by $`);
    parts.forEach((part, i) => validateValue(code, components[i], undefined, part));
  }
  return { kind: 'param', type, code, sp, values };
}

/** Splits on unescaped `sep`, keeping every escape for the next step. */
function splitUnescaped(value: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      cur += c + value[++i];
    } else if (c === sep) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** The parts of one composite value (escapes resolved as for any value: `\$`, `\,`, `\\`; `\|` kept). */
export function compositeParts(value: string): string[] {
  return splitUnescaped(value, '$').map((p) => splitOr(p)[0]);
}

export const NEAR_DEFAULT_KM = 5;
const KM_PER_UNIT: Record<string, number> = { km: 1, m: 0.001, mi: 1.609344, '[mi_i]': 1.609344 };

/** A `near` value: latitude|longitude[|distance[|units]] (units km, m, mi or [mi_i]; default 5 km). */
export function parseNear(value: string): { lat: number; long: number; km: number } {
  const parts = splitPipes(value);
  const [lat, long, distance, units] = parts;
  const dec = /^[-+]?\d+(\.\d+)?$/;
  if (parts.length < 2 || parts.length > 4 || !dec.test(lat) || !dec.test(long)) throw badRequest(`near needs latitude|longitude[|distance[|units]]`);
  if (Math.abs(Number(lat)) > 90 || Math.abs(Number(long)) > 180) throw badRequest(`near: latitude or longitude out of range`);
  let km = NEAR_DEFAULT_KM;
  if (distance !== undefined && distance !== '') {
    const [prefix, d] = splitPrefix(distance);
    if ((prefix !== 'eq' && prefix !== 'le' && prefix !== 'lt') || !/^\d+(\.\d+)?$/.test(d)) throw badRequest(`near: invalid distance`);
    const factor = KM_PER_UNIT[units === undefined || units === '' ? 'km' : units];
    if (factor === undefined) throw badRequest(`near: distance units must be km, m, mi or [mi_i]`);
    km = Number(d) * factor;
  } else if (units !== undefined && units !== '' && KM_PER_UNIT[units] === undefined) {
    throw badRequest(`near: distance units must be km, m, mi or [mi_i]`);
  }
  return { lat: Number(lat), long: Number(long), km };
}

function validateValue(code: string, sp: SearchParameter, modifier: string | undefined, v: string): void {
  switch (sp.type) {
    case 'date': {
      const [prefix, d] = splitPrefix(v);
      if (!searchDateRange(prefix, d)) throw badRequest(`Invalid date value for ${code}`);
      return;
    }
    case 'number': {
      const [, n] = splitPrefix(v);
      if (!isNumber(n)) throw badRequest(`Invalid number for ${code}`);
      return;
    }
    case 'quantity': {
      const [, rest] = splitPrefix(v);
      const parts = splitPipes(rest);
      if (!isNumber(parts[0]) || parts.length > 3) throw badRequest(`Invalid quantity for ${code}`);
      return;
    }
    case 'token':
      if (modifier === 'of-type' && splitPipes(v).length !== 3) throw badRequest(`${code}:of-type needs system|code|value`);
      if (v === '' || v === '|') throw badRequest(`Empty token value for ${code}`);
      return;
    case 'string':
    case 'uri':
      if (v === '') throw badRequest(`Empty value for ${code}`);
      return;
    case 'reference':
      if (v === '') throw badRequest(`Empty reference for ${code}`);
      return;
    default:
      return;
  }
}

function parseChain(type: string, head: string, rest: string, value: string, depth: number): Filter {
  if (depth > 0) throw badRequest(`Chains of more than one level are not supported`);
  const [code, typeModifier, extra] = head.split(':');
  if (extra !== undefined || !NAME.test(code)) throw badRequest(`Invalid chained parameter`);
  const sp = searchParam(type, code);
  if (!sp || sp.type !== 'reference') throw badRequest(`Chained parameter ${code} is not a reference parameter of ${type}`);
  const declared = referenceTargets(sp);
  let candidates: string[];
  if (typeModifier !== undefined) {
    if (!isKnownResourceType(typeModifier) || (declared.length > 0 && !declared.includes(typeModifier))) throw badRequest(`${code} cannot refer to that type`);
    candidates = [typeModifier];
  } else {
    candidates = declared;
  }
  const innerCode = rest.split(/[:.]/, 1)[0];
  const fits = candidates.filter((t) => innerCode === '_id' || innerCode === '_lastUpdated' || innerCode === '_has' || !!searchParam(t, innerCode));
  if (fits.length === 0) throw badRequest(`No target of ${code} has a search parameter ${innerCode}; name the type as ${code}:Type`);
  const targets = fits.map((t) => ({ type: t, filter: parseFilter(t, rest, value, depth + 1) }));
  return { kind: 'chain', type, code, targets };
}

function parseHas(type: string, key: string, value: string, depth: number): Filter {
  if (depth > 1) throw badRequest(`_has nested too deeply`);
  const parts = key.split(':');
  if (parts.length < 4) throw badRequest(`_has needs _has:Type:reference:parameter`);
  const [, sourceType, code] = parts;
  if (!isKnownResourceType(sourceType)) throw badRequest(`Unknown resource type in _has`);
  const sp = searchParam(sourceType, code);
  if (!sp || sp.type !== 'reference') throw badRequest(`_has: ${code} is not a reference parameter of ${sourceType}`);
  const targets = referenceTargets(sp);
  if (targets.length > 0 && !targets.includes(type)) throw badRequest(`_has: ${sourceType}.${code} cannot refer to ${type}`);
  const filter = parseFilter(sourceType, parts.slice(3).join(':'), value, depth + 1);
  return { kind: 'has', type, sourceType, code, filter };
}

function parseSort(type: string, value: string): SortKey[] {
  return value
    .split(',')
    .filter(Boolean)
    .map((s) => {
      const desc = s.startsWith('-');
      const name = desc ? s.slice(1) : s;
      if (name === '_id' || name === '_lastUpdated') return { name, desc };
      const sp = NAME.test(name) ? searchParam(type, name) : undefined;
      if (!sp || sp.type === 'composite' || sp.type === 'special') throw badRequest(`Cannot sort by "${name}"`);
      return { name, desc, sp };
    });
}

export function parseInclude(value: string, modifier: string | undefined, reverse: boolean, baseType: string): IncludeSpec {
  if (modifier !== undefined && modifier !== 'iterate' && modifier !== 'recurse') throw badRequest(`Unsupported modifier on _include`);
  const iterate = modifier === 'iterate' || modifier === 'recurse';
  const parts = value.split(':');
  if (parts.length < 2 || parts.length > 3) throw badRequest(`_include needs Type:parameter[:targetType]`);
  const [sourceType, code, targetType] = parts;
  if (!isKnownResourceType(sourceType)) throw badRequest(`Unknown resource type in include`);
  if (!reverse && !iterate && sourceType !== baseType) throw badRequest(`_include source type must be ${baseType}`);
  if (code !== '*') {
    const sp = searchParam(sourceType, code);
    if (!sp || sp.type !== 'reference') throw badRequest(`${sourceType}:${code} is not a reference parameter`);
    if (targetType !== undefined) {
      const targets = referenceTargets(sp);
      if (!isKnownResourceType(targetType) || (targets.length > 0 && !targets.includes(targetType))) throw badRequest(`Invalid include target type`);
    }
  } else if (targetType !== undefined && !isKnownResourceType(targetType)) {
    throw badRequest(`Invalid include target type`);
  }
  return { sourceType, code, targetType, iterate, reverse };
}

function nonNegativeInt(value: string): number | undefined {
  if (!/^\d{1,9}$/.test(value)) return undefined;
  return Number(value);
}

/** Parses a whole query for resource type `type`. */
export function parseQuery(type: string, query: Record<string, string[]>, strict = false): ParsedQuery {
  if (!isKnownResourceType(type)) throw badRequest(`Unknown resource type`);
  const out: ParsedQuery = { type, filters: [], count: DEFAULT_COUNT, offset: 0, sort: [], include: [], warnings: [], applied: [] };
  const fail = (e: unknown) => {
    if (strict) throw e;
    out.warnings.push(e instanceof Error ? e.message : String(e));
  };
  for (const key of Object.keys(query)) {
    const values = query[key];
    if (!Array.isArray(values)) continue;
    const colon = key.indexOf(':');
    const name = colon >= 0 && !key.startsWith('_has:') ? key.slice(0, colon) : key;
    const modifier = colon >= 0 && !key.startsWith('_has:') ? key.slice(colon + 1) : undefined;
    for (const value of values) {
      if (typeof value !== 'string') continue;
      try {
        if (name === '_count') {
          const n = nonNegativeInt(value);
          if (n === undefined) throw badRequest(`_count must be a non-negative integer`);
          out.count = Math.min(n, MAX_COUNT);
          out.applied.push([key, String(out.count)]);
        } else if (name === '_offset') {
          const n = nonNegativeInt(value);
          if (n === undefined) throw badRequest(`_offset must be a non-negative integer`);
          out.offset = n;
        } else if (name === '_cursor') {
          if (!/^[A-Za-z0-9_-]{1,4000}$/.test(value)) throw badRequest(`Invalid _cursor`);
          out.cursor = value;
        } else if (name === '_sort') {
          out.sort.push(...parseSort(type, value));
          out.applied.push([key, value]);
        } else if (name === '_include' || name === '_revinclude') {
          out.include.push(parseInclude(value, modifier, name === '_revinclude', type));
          out.applied.push([key, value]);
        } else if (name === '_total') {
          if (value !== 'none' && value !== 'estimate' && value !== 'accurate') throw badRequest(`_total must be none, estimate or accurate`);
          out.total = value;
          out.applied.push([key, value]);
        } else if (name === '_summary') {
          if (!['true', 'false', 'text', 'data', 'count'].includes(value)) throw badRequest(`_summary must be true, false, text, data or count`);
          out.summary = value as SummaryMode;
          out.applied.push([key, value]);
        } else if (name === '_elements') {
          const els = value.split(',').map((s) => s.trim()).filter(Boolean);
          if (els.some((e) => !/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)?$/.test(e))) throw badRequest(`Invalid _elements`);
          out.elements = [...(out.elements ?? []), ...els];
          out.applied.push([key, value]);
        } else if (ignoredResultParams.has(name)) {
          // Presentation parameters handled by the REST layer (or not at all); not part of the match.
        } else {
          out.filters.push(parseFilter(type, key, value));
          out.applied.push([key, value]);
        }
      } catch (e) {
        fail(e);
      }
    }
  }
  if (out.cursor !== undefined && out.offset > 0) fail(badRequest(`_cursor and _offset cannot be combined`));
  return out;
}
