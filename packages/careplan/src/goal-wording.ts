// A goal expressed by the person keeps their words: its description (and who expressed it)
// changes only with a Provenance naming the person, or a delegate acting on their behalf, as
// author. Professionals add notes (Goal.note) instead.
import type { Goal, Provenance, RelatedPerson } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { OperationOutcomeError, outcome } from '@tic/fhir';
import { isAuthorAgent } from './provenance.ts';
import { refKey, refType } from './recognise.ts';

export function expressedByPerson(goal: Goal): boolean {
  return refType(goal.expressedBy?.reference) === 'Patient';
}

const canonicalJson = (v: unknown): string => JSON.stringify(v ?? null, (_k, val: unknown) => (val && typeof val === 'object' && !Array.isArray(val) ? Object.fromEntries(Object.entries(val).sort(([a], [b]) => a.localeCompare(b))) : val));

/** The element whose change needs the person's authorship, or undefined when the wording is kept. */
export function changedWording(previous: Goal, next: Goal | undefined): string | undefined {
  if (!next) return 'Goal';
  if (canonicalJson(previous.description) !== canonicalJson(next.description)) return 'Goal.description';
  if (refKey(previous.expressedBy?.reference) !== refKey(next.expressedBy?.reference)) return 'Goal.expressedBy';
  return undefined;
}

/** True when the Provenance names the person (`patient`, "Patient/{id}") or a delegate of theirs as author. */
export async function authoredByPerson(provenance: Provenance | undefined, patient: string, repo: ResourceRepository): Promise<boolean> {
  for (const agent of provenance?.agent ?? []) {
    if (!isAuthorAgent(agent)) continue;
    const who = refKey(agent.who?.reference);
    if (who === patient) return true;
    if (who?.startsWith('RelatedPerson/') && refKey(agent.onBehalfOf?.reference) === patient) {
      const delegate = await repo.read<RelatedPerson>('RelatedPerson', who.slice('RelatedPerson/'.length)).catch(() => undefined);
      if (delegate && delegate.active !== false && refKey(delegate.patient?.reference) === patient) return true;
    }
  }
  return false;
}

export function wordingForbidden(expression: string): OperationOutcomeError {
  return new OperationOutcomeError(
    outcome('forbidden', "This goal is in the person's own words: it changes only with an X-Provenance naming the person (or their delegate) as author. Add a note (Goal.note) instead.", expression),
    403,
  );
}
