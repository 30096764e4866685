// Turns a resource into search-index rows, one set per index table, by evaluating each standard
// R4 SearchParameter's FHIRPath expression. Expressions are compiled once per resource type.
import { evalFhirPathTyped, parseFhirPath, toTypedValue } from '@medplum/core';
import type { FhirPathAtom, TypedValue } from '@medplum/core';
import type { Resource, SearchParameter } from '@medplum/fhirtypes';
import { searchParametersFor } from '@tic/fhir';
import { branchKeys, compileFastPath, compileRelativeFastPath, resolvedBranchKeys } from './fast-path.ts';
import type { FastPath } from './fast-path.ts';

/** Rows per index table; the optional last element `grp` groups the parts of one composite match. */
export interface IndexRows {
  token: Array<[code: string, system: string | null, value: string | null, display: string | null, grp?: number]>;
  string: Array<[code: string, value: string, norm: string, grp?: number]>;
  reference: Array<[code: string, targetType: string | null, targetId: string | null, reference: string, grp?: number]>;
  date: Array<[code: string, low: string, high: string, grp?: number]>;
  number: Array<[code: string, value: string, grp?: number]>;
  quantity: Array<[code: string, value: string, system: string | null, unit: string | null, grp?: number]>;
  uri: Array<[code: string, value: string, grp?: number]>;
}

export type IndexTable = keyof IndexRows;

interface CompiledParam {
  code: string;
  type: SearchParameter['type'];
  atom: FhirPathAtom;
  /** A direct evaluator when the expression is a plain element path (fast-path.ts). */
  fast?: FastPath;
  /**
   * Top-level elements the expression starts from ("effective" for Observation.effective); the
   * expression is skipped when the resource has none of them. Undefined: always evaluate.
   */
  roots?: string[];
  /**
   * Composite parameters: each component's type, its FHIRPath relative to one match of `atom`,
   * and the index code its rows are stored under ("<code>$<i>").
   */
  components?: CompiledComponent[];
  /**
   * A union of other parameters (combo-code = code | component-code): no rows of its own, searched
   * as the rows of these codes (indexCodes).
   */
  union?: string[];
  /**
   * A composite served from its components' own parameters (compositeBranches): no part rows of
   * its own. One entry per branch of its expression.
   */
  fromBase?: CompositeBranch[];
  /**
   * A reference parameter that is other reference parameters' values filtered by target type
   * (Observation.patient = Observation.subject.where(resolve() is Patient)): no sp_reference rows
   * of its own, searched as the rows of `codes` whose target_type is `targetType`
   * (referenceIndex). Its `:identifier` token rows are still written.
   */
  fromReferences?: ReferenceIndex;
  /**
   * Indexed once per match of this element path (e.g. "component" for component-code), the rows
   * of each match numbered by `grp`, so a composite over the element joins its parts on grp.
   */
  group?: { match: FastPath; matchAtom: FhirPathAtom; relative: FastPath; relativeAtom: FhirPathAtom };
}

/**
 * One branch of a composite served from base rows: `grouped` false when the branch is the
 * resource itself (its parts are the resource's rows of `codes`, one each), true when it is an
 * element such as Observation.component (the parts' rows share a grp number: one element).
 */
/**
 * Where a reference parameter's sp_reference rows are: under its own code, or (a derived
 * parameter) under `codes` restricted to target_type = `targetType`.
 */
export interface ReferenceIndex {
  codes: string[];
  targetType?: string;
}

export interface CompositeBranch {
  grouped: boolean;
  codes: string[];
}

interface CompiledComponent {
  code: string;
  type: SearchParameter['type'];
  atom: FhirPathAtom;
  /** A direct evaluator of the component's path relative to one match (fast-path.ts). */
  fast?: FastPath;
}

/** Index codes of Location.near's coordinates (sp_number rows; one position per Location). */
export const NEAR_LAT = 'near:lat';
export const NEAR_LONG = 'near:long';

/** The index code of part `i` of composite parameter `code`. */
export function compositePartCode(code: string, i: number): string {
  return `${code}$${i}`;
}

