import type { Goal, Provenance, Resource } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { authoredByPerson, changedWording } from './goal-wording.ts';

const goal: Goal = { resourceType: 'Goal', lifecycleStatus: 'active', description: { text: 'Make one friend' }, subject: { reference: 'Patient/p' }, expressedBy: { reference: 'Patient/p' } };
const prov = (agent: Provenance['agent']): Provenance => ({ resourceType: 'Provenance', recorded: '2025-01-01T00:00:00Z', target: [{ reference: 'Goal/g' }], agent });

// A repository holding a few RelatedPersons (the only thing authoredByPerson reads).
function repoWith(resources: Resource[]): ResourceRepository {
  const read = async (type: string, id: string) => {
    const r = resources.find((x) => x.resourceType === type && x.id === id);
    if (!r) throw new Error('not found');
    return r;
  };
  return { read } as unknown as ResourceRepository;
}

describe('changedWording', () => {
  it('sees description and expressedBy changes, not notes', () => {
    expect(changedWording(goal, { ...goal, note: [{ text: 'n' }] })).toBeUndefined();
    expect(changedWording(goal, { ...goal, description: { text: 'Make two friends' } })).toBe('Goal.description');
    expect(changedWording(goal, { ...goal, description: { text: 'Make one friend', coding: [{ code: 'x' }] } })).toBe('Goal.description');
    expect(changedWording(goal, { ...goal, expressedBy: { reference: 'Practitioner/x' } })).toBe('Goal.expressedBy');
  });
});

describe('authoredByPerson', () => {
  const repo = repoWith([
    { resourceType: 'RelatedPerson', id: 'sister', patient: { reference: 'Patient/p' } },
    { resourceType: 'RelatedPerson', id: 'stranger', patient: { reference: 'Patient/q' } },
  ]);
  it('accepts the person as author, or their RelatedPerson acting on their behalf', async () => {
    expect(await authoredByPerson(prov([{ who: { reference: 'Patient/p' } }]), 'Patient/p', repo)).toBe(true);
    expect(await authoredByPerson(prov([{ who: { reference: 'RelatedPerson/sister' }, onBehalfOf: { reference: 'Patient/p' } }]), 'Patient/p', repo)).toBe(true);
  });
  it('refuses professionals, other people\'s relatives, and the person as a mere informant', async () => {
    expect(await authoredByPerson(undefined, 'Patient/p', repo)).toBe(false);
    expect(await authoredByPerson(prov([{ who: { reference: 'Practitioner/x' } }]), 'Patient/p', repo)).toBe(false);
    expect(await authoredByPerson(prov([{ who: { reference: 'RelatedPerson/stranger' }, onBehalfOf: { reference: 'Patient/p' } }]), 'Patient/p', repo)).toBe(false);
    expect(await authoredByPerson(prov([{ type: { coding: [{ code: 'informant' }] }, who: { reference: 'Patient/p' } }]), 'Patient/p', repo)).toBe(false);
  });
});
