// Versioned schema migrations, applied at start in order, each in its own transaction.
// A migration is never edited once released: add a new one.
import type { Db } from './db.ts';
import { compiledParamsFor, indexResource } from './indexer.ts';
import { replaceIndexRows } from './write.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Work SQL alone cannot do (re-indexing with the indexer), in the migration's transaction, after `sql`. */
  run?: (db: Db) => Promise<void>;
}

const searchTable = (name: string, columns: string, indexes: string[]) => `
CREATE TABLE ${name} (
  resource_type text NOT NULL,
  id text NOT NULL,
  code text NOT NULL,
  ${columns}
);
CREATE INDEX ${name}_resource_idx ON ${name} (resource_type, id);
${indexes.map((cols, i) => `CREATE INDEX ${name}_search_${i}_idx ON ${name} (${cols});`).join('\n')}
`;

/**
 * Statements that need a server built with lz4, skipped where it is not (PGlite answers 0A000
 * feature_not_supported): the SQL of migrations 26 and 28.
 */
function whereLz4(statements: string[]): string {
  return `
DO $$
BEGIN
${statements.map((st) => `  ${st}`).join('\n')}
EXCEPTION WHEN feature_not_supported THEN
  NULL;
END
$$;`;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'resources, versions and search index',
    sql: `
CREATE TABLE resource (
  resource_type text NOT NULL,
  id text NOT NULL,
  version_id bigint NOT NULL,
  last_updated timestamptz NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  content text NOT NULL,
  owner_org text,
  restricted boolean NOT NULL DEFAULT false,
  PRIMARY KEY (resource_type, id)
);
CREATE INDEX resource_type_updated_idx ON resource (resource_type, last_updated, id);
CREATE INDEX resource_owner_idx ON resource (owner_org, resource_type);

CREATE TABLE resource_version (
  resource_type text NOT NULL,
  id text NOT NULL,
  version_id bigint NOT NULL,
  last_updated timestamptz NOT NULL,
  deleted boolean NOT NULL DEFAULT false,
  content text NOT NULL,
  owner_org text,
  restricted boolean NOT NULL DEFAULT false,
  PRIMARY KEY (resource_type, id, version_id)
);
CREATE INDEX resource_version_updated_idx ON resource_version (last_updated);
CREATE INDEX resource_version_type_updated_idx ON resource_version (resource_type, last_updated);

-- Organisations other than the owner that may see a resource (referrals, care teams, consent).
CREATE TABLE resource_share (
  resource_type text NOT NULL,
  id text NOT NULL,
  org text NOT NULL,
  reason text NOT NULL,
  expires timestamptz,
  PRIMARY KEY (resource_type, id, org, reason)
);
CREATE INDEX resource_share_org_idx ON resource_share (org, resource_type);
CREATE INDEX resource_share_reason_idx ON resource_share (reason);
${searchTable('sp_token', 'system text, value text, display text', ['resource_type, code, value, system', 'resource_type, code, system'])}
${searchTable('sp_string', 'value text NOT NULL, norm text NOT NULL', ['resource_type, code, norm text_pattern_ops'])}
${searchTable('sp_reference', 'target_type text, target_id text, reference text NOT NULL', ['resource_type, code, target_id', 'target_type, target_id, code'])}
${searchTable('sp_date', 'low timestamptz, high timestamptz', ['resource_type, code, low', 'resource_type, code, high'])}
${searchTable('sp_number', 'value numeric NOT NULL', ['resource_type, code, value'])}
${searchTable('sp_quantity', 'value numeric NOT NULL, system text, unit text', ['resource_type, code, value'])}
${searchTable('sp_uri', 'value text NOT NULL', ['resource_type, code, value text_pattern_ops'])}
`,
  },
  {
    version: 2,
    name: 'search: no parallel query for OLTP searches',
    // Searches are short index lookups run at high concurrency; on a few cores parallel workers
    // add 20-150 ms of startup to queries that do 1-5 ms of work (see docs/search-plans.md).
    // The database default applies to new sessions; SET covers the migrating session. Without the
    // privilege to alter the database this is skipped (set it in postgresql.conf instead).
    sql: `
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET max_parallel_workers_per_gather = 0', current_database());
EXCEPTION WHEN others THEN NULL;
END $$;
SET max_parallel_workers_per_gather = 0;
`,
  },
  {
    version: 3,
    name: 'search: last_updated in the index tables, ordered and covering search indexes',
    // A search sorted by _lastUpdated (the default order) is driven from the index rows of its most
    // selective parameter, walked in last_updated order, instead of from every resource of the type
    // or from every match (docs/search-plans.md). Index rows are rewritten with every version, so
    // the copy of last_updated is always the resource's. Each replaced index serves the same
    // lookups as before (same leading columns); the number of indexes per table is unchanged
    // except sp_date, which gains the ordered walk for open date ranges.
    sql: `
${['sp_token', 'sp_string', 'sp_reference', 'sp_date', 'sp_number', 'sp_quantity', 'sp_uri']
  .map(
    (t) => `ALTER TABLE ${t} ADD COLUMN last_updated timestamptz;
UPDATE ${t} x SET last_updated = r.last_updated FROM resource r WHERE r.resource_type = x.resource_type AND r.id = x.id;
DELETE FROM ${t} WHERE last_updated IS NULL;
ALTER TABLE ${t} ALTER COLUMN last_updated SET NOT NULL;`,
  )
  .join('\n')}
DROP INDEX sp_token_search_0_idx;
CREATE INDEX sp_token_value_updated_idx ON sp_token (resource_type, code, value, last_updated, id) INCLUDE (system);
DROP INDEX sp_token_resource_idx;
CREATE INDEX sp_token_resource_code_idx ON sp_token (resource_type, id, code) INCLUDE (value, system);
DROP INDEX sp_reference_resource_idx;
CREATE INDEX sp_reference_resource_code_idx ON sp_reference (resource_type, id, code) INCLUDE (target_type, target_id);
DROP INDEX sp_reference_search_0_idx;
CREATE INDEX sp_reference_target_updated_idx ON sp_reference (resource_type, code, target_id, target_type, last_updated, id);
DROP INDEX sp_string_search_0_idx;
CREATE INDEX sp_string_norm_idx ON sp_string (resource_type, code, norm text_pattern_ops) INCLUDE (last_updated, id);
DROP INDEX sp_date_resource_idx;
CREATE INDEX sp_date_resource_code_idx ON sp_date (resource_type, id, code) INCLUDE (low, high);
DROP INDEX sp_date_search_0_idx;
DROP INDEX sp_date_search_1_idx;
CREATE INDEX sp_date_low_idx ON sp_date (resource_type, code, low) INCLUDE (high, last_updated, id);
CREATE INDEX sp_date_high_idx ON sp_date (resource_type, code, high) INCLUDE (low, last_updated, id);
CREATE INDEX sp_date_updated_idx ON sp_date (resource_type, code, last_updated, id) INCLUDE (low, high);
DROP INDEX sp_number_search_0_idx;
CREATE INDEX sp_number_value_idx ON sp_number (resource_type, code, value) INCLUDE (last_updated, id);
DROP INDEX sp_quantity_search_0_idx;
CREATE INDEX sp_quantity_value_idx ON sp_quantity (resource_type, code, value) INCLUDE (system, unit, last_updated, id);
DROP INDEX sp_uri_search_0_idx;
CREATE INDEX sp_uri_value_idx ON sp_uri (resource_type, code, value text_pattern_ops) INCLUDE (last_updated, id);
`,
  },
  {
    version: 4,
    name: 'search: composite parameters (component rows grouped by grp)',
    // A composite parameter (Observation code-value-quantity, component-code-value-quantity, …)
    // matches only when all its parts come from the SAME element. Each match of the composite's
    // expression is indexed as rows in its components' tables under the codes "<composite>$<i>",
    // sharing one grp number; a search joins the parts on (resource_type, id, grp). Ordinary rows
    // keep grp NULL. Adding a nullable column rewrites nothing (docs/search-plans.md).
    sql: `
${['sp_token', 'sp_string', 'sp_reference', 'sp_date', 'sp_number', 'sp_quantity', 'sp_uri'].map((t) => `ALTER TABLE ${t} ADD COLUMN grp integer;`).join('\n')}
`,
  },
  {
    version: 5,
    name: 'audit queue: read AuditEvents recorded durably, indexed in batches',
    // Every read and search is audited before its response is sent. Writing the full AuditEvent
    // (resource, version and search-index rows) on that path cost reads two thirds of their
    // throughput; a narrow append-only row is committed instead, and the server turns queued rows
    // into AuditEvent resources in batches (audit-queue.ts) moments later.
    sql: `
CREATE TABLE audit_queue (
  seq bigserial PRIMARY KEY,
  owner_org text,
  content text NOT NULL
);
`,
  },
  {
    version: 7,
    name: 'search: date ranges by span class, hull rows for multi-valued date parameters',
    // A date search bounded on both sides (date=geA&date=ltB, ap, eq) is an interval-overlap
    // query (high > A AND low < B) that no single btree range serves. Every sp_date row gets a
    // span class (high - low at most 1 s, 1 min, 1 h, 1 day, 32 days, 367 days, 10, 100, 1000,
    // 10000 years; 99 longer or open); within class i, high > A implies low > A - span_i, so the
    // overlap is one range scan of (resource_type, code, span, low) per class (search-sql.ts,
    // DATE_SPAN_SECONDS must list the same bounds). Hull rows (grp -1, indexer.ts) give a resource
    // with several values for a parameter one row spanning them all; existing ones are added here.
    sql: `
ALTER TABLE sp_date ADD COLUMN span smallint GENERATED ALWAYS AS (CASE
  WHEN low = '-infinity' OR high = 'infinity' THEN 99
  WHEN high - low <= interval '1 second' THEN 0
  WHEN high - low <= interval '60 seconds' THEN 1
  WHEN high - low <= interval '3600 seconds' THEN 2
  WHEN high - low <= interval '86400 seconds' THEN 3
  WHEN high - low <= interval '32 days' THEN 4
  WHEN high - low <= interval '367 days' THEN 5
  WHEN high - low <= interval '3660 days' THEN 6
  WHEN high - low <= interval '36600 days' THEN 7
  WHEN high - low <= interval '366000 days' THEN 8
  WHEN high - low <= interval '3660000 days' THEN 9
  ELSE 99 END) STORED;
CREATE INDEX sp_date_span_idx ON sp_date (resource_type, code, span, low) INCLUDE (high, last_updated, id);
INSERT INTO sp_date (resource_type, id, code, low, high, last_updated, grp)
SELECT h.resource_type, h.id, h.code, h.low, h.high, h.last_updated, -1
FROM (SELECT resource_type, id, code, min(low) AS low, max(high) AS high, max(last_updated) AS last_updated
      FROM sp_date WHERE grp IS NULL GROUP BY resource_type, id, code HAVING count(*) > 1) h
WHERE NOT EXISTS (SELECT 1 FROM sp_date x WHERE x.resource_type = h.resource_type AND x.id = h.id AND x.code = h.code
                  AND x.grp IS NULL AND x.low = h.low AND x.high = h.high);
`,
  },
  {
    version: 10,
    name: 'search: date windows walked in last_updated order per span class and bucket of low',
    // The first page of a date window sorted by _lastUpdated (search-sql.ts dateBucketArms): each
    // (span class, bucket of low) the window can touch is an index range in last_updated order, so
    // a page reads a few rows of each instead of every row of the window. Buckets are a day wide,
    // or the class's bound when longer (DATE_BUCKET_SECONDS in search-sql.ts, which must build
    // the same expression); open ranges (class 99) are one bucket. It replaces
    // sp_date_span_idx: a window's rows by class are the buckets from its floor to its end.
    sql: `
CREATE INDEX sp_date_bucket_idx ON sp_date (resource_type, code, span, (${dateBucketSql('')}), last_updated, id) INCLUDE (low, high);
DROP INDEX sp_date_span_idx;
`,
  },
  {
    version: 11,
    name: 'search: composite and union parameters searched from their base rows; re-index',
    // combo-code, combo-value-concept, … (unions of other parameters) and composites whose parts
    // are other parameters (code-value-concept, component-code-value-quantity, context-type-value,
    // …) store no rows of their own any more; element-level base rows (component-code, …) carry a
    // grp per element (indexer.ts planDerived, docs/search-plans.md). Resources of the types
    // concerned are re-indexed: their old part and union rows go, their element rows get a grp.
    sql: '',
    run: reindexDerivedTypes,
  },
  {
    version: 12,
    name: 'search: no sp_token (resource_type, code, system) index',
    // Every token row paid a heap tuple and three btree entries; this one served only a system
    // without a code (identifier=urn:mrn|), which sp_token_value_updated_idx (resource_type, code,
    // …) INCLUDE (system) answers from the code's range, index-only. On an unanalysed database it
    // also drew identifier look-ups (system and value) away from the value index (a scan of every
    // row of the system). A scored PCL-5 intake writes ~220 token rows: 220 fewer index
    // insertions and WAL records (docs/benchmarks.md, issue 5).
    sql: `DROP INDEX IF EXISTS sp_token_search_1_idx;`,
  },
  {
    version: 13,
    name: 'search: reference parameters filtered by target type searched from their base rows',
    // Observation.patient (Observation.subject.where(resolve() is Patient)), AuditEvent.patient
    // (agent.who | entity.what, each where Patient) and 46 more store no sp_reference rows of their
    // own any more: they are read as the base parameters' rows with that target_type (indexer.ts
    // planDerived, referenceIndex; docs/search-plans.md). Their stored rows, copies of the base
    // rows, are deleted; their ":identifier" token rows stay (still written).
    sql: '',
    run: deleteDerivedReferenceRows,
  },
  {
    version: 20,
    name: 'audit journal: shipments of many records per audit-log row, and how far each journal file has been shipped',
    // Reads, searches and refusals are audited in a local journal file made durable before the
    // response (audit-journal.ts); the drain ships its records as AuditEvents and moves the file's
    // mark in the same transaction, so each record is shipped once (decision 0005).
    sql: `
ALTER TABLE audit_queue ADD COLUMN records integer NOT NULL DEFAULT 1;
CREATE TABLE audit_journal_mark (
  journal text PRIMARY KEY,
  shipped_to bigint NOT NULL
);
`,
  },
  {
    version: 21,
    name: 'audit queue: rows stored uncompressed',
    // A journal shipment is one row of up to 1,000 records (~200 KB), deleted moments to minutes
    // later: compressing it (TOAST's default) cost the shipment more than storing it.
    sql: `ALTER TABLE audit_queue ALTER COLUMN content SET STORAGE EXTERNAL;`,
  },
  {
    version: 22,
    name: 'resource_version holds only replaced versions',
    // The current version of a resource is its row in resource; resource_version keeps the versions
    // that were replaced (write.ts, decision 0006). The copies of current versions go: the table is
    // rebuilt from the replaced versions alone (a DELETE of nearly every row would leave them all
    // as dead tuples in the heap and its three indexes until a VACUUM, which cannot run here), and
    // its indexes built after the rows are in. It reads resource_version once (a hash anti-join
    // against resource's keys) and writes only the replaced versions.
    sql: `
ALTER TABLE resource_version RENAME TO resource_version_before_22;
CREATE TABLE resource_version (LIKE resource_version_before_22 INCLUDING DEFAULTS INCLUDING STORAGE);
INSERT INTO resource_version
SELECT v.* FROM resource_version_before_22 v
WHERE NOT EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = v.resource_type AND r.id = v.id AND r.version_id = v.version_id);
DROP TABLE resource_version_before_22;
ALTER TABLE resource_version ADD PRIMARY KEY (resource_type, id, version_id);
CREATE INDEX resource_version_updated_idx ON resource_version (last_updated);
CREATE INDEX resource_version_type_updated_idx ON resource_version (resource_type, last_updated);
ANALYZE resource_version;
`,
  },
  {
    version: 23,
    name: 'system history: current versions in last_updated order',
    // System _history merges the current versions (resource) with the replaced ones
    // (resource_version, walked by resource_version_updated_idx) in last_updated order; without an
    // index leading with last_updated every page sorted every current row. One more btree entry
    // per create and update (8-byte key, appended at the right edge): about 64 bytes of WAL per
    // resource written (docs/benchmarks.md, history session).
    sql: `CREATE INDEX resource_updated_idx ON resource (last_updated);`,
  },
  {
    version: 26,
    name: 'audit queue: shipments compressed with lz4 where the server has it',
    // A shipment of 1,000 read records is ~420 KB of JSON, written to the heap and the WAL while
    // reads are being served. lz4 stores it in ~125 bytes per record for no more CPU than storing
    // it uncompressed (pglz, the default, cost more than it saved: migration 21). A server built
    // without lz4 (PGlite) keeps the column uncompressed.
    sql: whereLz4(['ALTER TABLE audit_queue ALTER COLUMN content SET COMPRESSION lz4;', 'ALTER TABLE audit_queue ALTER COLUMN content SET STORAGE EXTENDED;']),
  },
  {
    version: 27,
    name: 'resources: no (owner_org, resource_type) index',
    // No statement reads it: the access rule tests owner_org inside an OR with an EXISTS over
    // resource_share (access.ts), which no index scan serves (PostgreSQL filters the rows it reached
    // by type, id or an index table; an EXPLAIN with sequential scans disabled still does not use it),
    // and idx_scan stayed 0 after 100 scored intakes with their AuditEvents. Every create and update
    // paid an entry in it, all of one organisation's rows of a type under one key (posting lists
    // rewritten and pages deduplicated as they fill; docs/benchmarks.md, decision 0008).
    sql: `DROP INDEX IF EXISTS resource_owner_idx;`,
  },
  {
    version: 28,
    name: 'resources: content compressed with lz4 where the server has it',
    // A resource's JSON above ~2 KB (a QuestionnaireResponse of 20 answers) is compressed when
    // stored; pglz (the default) was ~1 % of the machine's samples in a scored intake, lz4 0.35 %
    // of PostgreSQL's. Only new values use it (no rewrite; old rows stay readable either way). A
    // server built without lz4 (PGlite) keeps pglz.
    sql: whereLz4(['ALTER TABLE resource ALTER COLUMN content SET COMPRESSION lz4;', 'ALTER TABLE resource_version ALTER COLUMN content SET COMPRESSION lz4;']),
  },
  {
    version: 29,
    name: 'search: no sp_reference (target_type, target_id, code) index',
    // Every statement that looks up sp_reference rows by their target also states the source
    // resource_type and code (filters, drivers, _has, _revinclude, Repository.referring, the
    // referral worker's Consents; _revinclude=Type:* the codes Type stores rows under,
    // indexer.ts storedReferenceCodes), so sp_reference_target_updated_idx (resource_type, code,
    // target_id, target_type, …) serves them. Every reference row written paid a third btree entry
    // for it: ~67 per scored intake (docs/decisions/0010, docs/benchmarks.md).
    sql: `DROP INDEX IF EXISTS sp_reference_search_1_idx;`,
  },
];

