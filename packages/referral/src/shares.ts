// resource_share rows that let a referral's receiving organisation see what its Consent allows.
// Written and removed inside the transaction of the write that changes them, so a revocation takes
// effect with its commit. Rows expire with the Consent's period (resource_share.expires).
import type { Db } from '@tic/store';
import type { ResourceKey } from './disclosure.ts';

export const shareReason = (taskId: string) => `referral:Task/${taskId}`;
export const offerReason = (taskId: string) => `referral-offer:Task/${taskId}`;

export async function replaceShares(db: Db, reason: string, org: string | undefined, keys: ResourceKey[], expires?: string): Promise<void> {
  await db.query('DELETE FROM resource_share WHERE reason = $1', [reason]);
  if (!org || keys.length === 0) return;
  const values: string[] = [];
  const params: unknown[] = [org, reason, expires ?? null];
  for (const k of keys) {
    params.push(k.type, k.id);
    values.push(`($${params.length - 1}, $${params.length}, $1, $2, $3::timestamptz)`);
  }
  await db.query(`INSERT INTO resource_share (resource_type, id, org, reason, expires) VALUES ${values.join(', ')} ON CONFLICT DO NOTHING`, params);
}

/** Shares one resource with several organisations under one reason (open Task offers). */
export async function replaceOffers(db: Db, reason: string, key: ResourceKey, orgs: string[]): Promise<void> {
  await db.query('DELETE FROM resource_share WHERE reason = $1', [reason]);
  if (orgs.length === 0) return;
  const params: unknown[] = [key.type, key.id, reason];
  const values = orgs.map((o) => {
    params.push(o);
    return `($1, $2, $${params.length}, $3, NULL)`;
  });
  await db.query(`INSERT INTO resource_share (resource_type, id, org, reason, expires) VALUES ${values.join(', ')} ON CONFLICT DO NOTHING`, params);
}

export async function sharesOf(db: Db, reason: string): Promise<Array<{ resource_type: string; id: string; org: string; expires: string | null }>> {
  const r = await db.query<{ resource_type: string; id: string; org: string; expires: string | null }>('SELECT resource_type, id, org, expires FROM resource_share WHERE reason = $1 ORDER BY resource_type, id, org', [reason]);
  return r.rows;
}
