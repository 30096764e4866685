// Every job a worker runs, composed from the domain packages: referral delivery, status polling
// and Subscription notifications (@tic/referral), and care plan summary sendings (@tic/careplan),
// all resolving receiving servers the same way (static targets, then directory Endpoints, with
// SMART Backend Services credentials).
import { summaryJobs } from '@tic/careplan';
import type { TaskList } from '@tic/jobs';
import { referralTaskList, workerTargets } from '@tic/referral';
import type { ReferralWorkerOptions } from '@tic/referral';

export function workerTaskList(options: ReferralWorkerOptions): TaskList {
  const targets = workerTargets(options);
  return {
    ...referralTaskList(options, targets),
    ...summaryJobs(options.repository, { sourceBase: options.sourceBase, resolveTarget: targets.fhirBase }),
  };
}
