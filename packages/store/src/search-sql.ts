// Turns parsed search filters into SQL predicates over a resource row aliased `r`. Every value is
// a bound parameter; identifiers in the SQL come only from this file's constants. Index rows are
// matched with EXISTS semi-joins keyed on (resource_type, code, value…) so PostgreSQL can drive the
// search from the selective index or probe per row, whichever is cheaper.
//
// Nesting (chains, _has) opens a subquery over `resource r` again: the inner alias deliberately
// shadows the outer one, so the visibility predicate (access.ts, written over alias `r`) applies
// unchanged to the referenced or referencing resource.
import type { RequestContext } from '@tic/fhir';
import type { VisibilityRule } from './access.ts';
import { visibilityPredicate } from './access.ts';
import { compositeBranches, compositeComponents, compositePartCode, DATE_HULL_GRP, indexCodes, NEAR_LAT, NEAR_LONG, normalizeString, referenceIndex } from './indexer.ts';
import { dateBucketSql } from './migrations.ts';
import type { Filter } from './search-query.ts';
import { compositeParts, parseNear } from './search-query.ts';
import type { Prefix } from './search-values.ts';
import { escapeLike, numberHalfUnit, pointCondition, rangeCondition, searchDateRange, splitPipes, splitPrefix, splitToken, uriAncestors } from './search-values.ts';

/** Collects bound parameters and hands out their placeholders. */
export class Sql {
  readonly params: unknown[] = [];
  p(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }
}

export interface SqlContext {
  sql: Sql;
  ctx: RequestContext;
  rules: VisibilityRule[];
  baseUrl?: string;
  now?: number;
  /**
   * Alias whose `id` (and `last_updated`) the filters test: `r` (the resource row, default) or the
   * driving index row `d`, so a search's filters are probed from index rows before its resource
   * row is read. Visibility is always over `r`.
   */
  alias?: string;
}

export const tableForType: Record<string, string> = {
  token: 'sp_token',
  string: 'sp_string',
  reference: 'sp_reference',
  date: 'sp_date',
  number: 'sp_number',
  quantity: 'sp_quantity',
  uri: 'sp_uri',
};

/** The visibility predicate over alias `r`, with its parameters bound; 'true' for the server. */
export function visibilitySql(c: SqlContext): string {
  const v = visibilityPredicate(c.ctx, c.rules);
  if (!v) return 'true';
  let i = 0;
  return v.sql.replace(/\$\?/g, () => c.sql.p(v.params[i++]));
}

/** EXISTS over an index table for the current resource `r` of type `type`. */
function indexExists(c: SqlContext, table: string, type: string, code: string, cond: string): string {
  return `EXISTS (SELECT 1 FROM ${table} x WHERE x.resource_type = ${c.sql.p(type)} AND x.id = ${c.alias ?? 'r'}.id AND x.code = ${c.sql.p(code)}${cond ? ` AND ${cond}` : ''})`;
}

function or(parts: string[]): string {
  return parts.length === 1 ? parts[0] : `(${parts.join(' OR ')})`;
}

function tokenCondition(c: SqlContext, code: string, modifier: string | undefined, value: string): { code: string; cond: string } {
  const { sql } = c;
  if (modifier === 'text') {
    const norm = escapeLike(normalizeString(value));
    return { code, cond: `(x.display LIKE ${sql.p(norm + '%')} OR x.display LIKE ${sql.p('% ' + norm + '%')})` };
  }
  if (modifier === 'of-type') {
    const [system, typeCode, v] = splitPipes(value);
    return { code: `${code}:of-type`, cond: `x.value = ${sql.p(v)} AND x.system = ${sql.p(`${system}|${typeCode}`)}` };
  }
  const { system, code: tokenCode } = splitToken(value);
  const conds: string[] = [];
  if (tokenCode) conds.push(`x.value = ${sql.p(tokenCode)}`);
  if (system !== undefined) conds.push(system === '' ? 'x.system IS NULL' : `x.system = ${sql.p(system)}`);
  return { code, cond: conds.join(' AND ') };
}

function stringCondition(c: SqlContext, modifier: string | undefined, value: string): string {
  // :exact also compares the normalised form, which the (code, norm) index serves.
  if (modifier === 'exact') return `x.norm = ${c.sql.p(normalizeString(value))} AND x.value = ${c.sql.p(value)}`;
  const plain = normalizeString(value);
  const norm = escapeLike(plain);
  if (modifier === 'contains') return `x.norm LIKE ${c.sql.p('%' + norm + '%')}`;
  // The prefix as a range of the (…, norm text_pattern_ops) index, stated in the SQL: PostgreSQL
  // derives it from LIKE only when the pattern is a constant, not in a prepared statement's
  // generic plan (search.ts prepares repeated statements), which would scan the whole code.
  const [lower, upper] = prefixRange(plain);
  const range = lower === '' ? '' : ` AND x.norm ~>=~ ${c.sql.p(lower)}${upper === undefined ? '' : ` AND x.norm ~<~ ${c.sql.p(upper)}`}`;
  return `x.norm LIKE ${c.sql.p(norm + '%')}${range}`;
}

