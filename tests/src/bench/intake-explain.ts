// What PostgreSQL does for one scored PCL-5 intake: EXPLAIN (ANALYZE, BUFFERS, WAL) of the statement
// that writes its 21 Observations (resources, versions, index rows), the index rows per table, and
// the WAL of the whole intake (pg_current_wal_lsn before and after, alone on the database).
//
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//     node scripts/tic.mjs pnpm --filter @tic/tests exec node src/bench/intake-explain.ts
//
// INTAKE_WARMUP (default 200) intakes are posted first so the indexes are not empty; the plans are
// of the next two (their Observations written by the plan's session, not the API's; the counts
// per intake leave those two out). The database is created and dropped.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import request from 'supertest';
import type { QuestionnaireResponse } from '@medplum/fhirtypes';
import { createTestApi } from '@tic/api/testing';

const repoRoot = join(import.meta.dirname, '../../..');
const warmup = Number(process.env.INTAKE_WARMUP ?? 200);

const t = await createTestApi({ kind: 'postgres' });
try {
  const client = await t.client('sensitive');
  const post = (path: string, body: unknown) =>
    request(t.api.app).post(`/fhir/${path}`).set('Authorization', client.auth).set('Content-Type', 'application/fhir+json').send(JSON.stringify(body));
  const patient = await post('Patient', { resourceType: 'Patient' });
  const qr = JSON.parse(readFileSync(join(repoRoot, 'fhir-profiles/examples/QuestionnaireResponse-pcl-5-clinician.json'), 'utf8')) as QuestionnaireResponse;
  delete qr.id;
  qr.subject = { reference: `Patient/${patient.body.id}` };
  let n = 0;
  const intake = async () => {
    qr.identifier = { system: 'https://ehr.example.org/screening', value: `intake-${++n}` };
    const res = await post('QuestionnaireResponse', qr);
    if (res.status !== 201) throw new Error(`intake answered ${res.status}: ${JSON.stringify(res.body)}`);
  };
  for (let i = 0; i < warmup; i++) await intake();
  const admin = new pg.Client({ connectionString: t.db.url });
  await admin.connect();
  await admin.query('ANALYZE');
  // INTAKE_DDL: a schema change to try (e.g. DROP INDEX sp_token_search_1_idx), after the warm-up.
  if (process.env.INTAKE_DDL) await admin.query(process.env.INTAKE_DDL);
  // Stop the audit drain so the WAL measured is the intake's own.
  await t.api.close();
  const lsn = async () => (await admin.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l;
  const walBytes = async (a: string, b: string) => Number((await admin.query<{ d: string }>('SELECT pg_wal_lsn_diff($2, $1)::text AS d', [a, b])).rows[0].d);
  const before = await lsn();
  await intake();
  const after = await lsn();
  process.stdout.write(`WAL of one intake (whole request, all statements): ${(await walBytes(before, after)).toLocaleString('en')} bytes\n`);

  // The Observations' statement of the next intakes: captured, not run by the API; run instead on
  // the admin connection under EXPLAIN (it writes), once right after a CHECKPOINT (every page
  // touched first writes a full-page image) and once again at once (no full-page images).
  // INTAKE_SESSION_SQL (e.g. "SET wal_compression = lz4") is run on that session first.
  if (process.env.INTAKE_SESSION_SQL) await admin.query(process.env.INTAKE_SESSION_SQL);
  const original = pg.Client.prototype.query;
  let captured: { text: string; values: unknown[] } | undefined;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const config = args[0] as { text?: string; values?: unknown[] } | string;
    const text = typeof config === 'string' ? config : (config?.text ?? '');
    const values = typeof config === 'string' ? [] : (config.values ?? []);
    if (!captured && /INSERT INTO sp_token/.test(text) && /Observation/.test(JSON.stringify(values))) {
      captured = { text, values };
      return Promise.resolve({ rows: [], rowCount: 0, command: 'SELECT', fields: [], oid: 0 });
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  for (const checkpoint of [true, false]) {
    captured = undefined;
    await intake();
    if (!captured) throw new Error('statement not seen');
    if (checkpoint) await admin.query('CHECKPOINT');
    const plan = await admin.query<Record<string, string>>(`EXPLAIN (ANALYZE, BUFFERS, WAL) ${(captured as { text: string }).text}`, (captured as { values: unknown[] }).values);
    const lines = plan.rows.map((row) => row['QUERY PLAN']);
    process.stdout.write(`\n--- Observations' statement, ${checkpoint ? 'right after a CHECKPOINT' : 'no checkpoint since the last one'}\n`);
    const summary = lines.filter((l) => /Insert on|WAL:|Execution Time|actual time=.*loops=1\)$/.test(l) && !/Function Scan|Hash|CTE Scan/.test(l));
    process.stdout.write(`${(process.env.INTAKE_FULL_PLAN ? lines : summary).join('\n')}\n`);
  }
  pg.Client.prototype.query = original;
  const rows = await admin.query<{ t: string; n: string }>(
    `SELECT t, count(*)::text AS n FROM (
       SELECT 'sp_token' AS t, id FROM sp_token UNION ALL SELECT 'sp_reference', id FROM sp_reference
       UNION ALL SELECT 'sp_date', id FROM sp_date UNION ALL SELECT 'sp_string', id FROM sp_string
       UNION ALL SELECT 'sp_quantity', id FROM sp_quantity UNION ALL SELECT 'sp_number', id FROM sp_number
       UNION ALL SELECT 'sp_uri', id FROM sp_uri) x
     WHERE id IN (SELECT id FROM resource WHERE resource_type IN ('Observation', 'QuestionnaireResponse')) GROUP BY t ORDER BY t`,
  );
  process.stdout.write(`index rows per intake (response + Observations): ${rows.rows.map((r) => `${r.t} ${(Number(r.n) / (n - 2)).toFixed(1)}`).join(', ')}\n`);
  const codes = await admin.query<{ code: string; n: string }>(
    `SELECT code, count(*)::text AS n FROM sp_token WHERE resource_type = 'Observation' GROUP BY code ORDER BY count(*) DESC`,
  );
  process.stdout.write(`Observation sp_token rows per intake by code: ${codes.rows.map((r) => `${r.code} ${(Number(r.n) / (n - 2)).toFixed(1)}`).join(', ')}\n`);
  const sizes = await admin.query<{ name: string; size: string }>(
    `SELECT c.relname AS name, pg_relation_size(c.oid)::text AS size FROM pg_class c WHERE c.relname LIKE 'sp_token%' OR c.relname LIKE 'sp_reference%' ORDER BY 1`,
  );
  process.stdout.write(`relation bytes per intake: ${sizes.rows.map((r) => `${r.name} ${Math.round(Number(r.size) / (n - 2))}`).join(', ')}\n`);
  await admin.end();
} finally {
  await t.close();
}
