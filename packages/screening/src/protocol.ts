// Positive-screen protocol: what a positive (or indeterminate) score creates in the same
// transaction, per the organisation's configuration: a follow-up Task for its care team and,
// optionally, an unconfirmed health-concern Condition with the score Observation as evidence.
// Never a diagnosis. Idempotent: resources carry identifiers derived from the response and are
// looked up before creation, so a retried or amended response does not start the protocol twice.
import type { Condition, Identifier, Observation, Questionnaire, QuestionnaireResponse, Reference, Resource, Task } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import type { ScreeningProtocol } from './config.ts';
import {
  CONDITION_CLINICAL,
  CONDITION_IDENTIFIER_SYSTEM,
  CONDITION_VERIFICATION,
  SCREENING_CODES,
  TASK_IDENTIFIER_SYSTEM,
  US_CORE_CONDITION_CATEGORY,
} from './constants.ts';
import { derivedIdentifier, identifierToken, responseKey } from './identifiers.ts';
import { SECURITY_LABELS } from './observations.ts';
import type { ScoreResult } from './score-response.ts';
import { scoreItems } from './score-response.ts';

export interface ProtocolContext {
  q: Questionnaire;
  qr: QuestionnaireResponse;
  /** Organization/{id} whose configuration applies; default Task owner. */
  organization?: string;
  now: Date;
  /**
   * The response was scored before (an amendment, or a re-posted identifier): a result that is now
   * negative closes the follow-up the earlier result opened.
   */
  rescored?: boolean;
  /**
   * The Tasks and Conditions already stored with a derived identifier, when the caller looked them
   * up beforehand (undefined for an identifier it did not: searched here).
   */
  existing?: (resourceType: 'Task' | 'Condition', identifier: Identifier) => Resource[] | undefined;
}

/** Why a follow-up Task was cancelled when an amendment turned its result negative. */
export const NO_LONGER_MEETS_CUTOFF = 'The amended screening result no longer meets the cut-off';

const outcomeWord = { POS: 'Positive', IND: 'Indeterminate' } as const;

/** The protocol that applies to a result: one naming the instrument wins over "*". */
export function protocolForResult(protocols: ScreeningProtocol[], q: Questionnaire, result: ScoreResult): ScreeningProtocol | undefined {
  if (result.interpretation !== 'POS' && result.interpretation !== 'IND') return undefined;
  const event = result.interpretation === 'POS' ? 'positive' : 'indeterminate';
  const applies = protocols.filter((p) => (p.on ?? ['positive', 'indeterminate']).includes(event));
  return applies.find((p) => p.questionnaire === q.id || p.questionnaire === q.url) ?? applies.find((p) => p.questionnaire === '*');
}

/** The Task and Condition a protocol asks for (not stored). */
export function buildProtocolResources(protocol: ScreeningProtocol, ctx: ProtocolContext, result: ScoreResult, observation: Observation): { task?: Task; condition?: Condition } {
  const key = responseKey(ctx.qr);
  if (!key || !observation.id || result.interpretation === 'NEG' || !result.interpretation) return {};
  const word = outcomeWord[result.interpretation];
  const instrument = ctx.q.title ?? ctx.q.name ?? ctx.q.id ?? 'screening';
  const focus: Reference = { reference: `Observation/${observation.id}` };
  const out: { task?: Task; condition?: Condition } = {};
  if (protocol.task) {
    const end = new Date(ctx.now.getTime() + protocol.task.dueWithinHours * 3600_000);
    const owner = protocol.task.owner ?? ctx.organization;
    out.task = {
      resourceType: 'Task',
      meta: { security: SECURITY_LABELS.map((c) => ({ ...c })) },
      identifier: [derivedIdentifier(TASK_IDENTIFIER_SYSTEM, key, result.linkId)],
      status: 'requested',
      intent: 'order',
      priority: protocol.task.priority ?? 'routine',
      code: { coding: [{ system: SCREENING_CODES, code: 'screening-follow-up', display: 'Screening follow-up' }] },
      description: protocol.task.description ?? `${word} ${instrument} screen: follow up with the person (a conversation and further assessment, not a diagnosis).`,
      focus,
      for: ctx.qr.subject,
      authoredOn: ctx.now.toISOString(),
      restriction: { period: { end: end.toISOString() } },
      reasonReference: focus,
      ...(ctx.organization ? { requester: { reference: ctx.organization } } : {}),
      ...(owner ? { owner: { reference: owner } } : {}),
    };
  }
  if (protocol.condition) {
    const text = `${word} ${instrument} screen (screening result, not a diagnosis)`;
    out.condition = {
      resourceType: 'Condition',
      meta: { security: SECURITY_LABELS.map((c) => ({ ...c })) },
      identifier: [derivedIdentifier(CONDITION_IDENTIFIER_SYSTEM, key, result.linkId)],
      clinicalStatus: { coding: [{ system: CONDITION_CLINICAL, code: 'active', display: 'Active' }] },
      verificationStatus: { coding: [{ system: CONDITION_VERIFICATION, code: 'unconfirmed', display: 'Unconfirmed' }] },
      category: [{ coding: [{ system: US_CORE_CONDITION_CATEGORY, code: 'health-concern', display: 'Health Concern' }] }],
      code: protocol.condition.code ? { coding: [protocol.condition.code], text } : { text },
      subject: ctx.qr.subject as Condition['subject'],
      recordedDate: ctx.now.toISOString(),
      evidence: [{ detail: [focus] }],
    };
  }
  return out;
}

