// Builds the worker from its dependencies: the referral jobs (delivery, status polling, R4
// Subscription notifications) on graphile-worker against the API's PostgreSQL database.
import type { DomainModule } from '@tic/fhir';
import type { Runner } from '@tic/jobs';
import { installJobSchema, startWorker } from '@tic/jobs';
import type { PinoLike } from '@tic/jobs';
import type { DeliveryTarget, EndpointCredentials } from '@tic/referral';
import { referralModule } from '@tic/referral';
import { workerTaskList } from './tasks.ts';
import type { Db } from '@tic/store';
import { Repository } from '@tic/store';

/**
 * Jobs run at once by default. Deliveries mostly wait on the receiving server, so a worker keeps
 * many in flight; size the database pool to match (WORKER_CONCURRENCY + a few).
 */
export const DEFAULT_WORKER_CONCURRENCY = 16;

export interface WorkerDeps {
  databaseUrl: string;
  db: Db;
  /** This server's FHIR base URL. */
  sourceBase: string;
  /** Receiving servers by owner reference (Organization/...); override the directory's Endpoints. */
  targets?: Record<string, DeliveryTarget>;
  /** SMART Backend Services credentials by endpoint address. */
  credentials?: Record<string, EndpointCredentials>;
  pollIntervalMs?: number;
  concurrency?: number;
  /** How often to unlock the jobs of dead worker processes (ms). */
  recoveryInterval?: number;
  /**
   * The modules the API runs (so the worker's own writes get the same rules and fire Subscriptions).
   * Default: the referral module with Subscriptions on.
   */
  modules?: DomainModule[];
  logger?: PinoLike;
}

export async function createWorker(deps: WorkerDeps): Promise<Runner> {
  await installJobSchema(deps.databaseUrl, deps.logger);
  const modules = deps.modules ?? [referralModule({ subscriptions: {} })];
  const repository = () => new Repository(deps.db, { system: true, baseUrl: deps.sourceBase }, { modules });
  const taskList = workerTaskList({ repository, sourceBase: deps.sourceBase, targets: deps.targets, credentials: deps.credentials, pollIntervalMs: deps.pollIntervalMs });
  return startWorker({ connectionString: deps.databaseUrl, taskList, concurrency: deps.concurrency ?? DEFAULT_WORKER_CONCURRENCY, logger: deps.logger, recoveryInterval: deps.recoveryInterval });
}
