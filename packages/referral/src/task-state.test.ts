import type { Task } from '@medplum/fhirtypes';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { Actor, TaskStatus } from './task-state.ts';
import { REASON_REQUIRED, SETTER, TRANSITIONS, transitionTask } from './task-state.ts';

const REQ = 'Organization/clinic';
const OWN = 'Organization/housing';
const requester: Actor = { organization: REQ };
const owner: Actor = { organization: OWN };
const stranger: Actor = { organization: 'Organization/other' };
const ALL: TaskStatus[] = Object.keys(TRANSITIONS) as TaskStatus[];

function task(status: TaskStatus, extra: Partial<Task> = {}): Task {
  return {
    resourceType: 'Task',
    id: 't1',
    status,
    intent: 'order',
    code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
    requester: { reference: REQ },
    owner: { reference: OWN },
    ...extra,
  };
}

function statusOf(fn: () => unknown): number | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (isOperationOutcomeError(e)) return statusForOutcome(e);
    throw e;
  }
}

const withReason = (s: TaskStatus) => (REASON_REQUIRED.includes(s) ? { statusReason: { text: 'because' } } : {});

describe('transitionTask', () => {
  it('lets a requester create draft or requested Tasks naming itself, nothing else', () => {
    expect(statusOf(() => transitionTask(undefined, task('requested'), requester))).toBe('ok');
    expect(statusOf(() => transitionTask(undefined, task('draft'), requester))).toBe('ok');
    expect(statusOf(() => transitionTask(undefined, task('accepted'), requester))).toBe(422);
    expect(statusOf(() => transitionTask(undefined, task('requested'), owner))).toBe(403);
  });

  it('walks the happy path: requested → accepted → in-progress → completed', () => {
    expect(statusOf(() => transitionTask(task('requested'), task('accepted'), owner))).toBe('ok');
    expect(statusOf(() => transitionTask(task('accepted'), task('in-progress'), owner))).toBe('ok');
    expect(statusOf(() => transitionTask(task('in-progress'), task('completed', { output: [{ type: { text: 'outcome' }, valueString: 'housed' }] }), owner))).toBe('ok');
  });

  // Every pair of statuses, for each party: allowed transitions pass for the right party only,
  // every other is 422 (or 403 when the party is wrong).
  for (const from of ALL) {
    for (const to of ALL) {
      if (from === to) continue;
      const allowed = TRANSITIONS[from].includes(to) && from !== 'entered-in-error';
      const setter = SETTER[to];
      it(`${from} → ${to}: ${allowed ? `allowed for ${setter}` : 'refused (422)'}`, () => {
        const next = task(to, withReason(to));
        for (const [name, actor] of [['requester', requester], ['owner', owner]] as const) {
          const got = statusOf(() => transitionTask(task(from), next, actor));
          if (!allowed) expect(got).toBe(422);
          else expect(got).toBe(setter === 'either' || setter === name ? 'ok' : 403);
        }
        expect(statusOf(() => transitionTask(task(from), next, stranger))).toBe(allowed ? 403 : from === 'entered-in-error' ? 422 : 403);
      });
    }
  }

  it('requires statusReason for rejected, cancelled, on-hold and failed', () => {
    expect(statusOf(() => transitionTask(task('requested'), task('rejected'), owner))).toBe(422);
    expect(statusOf(() => transitionTask(task('requested'), task('rejected', { statusReason: { text: 'no capacity' } }), owner))).toBe('ok');
    expect(statusOf(() => transitionTask(task('accepted'), task('on-hold'), owner))).toBe(422);
    expect(statusOf(() => transitionTask(task('accepted'), task('failed'), owner))).toBe(422);
    expect(statusOf(() => transitionTask(task('requested'), task('cancelled'), requester))).toBe(422);
    expect(statusOf(() => transitionTask(task('requested'), task('cancelled', { statusReason: { coding: [{ code: 'x' }] } }), requester))).toBe('ok');
  });

  it('lets either side cancel', () => {
    const next = task('cancelled', { statusReason: { text: 'person moved away' } });
    expect(statusOf(() => transitionTask(task('accepted'), next, requester))).toBe('ok');
    expect(statusOf(() => transitionTask(task('accepted'), next, owner))).toBe('ok');
  });

  it('lets an organisation claim an open Task, and no one take over an owned one', () => {
    const open = task('requested', { owner: undefined });
    expect(transitionTask(open, task('requested', { owner: { reference: 'Organization/other' } }), stranger)).toEqual({ claim: true });
    expect(transitionTask(open, task('accepted', { owner: { reference: 'Organization/other' } }), stranger)).toEqual({ claim: true });
    // Claiming for somebody else is not a claim.
    expect(statusOf(() => transitionTask(open, task('requested', { owner: { reference: OWN } }), stranger))).toBe(403);
    // Already owned: a stranger cannot take it.
    expect(statusOf(() => transitionTask(task('requested'), task('requested', { owner: { reference: 'Organization/other' } }), stranger))).toBe(403);
    // The owner cannot hand it on; the requester may redirect before acceptance, not after.
    expect(statusOf(() => transitionTask(task('requested'), task('requested', { owner: { reference: 'Organization/x' } }), owner))).toBe(403);
    expect(statusOf(() => transitionTask(task('requested'), task('requested', { owner: { reference: 'Organization/x' } }), requester))).toBe('ok');
    expect(statusOf(() => transitionTask(task('accepted'), task('accepted', { owner: { reference: 'Organization/x' } }), requester))).toBe(403);
  });

  it('refuses changing the requester and accepting without an owner', () => {
    expect(statusOf(() => transitionTask(task('requested'), task('requested', { requester: { reference: 'Organization/x' } }), requester))).toBe(422);
    expect(statusOf(() => transitionTask(task('requested', { owner: undefined }), task('accepted', { owner: undefined }), requester))).toBe(403);
  });

  it('lets the server itself make any allowed transition', () => {
    expect(statusOf(() => transitionTask(task('requested'), task('accepted'), { system: true }))).toBe('ok');
    expect(statusOf(() => transitionTask(task('completed'), task('requested'), { system: true }))).toBe(422);
  });
});
