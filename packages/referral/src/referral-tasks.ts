// Keeping a referral Task's disclosure in step with its Consent: the business status
// ("awaiting consent" / "consented") and the resource_share rows for the receiving organisation.
import type { Consent, Organization, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import type { JobSpec } from '@tic/jobs';
import type { SubscriptionRow } from './subscriptions/notify.ts';
import { Repository } from '@tic/store';
import type { Db } from '@tic/store';
import { BUSINESS_STATUS, businessStatus, businessStatusCode, SECTOR_SYSTEM } from './codes.ts';
import type { ConsentCoverage } from './consent.ts';
import { coverageOf } from './consent.ts';
import { codesIn } from './directory.ts';
import { disclosedResources, keyOf } from './disclosure.ts';
import { offerReason, shareReason, syncShares } from './shares.ts';
import { isReferralTask } from './task-state.ts';

/** The repository acting as the server itself, in the same transaction. */
export function systemRepo(repo: ResourceRepository): ResourceRepository {
  return repo instanceof Repository ? repo.asSystem() : repo;
}

export function dbOf(repo: ResourceRepository): Db {
  if (repo instanceof Repository) return repo.db;
  throw new Error('The referral module needs the PostgreSQL repository (resource_share)');
}

/**
 * The person's active Consents: the Consents naming them (one prepared look-up, or none for a
 * person created in this very transaction: a referral Bundle bringing its Patient).
 */
export async function consentsFor(repo: ResourceRepository, patient: string): Promise<Consent[]> {
  const assumed = repo instanceof Repository ? assumedConsents.get(repo.db)?.get(patient) : undefined;
  if (assumed) return assumed;
  const sys = systemRepo(repo);
  if (!sys.referring) return sys.search<Consent>('Consent', { patient, status: 'active', _count: '100' });
  return (await sys.referring<Consent>('Consent', 'patient', patient, 1000)).filter((c) => c.status === 'active').slice(0, 100);
}

/** Consents a transaction is told it may take as current (assumeConsents), by patient. */
const assumedConsents = new WeakMap<object, Map<string, Consent[]>>();

/**
 * Lets the hooks of writes in this transaction take `consents` (as consentsFor answered them
 * moments ago, outside it) as the person's current active Consents instead of looking them up
 * again. Only for a write made with If-Match on the version read together with them: a Consent
 * change that could change the Task's consent status writes a new Task version (resyncTasks), so
 * the write fails (412) and is retried without the assumption; any other Consent change already
 * rewrote the shares in its own transaction and leaves this write's outcome as it would be.
 */
export function assumeConsents(repo: ResourceRepository, patient: string, consents: Consent[]): void {
  if (!(repo instanceof Repository) || !repo.db.inTransaction) return;
  const known = assumedConsents.get(repo.db) ?? new Map<string, Consent[]>();
  known.set(patient, consents.filter((c) => c.status === 'active').slice(0, 100));
  assumedConsents.set(repo.db, known);
}

export async function coverageForTask(repo: ResourceRepository, task: Task, now: Date): Promise<ConsentCoverage | undefined> {
  const owner = task.owner?.reference;
  const patient = task.for?.reference;
  if (!owner || !patient || !keyOf(patient)) return undefined;
  return coverageOf(await consentsFor(repo, patient), patient, owner, now, task);
}

/** The Task with its consent business status brought up to date (unchanged object when nothing changes). */
export function withConsentStatus(task: Task, coverage: ConsentCoverage | undefined): Task {
  if (!task.owner) return task;
  const current = businessStatusCode(task);
  if (!coverage) return current === BUSINESS_STATUS.awaitingConsent.code ? task : { ...task, businessStatus: businessStatus('awaitingConsent') };
  if (current === undefined || current === BUSINESS_STATUS.awaitingConsent.code) return { ...task, businessStatus: businessStatus('consented') };
  return task;
}

async function focusOf(repo: ResourceRepository, task: Task): Promise<ServiceRequest | undefined> {
  const k = keyOf(task.focus?.reference);
  if (!k || k.type !== 'ServiceRequest') return undefined;
  const sys = systemRepo(repo);
  try {
    return sys.writtenInTransaction?.<ServiceRequest>(`ServiceRequest/${k.id}`) ?? (await sys.read<ServiceRequest>('ServiceRequest', k.id));
  } catch {
    return undefined;
  }
}

/** Organisations of the sectors an open Task asks for (Task.performerType). */
async function sectorOrganizations(repo: ResourceRepository, task: Task): Promise<string[]> {
  const sectors = codesIn(task.performerType, SECTOR_SYSTEM);
  if (sectors.length === 0) return [];
  const orgs = await systemRepo(repo).search<Organization>('Organization', { type: sectors.map((s) => `${SECTOR_SYSTEM}|${s}`).join(','), _count: '1000' });
  return orgs.map((o) => `Organization/${o.id}`).filter((ref) => ref !== task.requester?.reference);
}

/**
 * Consent coverage worked out for a Task write's beforeWrite hook, kept for its afterWrite hook
 * (same write, same transaction: one Consent search instead of two). Keyed by the write's hook
 * context, which the store passes to both.
 */
const coverageOfWrite = new WeakMap<object, { patient?: string; owner?: string; coverage: ConsentCoverage | undefined }>();

export async function coverageForWrite(ctx: object, repo: ResourceRepository, task: Task, now: Date): Promise<ConsentCoverage | undefined> {
  const known = coverageOfWrite.get(ctx);
  if (known && known.patient === task.for?.reference && known.owner === task.owner?.reference) return known.coverage;
  const coverage = await coverageForTask(repo, task, now);
  coverageOfWrite.set(ctx, { patient: task.for?.reference, owner: task.owner?.reference, coverage });
  return coverage;
}

export interface TaskSharesOptions {
  /** The write's hook context, when called from a write hook (its coverage is reused). */
  ctx?: object;
  /** A job to enqueue in the shares' statement, given the coverage (undefined: none). */
  jobFor?: (coverage: ConsentCoverage | undefined) => JobSpec | undefined;
  /** Read the stored Subscriptions in the same statement (for the write's notifications). */
  subscriptions?: boolean;
  /** The Task is being created: it has no share rows yet. */
  created?: boolean;
}

/** Rewrites the shares of one Task: the receiver's view under its Consent, and open-Task offers. */
export async function syncTaskShares(repo: ResourceRepository, task: Task, now: Date, options: TaskSharesOptions = {}): Promise<{ coverage: ConsentCoverage | undefined; subscriptions?: SubscriptionRow[] }> {
  const { ctx, jobFor } = options;
  const db = dbOf(repo);
  const id = task.id!;
  const active = isReferralTask(task) && task.status !== 'entered-in-error';
  const coverage = active ? await (ctx ? coverageForWrite(ctx, repo, task, now) : coverageForTask(repo, task, now)) : undefined;
  const keys = coverage ? disclosedResources(task, await focusOf(repo, task), coverage) : [];
  const open = active && !task.owner && task.status === 'requested';
  const offers = open ? await sectorOrganizations(repo, task) : [];
  const subscriptions = await syncShares(db, [
    // Each row expires when the Consents' answer for its resource may next change (ResourceKey.until).
    { reason: shareReason(id), orgs: task.owner?.reference ? [task.owner.reference] : [], keys },
    { reason: offerReason(id), orgs: offers, keys: [{ type: 'Task', id }] },
  ], jobFor?.(coverage), options.subscriptions, { noneYet: options.created === true });
  return { coverage, ...(subscriptions ? { subscriptions } : {}) };
}

/**
 * After a Consent or ServiceRequest changes: bring every affected referral Task up to date.
 * `query`: one reference parameter of Task (subject or focus); the Tasks are looked up as
 * ResourceRepository.referring does (none to look up when what it names is new in this transaction).
 */
export async function resyncTasks(repo: ResourceRepository, query: { subject: string } | { focus: string }, now: Date): Promise<void> {
  const sys = systemRepo(repo);
  const [code, reference] = Object.entries(query)[0] as [string, string];
  const tasks = sys.referring ? await sys.referring<Task>('Task', code, reference, 1000) : await sys.search<Task>('Task', { [code]: reference, _count: '1000' });
  for (const task of tasks.filter(isReferralTask)) {
    const coverage = await coverageForTask(repo, task, now);
    const updated = withConsentStatus(task, coverage);
    // A new Task version runs the hooks again, which rewrite the shares; otherwise rewrite them here.
    if (updated !== task) await sys.update(updated as Resource);
    else await syncTaskShares(repo, task, now);
  }
}
