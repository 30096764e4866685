// Query plans at scale: loads ~100k resources into a throwaway PostgreSQL database through the
// repository (so index rows are real), then prints EXPLAIN ANALYZE for the main search shapes and
// their median latency. Opt-in, it takes a few minutes:
//   EXPLAIN_PLANS=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//     node scripts/tic.mjs pnpm --filter @tic/store exec jest src/search-explain.int.test.ts
// Output goes to EXPLAIN_OUT (default /tmp/search-plans.txt); findings live in docs/search-plans.md.
import { writeFileSync } from 'node:fs';
import type { Observation, Patient } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { Db, QueryResult } from './db.ts';
import { PgDb } from './db.ts';
import { migrate } from './migrations.ts';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import { createPostgresDatabase } from './testing.ts';

// A measurement, not a check: loads 100k resources and prints plans (minutes). Run with EXPLAIN_PLANS=1.
const enabled = process.env.EXPLAIN_PLANS === '1' && !!process.env.DATABASE_URL;
const PATIENTS = Number(process.env.EXPLAIN_PATIENTS ?? 25_000);
const OBS_PER_PATIENT = 3;
const ORGS = 10;
const CODES = ['44249-1', '44261-6', '69737-5', '70274-6', '89204-2', '8867-4', '8480-6', '8462-4', '2339-0', '29463-7'];
const FAMILIES = ['Smith', 'Jones', 'Ngata', 'Müller', 'Garcia', 'Nguyen', 'Okafor', 'Kowalski', 'Tanaka', 'Silva', 'Brown', 'Wilson'];