/**
 * The strings that start with `prefix`, as [lower, upper) in byte (UTF-8, i.e. code point) order,
 * the order of text_pattern_ops: the prefix, and the prefix with its last code point incremented
 * (trailing U+10FFFF dropped; undefined when none is left). Lone surrogates count as U+FFFD, as
 * the driver sends them.
 */
export function prefixRange(prefix: string): [string, string | undefined] {
  const cps = Array.from(prefix, (ch) => {
    const cp = ch.codePointAt(0)!;
    return cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
  });
  const lower = String.fromCodePoint(...cps);
  while (cps.length > 0 && cps[cps.length - 1] === 0x10ffff) cps.pop();
  if (cps.length === 0) return [lower, undefined];
  let next = cps[cps.length - 1] + 1;
  if (next === 0xd800) next = 0xe000; // no surrogates in UTF-8
  cps[cps.length - 1] = next;
  return [lower, String.fromCodePoint(...cps)];
}

/**
 * The sp_reference rows of reference parameter `code` of `type`, over alias `x`: `x.code = …`, or
 * for a parameter derived from others (indexer.ts referenceIndex: Observation.patient is the
 * subject rows with target_type Patient) their codes and the target type.
 */
export function referenceCodeSql(sql: Sql, type: string, code: string, x = 'x'): string {
  const { codes, targetType } = referenceIndex(type, code);
  const codeSql = codes.length === 1 ? `${x}.code = ${sql.p(codes[0])}` : `${x}.code = ANY(${sql.p(codes)}::text[])`;
  return targetType ? `${codeSql} AND ${x}.target_type = ${sql.p(targetType)}` : codeSql;
}

/**
 * Reference values: Type/id, id (any type, or the :Type modifier), absolute URL or canonical.
 * `targetType`: the parameter's rows are another's restricted to that type (referenceIndex), so
 * only local references to it match (a bare id means targetType/id).
 */
function referenceCondition(c: SqlContext, modifier: string | undefined, value: string, targetType?: string): string {
  const { sql } = c;
  if (targetType) {
    if (modifier && modifier !== targetType) return 'false';
    modifier = targetType;
  }
  let ref = value;
  if (c.baseUrl && ref.startsWith(c.baseUrl.replace(/\/$/, '') + '/')) ref = ref.slice(c.baseUrl.replace(/\/$/, '').length + 1);
  const local = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[^/]+)?$/.exec(ref);
  if (local) {
    if (modifier && modifier !== local[1]) return 'false';
    return `x.target_id = ${sql.p(local[2])} AND x.target_type = ${sql.p(local[1])}`;
  }
  if (/^[a-z][a-z0-9+.-]*:/i.test(ref)) {
    // A derived parameter's values are local references only (indexer.ts planDerived).
    if (targetType) return 'false';
    // Absolute URL (another server) or canonical, optionally with |version.
    const bar = ref.indexOf('|');
    if (bar < 0) return `x.target_id = ${sql.p(ref)} AND x.target_type IS NULL`;
    return `x.target_id = ${sql.p(ref.slice(0, bar))} AND x.target_type IS NULL AND x.reference = ${sql.p(ref)}`;
  }
  if (modifier) return `x.target_id = ${sql.p(ref)} AND x.target_type = ${sql.p(modifier)}`;
  return `x.target_id = ${sql.p(ref)} AND x.target_type IS NOT NULL`;
}

function dateCondition(c: SqlContext, value: string): string {
  const [prefix, v] = splitPrefix(value);
  const range = searchDateRange(prefix, v, c.now)!;
  // Bind only the bounds the condition uses (PostgreSQL rejects untyped unused parameters).
  const cond = bindBounds(c, rangeCondition(prefix, 'x.low', 'x.high', 'PL', 'PH'), range);
  // A hull row (indexer.ts) overlaps whatever lies between its resource's values: not a value.
  return prefix === 'ap' ? `${cond} AND x.grp IS DISTINCT FROM ${DATE_HULL_GRP}` : cond;
}

function bindBounds(c: SqlContext, cond: string, range: [string, string]): string {
  const pl = cond.includes('PL') ? `${c.sql.p(range[0])}::timestamptz` : '';
  const ph = cond.includes('PH') ? `${c.sql.p(range[1])}::timestamptz` : '';
  return cond.replace(/\bPL\b/g, pl).replace(/\bPH\b/g, ph);
}

const numberOps: Partial<Record<Prefix, string>> = { gt: '>', lt: '<', ge: '>=', le: '<=', sa: '>', eb: '<' };

function numberCondition(c: SqlContext, prefix: Prefix, num: string): string {
  const { sql } = c;
  const op = numberOps[prefix];
  if (op) return `x.value ${op} ${sql.p(num)}::numeric`;
  if (prefix === 'ap') {
    // Approximately: within 10% of the value.
    const n = Number(num);
    const d = Math.abs(n) * 0.1;
    return `x.value >= ${sql.p(String(n - d))}::numeric AND x.value <= ${sql.p(String(n + d))}::numeric`;
  }
  // eq / ne: the value's implicit precision range [n - half, n + half).
  const half = numberHalfUnit(num)!;
  const inRange = `x.value >= (${sql.p(num)}::numeric - ${sql.p(half)}::numeric) AND x.value < (${sql.p(num)}::numeric + ${sql.p(half)}::numeric)`;
  return prefix === 'ne' ? `NOT (${inRange})` : inRange;
}

