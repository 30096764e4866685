// The single-statement write: the current row, the version row and every search-index row of one
// resource version in one SQL statement (one round trip, atomic even outside a transaction).
import type { Db } from './db.ts';
import type { IndexRows } from './indexer.ts';

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

/**
 * expectedVersion: undefined → the resource must not exist yet (create); a number → the stored
 * version must be exactly that (update). Returns false when that expectation did not hold
 * (nothing was written).
 */
export async function writeVersion(db: Db, row: VersionRow, index: IndexRows | undefined, expectedVersion: number | undefined): Promise<boolean> {
  const p: unknown[] = [row.resourceType, row.id, row.versionId, row.lastUpdated, row.deleted, row.content, row.ownerOrg, row.restricted];
  const arr = (values: unknown[]) => {
    p.push(values);
    return `$${p.length}`;
  };
  const ctes: string[] = [];
  if (expectedVersion === undefined) {
    ctes.push(`w AS (INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content, owner_org, restricted)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (resource_type, id) DO NOTHING RETURNING 1)`);
  } else {
    p.push(expectedVersion);
    ctes.push(`w AS (UPDATE resource SET version_id = $3, last_updated = $4, deleted = $5, content = $6, owner_org = $7, restricted = $8
      WHERE resource_type = $1 AND id = $2 AND version_id = $${p.length} RETURNING 1)`);
  }
  ctes.push(`v AS (INSERT INTO resource_version (resource_type, id, version_id, last_updated, deleted, content, owner_org, restricted)
      SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM w))`);
  const tables: Array<[keyof IndexRows, string, string[]]> = [
    ['token', 'sp_token', ['system', 'value', 'display']],
    ['string', 'sp_string', ['value', 'norm']],
    ['reference', 'sp_reference', ['target_type', 'target_id', 'reference']],
    ['date', 'sp_date', ['low', 'high']],
    ['number', 'sp_number', ['value']],
    ['quantity', 'sp_quantity', ['value', 'system', 'unit']],
    ['uri', 'sp_uri', ['value']],
  ];
  const casts: Record<string, string> = { low: 'timestamptz', high: 'timestamptz' };
  const numericTables = new Set<keyof IndexRows>(['number', 'quantity']);
  for (const [key, table, cols] of tables) {
    if (expectedVersion !== undefined) {
      ctes.push(`d_${key} AS (DELETE FROM ${table} WHERE resource_type = $1 AND id = $2 AND EXISTS (SELECT 1 FROM w))`);
    }
    const rows = (index?.[key] ?? []) as unknown[][];
    if (rows.length === 0) continue;
    const columns = ['code', ...cols];
    const params = columns.map((_, i) => arr(rows.map((r) => r[i])));
    const select = params.map((name) => `${name}::text[]`).join(', ');
    const cast = columns.map((c) => (casts[c] ? `u.${c}::${casts[c]}` : c === 'value' && numericTables.has(key) ? `u.${c}::numeric` : `u.${c}`));
    ctes.push(`i_${key} AS (INSERT INTO ${table} (resource_type, id, ${columns.join(', ')})
      SELECT $1, $2, ${cast.join(', ')} FROM unnest(${select}) AS u(${columns.join(', ')}) WHERE EXISTS (SELECT 1 FROM w))`);
  }
  const sql = `WITH ${ctes.join(',\n')} SELECT count(*)::int AS n FROM w`;
  const r = await db.query<{ n: number }>(sql, p);
  return Number(r.rows[0]?.n ?? 0) === 1;
}
