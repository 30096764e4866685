// The audit drain's cost per access record (issue 4): builds the AuditEvents of N read records the
// way the drain does and stores them, on a fresh PostgreSQL database; prints the JavaScript time
// (build, index) and the database time per record, and the bytes and index rows stored.
// Usage: DATABASE_URL=postgres://... node tests/src/bench/audit-drain.ts [records per drain] [drains]
import { randomUUID } from 'node:crypto';
import { auditRecord, buildAuditEvents } from '@tic/auth';
import type { RequestContext } from '@tic/fhir';
import { insertNewResources, newResourceRow } from '@tic/store';
import { openTestDatabase } from '@tic/store/testing';

const say = (line: string) => process.stdout.write(`${line}\n`);
const perDrain = Number(process.argv[2] ?? 1000);
const drains = Number(process.argv[3] ?? 20);
const db = await openTestDatabase('postgres');
try {
  for (const stmt of (process.env.SETUP_SQL ?? '').split(';').filter((x) => x.trim())) await db.db.query(stmt);
  const ctx = { clientId: 'bench-client', organization: 'Organization/bench', requestId: '' } as unknown as RequestContext;
  let js = 0;
  let sql = 0;
  for (let d = 0; d < drains; d++) {
    const records = Array.from({ length: perDrain }, () =>
      auditRecord({ ctx: { ...ctx, requestId: randomUUID() } as RequestContext, action: 'R', interaction: 'read', resources: [`Observation/${randomUUID()}`], patients: [`Patient/${randomUUID()}`], outcome: '0' }),
    );
    const t0 = performance.now();
    const rows = buildAuditEvents(JSON.parse(JSON.stringify(records))).map((e) => newResourceRow({ organization: 'Organization/bench' } as RequestContext, e));
    const t1 = performance.now();
    await db.db.transaction((tx) => insertNewResources(tx, rows));
    const t2 = performance.now();
    if (d >= 2) {
      js += t1 - t0;
      sql += t2 - t1;
    }
  }
  const n = perDrain * (drains - 2);
  const sizes = await db.db.query<{ t: string; rows: string; bytes: string }>(
    `SELECT 'resource' t, count(*) rows, pg_total_relation_size('resource') bytes FROM resource WHERE resource_type='AuditEvent'
     UNION ALL SELECT 'resource_version', count(*), pg_total_relation_size('resource_version') FROM resource_version
     UNION ALL SELECT 'sp_reference', count(*), pg_total_relation_size('sp_reference') FROM sp_reference
     UNION ALL SELECT 'sp_token', count(*), pg_total_relation_size('sp_token') FROM sp_token
     UNION ALL SELECT 'sp_date', count(*), pg_total_relation_size('sp_date') FROM sp_date
     UNION ALL SELECT 'sp_string', count(*), pg_total_relation_size('sp_string') FROM sp_string`,
  );
  say(`${perDrain} records per drain: build+index ${((js / n) * 1000).toFixed(1)} µs/record, store ${((sql / n) * 1000).toFixed(1)} µs/record (wall)`);
  for (const r of sizes.rows) say(`  ${r.t}: ${r.rows} rows, ${(Number(r.bytes) / (perDrain * drains)).toFixed(0)} bytes/record`);
  if (process.env.EXPLAIN) {
    const records = Array.from({ length: perDrain }, () =>
      auditRecord({ ctx: { ...ctx, requestId: randomUUID() } as RequestContext, action: 'R', interaction: 'read', resources: [`Observation/${randomUUID()}`], patients: [`Patient/${randomUUID()}`], outcome: '0' }),
    );
    const rows = buildAuditEvents(records).map((e) => newResourceRow({ organization: 'Organization/bench' } as RequestContext, e));
    await db.db.transaction(async (tx) => {
      const spy = { ...tx, query: (sql: string, params: unknown[]) => tx.query(`EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) ${sql}`, params).then((r) => (say(r.rows.map((x) => String(Object.values(x)[0])).join('\n')), r)) };
      await insertNewResources(spy as unknown as typeof tx, rows);
    });
  }
} finally {
  await db.drop();
}
