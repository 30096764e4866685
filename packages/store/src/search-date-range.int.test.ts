// Date searches bounded on both sides (date=geA&date=ltB, eq, ap) are read from the first rows of
// each (span class, bucket) the window touches, or gathered from the sp_date rows in the window by
// span class, or walked in last_updated order past a few thousand of them (search.ts,
// search-sql.ts, migrations 7 and 10). These tests pin the spec's semantics through all three
// paths: every precision and Period length, open Periods, several values of one parameter (each
// bound may be met by a different value: hull rows), ap never matching a gap between values, and
// paging; the reference answer is the same search sorted by _id, which probes every filter per
// resource and never uses the window.
import type { Goal, Observation } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { DATE_HULL_GRP } from './indexer.ts';
import { dateBucketSql, migrate, migrations } from './migrations.ts';
import { dateBucket } from './search-sql.ts';
import { PGliteDb } from './db.ts';
import { Repository } from './repository.ts';
import type { SearchOptions, SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
type Q = Record<string, string | string[]>;
const norm = (q: Q): Record<string, string[]> => Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));
const NOW = Date.parse('2024-06-11T00:00:00Z');
/** Search options for each path: by bucket (the default), gathered, walked past a cap. */
const modes = (cap: number): SearchOptions[] => [{}, { noBuckets: true }, { noBuckets: true, candidateCap: cap }];