function quantityCondition(c: SqlContext, value: string): string {
  const [prefix, rest] = splitPrefix(value);
  const [num, system, unit] = splitPipes(rest);
  let cond = numberCondition(c, prefix, num);
  if (system) cond += ` AND x.system = ${c.sql.p(system)}`;
  if (unit) cond += ` AND x.unit = ${c.sql.p(unit)}`;
  return cond;
}

function uriCondition(c: SqlContext, modifier: string | undefined, value: string): string {
  const { sql } = c;
  if (modifier === 'below') {
    const base = value.replace(/\/$/, '');
    return `(x.value = ${sql.p(base)} OR x.value LIKE ${sql.p(escapeLike(base) + '/%')})`;
  }
  if (modifier === 'above') return `x.value = ANY(${sql.p(uriAncestors(value))}::text[])`;
  return `x.value = ${sql.p(value)}`;
}

/** One index lookup: rows of `table` with this code satisfying `cond` (over alias `x`). */
interface IndexPart {
  table: string;
  code: string;
  cond: string;
}

/**
 * The index lookups of a positive parameter filter (its values OR-ed), or undefined for the
 * negative and :missing forms. Binds parameters: call only for SQL that will be used.
 */
function indexParts(c: SqlContext, f: Extract<Filter, { kind: 'param' }>): IndexPart[] | undefined {
  const { sp, modifier } = f;
  // A union parameter (combo-code) is the rows of the parameters it unites (indexer.ts indexCodes).
  const codes = indexCodes(f.type, f.code);
  const each = (table: string, cond: (v: string) => string) => f.values.flatMap((v) => codes.map((code) => ({ table, code, cond: cond(v) })));
  switch (sp.type) {
    case 'token':
      if (modifier === 'not') return undefined;
      return f.values.flatMap((v) =>
        codes.map((code) => {
          const t = tokenCondition(c, code, modifier, v);
          return { table: 'sp_token', code: t.code, cond: t.cond };
        }),
      );
    case 'string':
      return each('sp_string', (v) => stringCondition(c, modifier, v));
    case 'reference': {
      if (modifier === 'identifier') return f.values.map((v) => ({ table: 'sp_token', code: `${f.code}:identifier`, cond: tokenCondition(c, f.code, undefined, v).cond }));
      // A derived parameter (patient = subject.where(resolve() is Patient)) reads its base codes' rows of that target type.
      const { codes: refCodes, targetType } = referenceIndex(f.type, f.code);
      return f.values.flatMap((v) => refCodes.map((code) => ({ table: 'sp_reference', code, cond: referenceCondition(c, modifier, v, targetType) })));
    }
    case 'date':
      return each('sp_date', (v) => dateCondition(c, v));
    case 'number':
      return each('sp_number', (v) => {
        const [prefix, n] = splitPrefix(v);
        return numberCondition(c, prefix, n);
      });
    case 'quantity':
      return each('sp_quantity', (v) => quantityCondition(c, v));
    case 'uri':
      return each('sp_uri', (v) => uriCondition(c, modifier, v));
    default:
      return undefined;
  }
}

/** One part of a composite value as a condition over alias `x`, in its component type's syntax. */
function partCondition(c: SqlContext, partType: string, code: string, value: string): string {
  switch (partType) {
    case 'token':
      return tokenCondition(c, code, undefined, value).cond;
    case 'string':
      return stringCondition(c, undefined, value);
    case 'reference':
      return referenceCondition(c, undefined, value);
    case 'date':
      return dateCondition(c, value);
    case 'number': {
      const [prefix, n] = splitPrefix(value);
      return numberCondition(c, prefix, n);
    }
    case 'quantity':
      return quantityCondition(c, value);
    case 'uri':
      return uriCondition(c, undefined, value);
    default:
      return 'false';
  }
}

/**
 * A composite value matches when one group of its index rows (one match of the composite's
 * expression, indexer.ts) satisfies every part: the parts' rows are joined on grp, so the code and
 * the value must come from the same element (e.g. the same Observation.component). A composite
 * served from its components' own parameters (indexer.ts compositeBranches) reads their rows: for
 * the resource itself (code-value-concept: its one match is the resource) each part is an EXISTS
 * over the resource's rows of that parameter; for an element (Observation.component) the parts'
 * rows are joined on the element's grp.
 */
