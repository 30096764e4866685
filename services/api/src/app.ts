// Builds the API from its dependencies (database, logger, configuration) so tests build it too.
import express from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import type { CodeSystem, Resource, StructureDefinition, ValueSet } from '@medplum/fhirtypes';
import type { DomainModule, FhirOperation, RequestContext } from '@tic/fhir';
import { badRequest, createValidator, isOperationOutcomeError, notFound, statusForOutcome } from '@tic/fhir';
import type { Validator } from '@tic/fhir';
import { buildCapabilityStatement, createFhirRouter, fhirErrorHandler, requestLogger, safeError } from '@tic/rest';
import type { Interaction } from '@tic/rest';
import type { Db, RepositoryServices } from '@tic/store';
import { AuditJournal, AuditQueue, migrate, Repository } from '@tic/store';
import { createAuth, requireScope, scopeInteractionFor, SqlJtiStore } from '@tic/auth';
import type { Auth, AuthConfig, ClientRegistration } from '@tic/auth';
import { loadConformanceResources } from '@tic/fhir-profiles';
import { screeningModule, validateScreeningConfig } from '@tic/screening';
import { careplanModule } from '@tic/careplan';
import { referralModule } from '@tic/referral';
import { installJobSchema } from '@tic/jobs';
import type { ApiConfig } from './config.ts';
import { readJsonFile } from './config.ts';
import { auditAccess, auditEventsFor, auditRefusal, auditRowForRead, auditRowsForWrites } from './audit.ts';
import { idleDetector, spareShare } from './idle.ts';
import { validateOperation } from './operations/validate.ts';
import { seedConformance } from './seed.ts';
import { loadDemoData } from './demo.ts';

export const VERSION = '0.1.0';

export interface AppDeps {
  config: ApiConfig;
  db: Db;
  logger: Logger;
  /** Domain modules (screening, referral, careplan); the defaults are used when omitted. */
  modules?: DomainModule[];
  /** Extra registered clients (tests). */
  clients?: ClientRegistration[];
}

export interface Api {
  app: Express;
  auth: Auth;
  validator: Validator;
  modules: DomainModule[];
  baseUrl: string;
  /** Marks the app not ready (graceful shutdown). */
  setReady(ready: boolean): void;
  /** A repository acting as the server itself (seeding, jobs, tests). */
  systemRepository(): Repository;
  /** Turns every queued read AuditEvent into a stored AuditEvent now (tests; shutdown). */
  drainAudit(): Promise<void>;
  /** Stops the audit log's background work (shipping, building) and leaves it as it is (tests). */
  pauseAudit(): Promise<void>;
  /** Stops background work (the audit queue's drain) after draining it. */
  close(): Promise<void>;
}

function authConfigFrom(config: ApiConfig, extraClients: ClientRegistration[]): AuthConfig {
  const clients = [...((config.auth.clientsFile ? readJsonFile(config.auth.clientsFile) : []) as ClientRegistration[]), ...extraClients];
  const auth: AuthConfig = {
    mode: config.auth.mode,
    environment: config.environment,
    baseUrl: config.publicUrl,
    fhirBaseUrl: `${config.publicUrl}/fhir`,
    clients,
  };
  if (!config.databaseUrl || config.environment !== 'production') auth.devDataDir = `${config.dataDir}/dev-client`;
  if (config.environment === 'production') delete auth.devDataDir;
  if (config.auth.rateLimitPerSecond) auth.rateLimit = { ratePerSecond: config.auth.rateLimitPerSecond, burst: config.auth.rateLimitBurst ?? Math.ceil(config.auth.rateLimitPerSecond * 2) };
  if (config.auth.mode === 'external') {
    auth.external = { issuer: config.auth.externalIssuer ?? '', audience: config.auth.externalAudience ?? `${config.publicUrl}/fhir`, jwksUrl: config.auth.externalJwksUrl ?? '' };
  }
  return auth;
}

