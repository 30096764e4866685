// The single-statement write: the current row, the version it replaces and every search-index row of
// one resource version in one SQL statement (one round trip, atomic even outside a transaction).
//
// Storage (decision 0006): `resource` holds the current version of every resource, `resource_version`
// only the versions that were replaced. A create writes `resource` alone; an update or delete copies
// the row it replaces from `resource` into `resource_version` in the statement that replaces it.
// Every version of a resource is in exactly one of the two tables: history and vread read both.
import type { Db } from './db.ts';
import type { IndexRows } from './indexer.ts';
import { emptyIndexRows } from './indexer.ts';

export interface VersionRow {
  resourceType: string;
  id: string;
  versionId: number;
  lastUpdated: string;
  deleted: boolean;
  content: string;
  ownerOrg: string | null;
  restricted: boolean;
}

export interface CompanionRow {
  row: VersionRow;
  index: IndexRows;
}

/**
 * A row of the audit log (table audit_queue): the compact record of an access, written in the same
 * statement as the write it records; AuditEvent resources are built from these rows moments later
 * (audit-queue.ts).
 */
export interface AuditRow {
  ownerOrg: string | null;
  content: string;
}

const indexTables: Array<[keyof IndexRows, string, string[]]> = [
  ['token', 'sp_token', ['system', 'value', 'display', 'grp']],
  ['string', 'sp_string', ['value', 'norm', 'grp']],
  ['reference', 'sp_reference', ['target_type', 'target_id', 'reference', 'grp']],
  ['date', 'sp_date', ['low', 'high', 'grp']],
  ['number', 'sp_number', ['value', 'grp']],
  ['quantity', 'sp_quantity', ['value', 'system', 'unit', 'grp']],
  ['uri', 'sp_uri', ['value', 'grp']],
];
// grp (migration 4) is the optional last element of an index row: set only on composite parts.
const casts: Record<string, string> = { low: 'timestamptz', high: 'timestamptz', last_updated: 'timestamptz', grp: 'integer' };
const numericTables = new Set<keyof IndexRows>(['number', 'quantity']);
const rowColumns = 'resource_type, id, version_id, last_updated, deleted, content, owner_org, restricted';

// The version an UPDATE of `resource r` replaces is the row `o` joined to it: PostgreSQL's UPDATE
// returns only new values, so RETURNING hands o's columns to the INSERT into resource_version, and
// the copy is made exactly when the update is. See writeVersion and writeNextVersion for how each
// makes sure o is the row r replaces when a concurrent writer got there first.
const replacedRow = 'o.resource_type = r.resource_type AND o.id = r.id';
const replacedColumns =
  'o.version_id AS o_version_id, o.last_updated AS o_last_updated, o.deleted AS o_deleted, o.content AS o_content, o.owner_org AS o_owner_org, o.restricted AS o_restricted';
const replacedValues = 'w.o_version_id, w.o_last_updated, w.o_deleted, w.o_content, w.o_owner_org, w.o_restricted';

/**
 * expectedVersion: undefined → the resource must not exist yet (create); a number → the stored
 * version must be exactly that (update). Returns false when that expectation did not hold
 * (nothing was written).
 *
 * audit: the audit-log rows of this write, inserted in the same statement only if the write itself
 * succeeds: all or nothing, in one round trip.
 */
