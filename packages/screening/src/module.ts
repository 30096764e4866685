// screeningModule: the DomainModule the api registers. beforeWrite validates a
// QuestionnaireResponse against its Questionnaire; afterWrite scores it, writes its Observations
// and runs the positive-screen protocol, all inside the write's transaction.
import type { Observation, Questionnaire, QuestionnaireResponse, Resource } from '@medplum/fhirtypes';
import type { DomainModule, IdentifierLookup, ResourceRepository, WriteHookContext } from '@tic/fhir';
import type { ScreeningConfig } from './config.ts';
import { protocolsFor, validateScreeningConfig } from './config.ts';
import { CONDITION_IDENTIFIER_SYSTEM, OBSERVATION_IDENTIFIER_SYSTEM, TASK_IDENTIFIER_SYSTEM } from './constants.ts';
import { derivedIdentifier, responseKey } from './identifiers.ts';
import { indexInstruments, isScreeningInstrument, screeningConformanceResources } from './instruments.ts';
import { SECURITY_LABELS } from './observations.ts';
import { extractOperation } from './operations/extract.ts';
import { lastnOperation } from './operations/lastn.ts';
import type { ProtocolContext } from './protocol.ts';
import { runProtocol, withdrawProtocol } from './protocol.ts';
import { organisationOf, screenResponse } from './screen-response.ts';
import { retractObservations, upsertObservations } from './store-observations.ts';
import { validateQuestionnaireResponse } from './validate-response.ts';
import { responseShape } from './response-shape.ts';
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
  // The answers are checked against the Questionnaire's options: the structure is validated once per shape.
  ctx.shape = (r) => responseShape(r, q);
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
  const found = await lookUpDerived(ctx.repo, screening.observations, screening.scores.map((r) => r.linkId), key);
  const stored = await upsertObservations(ctx.repo, screening.observations, found?.observations);
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
  await runProtocol(ctx.repo, { q, qr: resource, organization: screening.organization, now: runtime.now(), rescored, existing: found?.existing }, protocolsFor(screening.settings, q), results);
}

/**
 * What is already stored under the identifiers derived from this response: its Observations and,
 * per score, the protocol's Task and Condition, in one round trip where the repository can
 * (findByIdentifiers); undefined: the callers search themselves.
 */
async function lookUpDerived(
  repo: ResourceRepository,
  observations: Observation[],
  scoreLinkIds: string[],
  key: string,
): Promise<{ observations: Observation[]; existing: NonNullable<ProtocolContext['existing']> } | undefined> {
  if (!repo.findByIdentifiers) return undefined;
  const lookups: IdentifierLookup[] = [];
  for (const o of observations) {
    const i = o.identifier?.[0];
    if (i?.system && i.value) lookups.push({ type: 'Observation', system: i.system, value: i.value });
  }
  const derived = scoreLinkIds.flatMap((linkId) => [
    { type: 'Task', ...derivedIdentifier(TASK_IDENTIFIER_SYSTEM, key, linkId) },
    { type: 'Condition', ...derivedIdentifier(CONDITION_IDENTIFIER_SYSTEM, key, linkId) },
  ]) as IdentifierLookup[];
  const results = await repo.findByIdentifiers<Resource>([...lookups, ...derived], 10);
  const byKey = new Map<string, Resource[]>();
  derived.forEach((l, i) => byKey.set(`${l.type}|${l.system}|${l.value}`, results[lookups.length + i]));
  return {
    observations: results.slice(0, lookups.length).flat() as Observation[],
    existing: (type, identifier) => byKey.get(`${type}|${identifier.system ?? ''}|${identifier.value ?? ''}`),
  };
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
