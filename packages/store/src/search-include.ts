// _include and _revinclude (with :iterate): one query per round gathers the keys of every
// referenced (or referencing) resource from sp_reference, then reads those resources through the
// same visibility predicate as the match itself, so nothing hidden is ever included.
import type { Resource } from '@medplum/fhirtypes';
import type { Db } from './db.ts';
import type { IncludeSpec } from './search-query.ts';
import type { SqlContext } from './search-sql.ts';
import { storedReferenceCodes } from './indexer.ts';
import { referenceCodeSql, Sql, visibilitySql } from './search-sql.ts';

/** Most resources added by includes to one page (further ones are left out with a warning). */
export const MAX_INCLUDED = 1000;
const MAX_ROUNDS = 4;

export interface IncludeResult {
  resources: Resource[];
  truncated: boolean;
}

function keysOf(resources: Resource[]): { types: string[]; ids: string[] } {
  return { types: resources.map((r) => r.resourceType), ids: resources.map((r) => r.id!) };
}

/**
 * The code condition of a reverse spec over alias `x`: its parameter's rows (referenceCodeSql), or
 * for `Type:*` every code `Type` stores sp_reference rows under, so that the look-up by target is
 * served by sp_reference_target_updated_idx (resource_type, code, target_id, target_type, …): one
 * descent per code and target. Undefined when `Type` stores no reference rows (nothing to find).
 */
function reverseCodeSql(sql: Sql, spec: IncludeSpec): string | undefined {
  if (spec.code !== '*') return referenceCodeSql(sql, spec.sourceType, spec.code);
  const codes = storedReferenceCodes(spec.sourceType);
  if (codes.length === 0) return undefined;
  return codes.length === 1 ? `x.code = ${sql.p(codes[0])}` : `x.code = ANY(${sql.p(codes)}::text[])`;
}

/** The key query of one spec applied to `frontier`, or undefined when it cannot apply. */
function specSql(sql: Sql, spec: IncludeSpec, frontier: Resource[]): string | undefined {
  if (!spec.reverse) {
    const sources = frontier.filter((m) => m.resourceType === spec.sourceType);
    if (sources.length === 0) return undefined;
    const conds = [`x.resource_type = ${sql.p(spec.sourceType)}`, `x.id = ANY(${sql.p(sources.map((s) => s.id))}::text[])`, 'x.target_type IS NOT NULL'];
    if (spec.code !== '*') conds.push(referenceCodeSql(sql, spec.sourceType, spec.code));
    if (spec.targetType) conds.push(`x.target_type = ${sql.p(spec.targetType)}`);
    return `SELECT x.target_type AS t, x.target_id AS i FROM sp_reference x WHERE ${conds.join(' AND ')}`;
  }
  const codes = reverseCodeSql(sql, spec);
  if (!codes) return undefined;
  const { types, ids } = keysOf(frontier);
  const conds = [`x.resource_type = ${sql.p(spec.sourceType)}`, codes, `(x.target_type, x.target_id) IN (SELECT * FROM unnest(${sql.p(types)}::text[], ${sql.p(ids)}::text[]))`];
  if (spec.targetType) conds.push(`x.target_type = ${sql.p(spec.targetType)}`);
  return `SELECT x.resource_type AS t, x.id AS i FROM sp_reference x WHERE ${conds.join(' AND ')}`;
}

/**
 * The keys (t, i) of round 0 for matches of `type` whose ids the SQL subquery `idsSql()` yields, or
 * undefined when no spec applies to `type`: the same rows specSql finds, read inside the page's
 * own statement so a page with its includes is one round trip.
 */
export function firstIncludeRoundSql(sql: Sql, type: string, specs: IncludeSpec[], idsSql: () => string): string | undefined {
  const parts: string[] = [];
  let bound: string | undefined;
  const ids = () => (bound ??= idsSql()); // binds its parameters once, and only when used
  for (const spec of specs) {
    if (!spec.reverse) {
      if (spec.sourceType !== type) continue;
      const conds = [`x.resource_type = ${sql.p(type)}`, `x.id IN (${ids()})`, 'x.target_type IS NOT NULL'];
      if (spec.code !== '*') conds.push(referenceCodeSql(sql, type, spec.code));
      if (spec.targetType) conds.push(`x.target_type = ${sql.p(spec.targetType)}`);
      parts.push(`SELECT x.target_type AS t, x.target_id AS i FROM sp_reference x WHERE ${conds.join(' AND ')}`);
    } else {
      if (spec.targetType && spec.targetType !== type) continue;
      const codes = reverseCodeSql(sql, spec);
      if (!codes) continue;
      const conds = [`x.resource_type = ${sql.p(spec.sourceType)}`, codes, `x.target_type = ${sql.p(type)}`, `x.target_id IN (${ids()})`];
      parts.push(`SELECT x.resource_type AS t, x.id AS i FROM sp_reference x WHERE ${conds.join(' AND ')}`);
    }
  }
  return parts.length > 0 ? parts.join(' UNION ') : undefined;
}

/**
 * Resources included for the page `matches`, in first-seen order, without the matches themselves.
 * `firstRound`: round 0's resources when the page's statement already read them
 * (firstIncludeRoundSql); later rounds (:iterate) are read here.
 */
export async function loadIncludes(db: Db, base: Omit<SqlContext, 'sql'>, matches: Resource[], specs: IncludeSpec[], firstRound?: Resource[]): Promise<IncludeResult> {
  const seen = new Set(matches.map((m) => `${m.resourceType}/${m.id}`));
  const out: Resource[] = [];
  let frontier = matches;
  let truncated = false;
  for (let round = 0; round < MAX_ROUNDS && frontier.length > 0 && !truncated; round++) {
    let found: Resource[];
    if (round === 0 && firstRound) {
      found = firstRound;
    } else {
      const sql = new Sql();
      const parts = specs
        .filter((s) => round === 0 || s.iterate)
        .map((s) => specSql(sql, s, frontier))
        .filter((s): s is string => s !== undefined);
      if (parts.length === 0) break;
      const vis = visibilitySql({ ...base, sql });
      const room = MAX_INCLUDED - out.length;
      const r = await db.query<{ content: string }>(
        `WITH k AS (${parts.join(' UNION ')})
       SELECT r.content FROM k JOIN resource r ON r.resource_type = k.t AND r.id = k.i
       WHERE NOT r.deleted AND ${vis} LIMIT ${sql.p(room + seen.size + 1)}`,
        sql.params,
      );
      found = r.rows.map((row) => JSON.parse(row.content) as Resource);
    }
    const next: Resource[] = [];
    for (const res of found) {
      const key = `${res.resourceType}/${res.id}`;
      if (seen.has(key)) continue;
      if (out.length >= MAX_INCLUDED) {
        truncated = true;
        break;
      }
      seen.add(key);
      out.push(res);
      next.push(res);
    }
    frontier = next;
  }
  return { resources: out, truncated };
}
