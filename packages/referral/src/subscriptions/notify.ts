// R4 rest-hook notifications. On every write of a subscribable resource (afterWrite, in the write's
// transaction) each active Subscription whose criteria match enqueues a durable job; the match is
// the store's own search (criteria + _id) run as the Subscription's owner, so a Subscription fires
// only for resources its organisation can see. The job sends the notification with retries and
// exponential back-off (graphile-worker); after the last attempt the Subscription goes to "error".
//
// R4 rest-hook semantics: without a payload, an empty POST to channel.endpoint; with a payload, the
// endpoint is a FHIR base and the resource is sent with an update (PUT [endpoint]/[type]/[id]).
import type { Resource, Subscription } from '@medplum/fhirtypes';
import type { RequestContext, ResourceRepository } from '@tic/fhir';
import type { JobHandler, TaskList } from '@tic/jobs';
import { enqueueJob } from '@tic/jobs';
import { Repository } from '@tic/store';
import type { Db } from '@tic/store';
import { criteriaType, matchQuery, parseCriteria } from './criteria.ts';
import { checkEndpoint, parseHeaders, payloadKind } from './check.ts';

export const NOTIFY_JOB = 'subscription-notify';

export interface NotifyPayload {
  subscriptionId: string;
  resourceType: string;
  id: string;
  versionId: string;
}

export interface SubscriptionRow {
  id: string;
  content: string;
  owner_org: string | null;
  deleted: boolean;
}

/** A repository acting as `owner` (the Subscription's organisation), or as the server when null. */
function repositoryAs(repo: Repository, owner: string | null): Repository {
  const ctx: RequestContext = owner ? { organization: owner, ...(repo.ctx.baseUrl ? { baseUrl: repo.ctx.baseUrl } : {}) } : { ...repo.ctx, system: true };
  return new Repository(repo.db, ctx, repo.services);
}

function isLive(s: Subscription, now: Date): boolean {
  return s.status === 'active' && (s.end === undefined || Date.parse(s.end) > now.getTime());
}

/** The stored Subscriptions, as a join target in another statement (shares.ts) or on their own. */
export const SUBSCRIPTION_ROWS_SQL = "SELECT id, content, owner_org, deleted FROM resource WHERE resource_type = 'Subscription' AND NOT deleted";

async function activeSubscriptions(db: Db, resourceType: string, now: Date, known?: SubscriptionRow[]): Promise<Array<{ subscription: Subscription; owner: string | null }>> {
  const rows = known ?? (await db.query<SubscriptionRow>(SUBSCRIPTION_ROWS_SQL)).rows;
  return rows
    .map((r) => ({ subscription: JSON.parse(r.content) as Subscription, owner: r.owner_org }))
    .filter(({ subscription }) => isLive(subscription, now) && criteriaType(subscription) === resourceType);
}

export interface NotifyOptions {
  /** Attempts before the Subscription goes to error (default 5). */
  maxAttempts?: number;
  now?: () => Date;
  /** The stored Subscriptions as read already in this transaction (with the Task's shares). */
  subscriptions?: SubscriptionRow[];
}

/**
 * Enqueues a notification for every active Subscription whose criteria match `resource` as it was
 * just written, in the write's transaction. PostgreSQL only (no-op elsewhere).
 */
export async function enqueueNotifications(repo: ResourceRepository, resource: Resource, options: NotifyOptions = {}): Promise<number> {
  if (!(repo instanceof Repository) || repo.db.dialect !== 'postgres' || !resource.id || !resource.meta?.versionId) return 0;
  const candidates = await activeSubscriptions(repo.db, resource.resourceType, options.now?.() ?? new Date(), options.subscriptions);
  let enqueued = 0;
  for (const { subscription, owner } of candidates) {
    let matches = false;
    try {
      const criteria = parseCriteria(subscription.criteria);
      // A savepoint: a search that fails in SQL must not abort the write's transaction.
      matches = await repo.db.transaction(async (tx) => (await repositoryAs(repo.withDb(tx), owner).search(criteria.resourceType, matchQuery(criteria, resource.id!))).length > 0);
    } catch {
      matches = false; // criteria the store can no longer run: the Subscription simply does not fire
    }
    if (!matches) continue;
    const payload: NotifyPayload = { subscriptionId: subscription.id!, resourceType: resource.resourceType, id: resource.id, versionId: resource.meta.versionId };
    await enqueueJob(repo.db, NOTIFY_JOB, payload, { maxAttempts: options.maxAttempts ?? 5 });
    enqueued++;
  }
  return enqueued;
}

