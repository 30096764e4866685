// Creates or updates the Observations of a response through the repository: an Observation with
// the same derived identifier is updated in place (the store keeps its history), never duplicated.
import type { Observation } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { identifierToken } from './identifiers.ts';
import { observationShape } from './observations.ts';

/**
 * `found`: the Observations already stored with these identifiers, when the caller looked them up
 * (with the protocol's resources, in one round trip); else one search finds them here.
 */
export async function upsertObservations(repo: ResourceRepository, observations: Observation[], found?: Observation[]): Promise<Observation[]> {
  // Every Observation already derived (an amendment, a re-posted identifier) is found at once; new
  // ones are created in one statement where the repository can, the rest updated in place.
  const tokens = observations.map((o) => o.identifier?.[0]).filter((i) => i !== undefined).map((i) => identifierToken(i).replace(/[\\,]/g, '\\$&'));
  const existing = found ?? (tokens.length > 0 ? await repo.search<Observation>('Observation', { identifier: tokens.join(','), _count: '1000' }) : []);
  const byToken = new Map<string, Observation>();
  for (const e of existing) for (const i of e.identifier ?? []) byToken.set(identifierToken(i), e);
  const stored: Observation[] = new Array(observations.length);
  const fresh: number[] = [];
  for (let i = 0; i < observations.length; i++) {
    const identifier = observations[i].identifier?.[0];
    const found = identifier ? byToken.get(identifierToken(identifier)) : undefined;
    if (found?.id) stored[i] = await repo.update({ ...observations[i], id: found.id });
    else fresh.push(i);
  }
  // Built from the stored (validated) response: each shape is validated once (observationShape).
  const created = repo.createMany
    ? await repo.createMany(
        fresh.map((i) => observations[i]),
        { shape: observationShape },
      )
    : await createEach(repo, fresh.map((i) => observations[i]));
  fresh.forEach((index, k) => (stored[index] = created[k]));
  return stored;
}

async function createEach(repo: ResourceRepository, observations: Observation[]): Promise<Observation[]> {
  const out: Observation[] = [];
  for (const o of observations) out.push(await repo.create(o));
  return out;
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