export async function createApi(deps: AppDeps): Promise<Api> {
  const { config, db, logger } = deps;
  const baseUrl = `${config.publicUrl}/fhir`;
  await migrate(db);

  const modules = deps.modules ?? (await defaultModules(config));
  if (config.databaseUrl) await installJobSchema(config.databaseUrl);
  const conformance = [...loadConformanceResources(), ...modules.flatMap((m) => m.conformanceResources?.() ?? [])] as Resource[];
  const validator = createValidator({
    profiles: conformance.filter((r): r is StructureDefinition => r.resourceType === 'StructureDefinition'),
    terminology: conformance.filter((r): r is ValueSet | CodeSystem => r.resourceType === 'ValueSet' || r.resourceType === 'CodeSystem'),
  });

  const jtiStore = new SqlJtiStore(db);
  await jtiStore.init();
  // `now` is passed explicitly: createAuth spreads an undefined `now` over the rate limiter's default.
  const auth = await createAuth(authConfigFrom(config, deps.clients ?? []), { jtiStore, logger, now: Date.now });

  const writeAudits: { queue?: AuditQueue } = {};
  const operations: FhirOperation[] = [validateOperation(validator), ...modules.flatMap((m) => m.operations ?? [])];
  const services: Omit<RepositoryServices, 'modules'> = {
    validate: (r) => {
      try {
        validator.assertValid(r);
      } catch (e) {
        if (isOperationOutcomeError(e)) throw e;
        // The validator failed on malformed input (e.g. a Bundle whose entry is not an array): the
        // resource is not valid, and that is a 400, not a 500.
        logger.warn({ err: safeError(e), resourceType: typeof r.resourceType === 'string' ? r.resourceType : undefined }, 'validator failed on a malformed resource');
        throw badRequest('The resource is malformed and could not be validated');
      }
    },
    // A write's audit rows are committed with it; the queue (once started) counts them towards its
    // backlog. Writes before it exists are the server's own (seeding), which are not audited.
    audit: (writes) => {
      const rows = auditRowsForWrites(writes);
      writeAudits.queue?.noteQueued(rows.reduce((n, r) => n + (r.records ?? 1), 0));
      return rows;
    },
  };
  const systemRepository = () => new Repository(db, { system: true, baseUrl }, { ...services, modules });
  await seedConformance(systemRepository(), conformance, logger);
  if (config.demoData) await loadDemoData(systemRepository(), logger);

  // Reads, searches and refusals are audited in a local journal by default (decision 0005), or as
  // rows committed to PostgreSQL (decision 0004).
  const journal =
    config.auditReadCommit === 'journal'
      ? AuditJournal.open(config.auditJournalDir, { syncMs: config.auditJournalSyncMs, onError: (e) => logger.error({ err: safeError(e) }, 'audit journal write or sync failed') })
      : undefined;
  const auditQueue = new AuditQueue(db, { build: auditEventsFor, commit: config.auditReadCommit === 'relaxed' ? 'relaxed' : undefined, journal });
  writeAudits.queue = auditQueue;
  // AuditEvents are built from the log back to back when no request is in flight; while requests
  // are served, in the CPU time left spare and at least AUDIT_BUILD_SHARE of the wall time; under a
  // saturating load the rest waits, durable already, up to AUDIT_BUILD_MAX_BACKLOG records
  // (decisions 0005, 0012).
  // An API that does not audit reads exists only to measure the audit's cost beside one that does
  // (the benchmark; refused in production): it leaves the audit log to the other.
  // Idle (idle.ts): nothing in flight and nothing started at two ticks in a row.
  const requests = idleDetector();
  if (config.auditReads) {
    auditQueue.start(200, (e) => logger.error({ err: safeError(e) }, 'audit queue drain failed'), {
      idle: () => requests.idle(),
      maxBacklog: config.auditBuildMaxBacklog,
      share: config.auditBuildShare >= 1 ? () => 1 : spareShare(config.auditBuildShare),
    });
  }
  const capabilityDate = new Date().toISOString();
  let capability: ReturnType<typeof buildCapabilityStatement> | undefined;
  const authorize = (ctx: RequestContext, resourceType: string, interaction: Interaction) => {
    if (ctx.system) return;
    if (resourceType === '*') {
      // System history: every type; allowed only with a wildcard read scope.
      requireScope(ctx, '*', 'read');
      return;
    }
    const mapped = interaction === 'history-system' || interaction === 'search-system' ? 'search' : interaction;
    requireScope(ctx, resourceType, scopeInteractionFor(mapped as Parameters<typeof scopeInteractionFor>[0]));
  };

  let ready = true;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use((_req, res, next) => {
    requests.begin();
    res.once('close', () => requests.end());
    next();
  });
  app.use(requestLogger(logger));
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    if (!ready) {
      res.status(503).json({ status: 'shutting down' });
      return;
    }
    try {
      await db.query('SELECT 1');
      res.json({ status: 'ready' });
    } catch {
      res.status(503).json({ status: 'database unavailable' });
    }
  });
  app.use(auth.router);
  app.use(auth.authenticate);
  app.use(auth.rateLimit);
  // AuditEvents are built from the audit log moments after each access; an auditor reading them
  // sees every access recorded before the request: the log is drained first.
  app.use('/fhir/AuditEvent', async (_req, _res, next) => {
    try {
      await auditQueue.drainAll();
    } catch (e) {
      logger.error({ err: safeError(e) }, 'audit queue drain before an AuditEvent read failed');
    }
    next();
  });
  app.use(
    '/fhir',
    createFhirRouter({
      db,
      baseUrl,
      modules,
      services,
      operations,
      validate: (r) => ({ resourceType: 'OperationOutcome', issue: validator.validate(r) }),
      capabilityStatement: () => (capability ??= buildCapabilityStatement({ baseUrl, version: VERSION, operations, date: capabilityDate, smart: { tokenUrl: `${config.publicUrl}/auth/token` } })),
      authorize,
      onAccess: config.auditReads
        ? (repo, interaction, resourceType, resources, parameterNames) =>
            auditAccess(repo.db, repo.ctx, interaction as Parameters<typeof auditAccess>[2], resourceType, resources, parameterNames, auditQueue)
        : undefined,
      // With a PostgreSQL audit log, a read by id and its record are one statement; with the journal,
      // a plain read, and the record appended like any other access's (onAccess).
      auditRead:
        config.auditReads && config.auditReadCommit !== 'journal' ? (repo, type, id) => auditRowForRead(repo.ctx, type, id, config.auditReadCommit as 'relaxed' | 'sync') : undefined,
      contextOf: (req) => contextOf(req),
    }),
  );
  // Refused requests are audited before the refusal is sent.
  app.use(async (err: unknown, req: Request, _res: Response, next: NextFunction) => {
    if (isOperationOutcomeError(err)) {
      const status = statusForOutcome(err);
      // Refusals: unauthenticated, forbidden, throttled.
      if (status === 401 || status === 403 || status === 429) {
        const segment = req.path.split('/')[2];
        await auditRefusal(auditQueue, (req as Request & { tic?: RequestContext }).tic, status, segment && /^[A-Z]/.test(segment) ? segment : undefined).catch((e: unknown) =>
          logger.error({ err: safeError(e) }, 'audit of a refused request failed'),
        );
      }
    }
    next(err);
  });
  app.use((_req, _res, next) => next(notFound('No such endpoint')));
  app.use(fhirErrorHandler(logger));

  return {
    app,
    auth,
    validator,
    modules,
    baseUrl,
    setReady: (r) => {
      ready = r;
    },
    systemRepository,
    drainAudit: () => auditQueue.drainAll(),
    pauseAudit: () => auditQueue.pause(),
    close: () => auditQueue.stop(),
  };
}

/** The domain modules the API runs with: screening, and (as they land) referral and careplan. */
export async function defaultModules(config: ApiConfig): Promise<DomainModule[]> {
  const screeningConfig = validateScreeningConfig(config.screeningConfigFile ? readJsonFile(config.screeningConfigFile) : {});
  // Delivery to other servers runs on graphile-worker, which needs PostgreSQL (not PGlite).
  const delivery = config.databaseUrl ? { maxAttempts: config.referralMaxAttempts } : undefined;
  // R4 Subscriptions notify through the same job queue, so they too need PostgreSQL.
  const subscriptions = config.databaseUrl ? {} : undefined;
  return [screeningModule(screeningConfig), careplanModule(), referralModule({ delivery, subscriptions })];
}

/** The acting client's context as the store understands it. */
function contextOf(req: Request): RequestContext {
  const tic = (req as Request & { tic?: RequestContext & { sensitive?: boolean } }).tic;
  if (!tic) return { system: true };
  return { ...tic, canReadRestricted: tic.sensitive === true };
}