/** Re-indexes the stored resources of every type whose indexing planDerived changed (migration 11). */
async function reindexDerivedTypes(db: Db): Promise<void> {
  const types = (await db.query<{ t: string }>('SELECT DISTINCT resource_type AS t FROM resource')).rows
    .map((r) => r.t)
    .filter((t) => compiledParamsFor(t).some((p) => p.union || p.fromBase || p.group));
  for (const type of types) {
    let after = '';
    for (;;) {
      const batch = await db.query<{ id: string; content: string; last_updated: string }>(
        `SELECT id, content, last_updated::text AS last_updated FROM resource WHERE resource_type = $1 AND id > $2 AND NOT deleted ORDER BY id LIMIT 500`,
        [type, after],
      );
      if (batch.rows.length === 0) break;
      await replaceIndexRows(
        db,
        batch.rows.map((r) => ({
          row: { resourceType: type, id: r.id, versionId: 0, lastUpdated: r.last_updated, deleted: false, content: '', ownerOrg: null, restricted: false },
          index: indexResource(JSON.parse(r.content)),
        })),
      );
      after = batch.rows[batch.rows.length - 1].id;
    }
  }
}

/** Deletes the sp_reference rows of reference parameters now read from other parameters' rows (migration 13). */
async function deleteDerivedReferenceRows(db: Db): Promise<void> {
  const types = (await db.query<{ t: string }>('SELECT DISTINCT resource_type AS t FROM sp_reference')).rows.map((r) => r.t);
  for (const type of types) {
    const codes = compiledParamsFor(type)
      .filter((p) => p.fromReferences)
      .map((p) => p.code);
    if (codes.length > 0) await db.query('DELETE FROM sp_reference WHERE resource_type = $1 AND code = ANY($2::text[])', [type, codes]);
  }
}