function compositePredicate(c: SqlContext, f: Extract<Filter, { kind: 'param' }>): string {
  const comps = compositeComponents(f.type, f.sp)!;
  const branches = compositeBranches(f.type, f.code) ?? [{ grouped: true, codes: comps.map((_, i) => compositePartCode(f.code, i)) }];
  const { sql } = c;
  const type = sql.p(f.type);
  return or(
    f.values.flatMap((v) => {
      const parts = compositeParts(v);
      return branches.map(({ grouped, codes }) => {
        const from: string[] = [];
        const conds: string[] = [];
        const exists: string[] = [];
        comps.forEach((comp, i) => {
          const a = `x${i}`;
          const cond = partCondition(c, comp.type, f.code, parts[i]).replace(/\bx\./g, `${a}.`);
          const keys = `${a}.resource_type = ${type} AND ${a}.code = ${sql.p(codes[i])}`;
          if (!grouped) {
            exists.push(`EXISTS (SELECT 1 FROM ${tableForType[comp.type]} ${a} WHERE ${keys} AND ${a}.id = ${c.alias ?? 'r'}.id AND ${cond})`);
            return;
          }
          if (i === 0) {
            from.push(`${tableForType[comp.type]} ${a}`);
            conds.push(`${keys} AND ${a}.id = ${c.alias ?? 'r'}.id`);
          } else {
            from.push(`JOIN ${tableForType[comp.type]} ${a} ON ${keys} AND ${a}.id = x0.id AND ${a}.grp = x0.grp`);
          }
          conds.push(cond);
        });
        return grouped ? `EXISTS (SELECT 1 FROM ${from.join(' ')} WHERE ${conds.join(' AND ')})` : `(${exists.join(' AND ')})`;
      });
    }),
  );
}

const EARTH_KM = 6371.0088;

/**
 * Location.near: a bounding box on the indexed latitude/longitude (sp_number rows), then the
 * great-circle (haversine) distance. The longitude box is dropped near the poles or across the
 * antimeridian, where it would not be one interval.
 */
function nearPredicate(c: SqlContext, f: Extract<Filter, { kind: 'param' }>): string {
  const { sql } = c;
  return or(
    f.values.map((v) => {
      const { lat, long, km } = parseNear(v);
      const dLat = (km / EARTH_KM) * (180 / Math.PI);
      const conds = [
        `a.resource_type = ${sql.p(f.type)} AND a.id = ${c.alias ?? 'r'}.id AND a.code = ${sql.p(NEAR_LAT)}`,
        `a.value >= ${sql.p(String(lat - dLat))}::numeric AND a.value <= ${sql.p(String(lat + dLat))}::numeric`,
      ];
      const maxLat = Math.abs(lat) + dLat;
      if (maxLat < 89) {
        const dLong = dLat / Math.cos((maxLat * Math.PI) / 180);
        if (long - dLong > -180 && long + dLong < 180) {
          conds.push(`b.value >= ${sql.p(String(long - dLong))}::numeric AND b.value <= ${sql.p(String(long + dLong))}::numeric`);
        }
      }
      const la = `radians(a.value::float8)`;
      const lo = `radians(b.value::float8)`;
      const pla = `radians(${sql.p(lat)}::float8)`;
      const plo = `radians(${sql.p(long)}::float8)`;
      const hav = `power(sin((${la} - ${pla}) / 2), 2) + cos(${la}) * cos(${pla}) * power(sin((${lo} - ${plo}) / 2), 2)`;
      conds.push(`2 * ${EARTH_KM} * asin(least(1, sqrt(${hav}))) <= ${sql.p(km)}::float8`);
      return `EXISTS (SELECT 1 FROM sp_number a JOIN sp_number b ON b.resource_type = a.resource_type AND b.id = a.id AND b.code = ${sql.p(NEAR_LONG)} WHERE ${conds.join(' AND ')})`;
    }),
  );
}

function paramPredicate(c: SqlContext, f: Extract<Filter, { kind: 'param' }>): string {
  const { type, code, sp, modifier } = f;
  if (sp.type === 'composite') return compositePredicate(c, f);
  if (sp.type === 'special') return nearPredicate(c, f);
  if (sp.type === 'token' && modifier === 'not') {
    // :not matches resources with no matching value, including those with no value at all.
    return f.values.flatMap((v) => indexCodes(type, code).map((k) => `NOT ${indexExists(c, 'sp_token', type, k, tokenCondition(c, k, undefined, v).cond)}`)).join(' AND ');
  }
  const parts = indexParts(c, f);
  if (!parts) return 'false';
  return or(parts.map((p) => indexExists(c, p.table, type, p.code, p.cond)));
}

const openPrefixes = new Set(['gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ne']);

/**
 * How well a filter bounds the index rows it matches, for choosing the driving filter of a search
 * sorted by _lastUpdated (lower is narrower; undefined: it cannot drive). A static ranking: the
 * planner's statistics cannot see correlations such as "this organisation's Tasks", and a wrong
 * choice only costs a longer ordered walk, never a wrong answer.
 */