export async function writeVersion(
  db: Db,
  row: VersionRow,
  index: IndexRows | undefined,
  expectedVersion: number | undefined,
  audit: AuditRow[] = [],
): Promise<boolean> {
  const p: unknown[] = [row.resourceType, row.id, row.versionId, row.lastUpdated, row.deleted, row.content, row.ownerOrg, row.restricted];
  const arr = (values: unknown) => {
    p.push(values);
    return `$${p.length}`;
  };
  const ctes: string[] = [];
  if (expectedVersion === undefined) {
    ctes.push(`w AS (INSERT INTO resource (${rowColumns})
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (resource_type, id) DO NOTHING RETURNING 1)`);
  } else {
    p.push(expectedVersion);
    // o is the stored row as the statement's snapshot has it, not locked: when a concurrent writer
    // replaced it meanwhile, r's re-check against the newest version fails on the expected version
    // (every write changes it) and nothing is written, as for any version conflict. So o is never
    // a stale copy, and the write takes no lock beyond the update's own.
    ctes.push(`w AS (UPDATE resource r SET version_id = $3, last_updated = $4, deleted = $5, content = $6, owner_org = $7, restricted = $8
      FROM resource o WHERE r.resource_type = $1 AND r.id = $2 AND r.version_id = $${p.length} AND ${replacedRow} AND o.version_id = r.version_id
      RETURNING ${replacedColumns})`);
    ctes.push(`v AS (INSERT INTO resource_version (${rowColumns}) SELECT $1, $2, ${replacedValues} FROM w)`);
  }
  ctes.push(...auditCtes(arr, audit, 'WHERE EXISTS (SELECT 1 FROM w)'));
  for (const [key, table] of indexTables) {
    if (expectedVersion !== undefined) {
      ctes.push(`d_${key} AS (DELETE FROM ${table} WHERE resource_type = $1 AND id = $2 AND EXISTS (SELECT 1 FROM w))`);
    }
  }
  ctes.push(...indexCtes(arr, [{ row, index: index ?? emptyIndexRows() }], 'WHERE EXISTS (SELECT 1 FROM w)'));
  const sql = `WITH ${ctes.join(',\n')} SELECT count(*)::int AS n FROM w`;
  const r = await db.query<{ n: number }>(sql, p, { prepare: true });
  return Number(r.rows[0]?.n ?? 0) === 1;
}

/**
 * The next version of a resource that exists, without reading it first: one statement that takes
 * the stored version under the row lock, writes version + 1 (its number put into the content and
 * the audit rows where they hold `versionToken`), replaces the index rows and appends the audit
 * rows. Only for writes that need nothing from the previous version (no domain-module hooks).
 * `where` is a further condition on the stored row `r` (visibility, If-Match, not deleted), with
 * its placeholders numbered from `$(params.length + 1)` of `whereParams`'s own count (see callers).
 * The version it replaces is copied into resource_version in the same statement.
 * Returns the new version number and the row's owner, or undefined when no row met the conditions
 * (nothing written: the caller takes the general path, which says why).
 */
export async function writeNextVersion(
  db: Db,
  row: Omit<VersionRow, 'versionId' | 'ownerOrg'>,
  index: IndexRows | undefined,
  versionToken: string,
  where: (next: number) => { sql: string; params: unknown[] },
  audit: AuditRow[] = [],
): Promise<{ version: number; ownerOrg: string | null } | undefined> {
  const p: unknown[] = [row.resourceType, row.id, row.lastUpdated, row.deleted, row.content, row.restricted, versionToken];
  const cond = where(p.length + 1);
  p.push(...cond.params);
  const arr = (values: unknown) => {
    p.push(values);
    return `$${p.length}`;
  };
  // o is the stored row locked (FOR UPDATE) before it is replaced: a concurrent writer that got
  // there first is waited for and o is then its version (the conditions re-checked on it). r may
  // still be the snapshot's older row: the update then finds it replaced and re-checks the join
  // on the newest one, which is o's (locked: nobody else can replace it meanwhile). So concurrent
  // writes of one resource each get the next version in one statement. (Comparing versions in the
  // join would refuse that stale r and send the write to the general path.)
  const ctes: string[] = [
    `w AS (UPDATE resource r SET version_id = r.version_id + 1, last_updated = $3, deleted = $4, content = replace($5, $7, (r.version_id + 1)::text), restricted = $6
      FROM (SELECT * FROM resource r WHERE r.resource_type = $1 AND r.id = $2 AND r.owner_org IS NOT NULL AND ${cond.sql} FOR UPDATE) o
      WHERE r.resource_type = $1 AND r.id = $2 AND ${replacedRow}
      RETURNING r.version_id, r.owner_org, ${replacedColumns})`,
    `v AS (INSERT INTO resource_version (${rowColumns}) SELECT $1, $2, ${replacedValues} FROM w)`,
  ];
  if (audit.length > 0) {
    ctes.push(`a AS (INSERT INTO audit_queue (owner_org, content)
      SELECT u.o, replace(u.c, $7, w.version_id::text) FROM unnest(${arr(audit.map((a) => a.ownerOrg))}::text[], ${arr(audit.map((a) => a.content))}::text[]) AS u(o, c) CROSS JOIN w)`);
  }
  for (const [key, table] of indexTables) {
    ctes.push(`d_${key} AS (DELETE FROM ${table} WHERE resource_type = $1 AND id = $2 AND EXISTS (SELECT 1 FROM w))`);
  }
  ctes.push(...indexCtes(arr, [{ row: { ...row, versionId: 0, ownerOrg: null }, index: index ?? emptyIndexRows() }], 'WHERE EXISTS (SELECT 1 FROM w)'));
  const r = await db.query<{ version_id: string; owner_org: string | null }>(`WITH ${ctes.join(',\n')} SELECT version_id, owner_org FROM w`, p, { prepare: true });
  return r.rows[0] ? { version: Number(r.rows[0].version_id), ownerOrg: r.rows[0].owner_org } : undefined;
}