/** The stored resources with a derived identifier: looked up by the caller, else searched. */
async function stored<T extends Task | Condition>(repo: ResourceRepository, ctx: ProtocolContext, type: T['resourceType'], identifier: Identifier): Promise<T[]> {
  const known = ctx.existing?.(type, identifier);
  if (known) return known as T[];
  return repo.search<T>(type, { identifier: identifierToken(identifier) });
}

async function createOnce<T extends Task | Condition>(repo: ResourceRepository, ctx: ProtocolContext, resource: T): Promise<T | undefined> {
  const identifier = resource.identifier?.[0];
  if (!identifier) return undefined;
  const existing = await stored<T>(repo, ctx, resource.resourceType, identifier);
  if (existing.length === 0) return repo.create(resource);
  // A follow-up closed because an amendment turned the result negative opens again (a new version)
  // when a later amendment makes it positive or indeterminate again.
  const closed = existing.find((r): r is T & Task => r.resourceType === 'Task' && r.status === 'cancelled' && r.statusReason?.text === NO_LONGER_MEETS_CUTOFF);
  if (closed) return repo.update({ ...resource, id: closed.id } as T);
  return undefined;
}

/** Cancels the unstarted follow-up Task of a result that an amendment turned negative. */
async function closeFollowUp(repo: ResourceRepository, ctx: ProtocolContext, key: string, result: ScoreResult): Promise<Task[]> {
  const identifier = derivedIdentifier(TASK_IDENTIFIER_SYSTEM, key, result.linkId);
  const changed: Task[] = [];
  for (const task of await stored<Task>(repo, ctx, 'Task', identifier)) {
    if (!NOT_STARTED.has(task.status)) continue;
    changed.push(await repo.update<Task>({ ...task, status: 'cancelled', statusReason: { text: NO_LONGER_MEETS_CUTOFF } }));
  }
  return changed;
}

/**
 * Runs the protocols for the scored results; returns what it created or changed (nothing when it
 * ran before). On a re-scored response, a result now negative cancels its unstarted follow-up Task
 * (history kept; a Task in progress is left to the people working on it, and the health concern
 * stays as recorded), and a Task cancelled so opens again if the result turns positive again.
 */
export async function runProtocol(
  repo: ResourceRepository,
  ctx: ProtocolContext,
  protocols: ScreeningProtocol[],
  results: { result: ScoreResult; observation: Observation }[],
): Promise<Resource[]> {
  const created: Resource[] = [];
  const key = responseKey(ctx.qr);
  for (const { result, observation } of results) {
    if (ctx.rescored && key && result.interpretation === 'NEG') {
      // Only a clearly negative result closes it: an indeterminate one may still be positive.
      created.push(...(await closeFollowUp(repo, ctx, key, result)));
      continue;
    }
    const protocol = protocolForResult(protocols, ctx.q, result);
    if (!protocol) continue;
    const { task, condition } = buildProtocolResources(protocol, ctx, result, observation);
    for (const r of [task, condition]) {
      if (!r) continue;
      const made = await createOnce(repo, ctx, r);
      if (made) created.push(made);
    }
  }
  return created;
}

/** Task statuses in which nobody has started on the follow-up yet. */
const NOT_STARTED = new Set<Task['status']>(['draft', 'requested', 'received', 'accepted', 'ready']);

/**
 * The response was entered in error: its follow-up Tasks that nobody has started are cancelled and
 * its health-concern Conditions marked entered-in-error (a Task already in progress is left to the
 * people working on it). Returns what it changed.
 */
export async function withdrawProtocol(repo: ResourceRepository, q: Questionnaire, qr: QuestionnaireResponse): Promise<Resource[]> {
  const key = responseKey(qr);
  if (!key) return [];
  const changed: Resource[] = [];
  for (const item of scoreItems(q)) {
    const taskId = derivedIdentifier(TASK_IDENTIFIER_SYSTEM, key, item.linkId);
    for (const task of await repo.search<Task>('Task', { identifier: identifierToken(taskId) })) {
      if (!NOT_STARTED.has(task.status)) continue;
      changed.push(await repo.update<Task>({ ...task, status: 'cancelled', statusReason: { text: 'The screening response was entered in error' } }));
    }
    const conditionId = derivedIdentifier(CONDITION_IDENTIFIER_SYSTEM, key, item.linkId);
    for (const condition of await repo.search<Condition>('Condition', { identifier: identifierToken(conditionId) })) {
      if (condition.verificationStatus?.coding?.some((c) => c.code === 'entered-in-error')) continue;
      // con-5: no clinicalStatus on a Condition entered in error.
      const { clinicalStatus: _clinical, ...rest } = condition;
      void _clinical;
      changed.push(
        await repo.update<Condition>({ ...rest, verificationStatus: { coding: [{ system: CONDITION_VERIFICATION, code: 'entered-in-error', display: 'Entered in Error' }] } }),
      );
    }
  }
  return changed;
}