export function driverRank(f: Filter): number | undefined {
  if (f.kind !== 'param') return undefined;
  const { sp, modifier, code } = f;
  switch (sp.type) {
    case 'token':
      if (modifier === 'not' || modifier === 'text') return undefined;
      if (modifier === 'of-type' || code === 'identifier' || code.endsWith('-identifier')) return 0;
      return f.values.some((v) => splitToken(v).code === undefined || splitToken(v).code === '') ? 6 : 3;
    case 'reference':
      return modifier === 'identifier' ? 0 : 1;
    case 'string':
      if (modifier === 'contains') return undefined;
      return modifier === 'exact' ? 2 : 4;
    case 'uri':
      return modifier ? 4 : 2;
    case 'date':
    case 'number':
    case 'quantity':
      return f.values.some((v) => openPrefixes.has(splitPrefix(v)[0])) ? 7 : 5;
    default:
      return undefined;
  }
}

/** The filter a search sorted by _lastUpdated is driven from, or -1 (none fits). */
export function pickDriver(filters: Filter[]): number {
  if (filters.some((f) => f.kind === 'id' && !f.not && f.values.length > 0)) return -1; // primary key lookups win
  let best = -1;
  let bestRank = Infinity;
  filters.forEach((f, i) => {
    // An open date bound with a bound on the other side (date=geA&date=ltB) is a bounded range.
    const r = f.kind === 'param' && f.sp.type === 'date' && dateWindow(filters, i) ? 5 : driverRank(f);
    if (r !== undefined && r < bestRank) {
      best = i;
      bestRank = r;
    }
  });
  return best;
}

/**
 * The distinct (last_updated, id) of the resources of `type` matching filter `f`, from its index
 * rows in last_updated order: `extra` conditions over x.last_updated / x.id (keyset, _lastUpdated)
 * narrow the walk. With an equality on the leading index columns this is a backward or forward
 * index-only scan that stops once the page is full.
 */
export function driverSql(c: SqlContext, type: string, f: Filter, extra: (x: string) => string[], desc: boolean, win?: DateWindow): string {
  if (f.kind !== 'param') throw new Error('Only parameter filters drive a search');
  const conds = [`x.resource_type = ${c.sql.p(type)}`];
  // Binds parameters: only when used.
  const parts = win ? [{ table: 'sp_date', code: win.code, cond: '' }] : indexParts(c, f)!;
  if (win) {
    // Only walked when the window holds more than a few thousand rows (search.ts): hide its bounds
    // from the planner's index choice, which would otherwise often sort them all for one page.
    conds.push(`x.code = ${c.sql.p(win.code)}`, `(${windowConditions(c, win, f).join(' AND ')}) IS TRUE`);
  } else if (parts.every((p) => p.code === parts[0].code)) {
    conds.push(`x.code = ${c.sql.p(parts[0].code)}`);
    const alts = parts.map((p) => p.cond).filter(Boolean);
    if (alts.length === parts.length) conds.push(or(alts.map((a) => (alts.length > 1 ? `(${a})` : a))));
  } else {
    conds.push(or(parts.map((p) => `(x.code = ${c.sql.p(p.code)}${p.cond ? ` AND ${p.cond}` : ''})`)));
  }
  conds.push(...extra('x'));
  const dir = desc ? 'DESC' : 'ASC';
  return `SELECT DISTINCT x.last_updated, x.id FROM ${parts[0].table} x WHERE ${conds.join(' AND ')} ORDER BY x.last_updated ${dir}, x.id ${dir}`;
}

/**
 * Upper bounds in seconds of the sp_date.span classes 0-9 (migration 7: class i holds the rows
 * with high - low at most DATE_SPAN_SECONDS[i]); class OPEN_SPAN holds longer and open ranges.
 */
export const DATE_SPAN_SECONDS = [1, 60, 3600, 86400, 32 * 86400, 367 * 86400, 3660 * 86400, 36600 * 86400, 366000 * 86400, 3660000 * 86400];
const OPEN_SPAN = 99;
/** 0001-01-01T00:00:00Z: FHIR instants start here, so an earlier lower bound bounds nothing. */
const FIRST_INSTANT = Date.parse('0001-01-01T00:00:00Z');

/**
 * The date filters of one parameter that together bound it on both sides. Every resource they
 * match has an sp_date row of that code with high > lo and low < hi: a value, when it has one
 * value, or else its hull row (indexer.ts), which spans a value satisfying each filter.
 */
export interface DateWindow {
  code: string;
  lo: string;
  hi: string;
  /** Indexes of those filters in the search's filter list. */
  filters: number[];
  /**
   * One filter without `ap`: the rows in the window that also meet its condition are exactly its
   * matches, so the search need not probe it again. Otherwise the rows are candidates (a hull
   * row is in the window whenever its resource can match) and every filter is probed.
   */
  exact: boolean;
  /** Open on one side (lo '-infinity' or hi 'infinity'): gathered from one range of the low or high index, never by bucket. */
  oneSided: boolean;
}

/** The [lo, hi) that a value matched by this prefix and search range [pl, ph) overlaps (ranges are never empty). */
function valueWindow(prefix: Prefix, pl: number, ph: number): [number, number] {
  switch (prefix) {
    case 'eq':
    case 'ap':
      return [pl, ph];
    case 'gt':
    case 'sa':
      return [ph, Infinity];
    case 'ge':
      return [pl, Infinity];
    case 'lt':
    case 'eb':
      return [-Infinity, pl];
    case 'le':
      return [-Infinity, ph];
    default:
      return [-Infinity, Infinity]; // ne
  }
}

