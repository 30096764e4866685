// FHIR search over the index tables: one query per page (plus one per include round, and a count
// only when _total asks for it). Every predicate is parameterised SQL; the visibility rule
// (access.ts) is part of the same query, so totals, paging, chains, _has and _include reveal
// nothing hidden. Parsing: search-query.ts; predicates: search-sql.ts; order and cursors:
// search-cursor.ts; includes: search-include.ts; _summary/_elements output: search-elements.ts.
import type { Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { badRequest } from '@tic/fhir';
import type { VisibilityRule } from './access.ts';
import type { Db, QueryOptions } from './db.ts';
import type { Cursor, OrderPlan } from './search-cursor.ts';
import { decodeCursor, encodeCursor, keysetSql, orderBySql, orderPlan } from './search-cursor.ts';
import { firstIncludeRoundSql, loadIncludes, MAX_INCLUDED } from './search-include.ts';
import type { Filter, ParsedQuery, SummaryMode } from './search-query.ts';
import { parseQuery } from './search-query.ts';
import type { SqlContext } from './search-sql.ts';
import { dateCandidatesSql, dateFirstRowsSql, dateWindow, driverSql, filterSql, lastUpdatedSql, pickDriver, Sql, visibilitySql } from './search-sql.ts';

export { DEFAULT_COUNT, MAX_COUNT } from './search-query.ts';
export { applyElements, summarize, SUBSETTED } from './search-elements.ts';

export interface SearchEntry {
  resource: Resource;
  mode: 'match' | 'include';
}

export interface SearchResult {
  entries: SearchEntry[];
  total?: number;
  /** True when there are further matches after this page. */
  hasMore: boolean;
  offset: number;
  count: number;
  /** Parameters that were ignored, with why (reported in an OperationOutcome entry). */
  warnings: string[];
  /** The parameters actually applied, for the self link. */
  applied: Array<[string, string]>;
  summaryCount: boolean;
  /** Opaque `_cursor` value of the next page (keyset paging), when there is one. */
  nextCursor?: string;
  /** Opaque `_cursor` value of the previous page, when this is not the first page. */
  prevCursor?: string;
  /** `_summary` mode requested (other than count), for the REST layer to apply with summarize(). */
  summary?: Exclude<SummaryMode, 'count'>;
  /** `_elements` requested, for the REST layer to apply with applyElements(). */
  elements?: string[];
}

/** Above this many matches `_total=estimate` stops counting and uses the planner's estimate. */
export const ESTIMATE_COUNT_CAP = 10_000;

/**
 * Most index rows gathered for a date window before its page is found by the ordered walk
 * instead: sorting a few thousand candidates costs about what walking to a page costs when the
 * window holds that many matches.
 */
export const CANDIDATE_CAP = 2000;

export interface SearchOptions {
  /** Prefer: handling=strict — unknown or malformed parameters answer 400 instead of warnings. */
  strict?: boolean;
  /** Fixed "now" for ap date ranges (tests). */
  now?: number;
  /** Overrides CANDIDATE_CAP (tests of the walk that takes over from gathering). */
  candidateCap?: number;
  /** Gathers date windows without first reading their first rows by bucket (tests). */
  noBuckets?: boolean;
}

export async function searchResources(
  db: Db,
  ctx: RequestContext,
  rules: VisibilityRule[],
  type: string | undefined,
  query: Record<string, string[]>,
  strictOrOptions: boolean | SearchOptions = false,
): Promise<SearchResult> {
  const options = typeof strictOrOptions === 'boolean' ? { strict: strictOrOptions } : strictOrOptions;
  if (!type) throw badRequest('System-level search needs a resource type');
  const q = parseQuery(type, query, options.strict ?? false);
  // One "now" for the whole search: ap ranges and date windows (search-sql.ts) must agree.
  const base = { ctx, rules, baseUrl: ctx.baseUrl, now: options.now ?? Date.now() };

  const where = (sql: Sql, skip = -1, alias = 'r'): string => {
    const c: SqlContext = { ...base, sql };
    const parts = [`r.resource_type = ${sql.p(type)}`, 'NOT r.deleted', ...q.filters.filter((_, i) => i !== skip).map((f) => filterSql({ ...c, alias }, f))];
    const vis = visibilitySql(c);
    if (vis !== 'true') parts.push(vis);
    return parts.join(' AND ');
  };

  const result: SearchResult = {
    entries: [],
    hasMore: false,
    offset: q.cursor ? 0 : q.offset,
    count: q.count,
    warnings: q.warnings,
    applied: q.applied,
    summaryCount: q.summary === 'count',
  };
  if (q.summary && q.summary !== 'count') result.summary = q.summary;
  if (q.elements) result.elements = q.elements;

  const countDriver = pickDriver(q.filters);
  // Open on one side too (date=geD): gathered from one range of sp_date_high_idx (low for lt)
  // when it holds at most the cap, otherwise walked in last_updated order.
  const countWin = countDriver >= 0 ? dateWindow(q.filters, countDriver, base.now, true) : undefined;
  const countFrom: CountFrom = (sql) => {
    if (countDriver < 0) return `resource r WHERE ${where(sql)}`;
    const c: SqlContext = { ...base, sql };
    const d = countWin
      ? `SELECT DISTINCT dc.last_updated, dc.id FROM (${dateCandidatesSql(c, type, q.filters[countDriver], countWin, () => [])}) dc`
      : driverSql(c, type, q.filters[countDriver], () => [], false);
    return `(${d}) d CROSS JOIN LATERAL (SELECT 1 FROM resource r WHERE r.id = d.id AND ${where(sql, countWin && !countWin.exact ? -1 : countDriver, 'd')} OFFSET 0) r`;
  };

  if (q.summary === 'count' || q.count === 0) {
    result.total = q.total === 'none' ? undefined : await countMatches(db, countFrom, where, q.total === 'estimate');
    return result;
  }

  const plan = orderPlan(new Sql(), type, q.sort);
  let cursor: Cursor | undefined;
  if (q.cursor) {
    try {
      cursor = decodeCursor(plan, q.cursor);
    } catch (e) {
      if (options.strict) throw e;
      q.warnings.push((e as Error).message);
    }
  }
  const reverse = cursor?.direction === 'p';
  // Sorted by _lastUpdated (the default): drive the search from the index rows of its narrowest
  // filter in last_updated order (search-plans.md), the cursor and _lastUpdated bounds applied
  // to that walk; the resource row is read only for candidates, with every other filter and the
  // visibility rule checked on it as before.
  const driver = plan.signature === '_lastUpdated' || plan.signature === '-_lastUpdated' ? countDriver : -1;
  // A date parameter bounded on both sides: its rows in the window are gathered by span class and
  // sorted (few, wherever the window lies), unless there are more than CANDIDATE_CAP of them; then
  // the walk in last_updated order finds a page sooner. Bounded on one side: the same with one
  // index range (PostgreSQL sorted every row above D for a page: 17 ms at 100k). Unless the window is exact (one filter, no
  // ap) its rows are candidates and every filter is still probed.
  const win = driver >= 0 ? countWin : undefined;
  const skip = win && !win.exact ? -1 : driver;
  const cap = Math.max(0, Math.trunc(options.candidateCap ?? CANDIDATE_CAP)); // a literal in the SQL
  // Round 0 of _include/_revinclude runs in the page's own statement (search-include.ts).
  const inlineIncludes = q.include.length > 0;
  // 'first': a date window's first rows by bucket (dateFirstRowsSql); 'gather': all its rows up to
  // the cap, sorted; 'walk': the driving filter's rows in last_updated order.
  type Mode = 'first' | 'gather' | 'walk';
  const pageQuery = (mode: Mode): { text: string; params: unknown[] } | undefined => {
    const gather = mode !== 'walk';
    const sql = new Sql();
    const plan = orderPlan(sql, type, q.sort);
    const keyCols = plan.keys.map((k, i) => `(${k.expr})::text AS k${i}`).join(', ');
    // Limits are literals (numbers of ours, not the client's text): a prepared statement's generic
    // plan then knows them as the custom plans do, and keeps walking an index in order for a page.
    const page = ` LIMIT ${q.count + 1}` + (cursor || result.offset === 0 ? '' : ` OFFSET ${sql.p(result.offset)}`);
    const ctes: string[] = [];
    let body: string;
    if (driver < 0) {
      const conds = [where(sql)];
      if (cursor) conds.push(keysetSql(sql, plan, cursor.values, reverse));
      body = `SELECT r.content, ${keyCols}, r.id AS rid FROM resource r ${plan.joins.join(' ')} WHERE ${conds.join(' AND ')} ORDER BY ${orderBySql(plan, reverse)}${page}`;
    } else {
      const c: SqlContext = { ...base, sql };
      const desc = plan.keys[0].desc !== reverse;
      const on = (alias: string): OrderPlan => ({ ...plan, keys: plan.keys.map((k) => ({ ...k, expr: k.expr.replace(/^r\./, `${alias}.`) })) });
      const extra = (x: string) => [
        ...(cursor ? [keysetSql(sql, on(x), cursor.values, reverse)] : []),
        ...q.filters.flatMap((f) => (f.kind === 'lastUpdated' ? [lastUpdatedSql(c, f, `${x}.last_updated`)] : [])),
      ];
      const dir = desc ? 'DESC' : 'ASC';
      const limit = q.count + 1;
      const first = win && mode === 'first' ? dateFirstRowsSql(c, type, q.filters[driver], win, extra, desc, limit) : undefined;
      if (mode === 'first' && !first) return undefined;
      const d = first
        ? 'SELECT bk.last_updated, bk.id FROM bk'
        : win && gather
          ? `SELECT DISTINCT dc.last_updated, dc.id FROM dc WHERE (SELECT count(*) FROM dc) <= ${cap} ORDER BY dc.last_updated ${dir}, dc.id ${dir}`
          : driverSql(c, type, q.filters[driver], extra, desc, win);
      // LATERAL … OFFSET 0 keeps the walk in order: PostgreSQL would otherwise often intersect the
      // full match sets by hash and sort them, which costs the organisation's whole history. The
      // other filters test d.id, so they run as index-only probes before the resource row is read.
      body =
        `SELECT r.content, ${keyCols}, r.id AS rid FROM (${d}) d CROSS JOIN LATERAL (SELECT r.content, r.last_updated, r.id FROM resource r` +
        ` WHERE r.id = d.id AND ${where(sql, skip, 'd')} OFFSET 0) r ORDER BY ${orderBySql(on('d'), reverse)}${page}`;
      const nulls = `SELECT NULL${plan.keys.map(() => ', NULL').join('')}, NULL`;
      if (first) {
        // The first `limit` candidates: when some fail a filter or the visibility rule and the
        // window may hold more, the page is not known from them; a row of NULLs says so.
        ctes.push(`bk AS MATERIALIZED (${first})`, `pg AS MATERIALIZED (${body})`);
        body = `SELECT * FROM pg UNION ALL ${nulls} WHERE (SELECT count(*) FROM bk) >= ${limit} AND (SELECT count(*) FROM pg) < ${limit}`;
      } else if (win && gather) {
        // The candidates are gathered once (at most CANDIDATE_CAP + 1); past the cap the page is
        // empty and a row of NULLs says so.
        ctes.push(`dc AS MATERIALIZED (${dateCandidatesSql(c, type, q.filters[driver], win, extra)} LIMIT ${cap + 1})`);
        body = `(${body}) UNION ALL ${nulls} WHERE (SELECT count(*) FROM dc) > ${cap}`;
      }
    }
    const keys = inlineIncludes ? firstIncludeRoundSql(sql, type, q.include, () => `SELECT p.rid FROM pagerows p LIMIT ${q.count}`) : undefined;
    if (!keys) return { text: ctes.length > 0 ? `WITH ${ctes.join(', ')} ${body}` : body, params: sql.params };
    // Page rows first (in order), then the resources they include.
    ctes.push(`pagerows AS MATERIALIZED (${body})`);
    const vis = visibilitySql({ ...base, sql });
    const text =
      `WITH ${ctes.join(', ')} SELECT p.*, false AS inc FROM pagerows p UNION ALL (SELECT r.content${plan.keys.map(() => ', NULL').join('')}, r.id, true` +
      ` FROM (SELECT DISTINCT k.t, k.i FROM (${keys}) k) k JOIN resource r ON r.resource_type = k.t AND r.id = k.i WHERE NOT r.deleted AND ${vis} LIMIT ${MAX_INCLUDED + q.count + 1})`;
    return { text, params: sql.params };
  };
  type PageRow = Record<string, string | boolean | null>;
  // Pages driven by an equality or prefix, or by a gathered date window, have one plan whatever
  // the values (an index range read in full or walked in order, the rest fenced off): repeated
  // shapes are prepared (preparedSearch). Others are planned each time, from the values: undriven
  // pages choose between walking in order and hashing, one-sided ranges and wide windows between
  // walking in order and sorting what the range holds (a generic plan sorted a whole year, 18 ms,
  // instead of walking 21 rows).
  const prepare = driver >= 0 && (win ? !win.oneSided : fixedPlanDriver(q.filters[driver]));
  // A date window's first page (no offset) from its first rows by bucket, unless it touches too
  // many buckets or those rows do not make the page; then from its gathered rows, unless there
  // are too many; then by the walk.
  let r: { rows: PageRow[] } | undefined;
  const firstPage = win && result.offset === 0 && !options.noBuckets ? pageQuery('first') : undefined;
  if (firstPage) r = await db.query<PageRow>(firstPage.text, firstPage.params, preparedSearch(firstPage.text, prepare));
  if (!r || (win && r.rows.some((row) => row.content === null))) {
    const pq = pageQuery('gather')!;
    r = await db.query<PageRow>(pq.text, pq.params, preparedSearch(pq.text, prepare));
  }
  if (win && r.rows.some((row) => row.content === null)) {
    const pq = pageQuery('walk')!;
    r = await db.query<PageRow>(pq.text, pq.params);
  }
  const included = r.rows.filter((row) => row.inc === true);
  const matched = included.length > 0 ? r.rows.filter((row) => row.inc !== true) : r.rows;
  const more = matched.length > q.count;
  let rows = more ? matched.slice(0, q.count) : matched;
  if (reverse) rows = rows.reverse();
  const keysOf = (row: PageRow) => plan.keys.map((_, i) => (row[`k${i}`] as string | null) ?? null);

  if (reverse) {
    // Walking back: there is always a next page (where we came from); a previous one if more.
    result.hasMore = rows.length > 0;
    if (rows.length > 0) result.nextCursor = encodeCursor(plan, { direction: 'n', values: keysOf(rows[rows.length - 1]) });
    if (more) result.prevCursor = encodeCursor(plan, { direction: 'p', values: keysOf(rows[0]) });
  } else {
    result.hasMore = more;
    if (more && rows.length > 0) result.nextCursor = encodeCursor(plan, { direction: 'n', values: keysOf(rows[rows.length - 1]) });
    if ((cursor || result.offset > 0) && rows.length > 0) result.prevCursor = encodeCursor(plan, { direction: 'p', values: keysOf(rows[0]) });
  }
  result.entries = rows.map((row) => ({ resource: JSON.parse(row.content as string) as Resource, mode: 'match' }));

  if (q.total === 'accurate' || q.total === 'estimate') {
    result.total = await countMatches(db, countFrom, where, q.total === 'estimate');
  } else if (q.total === undefined && !cursor && !more && (result.offset === 0 || rows.length > 0)) {
    // The whole match set is known without counting.
    result.total = result.offset + rows.length;
  }

  if (result.entries.length > 0 && q.include.length > 0) {
    const inc = await loadIncludes(
      db,
      base,
      result.entries.map((e) => e.resource),
      q.include,
      included.map((row) => JSON.parse(row.content as string) as Resource),
    );
    for (const res of inc.resources) result.entries.push({ resource: res, mode: 'include' });
    if (inc.truncated) result.warnings.push(`Included resources were limited to ${MAX_INCLUDED}`);
  }
  return result;
}

/** A driving filter whose index rows are one equality or prefix range (search-sql.ts driverSql). */
function fixedPlanDriver(f: Filter): boolean {
  return f.kind === 'param' && (f.sp.type === 'token' || f.sp.type === 'reference' || f.sp.type === 'string' || f.sp.type === 'uri');
}

/** Most search statement shapes prepared per process (db.ts bounds all prepared statements together). */
export const MAX_PREPARED_SEARCHES = 64;
/** Most unprepared shapes remembered while waiting for a second use. */
const MAX_SEEN_SEARCHES = 1024;
const preparedSearches = new Set<string>();
const seenSearches = new Set<string>();

/**
 * Prepares a search statement (parsed and planned once per connection, db.ts) when `eligible` and
 * its text has been sent before: the text depends only on the query's shape, the values are
 * parameters. At most MAX_PREPARED_SEARCHES shapes, first repeated first, so one-off shapes do not
 * use up the slots the writes' statements need.
 */
function preparedSearch(text: string, eligible: boolean): QueryOptions | undefined {
  if (!eligible) return undefined;
  if (preparedSearches.has(text)) return PREPARE;
  if (preparedSearches.size >= MAX_PREPARED_SEARCHES) return undefined;
  if (seenSearches.has(text)) {
    seenSearches.delete(text);
    preparedSearches.add(text);
    return PREPARE;
  }
  if (seenSearches.size >= MAX_SEEN_SEARCHES) seenSearches.clear();
  seenSearches.add(text);
  return undefined;
}
const PREPARE: QueryOptions = { prepare: true };

/** Statement texts prepared by searches so far (tests). */
export function preparedSearchCount(): number {
  return preparedSearches.size;
}

/** Matched rows for counting: driven from the narrowest filter's index rows like a page, when one fits. */
type CountFrom = (sql: Sql) => string;

async function countMatches(db: Db, from: CountFrom, where: (sql: Sql) => string, estimate: boolean): Promise<number> {
  if (!estimate) {
    const sql = new Sql();
    const c = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${from(sql)}`, sql.params);
    return Number(c.rows[0]?.n ?? 0);
  }
  const cap = ESTIMATE_COUNT_CAP;
  const capped = new Sql();
  const c = await db.query<{ n: string }>(`SELECT count(*) AS n FROM (SELECT 1 FROM ${from(capped)} LIMIT ${cap + 1}) t`, capped.params);
  const sql = new Sql();
  const w = where(sql);
  const n = Number(c.rows[0]?.n ?? 0);
  if (n <= cap) return n;
  // Many matches: the planner's row estimate is good enough for "estimate" and costs no scan.
  try {
    const e = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE ${w}`, sql.params);
    const raw = e.rows[0]?.['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as Array<{ Plan: { 'Plan Rows': number } }>;
    return Math.max(n, Math.round(plan[0].Plan['Plan Rows']));
  } catch {
    return n;
  }
}

/** Parses a query without running it (for callers that only need validation or the applied list). */
export function parseSearch(type: string, query: Record<string, string[]>, strict = false): ParsedQuery {
  return parseQuery(type, query, strict);
}
