// Sort order and keyset paging. Every page is ordered by the requested keys then r.id, so the order
// is total; a cursor carries the sort key values of the row at the page edge, and the next page is
// "rows after that key" instead of an offset. Pages therefore stay correct while others write:
// nothing is skipped or repeated when rows are inserted or deleted before the cursor.
import { badRequest } from '@tic/fhir';
import { indexCodes } from './indexer.ts';
import type { SortKey } from './search-query.ts';
import type { Sql } from './search-sql.ts';
import { referenceCodeSql, tableForType } from './search-sql.ts';

export interface OrderKey {
  /** SQL expression of the key value. */
  expr: string;
  /** Type to cast cursor values to. */
  cast: 'text' | 'timestamptz' | 'numeric';
  desc: boolean;
  nullable: boolean;
}

export interface OrderPlan {
  keys: OrderKey[];
  /** LEFT JOIN LATERAL clauses computing parameter sort values. */
  joins: string[];
  /** Stable signature of the sort, carried in cursors so a cursor is only used with its own sort. */
  signature: string;
}

const sortColumn: Record<string, { column: string; cast: OrderKey['cast'] }> = {
  string: { column: 'norm', cast: 'text' },
  token: { column: 'value', cast: 'text' },
  reference: { column: 'reference', cast: 'text' },
  number: { column: 'value', cast: 'numeric' },
  quantity: { column: 'value', cast: 'numeric' },
  uri: { column: 'value', cast: 'text' },
};

/** The order for the parsed sort keys; default: last updated, oldest first. */
export function orderPlan(sql: Sql, type: string, sort: SortKey[]): OrderPlan {
  const keys: OrderKey[] = [];
  const joins: string[] = [];
  const effective = sort.length > 0 ? sort : [{ name: '_lastUpdated', desc: false }];
  for (const s of effective) {
    if (s.name === '_id') {
      keys.push({ expr: 'r.id', cast: 'text', desc: s.desc, nullable: false });
    } else if (s.name === '_lastUpdated') {
      keys.push({ expr: 'r.last_updated', cast: 'timestamptz', desc: s.desc, nullable: false });
    } else {
      const sp = s.sp!;
      const alias = `s${joins.length}`;
      let column: string;
      let cast: OrderKey['cast'];
      if (sp.type === 'date') {
        column = s.desc ? 'high' : 'low';
        cast = 'timestamptz';
      } else {
        const c = sortColumn[sp.type];
        if (!c) throw badRequest(`Cannot sort by ${s.name}`);
        column = c.column;
        cast = c.cast;
      }
      const agg = s.desc ? 'max' : 'min';
      // A derived reference parameter (patient) sorts by its base rows of its target type.
      const rows = sp.type === 'reference' ? referenceCodeSql(sql, type, s.name) : `x.code = ANY(${sql.p(indexCodes(type, s.name))}::text[])`;
      joins.push(`LEFT JOIN LATERAL (SELECT ${agg}(x.${column}) AS v FROM ${tableForType[sp.type]} x WHERE x.resource_type = ${sql.p(type)} AND x.id = r.id AND ${rows}) ${alias} ON true`);
      keys.push({ expr: `${alias}.v`, cast, desc: s.desc, nullable: true });
    }
  }
  // r.id makes the order total; it follows the last key's direction so `_sort=-_lastUpdated` is one
  // backward scan of the (resource_type, last_updated, id) index.
  if (!keys.some((k) => k.expr === 'r.id')) keys.push({ expr: 'r.id', cast: 'text', desc: keys[keys.length - 1].desc, nullable: false });
  const signature = effective.map((s) => (s.desc ? '-' : '') + s.name).join(',');
  return { keys, joins, signature };
}

