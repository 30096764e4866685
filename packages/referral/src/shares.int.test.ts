// syncShares on the real store (PGlite, and PostgreSQL when DATABASE_URL is set): one statement
// brings the share rows of several reasons to exactly the sets given.
import { openTestDatabase, testDatabaseKinds } from '@tic/store/testing';
import type { TestDatabase } from '@tic/store/testing';
import type { Resource } from '@medplum/fhirtypes';
import { Repository } from '@tic/store';
import { offerReason, shareReason, sharesOf, syncShares } from './shares.ts';

describe.each(testDatabaseKinds())('syncShares on %s', (kind) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 120_000);
  afterAll(async () => t?.drop());

  const row = (type: string, id: string, org: string, expires: string | null = null) => ({ resource_type: type, id, org, expires });
  const iso = (s: string | null) => (s === null ? null : new Date(s).toISOString());
  const rows = async (reason: string) => (await sharesOf(t.db, reason)).map((r) => ({ ...r, expires: iso(r.expires) }));

  it('adds, keeps, re-dates and removes rows per reason, leaving other reasons alone', async () => {
    const share = shareReason('t1');
    const offer = offerReason('t1');
    const unrelated = shareReason('t2');
    await syncShares(t.db, [{ reason: unrelated, orgs: ['Organization/x'], keys: [{ type: 'Task', id: 't2' }] }]);
    await syncShares(t.db, [
      { reason: share, orgs: ['Organization/b'], keys: [{ type: 'Task', id: 't1' }, { type: 'Patient', id: 'p1' }, { type: 'Task', id: 't1' }] },
      { reason: offer, orgs: ['Organization/c', 'Organization/d'], keys: [{ type: 'Task', id: 't1' }] },
    ]);
    expect(await rows(share)).toEqual([row('Patient', 'p1', 'Organization/b'), row('Task', 't1', 'Organization/b')]);
    expect(await rows(offer)).toEqual([row('Task', 't1', 'Organization/c'), row('Task', 't1', 'Organization/d')]);

    // The Consent now ends; the Patient is no longer disclosed, an Observation is; the offer is taken.
    const end = '2031-01-01T00:00:00.000Z';
    await syncShares(t.db, [
      { reason: share, orgs: ['Organization/b'], keys: [{ type: 'Task', id: 't1' }, { type: 'Observation', id: 'o1' }], expires: end },
      { reason: offer, orgs: [], keys: [{ type: 'Task', id: 't1' }] },
    ]);
    expect(await rows(share)).toEqual([row('Observation', 'o1', 'Organization/b', end), row('Task', 't1', 'Organization/b', end)]);
    expect(await rows(offer)).toEqual([]);

    // Another receiving organisation: the first one's rows go.
    await syncShares(t.db, [{ reason: share, orgs: ['Organization/e'], keys: [{ type: 'Task', id: 't1' }] }]);
    expect(await rows(share)).toEqual([row('Task', 't1', 'Organization/e')]);
    await syncShares(t.db, [{ reason: share, orgs: [], keys: [] }]);
    expect(await rows(share)).toEqual([]);
    expect(await rows(unrelated)).toEqual([row('Task', 't2', 'Organization/x')]);
  });

  it('writes the rows of a Task being created without deleting (noneYet)', async () => {
    const reason = shareReason('t4');
    await syncShares(t.db, [{ reason, orgs: ['Organization/b'], keys: [{ type: 'Task', id: 't4' }, { type: 'Patient', id: 'p4' }] }], undefined, false, { noneYet: true });
    expect(await rows(reason)).toEqual([row('Patient', 'p4', 'Organization/b'), row('Task', 't4', 'Organization/b')]);
    expect(await syncShares(t.db, [{ reason: offerReason('t4'), orgs: ['Organization/c'], keys: [{ type: 'Task', id: 't4' }] }], undefined, true, { noneYet: true })).toEqual(expect.any(Array));
    expect(await rows(offerReason('t4'))).toEqual([row('Task', 't4', 'Organization/c')]);
  });

  it('reads the stored Subscriptions in the same statement when asked, with or without any', async () => {
    const reason = shareReason('t3');
    expect(await syncShares(t.db, [{ reason, orgs: ['Organization/b'], keys: [{ type: 'Task', id: 't3' }] }], undefined, true)).toEqual([]);
    expect(await rows(reason)).toEqual([row('Task', 't3', 'Organization/b')]);
    const sub = { resourceType: 'Subscription', id: 's1', status: 'active', criteria: 'Task?owner=Organization/b', reason: 'test', channel: { type: 'rest-hook', endpoint: 'http://127.0.0.1:9/hook' } };
    const deletedSub = { ...sub, id: 's2' };
    await new Repository(t.db, { system: true }, { modules: [] }).createMany([sub, deletedSub] as Resource[], { keepIds: true });
    await new Repository(t.db, { system: true }, { modules: [] }).delete('Subscription', 's2');
    const found = await syncShares(t.db, [{ reason, orgs: ['Organization/c'], keys: [{ type: 'Task', id: 't3' }] }], undefined, true);
    expect(found?.map((r) => [r.id, (JSON.parse(r.content) as { criteria: string }).criteria, r.deleted])).toEqual([['s1', sub.criteria, false]]);
    expect(await rows(reason)).toEqual([row('Task', 't3', 'Organization/c')]);
    expect(await syncShares(t.db, [{ reason, orgs: [], keys: [] }])).toBeUndefined();
  });
});