/** The search parameters of a composite's components, by the component definitions; undefined if any is unknown. */
export function compositeComponents(type: string, sp: SearchParameter): SearchParameter[] | undefined {
  if (sp.type !== 'composite' || !sp.component?.length) return undefined;
  const byUrl = new Map(Object.values(searchParametersFor(type)).map((p) => [p.url, p]));
  const out: SearchParameter[] = [];
  for (const c of sp.component) {
    const def = c.definition ? byUrl.get(c.definition) : undefined;
    if (!def || def.type === 'composite' || def.type === 'special' || !c.expression) return undefined;
    out.push(def);
  }
  return out;
}

/** Columns held on the resource row itself, not in index tables. */
// _compartment and _project are Medplum-internal additions to the R4 set; not part of this server.
const columnParams = new Set(['_id', '_lastUpdated', '_compartment', '_project']);
/** Special parameters with an implementation here (the only R4 one: Location.near). */
const supportedSpecial = new Set(['Location.near']);

const compiled = new Map<string, CompiledParam[]>();
const expressions = new Map<CompiledParam, string>();
const componentExpressions = new Map<CompiledComponent, string>();

function relevantExpression(type: string, expression: string): string | undefined {
  // Multi-resource parameters have unions such as "AllergyIntolerance.code | Condition.code".
  // Keep only this type's branches so evaluation does no wasted work.
  const parts = expression.split(/\s+\|\s+/).filter((p) => {
    const head = p.replace(/^\(+/, '');
    return head.startsWith(type + '.') || head.startsWith('Resource.') || head.startsWith(type + ' ') || head === type;
  });
  return parts.length > 0 ? parts.join(' | ') : undefined;
}

/** The top-level element names every branch of `expr` starts from, if all branches are plain paths. */
function expressionRoots(type: string, expr: string): string[] | undefined {
  const roots: string[] = [];
  for (const branch of expr.split(/\s+\|\s+/)) {
    const m = new RegExp(`^\\(*(?:${type}|Resource)\\.([a-z][A-Za-z0-9]*)`).exec(branch);
    if (!m) return undefined;
    roots.push(m[1]);
  }
  return roots;
}

function hasRoot(present: Set<string>, roots: string[]): boolean {
  for (const root of roots) if (present.has(root)) return true;
  return false;
}

/**
 * The names a parameter's root matches in a resource: each top-level key, and each of its prefixes
 * that an upper-case letter follows (a choice element appears as root + type name: effective →
 * effectiveDateTime). Made once per resource instead of comparing every key with every root.
 */
function presentRoots(resource: Record<string, unknown>): Set<string> {
  const present = new Set<string>();
  for (const key in resource) {
    present.add(key);
    for (let i = 1; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c >= 65 && c <= 90) present.add(key.slice(0, i));
    }
  }
  return present;
}

export function compiledParamsFor(type: string): CompiledParam[] {
  let list = compiled.get(type);
  if (list) return list;
  list = [];
  for (const [code, sp] of Object.entries(searchParametersFor(type))) {
    if (columnParams.has(code) || !sp.expression) continue;
    if (sp.type === 'special' && !supportedSpecial.has(`${type}.${code}`)) continue;
    const expr = relevantExpression(type, sp.expression);
    if (!expr) continue;
    try {
      const param: CompiledParam = { code, type: sp.type, atom: parseFhirPath(expr), roots: expressionRoots(type, expr) };
      if (sp.type !== 'special') param.fast = compileFastPath(type, expr);
      if (sp.type === 'composite') {
        const defs = compositeComponents(type, sp);
        if (!defs) continue;
        param.components = defs.map((d, i) => {
          const expression = sp.component![i].expression;
          const component: CompiledComponent = { code: compositePartCode(code, i), type: d.type, atom: parseFhirPath(expression), fast: compileRelativeFastPath(expression) };
          componentExpressions.set(component, expression);
          return component;
        });
        // Both the matches and every part direct, or none: a part's path is relative to a match.
        if (!param.fast || param.components.some((c) => !c.fast)) {
          delete param.fast;
          for (const c of param.components) delete c.fast;
        }
      }
      list.push(param);
      expressions.set(param, expr);
    } catch {
      // An expression the FHIRPath engine cannot parse is skipped rather than failing writes.
    }
  }
  planDerived(type, list, expressions);
  compiled.set(type, list);
  return list;
}

