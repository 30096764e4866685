// resource_share rows that let a referral's receiving organisation see what its Consent allows.
// Written and removed inside the transaction of the write that changes them, so a revocation takes
// effect with its commit. Rows expire when the Consents' answer for their resource may next change (a
// period bound: resource_share.expires from ResourceKey.until, else the set's expires).
import type { JobSpec } from '@tic/jobs';
import { addJobSql } from '@tic/jobs';
import type { Db } from '@tic/store';
import type { SubscriptionRow } from './subscriptions/notify.ts';
import { SUBSCRIPTION_ROWS_SQL } from './subscriptions/notify.ts';
import type { ResourceKey } from './disclosure.ts';

export const shareReason = (taskId: string) => `referral:Task/${taskId}`;
export const offerReason = (taskId: string) => `referral-offer:Task/${taskId}`;

export interface ShareSet {
  reason: string;
  /** Organisations the resources are shared with (none: the reason's rows are all removed). */
  orgs: string[];
  keys: ResourceKey[];
  expires?: string;
}

/**
 * Brings the rows of several reasons to exactly the given sets in one statement: rows no longer
 * wanted are deleted, new ones inserted, kept ones get the new expiry (no gap in between, unlike
 * deleting and inserting again). In the same statement: `job` is enqueued (a referral's delivery,
 * caused by the write these shares follow), and with `subscriptions` the stored Subscriptions are
 * read and returned (SUBSCRIPTION_ROWS_SQL: the Task write's notifications look at them next).
 * `noneYet`: the reasons have no rows yet (the Task is being created), so nothing is deleted: a
 * prepared DELETE by reason keeps the plan made when the table was small, and without fresh
 * statistics that was a sequential scan of resource_share for every Task written (measured on the
 * receiving server: 2,842 of 3,001 in a 25 s run).
 */
export async function syncShares(db: Db, sets: ShareSet[], job?: JobSpec, subscriptions = false, options: { noneYet?: boolean } = {}): Promise<SubscriptionRow[] | undefined> {
  const rows = new Map<string, [string, string, string, string, string | null]>();
  for (const set of sets) {
    for (const org of set.orgs) for (const k of set.keys) rows.set(JSON.stringify([k.type, k.id, org, set.reason]), [k.type, k.id, org, set.reason, k.until ?? set.expires ?? null]);
  }
  const wanted = [...rows.values()];
  const col = (i: number) => wanted.map((w) => w[i]);
  // noneYet: the reasons have no rows yet (a Task being created): nothing to delete, and no
  // DELETE whose plan could scan the table.
  const params: unknown[] = options.noneYet ? [col(0), col(1), col(2), col(3), col(4)] : [col(0), col(1), col(2), col(3), col(4), sets.map((s) => s.reason)];
  const ctes = `WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS w(resource_type, id, org, reason, expires))${
    options.noneYet
      ? ''
      : `,
     gone AS (DELETE FROM resource_share s WHERE s.reason = ANY($6::text[])
       AND NOT EXISTS (SELECT 1 FROM wanted w WHERE w.resource_type = s.resource_type AND w.id = s.id AND w.org = s.org AND w.reason = s.reason))`
  }`;
  const insert = `INSERT INTO resource_share (resource_type, id, org, reason, expires) SELECT resource_type, id, org, reason, expires FROM wanted
     ON CONFLICT (resource_type, id, org, reason) DO UPDATE SET expires = EXCLUDED.expires WHERE resource_share.expires IS DISTINCT FROM EXCLUDED.expires`;
  if (!job && !subscriptions) {
    await db.query(`${ctes} ${insert}`, params, { prepare: true });
    return undefined;
  }
  let jobCte = '';
  if (job) {
    if (db.dialect !== 'postgres') throw new Error('Durable jobs need PostgreSQL (graphile-worker does not run on PGlite)');
    const call = addJobSql(job, (v) => {
      params.push(v);
      return `$${params.length}`;
    });
    jobCte = `, j AS (SELECT ${call} IS NOT NULL AS queued)`;
  }
  // The job's CTE runs because the statement reads it (the left side of the join is always read).
  const from = job ? 'j' : '(SELECT 1) one';
  const tail = subscriptions ? `SELECT s.id, s.content, s.owner_org, s.deleted FROM ${from} LEFT JOIN (${SUBSCRIPTION_ROWS_SQL}) s ON true` : `SELECT count(*) FROM ${from}`;
  const r = await db.query<SubscriptionRow | { id: null }>(`${ctes}, ins AS (${insert})${jobCte} ${tail}`, params, { prepare: true });
  return subscriptions ? r.rows.filter((row): row is SubscriptionRow => row.id !== null) : undefined;
}

export async function sharesOf(db: Db, reason: string): Promise<Array<{ resource_type: string; id: string; org: string; expires: string | null }>> {
  const r = await db.query<{ resource_type: string; id: string; org: string; expires: string | null }>('SELECT resource_type, id, org, expires FROM resource_share WHERE reason = $1 ORDER BY resource_type, id, org', [reason]);
  return r.rows;
}
