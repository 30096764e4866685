import type { Consent, Observation, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { REFERRAL_IDENTIFIER_SYSTEM } from '../codes.ts';
import { buildDeliveryBundle } from './bundle.ts';
import { transitionPath } from './jobs.ts';

const patient: Patient = { resourceType: 'Patient', id: 'p1', meta: { versionId: '3' }, name: [{ family: 'Rivera' }], birthDate: '1988-04-12', telecom: [{ system: 'phone', value: '0' }], address: [{ city: 'X' }] };
const consent: Consent = {
  resourceType: 'Consent',
  id: 'c1',
  status: 'active',
  scope: { coding: [{ code: 'patient-privacy' }] },
  category: [{ text: 'x' }],
  patient: { reference: 'Patient/p1' },
  provision: { actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/local-housing' } }] },
};
const obs: Observation = { resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'score' }, subject: { reference: 'Patient/p1' } };
const sr: ServiceRequest = { resourceType: 'ServiceRequest', id: 'sr1', status: 'active', intent: 'order', subject: { reference: 'Patient/p1' }, reasonReference: [{ reference: 'Observation/o1' }, { reference: 'Condition/hidden' }] };
const task: Task = { resourceType: 'Task', id: 't1', status: 'requested', intent: 'order', focus: { reference: 'ServiceRequest/sr1' }, for: { reference: 'Patient/p1' }, owner: { reference: 'Organization/local-housing' }, businessStatus: { text: 'consented' } };

describe('buildDeliveryBundle', () => {
  const bundle = buildDeliveryBundle({ task, serviceRequest: sr, patient, consent, supporting: [obs] }, 'https://a.example/fhir', { requester: 'Organization/remote-a', owner: 'Organization/remote-b' });
  const byType = (t: string) => bundle.entry!.find((e) => e.resource!.resourceType === t)!;

  it('makes every entry a conditional create on the source identifier', () => {
    expect(bundle.entry!.map((e) => e.resource!.resourceType)).toEqual(['Patient', 'Consent', 'Observation', 'ServiceRequest', 'Task']);
    for (const e of bundle.entry!) {
      const value = `https://a.example/fhir/${e.resource!.resourceType}/${{ Patient: 'p1', Consent: 'c1', Observation: 'o1', ServiceRequest: 'sr1', Task: 't1' }[e.resource!.resourceType as 'Patient']}`;
      expect(e.request).toEqual({ method: 'POST', url: e.resource!.resourceType, ifNoneExist: `identifier=${encodeURIComponent(REFERRAL_IDENTIFIER_SYSTEM)}|${encodeURIComponent(value)}` });
      expect(e.resource!.id).toBeUndefined();
      expect(e.resource!.meta).toBeUndefined();
    }
  });

  it('sends a minimal Patient and rewrites references to the bundle and the remote parties', () => {
    const p = byType('Patient').resource as Patient;
    expect(p.telecom).toBeUndefined();
    expect(p.address).toBeUndefined();
    const s = byType('ServiceRequest').resource as ServiceRequest;
    expect(s.subject).toEqual({ reference: byType('Patient').fullUrl });
    expect(s.reasonReference).toEqual([{ reference: byType('Observation').fullUrl }]);
    expect(s.supportingInfo).toEqual([{ reference: byType('Consent').fullUrl }]);
    expect(s.requester).toEqual({ reference: 'Organization/remote-a' });
    const t = byType('Task').resource as Task;
    expect(t.focus).toEqual({ reference: byType('ServiceRequest').fullUrl });
    expect(t.owner).toEqual({ reference: 'Organization/remote-b' });
    expect(t.businessStatus).toBeUndefined();
    expect((byType('Consent').resource as Consent).provision!.actor).toEqual([{ role: { text: 'recipient' }, reference: { reference: 'Organization/remote-b' } }]);
  });
});

describe('the Consent sent with a referral', () => {
  const nested: Consent = {
    ...consent,
    provision: {
      type: 'permit',
      actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/local-housing' } }, { role: { text: 'recipient' }, reference: { reference: 'Organization/someone-else' } }],
      data: [{ meaning: 'instance', reference: { reference: 'Observation/o1' } }],
      provision: [
        { type: 'deny', actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/local-housing' } }], data: [{ meaning: 'instance', reference: { reference: 'Observation/not-sent' } }] },
        { type: 'deny', period: { start: '2027-01-01' }, actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/other-org', display: 'Other' } }], provision: [{ type: 'permit', data: [{ meaning: 'related', reference: { reference: 'https://a.example/fhir/Condition/c9/_history/2' } }] }] },
      ],
    },
  };
  const bundle = buildDeliveryBundle({ task, serviceRequest: sr, patient, consent: nested, supporting: [obs] }, 'https://a.example/fhir', { requester: 'Organization/remote-a', owner: 'Organization/remote-b' });
  const entry = (t: string) => bundle.entry!.find((e) => e.resource!.resourceType === t)!;
  const sent = entry('Consent').resource as Consent;

  it('names only the receiver at the root, and maps or neutralises every other reference at any depth', () => {
    expect(sent.provision?.actor?.map((a) => a.reference)).toEqual([{ reference: 'Organization/remote-b' }]);
    expect(sent.provision?.data?.[0].reference).toEqual({ reference: entry('Observation').fullUrl });
    const [deny, other] = sent.provision!.provision!;
    expect(deny.actor?.[0].reference).toEqual({ reference: 'Organization/remote-b' });
    // Not in the Bundle: a logical reference to the resource here, which nothing on the receiver is.
    expect(deny.data?.[0].reference).toEqual({ identifier: { system: REFERRAL_IDENTIFIER_SYSTEM, value: 'https://a.example/fhir/Observation/not-sent' } });
    expect(other.actor?.[0].reference).toEqual({ identifier: { system: REFERRAL_IDENTIFIER_SYSTEM, value: 'https://a.example/fhir/Organization/other-org' }, display: 'Other' });
    expect(other.period).toEqual({ start: '2027-01-01' });
    expect(other.provision?.[0].data?.[0]).toEqual({ meaning: 'related', reference: { identifier: { system: REFERRAL_IDENTIFIER_SYSTEM, value: 'https://a.example/fhir/Condition/c9' } } });
    expect(JSON.stringify(sent)).not.toMatch(/"reference":"(Organization\/(local-housing|someone-else|other-org)|Observation\/not-sent)"/);
  });
});

describe('transitionPath', () => {
  it('finds the shortest allowed path, or none', () => {
    expect(transitionPath('requested', 'accepted')).toEqual(['accepted']);
    expect(transitionPath('requested', 'completed')).toEqual(['accepted', 'completed']);
    expect(transitionPath('on-hold', 'completed')).toEqual(['in-progress', 'completed']);
    expect(transitionPath('completed', 'requested')).toBeUndefined();
    expect(transitionPath('accepted', 'accepted')).toEqual([]);
  });
});