/**
 * The bucket of an sp_date row's low in sp_date_bucket_idx (migration 10), over columns prefixed
 * by `x` ('' or 'x.'): whole days since 1970 for the classes up to a day, whole class bounds for
 * longer ones, 0 for open ranges. Migration 10 built its index from it: never change it (queries
 * must use exactly this expression for PostgreSQL to match the index).
 */
export function dateBucketSql(x: string): string {
  return (
    `CASE WHEN ${x}span = 99 THEN 0 ELSE floor(extract(epoch FROM ${x}low - timestamptz '1970-01-01 00:00:00+00') / ` +
    `CASE ${x}span WHEN 4 THEN 2764800 WHEN 5 THEN 31708800 WHEN 6 THEN 316224000 WHEN 7 THEN 3162240000 WHEN 8 THEN 31622400000 WHEN 9 THEN 316224000000 ELSE 86400 END) END`
  );
}

export async function migrate(db: Db): Promise<number[]> {
  await db.query(`CREATE TABLE IF NOT EXISTS schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  const applied: number[] = [];
  for (const m of migrations) {
    const done = await db.transaction(async (tx) => {
      // Serialise concurrent starters (several replicas) on PostgreSQL; PGlite has one session.
      if (tx.dialect === 'postgres') await tx.query('SELECT pg_advisory_xact_lock(7262001)');
      const seen = await tx.query('SELECT 1 FROM schema_migration WHERE version = $1', [m.version]);
      if (seen.rows.length > 0) return false;
      if (m.sql) await tx.exec(m.sql);
      if (m.run) await m.run(tx);
      await tx.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
      return true;
    });
    if (done) applied.push(m.version);
  }
  return applied;
}
