// The referral Task state machine (after the HL7 SDOH Clinical Care referral workflow). Pure:
// given the stored Task, the proposed one and the acting organisation, it refuses a change the
// workflow does not allow (422) or that this party may not make (403).
import type { Task } from '@medplum/fhirtypes';
import { businessRule, forbidden, unprocessable } from '@tic/fhir';
import { TASK_CODE_SYSTEM } from './codes.ts';

export type TaskStatus = Task['status'];
export type Party = 'requester' | 'owner';

/** Who may move a Task into each status. */
export const SETTER: Record<TaskStatus, Party | 'either' | undefined> = {
  draft: 'requester',
  requested: 'requester',
  'entered-in-error': 'requester',
  received: 'owner',
  accepted: 'owner',
  rejected: 'owner',
  ready: 'owner',
  'in-progress': 'owner',
  'on-hold': 'owner',
  failed: 'owner',
  completed: 'owner',
  cancelled: 'either',
};

/** Allowed next statuses for each status. Terminal statuses allow nothing but entered-in-error. */
export const TRANSITIONS: Record<TaskStatus, TaskStatus[]> = {
  draft: ['requested', 'cancelled', 'entered-in-error'],
  requested: ['received', 'accepted', 'rejected', 'cancelled', 'entered-in-error'],
  received: ['accepted', 'rejected', 'cancelled', 'entered-in-error'],
  accepted: ['ready', 'in-progress', 'on-hold', 'failed', 'completed', 'cancelled', 'entered-in-error'],
  ready: ['in-progress', 'on-hold', 'failed', 'completed', 'cancelled', 'entered-in-error'],
  'in-progress': ['on-hold', 'failed', 'completed', 'cancelled', 'entered-in-error'],
  'on-hold': ['in-progress', 'failed', 'cancelled', 'entered-in-error'],
  rejected: ['entered-in-error'],
  cancelled: ['entered-in-error'],
  failed: ['entered-in-error'],
  completed: ['entered-in-error'],
  'entered-in-error': [],
};

export const INITIAL_STATUSES: TaskStatus[] = ['draft', 'requested'];
export const REASON_REQUIRED: TaskStatus[] = ['rejected', 'cancelled', 'on-hold', 'failed'];

/** Identity of the acting client: its organisation reference, or the server itself. */
export type Actor = { organization: string } | { system: true };

export function isReferralTask(task: Task): boolean {
  return task.intent === 'order' && (task.code?.coding ?? []).some((c) => c.system === TASK_CODE_SYSTEM && c.code === 'fulfill');
}

function ref(r: { reference?: string } | undefined): string | undefined {
  return r?.reference;
}

/** The party the actor plays on this Task (the stored version when there is one). */
export function partyOf(task: Task, actor: Actor): Set<Party> {
  const parties = new Set<Party>();
  if ('system' in actor) return parties;
  if (ref(task.requester) === actor.organization) parties.add('requester');
  if (ref(task.owner) === actor.organization) parties.add('owner');
  return parties;
}

function requireReason(next: Task): void {
  if (REASON_REQUIRED.includes(next.status) && !next.statusReason?.text && !(next.statusReason?.coding ?? []).length) {
    throw businessRule(`statusReason is required when status is ${next.status}`, 'Task.statusReason');
  }
}

export interface TransitionResult {
  /** The change is the owner claiming an open Task. */
  claim: boolean;
}

/**
 * Checks a create (previous undefined) or update of a referral Task made by actor. Throws 422
 * (business-rule) for a transition the workflow does not allow, 403 for a party that may not make it.
 */
export function transitionTask(previous: Task | undefined, next: Task, actor: Actor): TransitionResult {
  const system = 'system' in actor;
  if (!previous) {
    if (!INITIAL_STATUSES.includes(next.status)) throw businessRule(`A referral Task starts as draft or requested, not ${next.status}`, 'Task.status');
    if (!system && ref(next.requester) !== actor.organization) throw forbidden('A referral Task must name the creating organisation as requester');
    return { claim: false };
  }
  if (previous.status === 'entered-in-error') throw businessRule('A Task entered in error cannot change', 'Task.status');
  if (ref(previous.requester) !== ref(next.requester)) throw businessRule('Task.requester cannot change', 'Task.requester');

  const parties = partyOf(previous, actor);
  let claim = false;
  if (ref(previous.owner) !== ref(next.owner)) {
    if (!previous.owner && !system && ref(next.owner) === actor.organization && ['requested', 'received'].includes(previous.status)) {
      claim = true;
      parties.add('owner');
    } else if (system || (parties.has('requester') && ['draft', 'requested', 'received', 'rejected'].includes(previous.status))) {
      // The requester may redirect a referral not yet accepted.
    } else {
      throw forbidden('Only the requester may change the owner of a referral not yet accepted, or an organisation claim an open one');
    }
  }
  if (!system && parties.size === 0) throw forbidden('Only the requester or the owner may change a referral Task');

  if (previous.status !== next.status) {
    if (!TRANSITIONS[previous.status].includes(next.status)) throw businessRule(`A referral Task cannot go from ${previous.status} to ${next.status}`, 'Task.status');
    const setter = SETTER[next.status];
    if (!system && setter !== 'either' && (setter === undefined || !parties.has(setter))) {
      throw forbidden(`Only the ${setter ?? 'server'} may set a referral Task to ${next.status}`);
    }
    requireReason(next);
    if (['accepted', 'received'].includes(next.status) && !next.owner) throw unprocessable(`A Task ${next.status} needs an owner`, 'Task.owner');
  }
  return { claim };
}
