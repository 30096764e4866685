// FHIR search over the index tables. Every predicate is parameterised SQL; the visibility rule
// (access.ts) is part of the same query, so totals, paging and _include reveal nothing hidden.
import type { Resource, SearchParameter } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { badRequest, searchParametersFor } from '@tic/fhir';
import type { Db } from './db.ts';
import { dateRange, normalizeString } from './indexer.ts';
import type { VisibilityRule } from './access.ts';
import { visibilityPredicate } from './access.ts';

export interface SearchEntry {
  resource: Resource;
  mode: 'match' | 'include';
}

export interface SearchResult {
  entries: SearchEntry[];
  total?: number;
  hasMore: boolean;
  offset: number;
  count: number;
  /** Parameters that were ignored, with why (reported in an OperationOutcome entry). */
  warnings: string[];
  /** The parameters actually applied, for the self link. */
  applied: Array<[string, string]>;
  summaryCount: boolean;
}

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 1000;

const resultParams = new Set(['_count', '_offset', '_sort', '_total', '_include', '_revinclude', '_summary', '_elements', '_format', '_pretty', '_contained', '_containedType']);
const ignoredInternal = new Set(['_compartment', '_project']);

class Sql {
  params: unknown[] = [];
  p(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }
}

const prefixes = ['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap'] as const;
type Prefix = (typeof prefixes)[number];

function splitPrefix(value: string): [Prefix, string] {
  const head = value.slice(0, 2);
  if ((prefixes as readonly string[]).includes(head) && /^[a-z]{2}[-\d]/.test(value)) return [head as Prefix, value.slice(2)];
  return ['eq', value];
}

/** Splits a comma-separated OR list, honouring backslash escapes. */
function splitOr(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      cur += value[++i];
    } else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function splitToken(value: string): { system?: string; code?: string } {
  const i = value.indexOf('|');
  if (i < 0) return { code: value };
  return { system: value.slice(0, i), code: value.slice(i + 1) };
}

const sub = (table: string, code: string, sql: Sql, extra: string) =>
  `EXISTS (SELECT 1 FROM ${table} x WHERE x.resource_type = r.resource_type AND x.id = r.id AND x.code = ${sql.p(code)}${extra ? ' AND ' + extra : ''})`;

function tokenPredicate(sql: Sql, code: string, modifier: string | undefined, value: string): string {
  if (modifier === 'text') return sub('sp_token', code, sql, `lower(x.display) LIKE ${sql.p(normalizeString(value).replace(/[%_]/g, '\\$&') + '%')}`);
  if (modifier === 'of-type') {
    const parts = value.split('|');
    if (parts.length !== 3) throw badRequest(`${code}:of-type needs system|code|value`);
    return sub('sp_token', `${code}:of-type`, sql, `x.system = ${sql.p(parts[0] + '|' + parts[1])} AND x.value = ${sql.p(parts[2])}`);
  }
  const { system, code: c } = splitToken(value);
  const conds: string[] = [];
  if (c) conds.push(`x.value = ${sql.p(c)}`);
  if (system !== undefined) conds.push(system === '' ? 'x.system IS NULL' : `x.system = ${sql.p(system)}`);
  if (conds.length === 0) throw badRequest(`Empty token value for ${code}`);
  const match = sub('sp_token', code, sql, conds.join(' AND '));
  return modifier === 'not' ? `NOT ${match}` : match;
}

