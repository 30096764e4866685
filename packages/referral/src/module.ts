// referralModule: the DomainModule the api registers. Enforces the referral Task state machine,
// keeps what a receiving organisation may see in step with the person's Consent (resource_share
// rows written in the same transaction), and offers the directory operations.
import type { Consent, Organization, Resource, ServiceRequest, Subscription, Task } from '@medplum/fhirtypes';
import type { DomainModule, WriteHookContext } from '@tic/fhir';
import { forbidden } from '@tic/fhir';
import { enqueueJob } from '@tic/jobs';
import type { JobSpec } from '@tic/jobs';
import { BUSINESS_STATUS, businessStatusCode, REFERRAL_IDENTIFIER_SYSTEM, SECTOR_SYSTEM } from './codes.ts';
import { DELIVER_JOB } from './delivery/jobs.ts';
import { isPatientPrivacy } from './consent.ts';
import { codesIn, organizationSectors } from './directory.ts';
import { importHsdsOperation } from './operations/import-hsds.ts';
import { matchOperation } from './operations/match.ts';
import { coverageForWrite, dbOf, resyncTasks, syncTaskShares, systemRepo, withConsentStatus } from './referral-tasks.ts';
import type { Actor } from './task-state.ts';
import { isReferralTask, transitionTask } from './task-state.ts';
import { checkSubscription } from './subscriptions/check.ts';
import { enqueueNotifications } from './subscriptions/notify.ts';
import type { SubscriptionRow } from './subscriptions/notify.ts';

export interface ReferralModuleOptions {
  /** Clock (tests). */
  now?: () => Date;
  /**
   * Deliver referrals to receiving organisations' FHIR servers: a job is enqueued in the write's
   * transaction (PostgreSQL only; graphile-worker does not run on PGlite) when a Task becomes
   * disclosable or the requester changes its status. The worker runs `referralJobs`.
   */
  delivery?: { maxAttempts?: number };
  /**
   * R4 rest-hook Subscriptions on Task: every Task write enqueues notifications for the matching
   * active Subscriptions (PostgreSQL only; the worker runs `subscriptionJobs`). Without it,
   * Subscription writes by clients are refused (422).
   */
  subscriptions?: { maxAttempts?: number };
}

/** A Task this server received from the referrer's server (delivery gives it a source identifier). */
function isReceivedCopy(task: Task): boolean {
  return (task.identifier ?? []).some((i) => i.system === REFERRAL_IDENTIFIER_SYSTEM);
}

function shouldDeliver(task: Task, ctx: WriteHookContext): boolean {
  // A copy received by delivery is the receiving end: it is not sent on (back to its owner's
  // endpoint, or round in a loop between two servers).
  if (isReceivedCopy(task)) return false;
  const previous = ctx.previous as Task | undefined;
  if (!previous) return true;
  if (businessStatusCode(previous) === BUSINESS_STATUS.awaitingConsent.code) return true;
  // Status changes made by the requester (e.g. cancel) travel too; the server's own bookkeeping does not.
  return !ctx.request.system && previous.status !== task.status && previous.requester?.reference === ctx.request.organization;
}

/**
 * An update that changes nothing the shares are made of (status, parties, patient, focus, inputs,
 * sectors asked for, whether consent is awaited) leaves them as they are: e.g. the worker's
 * "delivered" businessStatus. Consent and ServiceRequest changes resync the shares themselves;
 * open Tasks are always rewritten (their offers follow the directory).
 */
function sharesUnchanged(task: Task, ctx: WriteHookContext): boolean {
  const previous = ctx.previous as Task | undefined;
  if (ctx.interaction === 'create' || !previous || previous.resourceType !== 'Task' || !isReferralTask(previous) || !task.owner) return false;
  const awaiting = (t: Task) => businessStatusCode(t) === BUSINESS_STATUS.awaitingConsent.code;
  if (awaiting(previous) !== awaiting(task)) return false;
  const same = (k: 'status' | 'owner' | 'for' | 'focus' | 'input' | 'performerType' | 'requester') => JSON.stringify(previous[k]) === JSON.stringify(task[k]);
  return same('status') && same('owner') && same('for') && same('focus') && same('input') && same('performerType') && same('requester');
}

