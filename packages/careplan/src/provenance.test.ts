import type { CarePlan } from '@medplum/fhirtypes';
import { OperationOutcomeError } from '@tic/fhir';
import { buildProvenance, parseProvenanceHeader } from './provenance.ts';

const target: CarePlan = { resourceType: 'CarePlan', id: 'p1', meta: { versionId: '3' }, status: 'active', intent: 'plan', subject: { reference: 'Patient/x' } };
const ctx = { clientId: 'client-a', organization: 'Organization/org-a' };

describe('parseProvenanceHeader', () => {
  it('refuses what is not a Provenance (400)', () => {
    for (const bad of ['{', '{"resourceType":"Patient"}', '{"resourceType":"Provenance","agent":[{}]}']) {
      expect(() => parseProvenanceHeader(bad)).toThrow(OperationOutcomeError);
    }
    expect(parseProvenanceHeader(undefined)).toBeUndefined();
  });
});

describe('buildProvenance', () => {
  it('names the versioned target, the client and its organisation, the activity and a default reason', () => {
    const p = buildProvenance(target, 'update', ctx, undefined, '2025-03-01T00:00:00Z');
    expect(p.target).toEqual([{ reference: 'CarePlan/p1/_history/3' }]);
    expect(p.recorded).toBe('2025-03-01T00:00:00Z');
    expect(p.activity?.coding?.[0].code).toBe('UPDATE');
    expect(p.reason?.[0].coding?.[0].code).toBe('TREAT');
    expect(p.agent).toEqual([expect.objectContaining({ who: expect.objectContaining({ identifier: expect.objectContaining({ value: 'client-a' }) }), onBehalfOf: { reference: 'Organization/org-a' } })]);
    expect(p.agent[0].type?.coding?.[0].code).toBe('author');
  });
  it('honours X-Provenance: its authors, reason and activity; the client becomes the enterer; target and time are the server\'s', () => {
    const header = parseProvenanceHeader(
      JSON.stringify({ resourceType: 'Provenance', target: [{ reference: 'Goal/elsewhere' }], recorded: '2000-01-01T00:00:00Z', reason: [{ text: 'review meeting' }], activity: { text: 'review' }, agent: [{ who: { reference: 'Patient/x' } }] }),
    );
    const p = buildProvenance(target, 'update', ctx, header, '2025-03-01T00:00:00Z');
    expect(p.target).toEqual([{ reference: 'CarePlan/p1/_history/3' }]);
    expect(p.recorded).toBe('2025-03-01T00:00:00Z');
    expect(p.reason).toEqual([{ text: 'review meeting' }]);
    expect(p.activity).toEqual({ text: 'review' });
    expect(p.agent.map((a) => a.who.reference ?? a.who.identifier?.value)).toEqual(['Patient/x', 'client-a']);
    expect(p.agent[1].type?.coding?.[0].code).toBe('enterer');
  });
});
