import type { Consent, ServiceRequest, Task } from '@medplum/fhirtypes';
import { consentCovers, coverageOf, permitsSupporting } from './consent.ts';
import { disclosedResources } from './disclosure.ts';

const NOW = new Date('2025-06-01T12:00:00Z');
function consent(extra: Partial<Consent> = {}, provision: Consent['provision'] = {}): Consent {
  return {
    resourceType: 'Consent',
    id: 'c1',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    patient: { reference: 'Patient/p1' },
    ...extra,
    provision: { type: 'permit', period: { start: '2025-01-01', end: '2025-12-31' }, actor: [{ role: { coding: [{ code: 'IRCP' }] }, reference: { reference: 'Organization/housing' } }], ...provision },
  };
}

describe('consentCovers', () => {
  it('covers the named organisation for its patient while active and in period', () => {
    expect(consentCovers(consent(), 'Patient/p1', 'Organization/housing', NOW)).toBeDefined();
    expect(consentCovers(consent(), 'Patient/p1', 'Organization/other', NOW)).toBeUndefined();
    expect(consentCovers(consent(), 'Patient/p2', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({ status: 'inactive' }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({ status: 'rejected' }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({}, { type: 'deny' }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({}, { period: { end: '2025-05-31T00:00:00Z' } }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({}, { period: { start: '2025-07-01' } }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(consent({ scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'research' }] } }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
  });

  it('several consents: the referral travels while any covers it, ends with the last; a deny in any withholds', () => {
    const a = consent({ id: 'a' }, { class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] });
    const b = consent({ id: 'b' }, { period: { end: '2026-03-01T00:00:00Z' } });
    const cov = coverageOf([a, b], 'Patient/p1', 'Organization/housing', NOW)!;
    expect(cov.end).toBe('2026-03-01T00:00:00.000Z');
    expect(permitsSupporting(cov, 'Observation/screen1')).toBe(true);
    // Before, a deny Consent was ignored beside a permit one.
    const deny = consent({ id: 'd' }, { type: 'deny' });
    expect(coverageOf([b, deny], 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    const denyScreens = consent({ id: 'ds' }, { type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] });
    const both = coverageOf([a, denyScreens], 'Patient/p1', 'Organization/housing', NOW)!;
    expect(both).toBeDefined();
    expect(permitsSupporting(both, 'Observation/screen1')).toBe(false);
  });

  it('honours nested provisions: a nested deny for the receiver, a period or a kind of data; a nested permit inside a deny', () => {
    const deny = (nested: NonNullable<NonNullable<Consent['provision']>['provision']>[number]) => consent({}, { class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }], provision: [nested] });
    expect(consentCovers(deny({ type: 'deny', actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/housing' } }] }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    expect(consentCovers(deny({ type: 'deny', period: { start: '2025-05-01', end: '2025-06-30' } }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
    const later = consentCovers(deny({ type: 'deny', period: { start: '2025-08-01T00:00:00Z', end: '2025-09-01T00:00:00Z' } }), 'Patient/p1', 'Organization/housing', NOW)!;
    expect(later.end).toBe('2025-08-01T00:00:00.000Z');
    const noScreens = consentCovers(deny({ type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }), 'Patient/p1', 'Organization/housing', NOW)!;
    expect(noScreens).toBeDefined();
    expect(permitsSupporting(noScreens, 'Observation/screen1')).toBe(false);
    const rootDeny = consent({}, { type: 'deny', actor: undefined, period: undefined, provision: [{ type: 'permit', actor: [{ role: { text: 'recipient' }, reference: { reference: 'Organization/housing' } }] }] });
    expect(consentCovers(rootDeny, 'Patient/p1', 'Organization/housing', NOW)).toBeDefined();
    expect(consentCovers(rootDeny, 'Patient/p1', 'Organization/other', NOW)).toBeUndefined();
    // A permit for everyone names nobody: the referral needs its receiver named.
    expect(consentCovers(consent({}, { actor: undefined }), 'Patient/p1', 'Organization/housing', NOW)).toBeUndefined();
  });
});

describe('disclosedResources', () => {
  const task: Task = { resourceType: 'Task', id: 't1', status: 'requested', intent: 'order', focus: { reference: 'ServiceRequest/sr1' }, for: { reference: 'Patient/p1' } };
  const sr: ServiceRequest = {
    resourceType: 'ServiceRequest',
    id: 'sr1',
    status: 'active',
    intent: 'order',
    subject: { reference: 'Patient/p1' },
    reasonReference: [{ reference: 'Observation/screen1' }, { reference: 'Condition/cond1' }],
    supportingInfo: [{ reference: 'Consent/c1' }, { reference: 'QuestionnaireResponse/qr1' }],
  };
  it('discloses only the referral, the person and the consent when the Consent names no data', () => {
    const cov = consentCovers(consent(), 'Patient/p1', 'Organization/housing', NOW)!;
    expect(disclosedResources(task, sr, cov).map((k) => `${k.type}/${k.id}`)).toEqual(['Task/t1', 'ServiceRequest/sr1', 'Patient/p1', 'Consent/c1']);
  });
  it('adds screening results by type or by resource when the Consent covers them', () => {
    const byType = consentCovers(consent({}, { class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }), 'Patient/p1', 'Organization/housing', NOW)!;
    expect(disclosedResources(task, sr, byType).map((k) => `${k.type}/${k.id}`)).toContain('Observation/screen1');
    expect(disclosedResources(task, sr, byType).map((k) => `${k.type}/${k.id}`)).not.toContain('Condition/cond1');
    const byData = consentCovers(consent({}, { data: [{ meaning: 'instance', reference: { reference: 'Condition/cond1' } }] }), 'Patient/p1', 'Organization/housing', NOW)!;
    const keys = disclosedResources(task, sr, byData).map((k) => `${k.type}/${k.id}`);
    expect(keys).toContain('Condition/cond1');
    expect(keys).not.toContain('Observation/screen1');
    expect(keys).not.toContain('QuestionnaireResponse/qr1');
  });
  it('withholds what a nested deny names and keeps the rest of the referral', () => {
    const cov = consentCovers(
      consent({}, { class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }, { system: 'http://hl7.org/fhir/resource-types', code: 'Condition' }], provision: [{ type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }] }),
      'Patient/p1',
      'Organization/housing',
      NOW,
    )!;
    expect(disclosedResources(task, sr, cov).map((k) => `${k.type}/${k.id}`)).toEqual(['Task/t1', 'ServiceRequest/sr1', 'Patient/p1', 'Consent/c1', 'Condition/cond1']);
    const noRequest = consentCovers(consent({}, { provision: [{ type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'ServiceRequest/sr1' } }] }] }), 'Patient/p1', 'Organization/housing', NOW, task)!;
    expect(disclosedResources(task, sr, noRequest).map((k) => `${k.type}/${k.id}`)).toEqual(['Task/t1', 'Patient/p1', 'Consent/c1']);
  });
});