describe.each(testDatabaseKinds())('date range search on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, system, { modules: [] });
  const page = (type: string, q: Q, options: SearchOptions = {}): Promise<SearchResult> => searchResources(t.db, system, [], type, norm(q), { now: NOW, ...options });
  const matchIds = (r: SearchResult) => r.entries.filter((e) => e.mode === 'match').map((e) => e.resource.id!);
  const ids = async (type: string, q: Q, options: SearchOptions = {}) => matchIds(await page(type, { _count: '200', ...q }, options)).sort();
  /** The answer without the window: sorted by _id, every filter is probed per resource. */
  const reference = (type: string, q: Q) => ids(type, { ...q, _sort: '_id' });

  const obs: Record<string, Observation> = {};
  let g1: Goal;
  let g2: Goal;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const r = repo();
    const effective: Record<string, Partial<Observation>> = {
      ms: { effectiveDateTime: '2024-06-10T23:59:59.999Z' },
      second: { effectiveDateTime: '2024-06-11T08:30:00Z' },
      minute: { effectiveDateTime: '2024-06-11T08:30Z' },
      day: { effectiveDateTime: '2024-06-11' },
      month: { effectiveDateTime: '2024-06' },
      year: { effectiveDateTime: '2024' },
      decade: { effectivePeriod: { start: '2020-01-01', end: '2029-12-31' } },
      century: { effectivePeriod: { start: '1950', end: '2040' } },
      openEnd: { effectivePeriod: { start: '2024-01-01' } },
      openStart: { effectivePeriod: { end: '2024-06-10T12:00:00Z' } },
      dayAfter: { effectiveDateTime: '2024-06-12' },
      dayBefore: { effectiveDateTime: '2024-06-09' },
      past: { effectivePeriod: { start: '2010', end: '2015' } },
      lastYear: { effectiveDateTime: '2023' },
      july: { effectiveDateTime: '2024-07' },
    };
    for (const [name, e] of Object.entries(effective)) {
      obs[name] = await r.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: name }, ...e });
    }
    // Goal.target.due: several values of target-date on one resource.
    const goal = (due: string[]) =>
      r.create<Goal>({ resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'g' }, subject: { reference: 'Patient/p' }, target: due.map((d) => ({ dueDate: d })) });
    g1 = await goal(['2024-01-05', '2024-03-01']);
    g2 = await goal(['2024-02-05']);
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('finds values of every precision and Period length that overlap the window', async () => {
    // openStart (…, 06-10T12:00] is neither above 06-10 nor inside it: not ge2024-06-10.
    const inWindow = ['ms', 'second', 'minute', 'day', 'month', 'year', 'decade', 'century', 'openEnd'].map((n) => obs[n].id!).sort();
    for (const mode of modes(2)) {
      expect(await ids('Observation', { date: ['ge2024-06-10', 'lt2024-06-12'] }, mode)).toEqual(inWindow);
      expect(await ids('Observation', { date: ['ge2024-06-10', 'le2024-06-11'] }, mode)).toEqual(inWindow);
    }
    expect(await reference('Observation', { date: ['ge2024-06-10', 'lt2024-06-12'] })).toEqual(inWindow);
  });

  it('answers like the probing search for every prefix pair, single prefix and OR list, by bucket, gathered or walked', async () => {
    const values = ['2024-06-10', '2024-06', '2024', '2024-06-11T08:30:00Z', '2023-12-31', '2029'];
    const queries: Q[] = [];
    for (const a of values) {
      for (const p of ['eq', 'ap', 'ge', 'gt', 'sa', 'lt', 'le', 'eb', 'ne']) queries.push({ date: `${p}${a}` });
      queries.push({ date: [`ge${a}`, 'ne2024-06-11'] }, { date: `lt${a},gt2029` });
      queries.push({ date: `eq${a},eq2010` });
      for (const b of values) {
        for (const lower of ['ge', 'gt', 'sa', 'eq', 'ap']) for (const upper of ['lt', 'le', 'eb']) queries.push({ date: [`${lower}${a}`, `${upper}${b}`] });
        queries.push({ date: [`ne${a}`, `ge${b}`, `lt2025`] });
      }
    }
    for (const q of queries) {
      const expected = await reference('Observation', q);
      for (const mode of modes(1)) expect([JSON.stringify(q), JSON.stringify(mode), await ids('Observation', q, mode)]).toEqual([JSON.stringify(q), JSON.stringify(mode), expected]);
    }
  }, 120_000);

  it('reads a window by bucket in one statement, and falls back when its first rows are filtered out', async () => {
    const { db, calls } = recordingDb(t.db);
    const run = async (q: Q, options: SearchOptions = {}) => {
      calls.length = 0;
      const r = await searchResources(db, system, [], 'Observation', norm(q), { now: NOW, ...options });
      return { ids: matchIds(r).sort(), statements: calls.map((c) => c.sql) };
    };
    const q = { date: ['ge2024-06-10', 'lt2024-06-12'], _count: '3' };
    const all = await reference('Observation', { date: q.date });
    const first = await run(q);
    expect(first.statements).toHaveLength(1);
    expect(first.statements[0]).toContain('unnest(');
    let seen = first.ids;
    expect(seen).toHaveLength(3);
    // Only one of the window's resources passes the code filter: its first rows by bucket do
    // not make the page, the gathered rows do.
    const filtered = await run({ ...q, 'code:text': 'decade' });
    expect(filtered.ids).toEqual([obs.decade.id]);
    expect(filtered.statements).toHaveLength(2);
    expect(filtered.statements[1]).not.toContain('unnest(');
    // Open on one side: gathered from one index range, not walked (unless past the cap).
    const open = await run({ date: 'ge2024-06-10' });
    expect(open.statements).toHaveLength(1);
    expect(open.statements[0]).toContain('dc AS MATERIALIZED');
    expect(open.ids).toEqual(await reference('Observation', { date: 'ge2024-06-10' }));
    // A window touching more buckets than MAX_BUCKET_ARMS is gathered.
    const wide = await run({ date: ['ge2024-01-01', 'lt2024-12-31'] });
    expect(wide.statements[0]).not.toContain('unnest(');
    seen = [...new Set([...seen, ...(await run({ ...q, _count: '200' })).ids])].sort();
    expect(seen).toEqual(all);
  });

  it('computes the buckets of low as the index expression does', async () => {
    const rows = (
      await t.db.query<{ span: number; low: string; b: string }>(
        `SELECT span, to_json(low)#>>'{}' AS low, (${dateBucketSql('')})::text AS b FROM sp_date WHERE span <> 99 ORDER BY span, low`,
      )
    ).rows;
    expect(new Set(rows.map((r) => r.span)).size).toBeGreaterThan(5);
    for (const r of rows) expect([r.span, r.low, Number(r.b)]).toEqual([r.span, r.low, dateBucket(Date.parse(r.low), r.span)]);
  });

  it('matches a resource whose bounds are met by different values of the parameter', async () => {
    // g1: 2024-01-05 and 2024-03-01. Neither lies in [02-01, 02-15), yet one is ge and one is lt.
    const q = { 'target-date': ['ge2024-02-01', 'lt2024-02-15'] };
    expect(await reference('Goal', q)).toEqual([g1.id, g2.id].sort());
    for (const mode of modes(1)) expect(await ids('Goal', q, mode)).toEqual([g1.id, g2.id].sort());
    // ap: [02-04, 02-07) (a day either side) lies in g1's gap; the row spanning its values is not a value.
    const now = Date.parse('2024-02-05T00:00:00Z');
    for (const mode of modes(1)) expect(await ids('Goal', { 'target-date': 'ap2024-02-05' }, { now, ...mode })).toEqual([g2.id]);
    expect(await ids('Goal', { 'target-date': 'ap2024-02-05', _sort: '_id' }, { now })).toEqual([g2.id]);
    expect(await ids('Goal', { 'target-date': 'ap2024-01-05' }, { now: Date.parse('2024-01-05T00:00:00Z') })).toEqual([g1.id]);
  });

  it('keeps one row spanning several values per parameter, rewritten by updates', async () => {
    const hulls = async (id: string) =>
      (await t.db.query<{ low: string; high: string }>(`SELECT low::text, high::text FROM sp_date WHERE resource_type = 'Goal' AND id = $1 AND grp = $2`, [id, DATE_HULL_GRP])).rows;
    expect(await hulls(g1.id!)).toHaveLength(1);
    expect(await hulls(g2.id!)).toHaveLength(0); // one value: it is its own hull
    const changed = await repo().update<Goal>({ ...g1, target: [{ dueDate: '2024-01-05' }, { dueDate: '2024-01-20' }] });
    expect(await hulls(g1.id!)).toHaveLength(1);
    expect(await ids('Goal', { 'target-date': ['ge2024-02-01', 'lt2024-02-15'] })).toEqual([g2.id]);
    expect(await ids('Goal', { 'target-date': ['ge2024-01-10', 'lt2024-01-15'] })).toEqual([g1.id]);
    await repo().update<Goal>({ ...changed, target: [{ dueDate: '2024-01-05' }, { dueDate: '2024-03-01' }] });
  });

  it('pages through the window in both directions, by bucket, gathered or walked, with accurate totals', async () => {
    for (const q of [{ date: ['ge2024-01-01', 'lt2024-12-31'] }, { date: 'ge2024-01-01' }, { date: 'lt2024-06-11' }]) await pageThrough(q);
  });

  async function pageThrough(q: Q) {
    const all = matchIds(await page('Observation', { ...q, _count: '200' }));
    expect([...all].sort()).toEqual(await reference('Observation', q));
    expect(all.length).toBeGreaterThan(8);
    for (const mode of modes(3)) {
      for (const sort of ['_lastUpdated', '-_lastUpdated']) {
        const expected = sort === '_lastUpdated' ? all : [...all].reverse();
        const seen: string[] = [];
        let r = await page('Observation', { ...q, _sort: sort, _count: '4', _total: 'accurate' }, mode);
        expect(r.total).toBe(all.length);
        seen.push(...matchIds(r));
        const pages = [r];
        while (r.nextCursor) {
          r = await page('Observation', { ...q, _sort: sort, _count: '4', _cursor: r.nextCursor }, mode);
          seen.push(...matchIds(r));
          pages.push(r);
        }
        expect(seen).toEqual(expected);
        const back = await page('Observation', { ...q, _sort: sort, _count: '4', _cursor: pages[pages.length - 1].prevCursor! }, mode);
        expect(matchIds(back)).toEqual(matchIds(pages[pages.length - 2]));
      }
    }
  }
});