/** The CTE inserting new resources (version 1 rows, current: resource_version is for replaced versions). */
function insertCtes(arr: (values: unknown) => string, rows: CompanionRow[], name: string, condition: string): string[] {
  if (rows.length === 0) return [];
  const r = rows.map((c) => c.row);
  const cols = [
    `${arr(r.map((x) => x.resourceType))}::text[]`,
    `${arr(r.map((x) => x.id))}::text[]`,
    `${arr(r.map((x) => x.versionId))}::bigint[]`,
    `${arr(r.map((x) => x.lastUpdated))}::timestamptz[]`,
    `${arr(r.map((x) => x.deleted))}::boolean[]`,
    texts(arr, r.map((x) => x.content)),
    `${arr(r.map((x) => x.ownerOrg))}::text[]`,
    `${arr(r.map((x) => x.restricted))}::boolean[]`,
  ].join(', ');
  return [`${name} AS (INSERT INTO resource (${rowColumns}) SELECT * FROM unnest(${cols}) ${condition})`];
}

const SEPARATOR = '\u001e';

/**
 * Texts as one parameter split by PostgreSQL (`string_to_array`): resource JSON never holds U+001E
 * (JSON.stringify escapes every control character), so the driver need not quote each element of
 * an array literal (pg's escapeElement on every quote and backslash of 21 Observations' JSON: ~140 µs
 * of the API per scored intake) nor PostgreSQL unquote it. A text[] when an element holds the separator
 * or is empty.
 */
function texts(arr: (values: unknown) => string, values: string[]): string {
  if (values.some((v) => v === '' || v.includes(SEPARATOR))) return `${arr(values)}::text[]`;
  return `string_to_array(${arr(values.join(SEPARATOR))}::text, E'\\x1e')`;
}

/** The CTE appending audit-log rows. */
function auditCtes(arr: (values: unknown) => string, audit: AuditRow[], condition: string): string[] {
  if (audit.length === 0) return [];
  return [
    `a AS (INSERT INTO audit_queue (owner_org, content) SELECT * FROM unnest(${arr(audit.map((a) => a.ownerOrg))}::text[], ${arr(audit.map((a) => a.content))}::text[]) ${condition})`,
  ];
}

/**
 * CTEs inserting the search-index rows of several resources, one INSERT per index table. The rows
 * of a table travel as one JSON array (`[resource number, code, ...columns]` each: serialised
 * natively, parsed once by PostgreSQL as jsonb), and the resource columns (type, id, last_updated)
 * once per resource in `k`, joined on the number: a response's 21 Observations send their ~600
 * index rows as a few small arrays instead of 8 text arrays of every row's every column.
 */