function referencePredicate(sql: Sql, code: string, modifier: string | undefined, value: string, baseUrl: string | undefined): string {
  if (modifier === 'identifier') {
    const { system, code: v } = splitToken(value);
    const conds = [`x.value = ${sql.p(v)}`];
    if (system) conds.push(`x.system = ${sql.p(system)}`);
    return sub('sp_token', `${code}:identifier`, sql, conds.join(' AND '));
  }
  let ref = value;
  if (baseUrl && ref.startsWith(baseUrl + '/')) ref = ref.slice(baseUrl.length + 1);
  if (/^https?:\/\//.test(ref) || ref.startsWith('urn:')) return sub('sp_reference', code, sql, `x.reference = ${sql.p(ref)}`);
  const m = /^([A-Z][A-Za-z]+)\/([^/]+)$/.exec(ref);
  if (m) return sub('sp_reference', code, sql, `x.target_type = ${sql.p(m[1])} AND x.target_id = ${sql.p(m[2])}`);
  if (modifier && /^[A-Z]/.test(modifier)) return sub('sp_reference', code, sql, `x.target_type = ${sql.p(modifier)} AND x.target_id = ${sql.p(ref)}`);
  return sub('sp_reference', code, sql, `x.target_id = ${sql.p(ref)}`);
}

function stringPredicate(sql: Sql, code: string, modifier: string | undefined, value: string): string {
  const esc = (s: string) => s.replace(/[\\%_]/g, '\\$&');
  if (modifier === 'exact') return sub('sp_string', code, sql, `x.value = ${sql.p(value)}`);
  if (modifier === 'contains') return sub('sp_string', code, sql, `x.norm LIKE ${sql.p('%' + esc(normalizeString(value)) + '%')}`);
  if (modifier) throw badRequest(`Unsupported modifier :${modifier} for string parameter ${code}`);
  return sub('sp_string', code, sql, `x.norm LIKE ${sql.p(esc(normalizeString(value)) + '%')}`);
}

function rangeCondition(prefix: Prefix, lowCol: string, highCol: string, pl: string, ph: string): string {
  switch (prefix) {
    case 'eq':
      return `${lowCol} >= ${pl} AND ${highCol} <= ${ph}`;
    case 'ne':
      return `NOT (${lowCol} >= ${pl} AND ${highCol} <= ${ph})`;
    case 'gt':
      return `${highCol} > ${ph}`;
    case 'lt':
      return `${lowCol} < ${pl}`;
    case 'ge':
      return `${highCol} > ${pl}`;
    case 'le':
      return `${lowCol} < ${ph}`;
    case 'sa':
      return `${lowCol} >= ${ph}`;
    case 'eb':
      return `${highCol} <= ${pl}`;
    case 'ap':
      return `${lowCol} < ${ph} AND ${highCol} > ${pl}`;
    default: {
      const never: never = prefix;
      throw badRequest(`Unknown prefix ${String(never)}`);
    }
  }
}

function datePredicate(sql: Sql, code: string, value: string, column?: string): string {
  const [prefix, v] = splitPrefix(value);
  const range = dateRange(v);
  if (!range) throw badRequest(`Invalid date value "${v}" for ${code}`);
  // Bind only the bounds the condition uses (PostgreSQL rejects untyped unused parameters).
  const bind = (cond: string) =>
    cond.replace(/\bPL\b/g, () => `${sql.p(range[0])}::timestamptz`).replace(/\bPH\b/g, () => `${sql.p(range[1])}::timestamptz`);
  if (column) {
    // A column instant (e.g. _lastUpdated) is a point: its range is [t, t].
    const cond = rangeCondition(prefix, column, column, 'PL', 'PH').replace(`${column} > PH`, `${column} >= PH`);
    return bind(cond);
  }
  const cond = bind(rangeCondition(prefix, 'x.low', 'x.high', 'PL', 'PH'));
  return sub('sp_date', code, sql, cond);
}

function numberPredicate(sql: Sql, table: 'sp_number' | 'sp_quantity', code: string, value: string): string {
  const [prefix, rest] = splitPrefix(value);
  const [num, system, unit] = rest.split('|');
  if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(num)) throw badRequest(`Invalid number "${num}" for ${code}`);
  const n = sql.p(num) + '::numeric';
  const ops: Record<Prefix, string> = { eq: '=', ne: '<>', gt: '>', lt: '<', ge: '>=', le: '<=', sa: '>', eb: '<', ap: '=' };
  let cond = prefix === 'ap' ? `x.value BETWEEN ${n} * 0.9 AND ${n} * 1.1` : `x.value ${ops[prefix]} ${n}`;
  if (table === 'sp_quantity') {
    if (system) cond += ` AND x.system = ${sql.p(system)}`;
    if (unit) cond += ` AND x.unit = ${sql.p(unit)}`;
  }
  return sub(table, code, sql, cond);
}

