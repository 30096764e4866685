// Everything the worker runs for referrals, in one task list: delivery and status polling (targets
// from static configuration first, then the directory, with SMART Backend Services credentials per
// endpoint address) and R4 Subscription notifications. Used by services/worker and by the API's
// in-process worker (`npm start` on PostgreSQL). `workerTargets` gives the same target resolution
// to other jobs that send to directory Endpoints (the services add the care plan summary sendings).
import type { TaskList } from '@tic/jobs';
import type { Repository } from '@tic/store';
import { subscriptionJobs } from '../subscriptions/notify.ts';
import type { DeliveryOptions, DeliveryTarget } from './jobs.ts';
import { referralJobs, staticTargets } from './jobs.ts';
import type { EndpointCredentials, TokenSourceOptions } from './smart-client.ts';
import { CredentialStore, directoryTargets, fhirBaseTargets, firstTarget } from './targets.ts';

export interface ReferralWorkerOptions {
  /** A repository acting as the server itself (with the modules the API runs). */
  repository: () => Repository;
  /** This server's FHIR base URL. */
  sourceBase: string;
  /** Receiving servers by owner reference; they override the directory. */
  targets?: Record<string, DeliveryTarget>;
  /** SMART Backend Services credentials by endpoint address (REFERRAL_CREDENTIALS_FILE). */
  credentials?: Record<string, EndpointCredentials>;
  pollIntervalMs?: number;
  notifyTimeoutMs?: number;
  tokens?: TokenSourceOptions;
}

export interface WorkerTargets {
  /** Receiving server of a referral Task's owner: static targets first, then the directory. */
  referral: DeliveryOptions['resolveTarget'];
  /** FHIR base of an organisation (static targets, then its directory Endpoint), with tokens. */
  fhirBase: ReturnType<typeof fhirBaseTargets>;
}

/** Target resolution shared by every job that sends to another organisation's FHIR server. */
export function workerTargets(options: Pick<ReferralWorkerOptions, 'targets' | 'credentials' | 'tokens'>): WorkerTargets {
  const store = new CredentialStore(options.credentials ?? {}, options.tokens);
  const fixed: Record<string, DeliveryTarget> = {};
  for (const [owner, t] of Object.entries(options.targets ?? {})) fixed[owner] = store.withTokens(t);
  return { referral: firstTarget(staticTargets(fixed), directoryTargets(store)), fhirBase: fhirBaseTargets(store, fixed) };
}

export function referralTaskList(options: ReferralWorkerOptions, targets: WorkerTargets = workerTargets(options)): TaskList {
  return {
    ...referralJobs(options.repository, { sourceBase: options.sourceBase, pollIntervalMs: options.pollIntervalMs, resolveTarget: targets.referral }),
    ...subscriptionJobs(options.repository, { timeoutMs: options.notifyTimeoutMs }),
  };
}