/**
 * Parameters whose rows would repeat other parameters' rows are not stored (a PCL-5 item
 * Observation had 22 token rows, 12 of them copies: docs/search-plans.md "Composite and union
 * parameters from base rows"):
 * - a union (combo-code = Observation.code | Observation.component.code) whose branches are
 *   exactly the branches of other parameters of its type is searched as their rows;
 * - a composite whose parts, for every branch of its expression, are exactly other parameters
 *   (code-value-concept: the Observation's code and value-concept rows; component-code-value-…:
 *   component-code and component-value-… rows of one component) is searched from those rows, the
 *   element-level ones indexed per element with a grp number;
 * - a reference parameter whose every branch is another reference parameter's branch filtered by
 *   target type (Observation.patient = Observation.subject.where(resolve() is Patient)) is
 *   searched as those parameters' rows with that target_type (referenceIndex; every reader of
 *   sp_reference by code goes through it: docs/search-plans.md "Reference parameters from base
 *   rows", migration 13).
 * Only plain-path expressions are compared (fast-path.ts branchKeys: same keys, same values and
 * types). Reference unions and date parameters under an element (their hull rows,
 * DATE_HULL_GRP) are left as they are.
 */
function planDerived(type: string, list: CompiledParam[], expressions: Map<CompiledParam, string>): void {
  const keysOf = new Map<CompiledParam, string[]>();
  for (const p of list) {
    if (p.components || p.type === 'special' || !p.fast) continue;
    const keys = branchKeys(type, expressions.get(p)!);
    if (keys) keysOf.set(p, [...new Set(keys)]);
  }
  const unions = new Set<CompiledParam>();
  const byWidth = [...keysOf].sort((a, b) => a[1].length - b[1].length);
  for (const [p, keys] of byWidth) {
    if (keys.length < 2 || p.type === 'reference' || p.type === 'date') continue;
    const candidates = byWidth
      .filter(([q, qk]) => q !== p && q.type === p.type && !unions.has(q) && qk.every((k) => keys.includes(k)))
      .sort((a, b) => b[1].length - a[1].length);
    const chosen: CompiledParam[] = [];
    const covered = new Set<string>();
    for (const [q, qk] of candidates) {
      if (qk.some((k) => covered.has(k))) continue;
      chosen.push(q);
      for (const k of qk) covered.add(k);
    }
    if (chosen.length >= 2 && covered.size === keys.length) {
      p.union = chosen.map((q) => q.code);
      unions.add(p);
    }
  }
  // A reference parameter whose every branch is another reference parameter's branch filtered by
  // target type (patient = subject.where(resolve() is Patient); AuditEvent.patient = agent.who… |
  // entity.what… filtered): the rows of those parameters with that target type (fast-path.ts
  // evaluates where(resolve() is T) as a local "T/id" reference, which is what target_type T is).
  for (const p of list) {
    if (p.type !== 'reference' || !p.fast) continue;
    const resolved = resolvedBranchKeys(type, expressions.get(p)!);
    if (!resolved) continue;
    const keys = [...new Set(resolved.keys)];
    const candidates = byWidth
      .filter(([q, qk]) => q !== p && q.type === 'reference' && qk.every((k) => keys.includes(k)))
      .sort((a, b) => b[1].length - a[1].length);
    const codes: string[] = [];
    const covered = new Set<string>();
    for (const [q, qk] of candidates) {
      if (qk.some((k) => covered.has(k))) continue;
      codes.push(q.code);
      for (const k of qk) covered.add(k);
    }
    if (codes.length > 0 && covered.size === keys.length) p.fromReferences = { codes, targetType: resolved.targetType };
  }
  // add() writes no quantity row for SampledData (it has no value): such branches add nothing.
  const effective = (t: string, keys: string[]) => (t === 'quantity' ? keys.filter((k) => !k.endsWith('ofType(SampledData)')) : keys);
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((k) => b.includes(k));
  const groupOf = new Map<CompiledParam, string>();
  for (const p of list) {
    if (!p.components) continue;
    const matches = branchKeys(type, expressions.get(p)!);
    const parts = p.components.map((c) => branchKeys(undefined, componentExpressions.get(c)!));
    if (!matches || parts.some((k) => !k) || matches.some((m) => m.includes('ofType'))) continue;
    const branches: CompositeBranch[] = [];
    const groups = new Map<CompiledParam, string>();
    for (const m of new Set(matches)) {
      const codes: string[] = [];
      p.components.forEach((c, i) => {
        const wanted = effective(c.type, [...new Set(parts[i]!.map((k) => (m ? `${m}.${k}` : k)))]);
        for (const [q, qk] of keysOf) {
          if (unions.has(q) || q.type !== c.type || (m && q.type === 'date')) continue;
          if (!same(effective(q.type, qk), wanted) || wanted.length === 0) continue;
          if (m && (groupOf.get(q) ?? groups.get(q) ?? m) !== m) continue;
          codes.push(q.code);
          if (m) groups.set(q, m);
          return;
        }
      });
      if (codes.length !== p.components.length) break;
      branches.push({ grouped: m !== '', codes });
    }
    if (branches.length !== new Set(matches).size) continue;
    p.fromBase = branches;
    for (const [q, m] of groups) groupOf.set(q, m);
  }
  for (const [q, m] of groupOf) {
    const relative = keysOf.get(q)!.map((k) => k.slice(m.length + 1)).join(' | ');
    const match = compileFastPath(type, `${type}.${m}`);
    const rel = compileRelativeFastPath(relative);
    if (!match || !rel) throw new Error(`indexer: cannot group ${type}.${q.code} by ${m}`);
    q.group = { match, matchAtom: parseFhirPath(`${type}.${m}`), relative: rel, relativeAtom: parseFhirPath(relative) };
  }
}

