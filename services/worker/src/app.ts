// Builds the worker from its dependencies: the referral jobs (delivery, status polling) on
// graphile-worker against the API's PostgreSQL database.
import type { DomainModule } from '@tic/fhir';
import type { Runner } from '@tic/jobs';
import { installJobSchema, startWorker } from '@tic/jobs';
import type { PinoLike } from '@tic/jobs';
import type { DeliveryTarget } from '@tic/referral';
import { referralJobs, referralModule, staticTargets } from '@tic/referral';
import type { Db } from '@tic/store';
import { Repository } from '@tic/store';

export interface WorkerDeps {
  databaseUrl: string;
  db: Db;
  /** This server's FHIR base URL. */
  sourceBase: string;
  /** Receiving servers by owner reference (Organization/...). */
  targets: Record<string, DeliveryTarget>;
  pollIntervalMs?: number;
  concurrency?: number;
  /** The modules the API runs (so the worker's own writes get the same rules). */
  modules?: DomainModule[];
  logger?: PinoLike;
}

export async function createWorker(deps: WorkerDeps): Promise<Runner> {
  await installJobSchema(deps.databaseUrl, deps.logger);
  const modules = deps.modules ?? [referralModule()];
  const repository = () => new Repository(deps.db, { system: true, baseUrl: deps.sourceBase }, { modules });
  const taskList = referralJobs(repository, { sourceBase: deps.sourceBase, pollIntervalMs: deps.pollIntervalMs, resolveTarget: staticTargets(deps.targets) });
  return startWorker({ connectionString: deps.databaseUrl, taskList, concurrency: deps.concurrency, logger: deps.logger });
}