/**
 * The window of filters[driver]'s date parameter over all filters on it (AND: the intersection of
 * each filter's window; OR values: their union), or undefined when it is open on either side
 * (with `open`: on both sides; a window open on one side has that bound ±infinity, `oneSided`).
 */
export function dateWindow(filters: Filter[], driver: number, now?: number, open = false): DateWindow | undefined {
  const f = filters[driver];
  if (f?.kind !== 'param' || f.sp.type !== 'date' || f.modifier) return undefined;
  let lo = -Infinity;
  let hi = Infinity;
  const members: number[] = [];
  filters.forEach((g, i) => {
    if (g.kind !== 'param' || g.sp.type !== 'date' || g.code !== f.code || g.modifier) return;
    members.push(i);
    let glo = Infinity;
    let ghi = -Infinity;
    for (const v of g.values) {
      const [prefix, d] = splitPrefix(v);
      const r = searchDateRange(prefix, d, now);
      const [a, b] = r ? valueWindow(prefix, Date.parse(r[0]), Date.parse(r[1])) : [-Infinity, Infinity];
      glo = Math.min(glo, a);
      ghi = Math.max(ghi, b);
    }
    lo = Math.max(lo, glo);
    hi = Math.min(hi, ghi);
  });
  const oneSided = Number.isFinite(lo) !== Number.isFinite(hi);
  if (!(Number.isFinite(lo) && Number.isFinite(hi)) && !(open && oneSided)) return undefined;
  const exact = members.length === 1 && !f.values.some((v) => splitPrefix(v)[0] === 'ap');
  const iso = (t: number) => (t === -Infinity ? '-infinity' : t === Infinity ? 'infinity' : new Date(t).toISOString());
  return { code: f.code, lo: iso(lo), hi: iso(hi), filters: members, exact, oneSided };
}

/** The window's conditions over sp_date alias x, with the filter's own when the window is exact. */
function windowConditions(c: SqlContext, win: DateWindow, f: Extract<Filter, { kind: 'param' }>): string[] {
  const { sql } = c;
  // An open side bounds nothing: left out, so the text says which index range the window is.
  const conds = [
    ...(win.lo === '-infinity' ? [] : [`x.high > ${sql.p(win.lo)}::timestamptz`]),
    ...(win.hi === 'infinity' ? [] : [`x.low < ${sql.p(win.hi)}::timestamptz`]),
  ];
  if (win.exact) {
    const alts = indexParts(c, f)!.map((p) => p.cond);
    conds.push(or(alts.map((a) => (alts.length > 1 ? `(${a})` : a))));
  }
  return conds;
}

/**
 * Width in seconds of the buckets of low in sp_date_bucket_idx for span classes 0-9 (migration
 * 10, dateBucketSql builds the same): a day for the classes up to a day, the class's bound for
 * longer ones. Class OPEN_SPAN is one bucket (0).
 */
export const DATE_BUCKET_SECONDS = DATE_SPAN_SECONDS.map((s) => Math.max(86400, s));

/** The bucket of a finite low (ms since 1970) in span class `span`, as dateBucketSql computes it. */
export function dateBucket(lowMs: number, span: number): number {
  return span === OPEN_SPAN ? 0 : Math.floor(lowMs / (DATE_BUCKET_SECONDS[span] * 1000));
}

/**
 * Where the rows of a window lie, per span class: a row of class i with high > lo has
 * low > lo - DATE_SPAN_SECONDS[i] (the floor; -infinity, tested as >=, when that is before the
 * first instant, and for open ranges) and low < hi, so its bucket is in [first, last]
 * (first undefined: no lower bound).
 */
function windowClasses(win: DateWindow): Array<{ span: number; floor: string; first: number | undefined; last: number }> {
  const lo = Date.parse(win.lo);
  const hi = Date.parse(win.hi);
  const out = DATE_SPAN_SECONDS.map((seconds, span) => {
    const floor = lo - seconds * 1000;
    const bounded = floor > FIRST_INSTANT;
    // Timestamps are whole milliseconds at the bounds, so low < hi means low's bucket is hi - 1 ms's.
    return { span, floor: bounded ? new Date(floor).toISOString() : '-infinity', first: bounded ? dateBucket(floor, span) : undefined, last: dateBucket(hi - 1, span) };
  });
  out.push({ span: OPEN_SPAN, floor: '-infinity', first: 0, last: 0 });
  return out;
}

/**
 * The (last_updated, id) of the sp_date rows in a date window, unordered and with duplicates: one
 * index range scan of sp_date_bucket_idx (resource_type, code, span, bucket of low) per span
 * class, from the bucket of the class's floor (windowClasses) to that of the window's end, the
 * floor and the window tested on each row. Reads about as many index rows as there are candidates
 * (plus up to a bucket per class before the floor), wherever the window lies; `extra` narrows
 * them (keyset, _lastUpdated). The classes are a VALUES list joined laterally: planned once, not
 * once per class. OFFSET 0 keeps it one range scan per class: without it, on pages not yet
 * all-visible (right after a load, before autovacuum) PostgreSQL hash-joined the classes with
 * every row below the window's end.
 */