/** The index codes a parameter's rows are stored under: its own, or the parameters it is the union of. */
export function indexCodes(type: string, code: string): string[] {
  return compiledParamsFor(type).find((p) => p.code === code)?.union ?? [code];
}

/** Where a reference parameter's rows are (its own code, or other codes' rows of one target type). */
export function referenceIndex(type: string, code: string): ReferenceIndex {
  return compiledParamsFor(type).find((p) => p.code === code)?.fromReferences ?? { codes: [code] };
}

const referenceRowCodes = new Map<string, string[]>();

/**
 * Every code the sp_reference rows of `type` are stored under: its reference parameters that have
 * rows of their own (not the derived ones, referenceIndex) and the reference parts of composites
 * stored as part rows (DocumentReference.relationship$0). For `_revinclude=Type:*`, which reads
 * all of them: with the codes stated, sp_reference_target_updated_idx (resource_type, code,
 * target_id, …) serves it (migration 29 dropped the (target_type, target_id, code) index).
 */
export function storedReferenceCodes(type: string): string[] {
  let codes = referenceRowCodes.get(type);
  if (!codes) {
    codes = [];
    for (const p of compiledParamsFor(type)) {
      if (p.type === 'reference' && !p.fromReferences && !p.union) codes.push(p.code);
      if (p.components && !p.fromBase) for (const c of p.components) if (c.type === 'reference') codes.push(c.code);
    }
    referenceRowCodes.set(type, codes);
  }
  return codes;
}

/** How a composite is searched from its components' own rows, or undefined (its own part rows). */
export function compositeBranches(type: string, code: string): CompositeBranch[] | undefined {
  return compiledParamsFor(type).find((p) => p.code === code)?.fromBase;
}

const ASCII = /^[\x00-\x7f]*$/;

export function normalizeString(s: string): string {
  // ASCII has nothing to decompose (NFD leaves it as is): only the case to fold.
  if (ASCII.test(s)) return s.toLowerCase();
  return s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();
}

const DAY = 86_400_000;

// The ranges of recent values: the Observations of one response, or a bulk load, repeat a few.
const recentRanges = new Map<string, readonly [string, string] | undefined>();
const MAX_RECENT_RANGES = 512;

/** The [low, high) instant range a FHIR date/dateTime/instant denotes, by its precision. */
export function dateRange(value: string): [string, string] | undefined {
  let r = recentRanges.get(value);
  if (r === undefined && !recentRanges.has(value)) {
    r = computeDateRange(value);
    if (recentRanges.size >= MAX_RECENT_RANGES) recentRanges.clear();
    recentRanges.set(value, r);
  }
  return r ? [r[0], r[1]] : undefined;
}