/** What went wrong, without bodies. */
function failureReason(e: unknown): string {
  if (e instanceof NotificationRefused) return `HTTP ${e.status}`;
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) return 'timeout';
  const code = (e as { cause?: { code?: string } }).cause?.code;
  return code ?? (e instanceof Error ? e.name : 'error');
}

class NotificationRefused extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`notification answered HTTP ${status}`);
    this.status = status;
  }
}

export interface NotifyJobOptions {
  /** Per-request timeout (ms, default 10 s). */
  timeoutMs?: number;
  now?: () => Date;
}

/** Sends one notification; 'skipped' when the Subscription is no longer active or the resource no longer visible to its owner. */
export async function sendNotification(system: Repository, payload: NotifyPayload, options: NotifyJobOptions = {}): Promise<'sent' | 'skipped'> {
  const row = (await system.db.query<SubscriptionRow>("SELECT id, content, owner_org, deleted FROM resource WHERE resource_type = 'Subscription' AND id = $1", [payload.subscriptionId])).rows[0];
  if (!row || row.deleted) return 'skipped';
  const subscription = JSON.parse(row.content) as Subscription;
  if (!isLive(subscription, options.now?.() ?? new Date())) return 'skipped';
  const asOwner = repositoryAs(system, row.owner_org);
  let resource: Resource;
  try {
    await asOwner.read(payload.resourceType, payload.id); // visible to the owner now (consent may have been revoked)
    resource = await asOwner.readVersion(payload.resourceType, payload.id, payload.versionId);
  } catch {
    return 'skipped';
  }
  const endpoint = checkEndpoint(subscription.channel.endpoint).toString();
  const headers = new Headers(parseHeaders(subscription.channel.header));
  const withPayload = payloadKind(subscription.channel.payload) === 'json';
  let url = endpoint;
  let body: string | undefined;
  if (withPayload) {
    url = `${endpoint.replace(/\/+$/, '')}/${payload.resourceType}/${encodeURIComponent(payload.id)}`;
    headers.set('Content-Type', 'application/fhir+json');
    body = JSON.stringify(resource);
  }
  const res = await fetch(url, { method: withPayload ? 'PUT' : 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(options.timeoutMs ?? 10_000) });
  await res.body?.cancel();
  if (res.status < 200 || res.status >= 300) throw new NotificationRefused(res.status);
  return 'sent';
}

async function markError(system: Repository, subscriptionId: string, text: string): Promise<void> {
  const current = await system.read<Subscription>('Subscription', subscriptionId);
  if (current.status !== 'active') return;
  await system.update<Subscription>({ ...current, status: 'error', error: text });
}

/** The worker's task list for Subscription notifications; `repository()` gives a system repository. */
export function subscriptionJobs(repository: () => Repository, options: NotifyJobOptions = {}): TaskList {
  const notify: JobHandler = async (raw, helpers) => {
    const payload = raw as NotifyPayload;
    const system = repository();
    try {
      await sendNotification(system, payload, options);
    } catch (e) {
      if (helpers.job.attempts >= helpers.job.max_attempts) {
        await markError(system, payload.subscriptionId, `Notification failed after ${helpers.job.attempts} attempts: ${failureReason(e)}`);
        return;
      }
      throw e;
    }
  };
  return { [NOTIFY_JOB]: notify };
}