function uriPredicate(sql: Sql, code: string, modifier: string | undefined, value: string): string {
  if (modifier === 'below') return sub('sp_uri', code, sql, `x.value LIKE ${sql.p(value.replace(/[\\%_]/g, '\\$&') + '%')}`);
  if (modifier === 'above') return sub('sp_uri', code, sql, `${sql.p(value)} LIKE x.value || '%'`);
  return sub('sp_uri', code, sql, `x.value = ${sql.p(value)}`);
}

const tableForType: Record<string, string> = {
  token: 'sp_token', string: 'sp_string', reference: 'sp_reference', date: 'sp_date', number: 'sp_number', quantity: 'sp_quantity', uri: 'sp_uri',
};

function parameterPredicate(sql: Sql, sp: SearchParameter, code: string, modifier: string | undefined, value: string, baseUrl?: string): string {
  if (modifier === 'missing') {
    const table = tableForType[sp.type];
    if (!table) throw badRequest(`:missing is not supported for ${code}`);
    const any = sub(table, code, sql, '');
    if (value === 'true') return `NOT ${any}`;
    if (value === 'false') return any;
    throw badRequest(`:missing takes true or false`);
  }
  const ors = splitOr(value).map((v) => {
    switch (sp.type) {
      case 'token':
        return tokenPredicate(sql, code, modifier, v);
      case 'reference':
        return referencePredicate(sql, code, modifier, v, baseUrl);
      case 'string':
        return stringPredicate(sql, code, modifier, v);
      case 'date':
        return datePredicate(sql, code, v);
      case 'number':
        return numberPredicate(sql, 'sp_number', code, v);
      case 'quantity':
        return numberPredicate(sql, 'sp_quantity', code, v);
      case 'uri':
        return uriPredicate(sql, code, modifier, v);
      default:
        throw badRequest(`Search parameter ${code} of type ${sp.type} is not supported`);
    }
  });
  if (modifier === 'not' && sp.type === 'token') return ors.join(' AND ');
  return ors.length === 1 ? ors[0] : `(${ors.join(' OR ')})`;
}

export interface ParsedSearch {
  where: string[];
  sql: Sql;
  count: number;
  offset: number;
  sort: string[];
  warnings: string[];
  applied: Array<[string, string]>;
  include: string[];
  revinclude: string[];
  total?: string;
  summaryCount: boolean;
}

export function parseSearch(type: string, query: Record<string, string[]>, ctx: RequestContext, rules: VisibilityRule[], strict = false): ParsedSearch {
  const sql = new Sql();
  const params = searchParametersFor(type);
  const where = [`r.resource_type = ${sql.p(type)}`, 'NOT r.deleted'];
  const warnings: string[] = [];
  const applied: Array<[string, string]> = [];
  let count = DEFAULT_COUNT;
  let offset = 0;
  const sort: string[] = [];
  const include: string[] = [];
  const revinclude: string[] = [];
  let total: string | undefined;
  let summaryCount = false;
  const reject = (msg: string) => {
    if (strict) throw badRequest(msg);
    warnings.push(msg);
  };
  for (const [key, values] of Object.entries(query)) {
    const [name, modifier] = key.split(':', 2);
    for (const value of values) {
      if (name === '_count') {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) reject(`_count must be a non-negative integer`);
        else count = Math.min(n, MAX_COUNT);
        applied.push([key, String(count)]);
      } else if (name === '_offset') {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) reject(`_offset must be a non-negative integer`);
        else offset = n;
      } else if (name === '_sort') {
        sort.push(...value.split(',').filter(Boolean));
        applied.push([key, value]);
      } else if (name === '_include') {
        include.push(modifier ? `${value}:${modifier}` : value);
        applied.push([key, value]);
      } else if (name === '_revinclude') {
        revinclude.push(modifier ? `${value}:${modifier}` : value);
        applied.push([key, value]);
      } else if (name === '_total') {
        if (!['none', 'estimate', 'accurate'].includes(value)) reject(`_total must be none, estimate or accurate`);
        else total = value;
        applied.push([key, value]);
      } else if (name === '_summary') {
        if (value === 'count') summaryCount = true;
        applied.push([key, value]);
      } else if (resultParams.has(name)) {
        applied.push([key, value]);
      } else if (name === '_id') {
        where.push(`r.id = ANY(${sql.p(splitOr(value))}::text[])`);
        applied.push([key, value]);
      } else if (name === '_lastUpdated') {
        where.push(datePredicate(sql, name, value, 'r.last_updated'));
        applied.push([key, value]);
      } else if (ignoredInternal.has(name) || !params[name]) {
        reject(`Unknown search parameter "${key}" for ${type}`);
      } else {
        try {
          where.push(parameterPredicate(sql, params[name], name, modifier, value, ctx.baseUrl));
          applied.push([key, value]);
        } catch (e) {
          if (strict) throw e;
          warnings.push((e as Error).message);
        }
      }
    }
  }
  const vis = visibilityPredicate(ctx, rules);
  if (vis) {
    let i = 0;
    where.push(vis.sql.replace(/\$\?/g, () => sql.p(vis.params[i++])));
  }
  return { where, sql, count, offset, sort, warnings, applied, include, revinclude, total, summaryCount };
}