function computeDateRange(value: string): [string, string] | undefined {
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  if (!mo) return [iso(Date.UTC(year, 0, 1)), iso(Date.UTC(year + 1, 0, 1))];
  const month = Number(mo) - 1;
  if (!d) return [iso(Date.UTC(year, month, 1)), iso(Date.UTC(year, month + 1, 1))];
  const day = Number(d);
  if (!h) {
    const start = Date.UTC(year, month, day);
    return [iso(start), iso(start + DAY)];
  }
  const offsetMs = tz && tz !== 'Z' ? (tz[0] === '-' ? -1 : 1) * (Number(tz.slice(1, 3)) * 60 + Number(tz.slice(4, 6))) * 60_000 : 0;
  const base = Date.UTC(year, month, day, Number(h), Number(mi), s ? Number(s) : 0) - offsetMs;
  if (!s) return [iso(base), iso(base + 60_000)];
  const ms = frac ? Math.floor(Number(frac) * 1000) : 0;
  const step = frac ? 1 : 1000;
  return [iso(base + ms), iso(base + ms + step)];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Splits a reference string into its target type and id when it points at a FHIR resource. */
export function parseReference(ref: string): { type?: string; id?: string } {
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
  return m ? { type: m[1], id: m[2] } : {};
}

function add(rows: IndexRows, code: string, type: string, tv: TypedValue): void {
  const v = tv.value as any;
  if (v === undefined || v === null) return;
  switch (type) {
    case 'token':
      addToken(rows, code, tv.type, v);
      return;
    case 'string':
      addString(rows, code, tv.type, v);
      return;
    case 'reference':
      if (typeof v === 'string') {
        addReference(rows, code, v);
      } else if (typeof v === 'object') {
        if (typeof v.reference === 'string') addReference(rows, code, v.reference);
        if (v.identifier?.value) rows.token.push([`${code}:identifier`, v.identifier.system ?? null, v.identifier.value, null]);
      }
      return;
    case 'date':
      addDate(rows, code, v);
      return;
    case 'number':
      if (typeof v === 'number') rows.number.push([code, String(v)]);
      else if (typeof v?.value === 'number') rows.number.push([code, String(v.value)]);
      return;
    case 'quantity':
      if (typeof v === 'object' && typeof v.value === 'number') rows.quantity.push([code, String(v.value), v.system ?? null, v.code ?? v.unit ?? null]);
      else if (typeof v === 'number') rows.quantity.push([code, String(v), null, null]);
      return;
    case 'uri':
      if (typeof v === 'string') rows.uri.push([code, v]);
      return;
    default:
      return;
  }
}

/**
 * A local reference ("Patient/1", "Patient/1/_history/2") is stored as target type + id, which
 * _include, chains and _has join on. An absolute URL or canonical ("http://x/Questionnaire/q|2")
 * is stored with no target type and target_id = the URL without its |version, so it can be
 * searched by URL through the same index but never joins to a local resource.
 */
function addReference(rows: IndexRows, code: string, ref: string): void {
  if (/^[a-z][a-z0-9+.-]*:/i.test(ref)) {
    const bar = ref.indexOf('|');
    rows.reference.push([code, null, bar < 0 ? ref : ref.slice(0, bar), ref]);
    return;
  }
  const { type, id } = parseReference(ref);
  rows.reference.push([code, type ?? null, id ?? null, ref]);
}

function addToken(rows: IndexRows, code: string, dataType: string, v: any): void {
  if (typeof v === 'string' || typeof v === 'number') {
    rows.token.push([code, null, String(v), null]);
  } else if (typeof v === 'boolean') {
    rows.token.push([code, null, String(v), null]);
  } else if (dataType === 'CodeableConcept' || Array.isArray(v.coding) || typeof v.text === 'string') {
    const displays: Array<string | null> = [];
    for (const c of v.coding ?? []) {
      if (!c?.code && !c?.display) continue;
      const display = textOf(c.display);
      displays.push(display);
      rows.token.push([code, c.system ?? null, c.code ?? null, display]);
    }
    // The text's own row serves only :text, which reads every display of the parameter's rows: none
    // when a coding's display already says the same (an answer "Moderately" coded "Moderately").
    if (typeof v.text === 'string') {
      const text = textOf(v.text);
      if (text === null || !displays.includes(text)) rows.token.push([code, null, null, text]);
    }
  } else if (dataType === 'Identifier' || (v.value !== undefined && (v.system !== undefined || v.type !== undefined || v.use !== undefined))) {
    if (v.value !== undefined || v.system !== undefined) rows.token.push([code, v.system ?? null, v.value ?? null, textOf(v.type?.text)]);
    for (const t of v.type?.coding ?? []) {
      if (t?.code && v.value) rows.token.push([`${code}:of-type`, `${t.system ?? ''}|${t.code}`, v.value, null]);
    }
  } else if (dataType === 'ContactPoint') {
    if (v.value) rows.token.push([code, v.system ?? null, v.value, null]);
  } else if (v.code !== undefined || v.system !== undefined) {
    rows.token.push([code, v.system ?? null, v.code ?? null, textOf(v.display)]);
  } else if (v.value !== undefined) {
    rows.token.push([code, null, String(v.value), null]);
  }
}

/** Token display text is stored normalised (lower case, no accents): it only serves :text search. */
function textOf(s: unknown): string | null {
  return typeof s === 'string' && s.length > 0 ? normalizeString(s) : null;
}

function pushString(rows: IndexRows, code: string, s: unknown): void {
  if (typeof s === 'string' && s.length > 0) rows.string.push([code, s, normalizeString(s)]);
}

function addString(rows: IndexRows, code: string, dataType: string, v: any): void {
  if (typeof v === 'string') return pushString(rows, code, v);
  if (typeof v !== 'object') return;
  if (dataType === 'HumanName' || v.family !== undefined || v.given !== undefined) {
    pushString(rows, code, v.family);
    for (const g of v.given ?? []) pushString(rows, code, g);
    for (const p of v.prefix ?? []) pushString(rows, code, p);
    for (const p of v.suffix ?? []) pushString(rows, code, p);
    pushString(rows, code, v.text);
    return;
  }
  if (dataType === 'Address' || v.city !== undefined || v.line !== undefined || v.postalCode !== undefined) {
    for (const l of v.line ?? []) pushString(rows, code, l);
    for (const k of ['city', 'district', 'state', 'postalCode', 'country', 'text']) pushString(rows, code, v[k]);
    return;
  }
  pushString(rows, code, v.text ?? v.value ?? v.display);
}

function addDate(rows: IndexRows, code: string, v: any): void {
  if (typeof v === 'string') {
    const r = dateRange(v);
    if (r) rows.date.push([code, r[0], r[1]]);
    return;
  }
  if (typeof v !== 'object') return;
  if (v.start !== undefined || v.end !== undefined) {
    const low = v.start ? dateRange(v.start)?.[0] : '-infinity';
    const high = v.end ? dateRange(v.end)?.[1] : 'infinity';
    if (low && high) rows.date.push([code, low, high]);
    return;
  }
  for (const e of v.event ?? []) addDate(rows, code, e);
  if (v.repeat?.boundsPeriod) addDate(rows, code, v.repeat.boundsPeriod);
}

export function emptyIndexRows(): IndexRows {
  return { token: [], string: [], reference: [], date: [], number: [], quantity: [], uri: [] };
}

/** All search-index rows for a resource. */
export function indexResource(resource: Resource, options: { engineOnly?: boolean } = {}): IndexRows {
  const rows = emptyIndexRows();
  // The engine's typed input, made only when some parameter is evaluated by the engine.
  let typed: TypedValue[] | undefined;
  const input = (): TypedValue[] => (typed ??= [toTypedValue(resource)]);
  const useFast = !options.engineOnly;
  const present = presentRoots(resource as unknown as Record<string, unknown>);
  let grp = 0;
  for (const p of compiledParamsFor(resource.resourceType)) {
    if (p.union || p.fromBase) continue; // searched from other parameters' rows
    if (p.fromReferences) {
      // Its references are other parameters' rows; only identifiers (":identifier") are its own.
      if (!p.roots || hasRoot(present, p.roots)) addIdentifiers(rows, p, resource);
      continue;
    }
    if (p.roots && !hasRoot(present, p.roots)) continue;
    if (p.group) {
      addGrouped(rows, p, resource, input, useFast);
      continue;
    }
    let values: TypedValue[];
    try {
      values = useFast && p.fast ? p.fast(resource as unknown as Record<string, unknown>) : evalFhirPathTyped(p.atom, input());
    } catch {
      continue;
    }
    if (p.components) {
      grp = addComposite(rows, p.components, values, input, grp, useFast && p.fast !== undefined);
    } else if (p.type === 'special') {
      addNear(rows, values);
    } else {
      for (const tv of values) add(rows, p.code, p.type, tv);
    }
  }
  return addDateHulls(dedupe(rows));
}

/** The `<code>:identifier` token rows of a derived reference parameter (indexResource). */
function addIdentifiers(rows: IndexRows, p: CompiledParam, resource: Resource): void {
  let values: TypedValue[];
  try {
    values = p.fast!(resource as unknown as Record<string, unknown>);
  } catch {
    return;
  }
  for (const tv of values) {
    const v = tv.value as { identifier?: { system?: string; value?: string } } | undefined;
    if (v?.identifier?.value) rows.token.push([`${p.code}:identifier`, v.identifier.system ?? null, v.identifier.value, null]);
  }
}

/**
 * The local references ("Patient/1") a resource's reference parameter `code` holds, evaluated alone
 * (the audit's patient of a type whose patient is not plainly its subject, patient, for or
 * beneficiary). Empty when the type has no such parameter.
 */
export function referencesOf(resource: Resource, code: string): string[] {
  const p = compiledParamsFor(resource.resourceType).find((x) => x.code === code && x.type === 'reference');
  if (!p) return [];
  let values: TypedValue[];
  try {
    values = p.fast ? p.fast(resource as unknown as Record<string, unknown>) : evalFhirPathTyped(p.atom, [toTypedValue(resource)]);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const tv of values) {
    const v = tv.value as { reference?: unknown } | string | undefined;
    const ref = typeof v === 'string' ? v : typeof v?.reference === 'string' ? v.reference : undefined;
    if (!ref) continue;
    const { type, id } = parseReference(ref);
    if (type && id) out.push(`${type}/${id}`);
  }
  return out;
}

/**
 * `grp` of an sp_date hull row. When a resource has several values for one date parameter, one
 * more row under the same code spans them all: [earliest low, latest high). For every prefix but
 * `ap` a search answers the same with or without that row (each prefix's condition holds for the
 * hull only if it holds for one of the values: search-values.ts), so only `ap` excludes it. With
 * it, a search bounding a parameter on both sides (`date=geA&date=ltB`, each bound satisfied by
 * any value) has one index row per resource that must overlap [A, B): the range search over
 * sp_date (span, low) in search-sql.ts, docs/search-plans.md.
 */
export const DATE_HULL_GRP = -1;

function instant(v: string): number {
  return v === '-infinity' ? -Infinity : v === 'infinity' ? Infinity : Date.parse(v);
}

function addDateHulls(rows: IndexRows): IndexRows {
  if (rows.date.length < 2) return rows;
  const byCode = new Map<string, Array<[string, string]>>();
  for (const [code, low, high, grp] of rows.date) {
    if (grp !== undefined) continue; // composite parts are never searched as ranges
    const list = byCode.get(code);
    if (list) list.push([low, high]);
    else byCode.set(code, [[low, high]]);
  }
  for (const [code, values] of byCode) {
    if (values.length < 2) continue;
    let [low, high] = values[0];
    for (const [l, h] of values) {
      if (instant(l) < instant(low)) low = l;
      if (instant(h) > instant(high)) high = h;
    }
    // A value that already spans the others is its own hull.
    if (values.some(([l, h]) => instant(l) === instant(low) && instant(h) === instant(high))) continue;
    rows.date.push([code, low, high, DATE_HULL_GRP]);
  }
  return rows;
}

/**
 * Whether a short list may hold two rows dedupe's keys would find equal, compared pairwise instead
 * of building a key per row. Rows of different codes never are (a code is a parameter's, with no
 * control characters); rows of one code are when their values are alike, or when a value holds the
 * characters the keys are joined with (the keys then decide). A "may" answer is checked by the keys.
 */
function mayHaveDuplicate(list: unknown[][]): boolean {
  for (let i = 1; i < list.length; i++) {
    const a = list[i];
    for (let j = 0; j < i; j++) {
      const b = list[j];
      if (a[0] !== b[0]) continue;
      if (a.length !== b.length) return true;
      // The first value in which they differ decides: keys that agree up to it could still be
      // equal only if its texts are, or if one holds a separator.
      let k = 1;
      while (k < a.length && (a[k] ?? null) === (b[k] ?? null)) k++;
      if (k === a.length) return true;
      const x = a[k] ?? null;
      const y = b[k] ?? null;
      if (String(x) === String(y) || hasKeyCharacter(x) || hasKeyCharacter(y)) return true;
    }
  }
  return false;
}

function hasKeyCharacter(v: unknown): boolean {
  return typeof v === 'string' && (v.includes('\u0000') || v.includes('\u0001'));
}

/** Below this many rows in a table, duplicates are looked for pairwise before any key is built. */
const PAIRWISE_ROWS = 16;

/** Drops duplicate rows (e.g. a name part that appears twice): they add write cost and nothing else. */
function dedupe(rows: IndexRows): IndexRows {
  for (const key of Object.keys(rows) as IndexTable[]) {
    const list = rows[key] as unknown[][];
    if (list.length < 2) continue;
    // Most resources have none (a PCL-5 item Observation: 15 rows, at most 9 in one table).
    if (list.length <= PAIRWISE_ROWS && !mayHaveDuplicate(list)) continue;
    const seen = new Set<string>();
    (rows as unknown as Record<string, unknown[][]>)[key] = list.filter((r) => {
      // Each column holds one kind of value (text, or the grp number), so joining is exact.
      let k = '';
      for (const v of r) k += v === null || v === undefined ? '\u0001\u0000' : `${String(v)}\u0000`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  }
  return rows;
}

/**
 * One group of rows per match of a composite's expression, in its components' tables: every part
 * of a group comes from the same element (the same Observation.component). A match with no value
 * for some component can never satisfy a search (every part is required) and is not stored.
 * Returns the next free group number.
 */
function addComposite(rows: IndexRows, components: CompiledComponent[], matches: TypedValue[], input: () => TypedValue[], grp: number, direct: boolean): number {
  for (const m of matches) {
    const part = emptyIndexRows();
    let complete = true;
    for (const comp of components) {
      const before = countRows(part);
      let values: TypedValue[];
      try {
        values = direct && comp.fast ? comp.fast(m.value as Record<string, unknown>) : evalFhirPathTyped(comp.atom, [m], { '%resource': input()[0] });
      } catch {
        values = [];
      }
      for (const tv of values) add(part, comp.code, comp.type, tv);
      if (countRows(part) === before) {
        complete = false;
        break;
      }
    }
    if (!complete) continue;
    for (const key of Object.keys(part) as IndexTable[]) {
      for (const row of part[key] as unknown[][]) (rows[key] as unknown[][]).push([...row, grp]);
    }
    grp++;
  }
  return grp;
}

/** A grouped parameter's rows, per match of its element (the n-th element's rows have grp n). */
function addGrouped(rows: IndexRows, p: CompiledParam, resource: Resource, input: () => TypedValue[], useFast: boolean): void {
  const g = p.group!;
  let matches: TypedValue[];
  try {
    matches = useFast ? g.match(resource as unknown as Record<string, unknown>) : evalFhirPathTyped(g.matchAtom, input());
  } catch {
    return;
  }
  matches.forEach((m, n) => {
    const part = emptyIndexRows();
    let values: TypedValue[];
    try {
      values = useFast ? g.relative(m.value as Record<string, unknown>) : evalFhirPathTyped(g.relativeAtom, [m]);
    } catch {
      return;
    }
    for (const tv of values) add(part, p.code, p.type, tv);
    for (const key of Object.keys(part) as IndexTable[]) {
      for (const row of part[key] as unknown[][]) (rows[key] as unknown[][]).push([...row, n]);
    }
  });
}

function countRows(rows: IndexRows): number {
  let n = 0;
  for (const key of Object.keys(rows) as IndexTable[]) n += rows[key].length;
  return n;
}

/** Location.position → latitude and longitude rows (WGS84 decimal degrees) for `near`. */
function addNear(rows: IndexRows, values: TypedValue[]): void {
  for (const tv of values) {
    const v = tv.value as { latitude?: unknown; longitude?: unknown } | undefined;
    const lat = v?.latitude;
    const long = v?.longitude;
    if (typeof lat !== 'number' || typeof long !== 'number' || Math.abs(lat) > 90 || Math.abs(long) > 180) continue;
    rows.number.push([NEAR_LAT, String(lat)], [NEAR_LONG, String(long)]);
    return;
  }
}