export function dateCandidatesSql(c: SqlContext, type: string, f: Filter, win: DateWindow, extra: (x: string) => string[]): string {
  if (f.kind !== 'param') throw new Error('Only parameter filters drive a search');
  const { sql } = c;
  if (win.oneSided) {
    // high > lo (sp_date_high_idx) or low < hi (sp_date_low_idx): one range scan.
    const conds = [`x.resource_type = ${sql.p(type)}`, `x.code = ${sql.p(win.code)}`, ...windowConditions(c, win, f), ...extra('x')];
    return `SELECT x.last_updated, x.id FROM sp_date x WHERE ${conds.join(' AND ')}`;
  }
  const classes = windowClasses(win).map(
    (k) =>
      `(${k.span}, ${k.first === undefined ? "'-Infinity'" : sql.p(String(k.first))}::numeric, ${sql.p(String(k.last))}::numeric, ` +
      `${k.floor === '-infinity' ? "'-infinity'" : sql.p(k.floor)}::timestamptz)`,
  );
  const bucket = dateBucketSql('x.');
  const conds = [
    `x.resource_type = ${sql.p(type)}`,
    `x.code = ${sql.p(win.code)}`,
    'x.span = v.span',
    `(${bucket}) >= v.first`,
    `(${bucket}) <= v.last`,
    'x.low >= v.floor',
    ...windowConditions(c, win, f),
    ...extra('x'),
  ];
  return `SELECT x.last_updated, x.id FROM (VALUES ${classes.join(', ')}) v(span, first, last, floor) CROSS JOIN LATERAL (SELECT x.last_updated, x.id FROM sp_date x WHERE ${conds.join(' AND ')} OFFSET 0) x`;
}

/** Most (class, bucket) ranges a date window may touch to be read bucket by bucket (dateFirstRowsSql). */
export const MAX_BUCKET_ARMS = 64;

/**
 * The first `limit` distinct (last_updated, id) of a date window's rows in last_updated order
 * (descending if `desc`), or undefined when the window touches more than MAX_BUCKET_ARMS buckets.
 * Within one (class, bucket) sp_date_bucket_idx is in last_updated order, so each bucket gives its
 * first `limit` rows after reading about that many over the fraction of it inside the window
 * (a week window: a few dozen rows per day bucket instead of the window's ~1,000 rows at 100k); the
 * first `limit` of their union are the window's first `limit` (each of them is among its own
 * bucket's first `limit`). Classes with no floor (before the first instant) are one range of
 * buckets, sorted. The bucket lists are array parameters: the text depends only on the query's
 * shape. Rows are candidates: the caller probes the filters and the visibility rule.
 */
export function dateFirstRowsSql(c: SqlContext, type: string, f: Filter, win: DateWindow, extra: (x: string) => string[], desc: boolean, limit: number): string | undefined {
  if (f.kind !== 'param') throw new Error('Only parameter filters drive a search');
  if (win.oneSided) return undefined;
  const classes = windowClasses(win);
  const arms: Array<{ span: number; bucket: number; floor: string }> = [];
  const ranges: Array<{ span: number; last: number }> = [];
  for (const k of classes) {
    if (k.first === undefined) ranges.push({ span: k.span, last: k.last });
    else for (let b = k.first; b <= k.last && arms.length <= MAX_BUCKET_ARMS; b++) arms.push({ span: k.span, bucket: b, floor: k.floor });
  }
  if (arms.length + ranges.length > MAX_BUCKET_ARMS) return undefined;
  const { sql } = c;
  const dir = desc ? 'DESC' : 'ASC';
  const bucket = dateBucketSql('x.');
  // The same parameters serve both kinds of ranges.
  const key = [`x.resource_type = ${sql.p(type)}`, `x.code = ${sql.p(win.code)}`];
  const within = windowConditions(c, win, f);
  const more = extra('x');
  const order = `ORDER BY x.last_updated ${dir}, x.id ${dir} LIMIT ${limit}`;
  const eq = `(SELECT DISTINCT x.last_updated, x.id FROM sp_date x WHERE ${[...key, ...within, ...more, 'x.span = v.span', `(${bucket}) = v.bucket`, 'x.low >= v.floor'].join(' AND ')} ${order})`;
  // A range of buckets is not in last_updated order: its rows are read (OFFSET 0: from the bucket
  // index, not by walking every row of the code in order, 13 ms at 100k) and sorted. Its class is
  // a literal (0-9, ours) and the window's bounds are hidden from the index choice (IS TRUE; on
  // the bucket index they are filters either way): with the class a lateral parameter PostgreSQL
  // could not see that the class (10,000 years) holds next to no rows, and once the pages were no
  // longer all-visible (after writes, before autovacuum) it read every row with high > lo from
  // sp_date_high_idx (or low < hi from sp_date_low_idx) instead: 24,000 rows, 11 ms for a week late
  // in 2024 at 100k, instead of 0.01 ms. The text is the same for every window after the year 1003.
  const rng = (r: { span: number; last: number }) =>
    `(SELECT DISTINCT x.last_updated, x.id FROM (SELECT x.last_updated, x.id FROM sp_date x WHERE ${[...key, `(${within.join(' AND ')}) IS TRUE`, ...more, `x.span = ${r.span}`, `(${bucket}) <= ${sql.p(String(r.last))}::numeric`].join(' AND ')} OFFSET 0) x ${order})`;
  // Array literals of numbers and ISO timestamps (nothing to escape): cheaper than the driver's
  // element-by-element escaping.
  const array = (values: Array<string | number>) => sql.p(`{${values.join(',')}}`);
  const byBucket =
    `SELECT a.last_updated, a.id FROM unnest(${array(arms.map((a) => a.span))}::smallint[], ${array(arms.map((a) => a.bucket))}::numeric[], ` +
    `${array(arms.map((a) => a.floor))}::timestamptz[]) v(span, bucket, floor) CROSS JOIN LATERAL ${eq} a`;
  const byRange = ranges.map((r) => ` UNION ALL ${rng(r)}`).join('');
  return `SELECT DISTINCT a.last_updated, a.id FROM (${byBucket}${byRange}) a ORDER BY a.last_updated ${dir}, a.id ${dir} LIMIT ${limit}`;
}

