import type { CareTeam, Consent } from '@medplum/fhirtypes';
import { consentDecision, consentWindow, teamOrganisations, withinConsent } from './sharing.ts';

const now = new Date('2025-03-01T00:00:00Z');
const team = (participant: CareTeam['participant'], extra: Partial<CareTeam> = {}): CareTeam => ({ resourceType: 'CareTeam', status: 'active', participant, ...extra });
const consent = (provision: Consent['provision'], status: Consent['status'] = 'active'): Consent => ({ resourceType: 'Consent', status, scope: { text: 'privacy' }, category: [{ text: 'privacy' }], provision });
const actor = (org: string) => ({ role: { text: 'care team' }, reference: { reference: org } });

describe('teamOrganisations', () => {
  it('collects Organization members, onBehalfOf, PractitionerRole organisations and managing organisations', () => {
    const t = team(
      [
        { member: { reference: 'Organization/a' } },
        { member: { reference: 'Practitioner/p' }, onBehalfOf: { reference: 'Organization/b' } },
        { member: { reference: 'PractitionerRole/r' } },
        { member: { reference: 'Patient/x' } },
      ],
      { managingOrganization: [{ reference: 'Organization/m' }] },
    );
    expect(teamOrganisations([t], [{ resourceType: 'PractitionerRole', id: 'r', organization: { reference: 'Organization/c' } }], now)).toEqual(['Organization/a', 'Organization/b', 'Organization/c', 'Organization/m']);
  });
  it('leaves out ended participations and inactive teams', () => {
    expect(teamOrganisations([team([{ member: { reference: 'Organization/a' }, period: { end: '2025-01-01' } }, { member: { reference: 'Organization/b' } }])], [], now)).toEqual(['Organization/b']);
    expect(teamOrganisations([team([{ member: { reference: 'Organization/a' } }], { status: 'inactive' })], [], now)).toEqual([]);
  });
});

describe('consent', () => {
  const orgs = ['Organization/a', 'Organization/b'];
  it('allows every care-team organisation when the person has no Consent', () => {
    expect(withinConsent(orgs, [], now)).toEqual(orgs);
  });
  it('allows only named actors of a permit, and honours nested denies', () => {
    expect(withinConsent(orgs, [consent({ type: 'permit', actor: [actor('Organization/a')] })], now)).toEqual(['Organization/a']);
    expect(withinConsent(orgs, [consent({ type: 'permit', provision: [{ type: 'deny', actor: [actor('Organization/b')] }] })], now)).toEqual(['Organization/a']);
  });
  it('a deny in any Consent wins over a permit in another', () => {
    expect(withinConsent(orgs, [consent({ type: 'permit' }), consent({ type: 'deny', actor: [actor('Organization/a')] })], now)).toEqual(['Organization/b']);
  });
  it('an inactive (revoked) or expired Consent permits nothing', () => {
    expect(withinConsent(orgs, [consent({ type: 'permit' }, 'inactive')], now)).toEqual([]);
    expect(withinConsent(orgs, [consent({ type: 'permit', period: { end: '2025-02-01' } })], now)).toEqual([]);
    expect(consentDecision(consent({ type: 'permit' }, 'rejected'), 'Organization/a', now)).toBeUndefined();
  });
  it('honours nested provisions without an actor: a nested deny for a period, for a kind of data', () => {
    const gap = consent({ type: 'permit', actor: [actor('Organization/a')], provision: [{ type: 'deny', period: { start: '2025-02-15T00:00:00Z', end: '2025-03-15T00:00:00Z' } }] });
    expect(withinConsent(orgs, [gap], now)).toEqual([]);
    expect(withinConsent(orgs, [gap], new Date('2025-04-01T00:00:00Z'))).toEqual(['Organization/a']);
    expect(consentWindow('Organization/a', [gap], new Date('2025-02-01T00:00:00Z'))).toEqual({ permitted: true, until: '2025-02-15T00:00:00.000Z' });
    const noMeasures = consent({ type: 'permit', provision: [{ type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] }] });
    expect(withinConsent(orgs, [noMeasures], now, { resourceType: 'CarePlan', id: 'p' })).toEqual(orgs);
    expect(withinConsent(orgs, [noMeasures], now, { resourceType: 'Observation', id: 'o' })).toEqual([]);
  });
  it('a nested permit inside a root deny allows only its actor; nested levels recurse', () => {
    const onlyA = consent({ type: 'deny', provision: [{ type: 'permit', actor: [actor('Organization/a')], provision: [{ type: 'deny', period: { start: '2025-02-15T00:00:00Z', end: '2025-03-15T00:00:00Z' } }] }] });
    expect(withinConsent(orgs, [onlyA], new Date('2025-02-01T00:00:00Z'))).toEqual(['Organization/a']);
    expect(withinConsent(orgs, [onlyA], now)).toEqual([]);
    expect(consentDecision(onlyA, 'Organization/b', now)).toBe('deny');
  });
});