function actorOf(ctx: WriteHookContext): Actor {
  return ctx.request.system || !ctx.request.organization ? { system: true } : { organization: ctx.request.organization };
}

async function checkClaim(ctx: WriteHookContext, task: Task, actor: Actor): Promise<void> {
  if ('system' in actor) return;
  const wanted = codesIn(task.performerType, SECTOR_SYSTEM);
  if (wanted.length === 0) return;
  const id = actor.organization.split('/')[1];
  let org: Organization | undefined;
  try {
    org = await systemRepo(ctx.repo).read<Organization>('Organization', id);
  } catch {
    org = undefined;
  }
  if (!organizationSectors(org).some((s) => wanted.includes(s))) throw forbidden(`Only an organisation of sector ${wanted.join(' or ')} may claim this referral`);
}

async function beforeTask(task: Task, ctx: WriteHookContext, now: Date): Promise<Task | void> {
  if (!isReferralTask(task)) return undefined;
  const previous = ctx.previous as Task | undefined;
  const actor = actorOf(ctx);
  const { claim } = transitionTask(previous && isReferralTask(previous) ? previous : undefined, task, actor);
  if (claim) await checkClaim(ctx, task, actor);
  return withConsentStatus(task, await coverageForWrite(ctx, ctx.repo, task, now));
}

export function referralModule(options: ReferralModuleOptions = {}): DomainModule {
  const now = options.now ?? (() => new Date());
  return {
    name: 'referral',
    resourceTypes: ['Task', 'Consent', 'ServiceRequest', 'Subscription'],
    async beforeWrite(resource: Resource, ctx: WriteHookContext) {
      if (ctx.interaction === 'delete') return undefined;
      if (resource.resourceType === 'Task') return beforeTask(resource, ctx, now());
      if (resource.resourceType === 'Subscription') return checkSubscription(resource as Subscription, ctx, { enabled: !!options.subscriptions, now });
      return undefined;
    },
    async afterWrite(resource: Resource, ctx: WriteHookContext) {
      const deleted = ctx.interaction === 'delete';
      if (resource.resourceType === 'Task') {
        let subscriptions: SubscriptionRow[] | undefined;
        if (isReferralTask(resource)) {
          // The store runs only afterWrite on deletes; throwing here rolls the delete back.
          if (deleted && !ctx.request.system && ctx.request.organization) throw forbidden('A referral Task is not deleted: set it to cancelled or entered-in-error');
          // Delivery, when consented, is enqueued in the shares' statement (or on its own when they stay).
          const deliver: JobSpec | undefined =
            options.delivery && shouldDeliver(resource, ctx) ? { task: DELIVER_JOB, payload: { taskId: resource.id }, options: { jobKey: `${DELIVER_JOB}:${resource.id}`, maxAttempts: options.delivery.maxAttempts ?? 8 } } : undefined;
          if (!deleted && sharesUnchanged(resource, ctx)) {
            const coverage = await coverageForWrite(ctx, ctx.repo, resource, now());
            if (coverage && deliver) await enqueueJob(dbOf(ctx.repo), deliver.task, deliver.payload, deliver.options);
          } else if (!deleted) {
            // The Subscriptions are read in the shares' statement too.
            subscriptions = (await syncTaskShares(ctx.repo, resource, now(), { ctx, jobFor: (coverage) => (coverage ? deliver : undefined), subscriptions: !!options.subscriptions, created: ctx.interaction === 'create' })).subscriptions;
          }
        }
        // After the shares are written, so a receiver's Subscription sees a Task just disclosed to it.
        if (options.subscriptions && !deleted) await enqueueNotifications(ctx.repo, resource, { maxAttempts: options.subscriptions.maxAttempts, now, ...(subscriptions ? { subscriptions } : {}) });
        return;
      }
      if (resource.resourceType === 'Consent' && isPatientPrivacy(resource as Consent)) {
        const patient = (resource as Consent).patient?.reference;
        if (patient) await resyncTasks(ctx.repo, { subject: patient }, now());
        return;
      }
      if (resource.resourceType === 'ServiceRequest') {
        await resyncTasks(ctx.repo, { focus: `ServiceRequest/${(resource as ServiceRequest).id}` }, now());
      }
    },
    operations: [matchOperation({ now }), importHsdsOperation({ now })],
  };
}