/** A _lastUpdated filter over a last_updated column (the resource's, or an index row's copy). */
export function lastUpdatedSql(c: SqlContext, f: Extract<Filter, { kind: 'lastUpdated' }>, column: string): string {
  return or(
    f.values.map((v) => {
      const [prefix, d] = splitPrefix(v);
      return bindBounds(c, pointCondition(prefix, column, 'PL', 'PH'), searchDateRange(prefix, d, c.now)!);
    }),
  );
}

/** The SQL predicate of one filter over resource alias `r`. */
export function filterSql(c: SqlContext, f: Filter): string {
  switch (f.kind) {
    case 'id':
      if (f.values.length === 0) return f.not ? 'false' : 'true';
      return `${f.not ? 'NOT ' : ''}${c.alias ?? 'r'}.id = ANY(${c.sql.p(f.values)}::text[])`;
    case 'lastUpdated':
      return lastUpdatedSql(c, f, `${c.alias ?? 'r'}.last_updated`);
    case 'param':
      return paramPredicate(c, f);
    case 'missing': {
      const table = tableForType[f.sp.type];
      const ref = f.sp.type === 'reference' ? referenceIndex(f.type, f.code) : undefined;
      const codes = ref?.codes ?? indexCodes(f.type, f.code);
      const any = or(codes.map((k) => indexExists(c, table, f.type, k, ref?.targetType ? `x.target_type = ${c.sql.p(ref.targetType)}` : '')));
      return f.missing ? `NOT ${any}` : any;
    }
    case 'chain': {
      // A derived parameter (referenceIndex) reads its base codes' rows, and refers to its one target type only.
      const { codes, targetType } = referenceIndex(f.type, f.code);
      const targets = f.targets.filter((t) => !targetType || t.type === targetType);
      if (targets.length === 0) return 'false';
      const codeSql = () => (codes.length === 1 ? `x.code = ${c.sql.p(codes[0])}` : `x.code = ANY(${c.sql.p(codes)}::text[])`);
      return or(
        targets.map(
          (t) =>
            `EXISTS (SELECT 1 FROM sp_reference x WHERE x.resource_type = ${c.sql.p(f.type)} AND x.id = ${c.alias ?? 'r'}.id AND ${codeSql()} AND x.target_type = ${c.sql.p(t.type)}` +
            ` AND EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = ${c.sql.p(t.type)} AND r.id = x.target_id AND NOT r.deleted AND ${visibilitySql(c)} AND ${filterSql({ ...c, alias: 'r' }, t.filter)}))`,
        ),
      );
    }
    case 'has': {
      const { codes, targetType } = referenceIndex(f.sourceType, f.code);
      if (targetType && targetType !== f.type) return 'false';
      const codeSql = codes.length === 1 ? `h.code = ${c.sql.p(codes[0])}` : `h.code = ANY(${c.sql.p(codes)}::text[])`;
      return (
        `EXISTS (SELECT 1 FROM sp_reference h WHERE h.target_type = ${c.sql.p(f.type)} AND h.target_id = ${c.alias ?? 'r'}.id AND ${codeSql} AND h.resource_type = ${c.sql.p(f.sourceType)}` +
        ` AND EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = ${c.sql.p(f.sourceType)} AND r.id = h.id AND NOT r.deleted AND ${visibilitySql(c)} AND ${filterSql({ ...c, alias: 'r' }, f.filter)}))`
      );
    }
    default: {
      const never: never = f;
      throw new Error(`Unknown filter ${JSON.stringify(never)}`);
    }
  }
}