function indexCtes(arr: (values: unknown) => string, resources: CompanionRow[], condition: string): string[] {
  const ctes: string[] = [];
  for (const [key, table, cols] of indexTables) {
    const rows: unknown[][] = [];
    resources.forEach((c, n) => {
      for (const r of c.index[key] as unknown[][]) rows.push([n + 1, ...r]);
    });
    if (rows.length === 0) continue;
    if (ctes.length === 0) {
      // last_updated is the resource's (docs/search-plans.md: searches walk the index rows in that order).
      const r = resources.map((c) => c.row);
      ctes.push(`k AS (SELECT * FROM unnest(${arr(r.map((x) => x.resourceType))}::text[], ${arr(r.map((x) => x.id))}::text[], ${arr(r.map((x) => x.lastUpdated))}::timestamptz[])
      WITH ORDINALITY AS k(resource_type, id, last_updated, n))`);
    }
    const columns = ['code', ...cols];
    const values = columns.map((c, i) => {
      const v = `e->>${i + 1}`;
      return casts[c] ? `(${v})::${casts[c]}` : c === 'value' && numericTables.has(key) ? `(${v})::numeric` : v;
    });
    ctes.push(`i_${key} AS (INSERT INTO ${table} (resource_type, id, last_updated, ${columns.join(', ')})
      SELECT k.resource_type, k.id, k.last_updated, ${values.join(', ')} FROM jsonb_array_elements(${arr(jsonRows(rows))}::jsonb) AS e JOIN k ON k.n = (e->>0)::bigint ${condition})`);
  }
  return ctes;
}

/**
 * JSON text of index rows. A lone surrogate (possible in a parsed string) becomes U+FFFD, as it
 * does when a string is sent as text (UTF-8), instead of an escape jsonb refuses.
 */
function jsonRows(rows: unknown[][]): string {
  const json = JSON.stringify(rows);
  if (!/\\u[dD][89a-fA-F]/.test(json)) return json;
  return JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'string' ? v.toWellFormed() : v));
}

/**
 * Inserts new resources (each version 1, ids not yet used) with their index rows, and their
 * audit-log rows, in one statement. Throws on an id conflict.
 */
export async function insertNewResources(db: Db, rows: CompanionRow[], audit: AuditRow[] = []): Promise<void> {
  if (rows.length === 0 && audit.length === 0) return;
  const p: unknown[] = [];
  const arr = (values: unknown) => {
    p.push(values);
    return `$${p.length}`;
  };
  const ctes = [...insertCtes(arr, rows, 'n', ''), ...indexCtes(arr, rows, ''), ...auditCtes(arr, audit, '')];
  await db.query(`WITH ${ctes.join(',\n')} SELECT 1`, p, { prepare: true });
}

/**
 * Rewrites the search-index rows of stored resources (their current versions) in one statement:
 * every row of theirs deleted, the given rows inserted (a re-index after the indexer changed:
 * migrations.ts).
 */
export async function replaceIndexRows(db: Db, rows: CompanionRow[]): Promise<void> {
  if (rows.length === 0) return;
  const p: unknown[] = [];
  const arr = (values: unknown) => {
    p.push(values);
    return `$${p.length}`;
  };
  const types = arr(rows.map((c) => c.row.resourceType));
  const ids = arr(rows.map((c) => c.row.id));
  const ctes = indexTables.map(
    ([key, table]) => `d_${key} AS (DELETE FROM ${table} x USING unnest(${types}::text[], ${ids}::text[]) AS u(t, i) WHERE x.resource_type = u.t AND x.id = u.i)`,
  );
  ctes.push(...indexCtes(arr, rows, ''));
  await db.query(`WITH ${ctes.join(',\n')} SELECT 1`, p);
}
