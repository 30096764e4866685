// screeningModule: the DomainModule the api registers. beforeWrite validates a
// QuestionnaireResponse against its Questionnaire; afterWrite scores it, writes its Observations
// and runs the positive-screen protocol, all inside the write's transaction.
import type { Observation, Questionnaire, QuestionnaireResponse, Resource } from '@medplum/fhirtypes';
import type { DomainModule, WriteHookContext } from '@tic/fhir';
import type { ScreeningConfig } from './config.ts';
import { protocolsFor, validateScreeningConfig } from './config.ts';
import { OBSERVATION_IDENTIFIER_SYSTEM } from './constants.ts';
import { derivedIdentifier, responseKey } from './identifiers.ts';
import { indexInstruments, isScreeningInstrument, screeningConformanceResources } from './instruments.ts';
import { SECURITY_LABELS } from './observations.ts';
import { extractOperation } from './operations/extract.ts';
import { lastnOperation } from './operations/lastn.ts';
import { runProtocol, withdrawProtocol } from './protocol.ts';
import { organisationOf, screenResponse } from './screen-response.ts';
import { retractObservations, upsertObservations } from './store-observations.ts';
import { validateQuestionnaireResponse } from './validate-response.ts';
import type { ScreeningRuntime } from './runtime.ts';
import { checkScreeningResponse, isFinished, questionnaireOf } from './runtime.ts';

function withSecurityLabels(qr: QuestionnaireResponse): QuestionnaireResponse {
  const security = [...(qr.meta?.security ?? [])];
  for (const label of SECURITY_LABELS) {
    if (!security.some((s) => s.system === label.system && s.code === label.code)) security.push({ ...label });
  }
  return { ...qr, meta: { ...qr.meta, security } };
}

/**
 * The Questionnaire beforeWrite found, for afterWrite of the same write (the store passes both the
 * same context), so a Questionnaire stored in the repository is looked up once per write.
 */
const resolved = new WeakMap<WriteHookContext, { canonical: string | undefined; q: Questionnaire | undefined }>();

async function questionnaireFor(runtime: ScreeningRuntime, qr: QuestionnaireResponse, ctx: WriteHookContext): Promise<Questionnaire | undefined> {
  const known = resolved.get(ctx);
  if (known && known.canonical === qr.questionnaire) return known.q;
  const q = await questionnaireOf(runtime, qr, ctx.repo);
  resolved.set(ctx, { canonical: qr.questionnaire, q });
  return q;
}

async function beforeWrite(runtime: ScreeningRuntime, resource: Resource, ctx: WriteHookContext): Promise<Resource | void> {
  if (resource.resourceType !== 'QuestionnaireResponse' || ctx.interaction === 'delete') return undefined;
  const q = await questionnaireFor(runtime, resource, ctx);
  if (!q) return undefined;
  validateQuestionnaireResponse(resource, q);
  if (!isScreeningInstrument(q)) return undefined;
  checkScreeningResponse(resource);
  return withSecurityLabels(resource);
}

async function afterWrite(runtime: ScreeningRuntime, resource: Resource, ctx: WriteHookContext): Promise<void> {
  if (resource.resourceType !== 'QuestionnaireResponse' || ctx.interaction === 'delete') return;
  if (resource.status === 'entered-in-error') {
    const key = responseKey(resource);
    if (key) await ctx.repo.lock?.(`screening:${organisationOf(resource, ctx.request) ?? ''}:${key}`);
    if (resource.id) await retractObservations(ctx.repo, resource.id);
    const q = await questionnaireFor(runtime, resource, ctx);
    if (q) await withdrawProtocol(ctx.repo, q, resource);
    return;
  }
  if (!isFinished(resource)) return;
  const q = await questionnaireFor(runtime, resource, ctx);
  if (!q) return;
  const screening = screenResponse(runtime.config, q, resource, ctx.request);
  const key = responseKey(resource);
  if (!key) return;
  // Concurrent writes of the same response (a retried POST racing the first) take turns here, so
  // the second finds the Observations and protocol resources of the first instead of repeating them.
  await ctx.repo.lock?.(`screening:${screening.organization ?? ''}:${key}`);
  const stored = await upsertObservations(ctx.repo, screening.observations);
  if (resource.id && ctx.interaction !== 'create') {
    await retractObservations(ctx.repo, resource.id, new Set(stored.map((o) => o.identifier?.[0]?.value ?? '')));
  }
  const byIdentifier = new Map<string, Observation>(stored.map((o) => [o.identifier?.[0]?.value ?? '', o]));
  const results = screening.scores.flatMap((result) => {
    const observation = byIdentifier.get(derivedIdentifier(OBSERVATION_IDENTIFIER_SYSTEM, key, result.linkId).value ?? '');
    return observation ? [{ result, observation }] : [];
  });
  // Re-scored: an amendment, or Observations of this response already there (a re-posted identifier).
  const rescored = ctx.interaction !== 'create' || stored.some((o) => o.meta?.versionId !== undefined && o.meta.versionId !== '1');
  await runProtocol(ctx.repo, { q, qr: resource, organization: screening.organization, now: runtime.now(), rescored }, protocolsFor(screening.settings, q), results);
}

export interface ScreeningModuleOptions {
  /** Clock for Task due dates (tests). */
  now?: () => Date;
}

export function screeningModule(config: ScreeningConfig = {}, options: ScreeningModuleOptions = {}): DomainModule {
  const valid = validateScreeningConfig(config);
  const conformance = screeningConformanceResources();
  const runtime: ScreeningRuntime = {
    config: valid,
    instruments: indexInstruments(conformance.filter((r): r is Questionnaire => r.resourceType === 'Questionnaire')),
    now: options.now ?? (() => new Date()),
  };
  return {
    name: 'screening',
    // Only responses need the hooks: the Observations, Tasks and Conditions they derive are then
    // written without them (the Observations in one statement, createMany).
    resourceTypes: ['QuestionnaireResponse'],
    conformanceResources: () => conformance.map((r) => structuredClone(r)),
    beforeWrite: (resource, ctx) => beforeWrite(runtime, resource, ctx),
    afterWrite: (resource, ctx) => afterWrite(runtime, resource, ctx),
    operations: [extractOperation(runtime), lastnOperation()],
  };
}
