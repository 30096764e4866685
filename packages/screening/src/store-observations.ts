// Creates or updates the Observations of a response through the repository: an Observation with
// the same derived identifier is updated in place (the store keeps its history), never duplicated.
import type { Observation } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { identifierToken } from './identifiers.ts';

export async function upsertObservations(repo: ResourceRepository, observations: Observation[]): Promise<Observation[]> {
  const stored: Observation[] = [];
  for (const obs of observations) {
    const identifier = obs.identifier?.[0];
    const existing = identifier ? await repo.search<Observation>('Observation', { identifier: identifierToken(identifier) }) : [];
    if (existing[0]?.id) stored.push(await repo.update({ ...obs, id: existing[0].id }));
    else stored.push(await repo.create(obs));
  }
  return stored;
}

/**
 * Marks the Observations derived from a response entered-in-error: all of them (the response was
 * entered in error), or those not in `keep` (identifier values of the current extraction: an item
 * answered before an amendment and declined or disabled after it).
 */
export async function retractObservations(repo: ResourceRepository, responseId: string, keep?: Set<string>): Promise<number> {
  const found = await repo.search<Observation>('Observation', { 'derived-from': `QuestionnaireResponse/${responseId}`, _count: '1000' });
  let count = 0;
  for (const obs of found) {
    if (obs.status === 'entered-in-error') continue;
    if (keep && keep.has(obs.identifier?.[0]?.value ?? '')) continue;
    await repo.update({ ...obs, status: 'entered-in-error' });
    count++;
  }
  return count;
}
