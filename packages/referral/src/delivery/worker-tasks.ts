// Everything the worker runs for referrals, in one task list: delivery and status polling (targets
// from static configuration first, then the directory, with SMART Backend Services credentials per
// endpoint address) and R4 Subscription notifications. Used by services/worker and by the API's
// in-process worker (`npm start` on PostgreSQL). It also carries the care plan summary sendings
// (CarePlan/$send-summary, @tic/careplan), which go to the same directory Endpoints with the same
// credentials.
import { summaryJobs } from '@tic/careplan';
import type { TaskList } from '@tic/jobs';
import type { Repository } from '@tic/store';
import { subscriptionJobs } from '../subscriptions/notify.ts';
import type { DeliveryTarget } from './jobs.ts';
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

export function referralTaskList(options: ReferralWorkerOptions): TaskList {
  const store = new CredentialStore(options.credentials ?? {}, options.tokens);
  const fixed: Record<string, DeliveryTarget> = {};
  for (const [owner, t] of Object.entries(options.targets ?? {})) fixed[owner] = store.withTokens(t);
  const resolveTarget = firstTarget(staticTargets(fixed), directoryTargets(store));
  return {
    ...referralJobs(options.repository, { sourceBase: options.sourceBase, pollIntervalMs: options.pollIntervalMs, resolveTarget }),
    ...subscriptionJobs(options.repository, { timeoutMs: options.notifyTimeoutMs }),
    ...summaryJobs(options.repository, { sourceBase: options.sourceBase, resolveTarget: fhirBaseTargets(store, fixed) }),
  };
}