/** ORDER BY for the plan; `reverse` walks backwards (previous page). NULLs sort last going forward. */
export function orderBySql(plan: OrderPlan, reverse: boolean): string {
  return plan.keys
    .map((k) => {
      const desc = k.desc !== reverse;
      const nulls = k.nullable ? (reverse ? ' NULLS FIRST' : ' NULLS LAST') : '';
      return `${k.expr} ${desc ? 'DESC' : 'ASC'}${nulls}`;
    })
    .join(', ');
}

/** The rows strictly after (forward) or before (reverse) the given key values. */
export function keysetSql(sql: Sql, plan: OrderPlan, values: Array<string | null>, reverse: boolean): string {
  const keys = plan.keys;
  const allPlain = keys.every((k) => !k.nullable) && keys.every((k) => k.desc === keys[0].desc);
  if (allPlain) {
    // Row comparison: one range condition the (resource_type, last_updated, id) index serves.
    const op = keys[0].desc !== reverse ? '<' : '>';
    const row = keys.map((k, i) => `${sql.p(values[i])}::${k.cast}`);
    return `(${keys.map((k) => k.expr).join(', ')}) ${op} (${row.join(', ')})`;
  }
  const ors: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const ands: string[] = [];
    for (let j = 0; j < i; j++) ands.push(equalSql(sql, keys[j], values[j]));
    const after = afterSql(sql, keys[i], values[i], reverse);
    if (after === 'false') continue;
    ands.push(after);
    ors.push(`(${ands.join(' AND ')})`);
  }
  return ors.length > 0 ? `(${ors.join(' OR ')})` : 'false';
}

function equalSql(sql: Sql, k: OrderKey, v: string | null): string {
  return v === null ? `${k.expr} IS NULL` : `${k.expr} = ${sql.p(v)}::${k.cast}`;
}

/** Rows strictly after value v on key k in walking direction (NULLs are last going forward). */
function afterSql(sql: Sql, k: OrderKey, v: string | null, reverse: boolean): string {
  const nullsAfter = !reverse; // going forward NULLs come after every value; backward, before.
  if (v === null) return nullsAfter ? 'false' : `${k.expr} IS NOT NULL`;
  const op = k.desc !== reverse ? '<' : '>';
  const cmp = `${k.expr} ${op} ${sql.p(v)}::${k.cast}`;
  return k.nullable && nullsAfter ? `(${cmp} OR ${k.expr} IS NULL)` : cmp;
}

export interface Cursor {
  /** 'n': rows after the key (next page); 'p': rows before it (previous page). */
  direction: 'n' | 'p';
  values: Array<string | null>;
}

export function encodeCursor(plan: OrderPlan, cursor: Cursor): string {
  return Buffer.from(JSON.stringify({ s: plan.signature, d: cursor.direction, k: cursor.values }), 'utf8').toString('base64url');
}

/** Decodes and checks a cursor against the current sort; throws 400 when it does not fit. */
export function decodeCursor(plan: OrderPlan, token: string): Cursor {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    throw badRequest('Invalid _cursor');
  }
  const d = data as { s?: unknown; d?: unknown; k?: unknown };
  if (!d || typeof d !== 'object' || d.s !== plan.signature || (d.d !== 'n' && d.d !== 'p') || !Array.isArray(d.k) || d.k.length !== plan.keys.length) {
    throw badRequest('Invalid _cursor (it does not belong to this search)');
  }
  const values = d.k as unknown[];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null && plan.keys[i].nullable) continue;
    if (typeof v !== 'string' || v.length > 2000) throw badRequest('Invalid _cursor');
    if (plan.keys[i].cast === 'numeric' && !/^-?\d+(\.\d+)?$/.test(v)) throw badRequest('Invalid _cursor');
    if (plan.keys[i].cast === 'timestamptz' && !/^-?infinity$|^\d{4}-\d{2}-\d{2}[ T][\d:.]+([+-]\d{2}(:?\d{2})?|Z)?$/.test(v)) throw badRequest('Invalid _cursor');
  }
  return { direction: d.d, values: values as Array<string | null> };
}
