// Searches sorted by _lastUpdated (the default) are driven from one filter's index rows walked in
// last_updated order (search.ts, docs/search-plans.md). These tests pin what that walk must keep:
// one entry per resource even when several index rows match, the copy of last_updated following
// updates and deletes, keyset paging in both directions, _lastUpdated bounds, OR values, and the
// visibility rule, on PGlite and PostgreSQL.
import type { Observation, Task } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import type { SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };
const orgB: RequestContext = { organization: 'Organization/b', clientId: 'b' };

describe.each(testDatabaseKinds())('driven search on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext) => new Repository(t.db, ctx, { modules: [] });
  const page = (type: string, q: Record<string, string>, ctx: RequestContext = system, cursor?: string): Promise<SearchResult> => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = [v];
    if (cursor) query._cursor = [cursor];
    return searchResources(t.db, ctx, [], type, query);
  };
  const idsOf = (r: SearchResult) => r.entries.filter((e) => e.mode === 'match').map((e) => e.resource.id!);
  /** Every match, following next cursors page by page. */
  async function walk(type: string, q: Record<string, string>, ctx: RequestContext = system): Promise<string[]> {
    const out: string[] = [];
    let r = await page(type, q, ctx);
    out.push(...idsOf(r));
    for (let guard = 0; r.nextCursor && guard < 50; guard++) {
      r = await page(type, q, ctx, r.nextCursor);
      out.push(...idsOf(r));
    }
    return out;
  }

  const tasks: Task[] = [];
  let twoCodings: Observation;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    // 12 Tasks of org a owned by org b (shared with b as the referral module does), created one by
    // one so last_updated increases; every third is requested.
    for (let i = 0; i < 12; i++) {
      const task = await repo(orgA).create<Task>({
        resourceType: 'Task',
        status: i % 3 === 0 ? 'requested' : 'accepted',
        intent: 'order',
        priority: i % 2 === 0 ? 'urgent' : 'routine',
        requester: { reference: 'Organization/a' },
        owner: { reference: 'Organization/b' },
      });
      tasks.push(task);
      await new Promise((r) => setTimeout(r, 2)); // distinct last_updated: the expected order is creation order
      await repo(system).share('Task', task.id!, 'Organization/b', `referral:Task/${task.id}`);
    }
    // One Task of org a that is not shared: b must never see it.
    tasks.push(await repo(orgA).create<Task>({ resourceType: 'Task', status: 'requested', intent: 'order', owner: { reference: 'Organization/b' } }));
    await new Promise((r) => setTimeout(r, 2));
    // The same code in two code systems: two index rows match `code=4711`.
    twoCodings = await repo(system).create<Observation>({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: 'urn:one', code: '4711' }, { system: 'urn:two', code: '4711' }] },
    });
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  const created = (from: number, to: number) => tasks.slice(from, to).map((x) => x.id!);

  it('returns a resource once even when several of its index rows match', async () => {
    expect(idsOf(await page('Observation', { code: '4711' }))).toEqual([twoCodings.id]);
    expect(idsOf(await page('Observation', { code: 'urn:one|4711,urn:two|4711' }))).toEqual([twoCodings.id]);
  });

  it('orders by last_updated both ways and pages with cursors without gaps or repeats', async () => {
    const all = created(0, 13);
    expect(await walk('Task', { owner: 'Organization/b', _count: '5' })).toEqual(all);
    expect(await walk('Task', { owner: 'Organization/b', _count: '4', _sort: '-_lastUpdated' })).toEqual([...all].reverse());
    // Walking back from the third page gives the second.
    const p1 = await page('Task', { owner: 'Organization/b', _count: '4', _sort: '-_lastUpdated' });
    const p2 = await page('Task', { owner: 'Organization/b', _count: '4', _sort: '-_lastUpdated' }, system, p1.nextCursor);
    const p3 = await page('Task', { owner: 'Organization/b', _count: '4', _sort: '-_lastUpdated' }, system, p2.nextCursor);
    const back = await page('Task', { owner: 'Organization/b', _count: '4', _sort: '-_lastUpdated' }, system, p3.prevCursor);
    expect(idsOf(back)).toEqual(idsOf(p2));
  });

  it('applies the other filters, OR values and the visibility rule to the walk', async () => {
    const requested = tasks.filter((x, i) => i < 12 && x.status === 'requested').map((x) => x.id!);
    expect(await walk('Task', { owner: 'Organization/b', status: 'requested', _sort: '-_lastUpdated', _count: '2' }, orgB)).toEqual([...requested].reverse());
    const urgentOpen = tasks.filter((x, i) => i < 12 && x.priority === 'urgent').map((x) => x.id!);
    expect(await walk('Task', { owner: 'Organization/b', priority: 'urgent,stat', status: 'requested,accepted', _count: '3' }, orgB)).toEqual(urgentOpen);
    // The unshared Task is visible to its writer only.
    expect(await walk('Task', { owner: 'Organization/b', status: 'requested' }, orgA)).toContain(tasks[12].id);
    expect(await walk('Task', { owner: 'Organization/b', status: 'requested' }, orgB)).not.toContain(tasks[12].id);
    expect((await page('Task', { owner: 'Organization/b', _total: 'accurate' }, orgB)).total).toBe(12);
    expect(await walk('Task', { owner: 'Organization/b' }, { organization: 'Organization/c', clientId: 'c' })).toEqual([]);
  });

  it('bounds the walk by _lastUpdated', async () => {
    const since = tasks[9].meta!.lastUpdated!;
    expect(await walk('Task', { owner: 'Organization/b', _lastUpdated: `ge${since}`, _sort: '-_lastUpdated' })).toEqual(created(9, 13).reverse());
    expect(await walk('Task', { owner: 'Organization/b', _lastUpdated: `lt${since}` })).toEqual(created(0, 9));
  });

  it('follows updates and deletes (the index rows carry the new last_updated)', async () => {
    const first = tasks[0];
    const updated = await repo(orgA).update<Task>({ ...first, status: 'in-progress' });
    const newest = await page('Task', { owner: 'Organization/b', _sort: '-_lastUpdated', _count: '1' });
    expect(idsOf(newest)).toEqual([first.id]);
    expect(newest.entries[0].resource.meta?.lastUpdated).toBe(updated.meta?.lastUpdated);
    expect(idsOf(await page('Task', { owner: 'Organization/b', status: 'in-progress' }))).toEqual([first.id]);
    await repo(orgA).delete('Task', first.id!);
    expect(await walk('Task', { owner: 'Organization/b' })).not.toContain(first.id);
    expect(await walk('Task', { owner: 'Organization/b' })).toHaveLength(12);
  });
});