function orderBy(type: string, sort: string[], sql: Sql): string {
  if (sort.length === 0) return 'r.last_updated, r.id';
  const params = searchParametersFor(type);
  const parts = sort.map((s) => {
    const desc = s.startsWith('-');
    const name = desc ? s.slice(1) : s;
    const dir = desc ? 'DESC' : 'ASC';
    if (name === '_id') return `r.id ${dir}`;
    if (name === '_lastUpdated') return `r.last_updated ${dir}`;
    const sp = params[name];
    if (!sp) throw badRequest(`Unknown sort parameter ${name}`);
    const col: Record<string, [string, string]> = {
      string: ['sp_string', 'norm'], token: ['sp_token', 'value'], date: ['sp_date', desc ? 'high' : 'low'], number: ['sp_number', 'value'],
      quantity: ['sp_quantity', 'value'], reference: ['sp_reference', 'reference'], uri: ['sp_uri', 'value'],
    };
    const c = col[sp.type];
    if (!c) throw badRequest(`Cannot sort by ${name}`);
    const agg = desc ? 'max' : 'min';
    return `(SELECT ${agg}(x.${c[1]}) FROM ${c[0]} x WHERE x.resource_type = r.resource_type AND x.id = r.id AND x.code = ${sql.p(name)}) ${dir} NULLS LAST`;
  });
  return parts.join(', ') + ', r.id';
}

export async function searchResources(db: Db, ctx: RequestContext, rules: VisibilityRule[], type: string | undefined, query: Record<string, string[]>, strict = false): Promise<SearchResult> {
  if (!type) throw badRequest('System-level search needs _type');
  const s = parseSearch(type, query, ctx, rules, strict);
  const whereSql = s.where.join(' AND ');
  let total: number | undefined;
  if (s.summaryCount || s.total === 'accurate' || s.total === 'estimate') {
    const c = await db.query<{ n: string }>(`SELECT count(*) AS n FROM resource r WHERE ${whereSql}`, s.sql.params);
    total = Number(c.rows[0]?.n ?? 0);
  }
  if (s.summaryCount) return { entries: [], total, hasMore: false, offset: 0, count: 0, warnings: s.warnings, applied: s.applied, summaryCount: true };
  const order = orderBy(type, s.sort, s.sql);
  const limit = s.sql.p(s.count + 1);
  const off = s.sql.p(s.offset);
  const r = await db.query<{ content: string; id: string }>(`SELECT r.content, r.id FROM resource r WHERE ${whereSql} ORDER BY ${order} LIMIT ${limit} OFFSET ${off}`, s.sql.params);
  const hasMore = r.rows.length > s.count;
  const rows = hasMore ? r.rows.slice(0, s.count) : r.rows;
  if (total === undefined && s.total !== 'none' && !hasMore && (s.offset === 0 || rows.length > 0)) total = s.offset + rows.length;
  const entries: SearchEntry[] = rows.map((row) => ({ resource: JSON.parse(row.content) as Resource, mode: 'match' }));
  if (entries.length > 0 && (s.include.length > 0 || s.revinclude.length > 0)) {
    entries.push(...(await includes(db, ctx, rules, type, entries.map((e) => e.resource), s.include, s.revinclude)));
  }
  return { entries, total, hasMore, offset: s.offset, count: s.count, warnings: s.warnings, applied: s.applied, summaryCount: false };
}