describe('migration 7 on existing data', () => {
  it('adds the span class and the hull rows of resources stored before it', async () => {
    const db = await PGliteDb.open();
    try {
      await db.query(`CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of migrations.filter((m) => m.version < 7)) {
        await db.exec(m.sql);
        await db.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      const r = new Repository(db, system, { modules: [] });
      const goal = await r.create<Goal>({
        resourceType: 'Goal',
        lifecycleStatus: 'active',
        description: { text: 'g' },
        subject: { reference: 'Patient/p' },
        target: [{ dueDate: '2024-01-05' }, { dueDate: '2024-03-01' }],
      });
      await db.query(`DELETE FROM sp_date WHERE grp = $1`, [DATE_HULL_GRP]); // as written before migration 7
      expect(await migrate(db)).toContain(7);
      const rows = await db.query<{ low: string; high: string; span: number }>(`SELECT low::text, high::text, span FROM sp_date WHERE id = $1 AND grp = $2`, [goal.id, DATE_HULL_GRP]);
      expect(rows.rows).toEqual([{ low: '2024-01-05 00:00:00+00', high: '2024-03-02 00:00:00+00', span: 5 }]);
      const found = await searchResources(db, system, [], 'Goal', { 'target-date': ['ge2024-02-01', 'lt2024-02-15'] });
      expect(found.entries.map((e) => e.resource.id)).toEqual([goal.id]);
    } finally {
      await db.close();
    }
  });
});
