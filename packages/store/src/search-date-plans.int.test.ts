// The plan PostgreSQL picks for a date window's first rows by bucket (search-sql.ts
// dateFirstRowsSql) when the sp_date pages are not all-visible, as after a burst of writes before
// autovacuum: every bucket, including the span classes read as one range of buckets, must come
// from sp_date_bucket_idx. The range's rows used to be read from sp_date_high_idx (every row with
// high > lo) for weeks late in the data: 11 ms instead of 0.01 ms per search at 100k, half the
// benchmark's date-range throughput. PostgreSQL only (plans).
import type { Observation } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb } from './testing.ts';

const system: RequestContext = { system: true };
const DAY = 86_400_000;
const START = Date.UTC(2024, 0, 1);
const dateOf = (day: number) => new Date(START + day * DAY).toISOString().slice(0, 10);

// Skipped without DATABASE_URL: it checks PostgreSQL's query plans (PGlite plans differently); CI sets it.
(process.env.DATABASE_URL ? describe : describe.skip)('date window plans on postgres', () => {
  let t: TestDatabase;

  beforeAll(async () => {
    t = await openTestDatabase('postgres');
    const repo = new Repository(t.db, system, { modules: [] });
    // 6,000 Observations over 2024 to the second, as the benchmark's: analysed, never vacuumed.
    for (let b = 0; b < 12; b++) {
      await repo.createMany(
        Array.from({ length: 500 }, (_, i): Observation => {
          const n = b * 500 + i;
          return { resourceType: 'Observation', status: 'final', code: { text: 'x' }, effectiveDateTime: new Date(START + ((n * 7919) % 365) * DAY + ((n * 37) % 86_400) * 1000).toISOString() };
        }),
      );
    }
    await t.db.query('ANALYZE');
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('reads every bucket of a week from the bucket index, wherever the week lies', async () => {
    for (const day of [3, 120, 240, 330, 350, 357]) {
      const { db, calls: statements } = recordingDb(t.db);
      const r = await searchResources(db, system, [], 'Observation', { date: [`ge${dateOf(day)}`, `lt${dateOf(day + 7)}`] });
      expect(r.entries).toHaveLength(20);
      expect(statements).toHaveLength(1);
      expect(statements[0].sql).toContain('unnest(');
      const plan = (await t.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${statements[0].sql}`, statements[0].params)).rows.map((row) => row['QUERY PLAN']).join('\n');
      const scans = [...plan.matchAll(/Scan (?:using|on) (sp_date\w*)/g)].map((m) => m[1]);
      // The probes of the page's candidates use sp_date_resource_code_idx; the window's rows only the bucket index.
      expect({ day, scans: [...new Set(scans)].sort() }).toEqual({ day, scans: ['sp_date_bucket_idx', 'sp_date_resource_code_idx'] });
    }
  });

  it('reads each class without a floor as its own range of buckets', async () => {
    // A week in 900: the classes of 1,000 and 10,000 years reach back before the first instant.
    const old = await new Repository(t.db, system, { modules: [] }).create<Observation>({
      resourceType: 'Observation',
      status: 'final',
      code: { text: 'old' },
      effectivePeriod: { start: '0900-01-03', end: '1800' },
    });
    const { db, calls } = recordingDb(t.db);
    const r = await searchResources(db, system, [], 'Observation', { date: ['ge0900-01-01', 'lt0900-01-08'] });
    const text = calls.at(-1)?.sql ?? '';
    expect(r.entries.map((e) => e.resource.id)).toEqual([old.id]);
    expect(text).toContain('x.span = 8 AND');
    expect(text).toContain('x.span = 9 AND');
    expect(text).toContain('unnest(');
  });
});