/** Records every query the search runs so it can be EXPLAINed with the same parameters. */
class RecordingDb implements Db {
  readonly inner: Db;
  readonly seen: Array<{ sql: string; params: unknown[] }> = [];
  readonly inTransaction = false;
  readonly dialect = 'postgres' as const;
  constructor(inner: Db) {
    this.inner = inner;
  }
  query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
    this.seen.push({ sql, params: params ?? [] });
    return this.inner.query<R>(sql, params);
  }
  exec(sql: string): Promise<void> {
    return this.inner.exec(sql);
  }
  transaction<T>(fn: (tx: Db) => Promise<T>): Promise<T> {
    return this.inner.transaction(fn);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

// Skipped unless EXPLAIN_PLANS=1 (and DATABASE_URL): a measurement that loads 100k resources for
// minutes, not a check; its findings are in docs/search-plans.md (see the header).
(enabled ? describe : describe.skip)('search plans at 100k resources (PostgreSQL)', () => {
  let db: PgDb;
  let drop: () => Promise<void>;
  const out: string[] = [];
  let samplePatient = '';

  beforeAll(async () => {
    const t = await createPostgresDatabase(process.env.DATABASE_URL!, 'tic_explain');
    drop = t.drop;
    out.push(`database: ${new URL(t.url).pathname.slice(1)}`);
    db = new PgDb(t.url, 16);
    await migrate(db);
    const started = Date.now();
    let next = 0;
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= PATIENTS) return;
        const ctx: RequestContext = { organization: `Organization/o${i % ORGS}` };
        const repo = new Repository(db, ctx, { modules: [] });
        const p = await repo.create<Patient>({
          resourceType: 'Patient',
          identifier: [{ system: 'urn:mrn', value: `MRN${i}` }],
          name: [{ family: `${FAMILIES[i % FAMILIES.length]}${i % 97 === 0 ? '' : String(i % 1000)}`, given: [`Given${i % 50}`] }],
          gender: i % 2 === 0 ? 'female' : 'male',
          birthDate: `${1940 + (i % 70)}-${String(1 + (i % 12)).padStart(2, '0')}-${String(1 + (i % 28)).padStart(2, '0')}`,
        });
        if (i === 4242) samplePatient = p.id!;
        for (let k = 0; k < OBS_PER_PATIENT; k++) {
          const code = CODES[(i + k) % CODES.length];
          await repo.create<Observation>({
            resourceType: 'Observation',
            status: k === 2 ? 'preliminary' : 'final',
            code: { coding: [{ system: 'http://loinc.org', code }] },
            subject: { reference: `Patient/${p.id}` },
            effectiveDateTime: new Date(Date.UTC(2025, i % 12, 1 + (i % 28), k * 3)).toISOString(),
            valueQuantity: { value: (i * 7 + k) % 30, system: 'http://unitsofmeasure.org', code: '{score}' },
          });
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const secs = (Date.now() - started) / 1000;
    await db.query('ANALYZE');
    const n = await db.query<{ n: string }>('SELECT count(*) AS n FROM resource');
    out.push(`# ${n.rows[0].n} resources loaded in ${secs.toFixed(1)} s (${(Number(n.rows[0].n) / secs).toFixed(0)} creates/s, 16 connections)\n`);
  }, 3_600_000);

  afterAll(async () => {
    writeFileSync(process.env.EXPLAIN_OUT ?? '/tmp/search-plans.txt', out.join('\n'));
    await db?.close();
    // EXPLAIN_KEEP=1 leaves the database in place for manual EXPLAINs (its name is in the output).
    if (process.env.EXPLAIN_KEEP !== '1') await drop?.();
  });

  const shapes: Array<[string, string, Record<string, string>, RequestContext?]> = [
    ['token, selective', 'Patient', { identifier: 'urn:mrn|MRN4242' }],
    ['string prefix', 'Patient', { family: 'ngata' }],
    ['string :contains', 'Patient', { 'family:contains': 'owals' }],
    ['token, 10% of rows, default sort', 'Observation', { code: 'http://loinc.org|44249-1' }],
    ['reference Type/id', 'Observation', { subject: 'Patient/SAMPLE' }],
    ['reference + token + date', 'Observation', { patient: 'SAMPLE', code: 'http://loinc.org|44261-6', date: 'ge2025-01-01' }],
    ['date range, sort -date', 'Observation', { date: 'ge2025-03-01', _sort: '-date' }],
    ['date eq (day)', 'Patient', { birthdate: '1980-05-05' }],
    ['quantity gt', 'Observation', { 'value-quantity': 'gt28', code: 'http://loinc.org|8867-4' }],
    ['chain subject:Patient.name', 'Observation', { 'subject:Patient.identifier': 'urn:mrn|MRN4242' }],
    ['_has reverse chain', 'Patient', { '_has:Observation:subject:code': 'http://loinc.org|44249-1', family: 'ngata' }],
    ['newest first, status', 'Observation', { status: 'preliminary', _sort: '-_lastUpdated' }],
    ['sort by string param', 'Patient', { gender: 'female', _sort: 'family' }],
    ['visibility: org o3, code', 'Observation', { code: 'http://loinc.org|44249-1' }, { organization: 'Organization/o3' }],
    ['_include subject', 'Observation', { code: 'http://loinc.org|44249-1', _include: 'Observation:subject' }],
    ['_revinclude', 'Patient', { family: 'ngata', _revinclude: 'Observation:subject' }],
    ['_total=accurate', 'Observation', { code: 'http://loinc.org|44249-1', _total: 'accurate' }],
    [':missing', 'Patient', { 'deceased:missing': 'false' }],
    ['token :not', 'Observation', { 'status:not': 'final', code: 'http://loinc.org|44249-1' }],
  ];

  // Every row has four cells: jest treats a missing trailing argument as a done() callback.
  it.each(shapes.map(([a, b, c, d]) => [a, b, c, d ?? null] as const))('%s', async (label, type, query, ctx) => {
    const q = Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v.replace('SAMPLE', samplePatient)]]));
    const rec = new RecordingDb(db);
    const c = ctx ?? { system: true };
    await searchResources(rec, c, [], type, q);
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const s = process.hrtime.bigint();
      await searchResources(db, c, [], type, q);
      times.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
    times.sort((a, b) => a - b);
    out.push(`## ${label}: ${type}?${new URLSearchParams(query).toString()}`);
    out.push(`median ${times[7].toFixed(2)} ms, max ${times[14].toFixed(2)} ms over 15 runs (${rec.seen.length} queries)\n`);
    for (const s of rec.seen) {
      const plan = await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${s.sql}`, s.params);
      out.push('```');
      out.push(plan.rows.map((r) => r['QUERY PLAN']).join('\n'));
      out.push('```\n');
    }
    expect(times[7]).toBeGreaterThan(0);
  }, 120_000);
});
