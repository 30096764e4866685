// The plans of history pages (decision 0006): current versions (resource) and replaced ones
// (resource_version) are each walked by an index in the page's order and merged, so a page reads
// about offset + count rows of each table, not every version of the type or of the server.
// PostgreSQL only (plans).
import type { Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { HistoryOptions } from './repository.ts';
import { Repository } from './repository.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb } from './testing.ts';

const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };
const TYPES = ['Patient', 'Observation', 'Task', 'ServiceRequest', 'QuestionnaireResponse', 'Condition'];
// Rows a page of `count` at `offset` may read from each table: the page, and the rest of the last
// row's group of equal last_updated (the incremental sort completes it; two updates can fall in one
// millisecond). A page that sorted the table would read every one of its 4,000+ rows.
const bound = (offset: number, count: number) => offset + count + 10;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Alias?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  Plans?: PlanNode[];
}

function* nodes(n: PlanNode): Generator<PlanNode> {
  yield n;
  for (const c of n.Plans ?? []) yield* nodes(c);
}

// Skipped without DATABASE_URL: it checks PostgreSQL's query plans (PGlite plans differently); CI sets it.
(process.env.DATABASE_URL ? describe : describe.skip)('history plans on postgres', () => {
  let t: TestDatabase;
  let ids: Resource[];

  /** The scans of the history's own rows (alias r_n) in the plan of one history page. */
  async function scans(type: string | undefined, id: string | undefined, options: HistoryOptions): Promise<Array<{ relation: string; node: string; index?: string; rows: number }>> {
    const { db, calls } = recordingDb(t.db);
    const entries = await new Repository(db, orgA, { modules: [] }).historyEntries(type, id, options);
    expect(entries.length).toBeGreaterThan(0);
    const statement = calls.at(-1);
    const plan = (await t.db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${statement!.sql}`, statement!.params)).rows[0]['QUERY PLAN'][0].Plan;
    return [...nodes(plan)]
      .filter((n) => (n['Relation Name'] === 'resource' || n['Relation Name'] === 'resource_version') && /^r(_\d+)?$/.test(n.Alias ?? ''))
      .map((n) => ({ relation: n['Relation Name']!, node: n['Node Type'], index: n['Index Name'], rows: n['Actual Rows'] * n['Actual Loops'] }));
  }

  beforeAll(async () => {
    t = await openTestDatabase('postgres');
    const repo = new Repository(t.db, orgA, { modules: [] });
    ids = [];
    for (let b = 0; b < 8; b++) ids.push(...(await repo.createMany(Array.from({ length: 500 }, (_, i) => ({ resourceType: TYPES[(b * 500 + i) % TYPES.length] }) as Resource))));
    // Every 7th resource updated twice: replaced versions of every type, spread over the data.
    for (let i = 0; i < ids.length; i += 7) {
      await repo.update({ ...ids[i], language: 'en' } as Resource);
      await repo.update({ ...ids[i], language: 'fr' } as Resource);
    }
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('system history, before any ANALYZE: both tables walked by their last_updated indexes, about offset + count rows each', async () => {
    for (const offset of [0, 300]) {
      const s = await scans(undefined, undefined, { count: 21, offset, before: new Date().toISOString(), excludeTypes: ['AuditEvent'] });
      expect(s.map((x) => [x.relation, x.index])).toEqual([
        ['resource', 'resource_updated_idx'],
        ['resource_version', 'resource_version_updated_idx'],
      ]);
      for (const x of s) expect(x.rows).toBeLessThanOrEqual(bound(offset, 21));
    }
  });

  it('type and instance history, analysed: index walks, about offset + count rows each', async () => {
    await t.db.query('ANALYZE');
    for (const offset of [0, 100]) {
      const s = await scans('Task', undefined, { count: 21, offset, before: new Date().toISOString() });
      expect(s.map((x) => x.relation).sort()).toEqual(['resource', 'resource_version']);
      for (const x of s) {
        expect(x.node).toBe('Index Scan');
        expect(x.rows).toBeLessThanOrEqual(bound(offset, 21));
      }
    }
    const s = await scans(ids[7].resourceType, ids[7].id, { count: 2, offset: 1 });
    expect(s.map((x) => [x.relation, x.index])).toEqual([
      ['resource', 'resource_pkey'],
      ['resource_version', 'resource_version_pkey'],
    ]);
    const all = await scans(undefined, undefined, { count: 21, offset: 0 });
    for (const x of all) expect(x.rows).toBeLessThanOrEqual(bound(0, 21));
  });
});