async function includes(db: Db, ctx: RequestContext, rules: VisibilityRule[], type: string, matches: Resource[], include: string[], revinclude: string[]): Promise<SearchEntry[]> {
  const seen = new Set(matches.map((m) => `${m.resourceType}/${m.id}`));
  const out: SearchEntry[] = [];
  let frontier = matches;
  const vis = () => {
    const v = visibilityPredicate(ctx, rules);
    return v;
  };
  for (let round = 0; round < 4 && frontier.length > 0; round++) {
    const next: Resource[] = [];
    const iterateOnly = round > 0;
    for (const spec of include) {
      const [srcType, code, targetType, iterate] = parseIncludeSpec(spec);
      if (iterateOnly && !iterate) continue;
      const sources = frontier.filter((m) => srcType === '*' || m.resourceType === srcType);
      if (sources.length === 0) continue;
      const sql = new Sql();
      const conds = [
        `x.resource_type = ANY(${sql.p([...new Set(sources.map((s) => s.resourceType))])}::text[])`,
        `x.id = ANY(${sql.p(sources.map((s) => s.id))}::text[])`,
      ];
      if (code !== '*') conds.push(`x.code = ${sql.p(code)}`);
      if (targetType) conds.push(`x.target_type = ${sql.p(targetType)}`);
      const v = vis();
      let visSql = 'true';
      if (v) {
        let i = 0;
        visSql = v.sql.replace(/\$\?/g, () => sql.p(v.params[i++]));
      }
      const r = await db.query<{ content: string }>(
        `SELECT DISTINCT r.content, r.resource_type, r.id FROM sp_reference x JOIN resource r ON r.resource_type = x.target_type AND r.id = x.target_id
         WHERE ${conds.join(' AND ')} AND NOT r.deleted AND ${visSql} LIMIT 1000`,
        sql.params,
      );
      for (const row of r.rows) {
        const res = JSON.parse(row.content) as Resource;
        const key = `${res.resourceType}/${res.id}`;
        if (!seen.has(key)) {
          seen.add(key);
          out.push({ resource: res, mode: 'include' });
          next.push(res);
        }
      }
    }
    for (const spec of revinclude) {
      const [srcType, code, , iterate] = parseIncludeSpec(spec);
      if (iterateOnly && !iterate) continue;
      const sql = new Sql();
      const conds = [
        `x.resource_type = ${sql.p(srcType)}`,
        `x.target_type = ANY(${sql.p([...new Set(frontier.map((s) => s.resourceType))])}::text[])`,
        `x.target_id = ANY(${sql.p(frontier.map((s) => s.id))}::text[])`,
      ];
      if (code !== '*') conds.push(`x.code = ${sql.p(code)}`);
      const v = vis();
      let visSql = 'true';
      if (v) {
        let i = 0;
        visSql = v.sql.replace(/\$\?/g, () => sql.p(v.params[i++]));
      }
      const r = await db.query<{ content: string }>(
        `SELECT DISTINCT r.content, r.resource_type, r.id FROM sp_reference x JOIN resource r ON r.resource_type = x.resource_type AND r.id = x.id
         WHERE ${conds.join(' AND ')} AND NOT r.deleted AND ${visSql} LIMIT 1000`,
        sql.params,
      );
      for (const row of r.rows) {
        const res = JSON.parse(row.content) as Resource;
        const key = `${res.resourceType}/${res.id}`;
        if (!seen.has(key)) {
          seen.add(key);
          out.push({ resource: res, mode: 'include' });
          next.push(res);
        }
      }
    }
    frontier = next;
  }
  void type;
  return out;
}

/** "Task:focus", "Task:focus:Patient", with ":iterate" appended by the parser. */
function parseIncludeSpec(spec: string): [string, string, string | undefined, boolean] {
  const iterate = spec.endsWith(':iterate');
  const parts = (iterate ? spec.slice(0, -':iterate'.length) : spec).split(':');
  if (parts.length < 2) throw badRequest(`Invalid include "${spec}"`);
  return [parts[0], parts[1], parts[2], iterate];
}
