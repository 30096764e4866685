import type { Consent, ConsentProvision } from '@medplum/fhirtypes';
import { boundRange, consentOutcome, decideConsents } from './consent.ts';
import type { ConsentPolicy, ConsentSubject } from './consent.ts';

const NOW = new Date('2025-06-15T12:00:00Z');
const A = 'Organization/a';
const B = 'Organization/b';
const actor = (reference: string, code = 'IRCP') => ({ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code }] }, reference: { reference } });
const cls = (code: string) => ({ system: 'http://hl7.org/fhir/resource-types', code });
const consent = (provision: ConsentProvision, extra: Partial<Consent> = {}): Consent => ({ resourceType: 'Consent', status: 'active', scope: { text: 'privacy' }, category: [{ text: 'privacy' }], provision, ...extra });
const obs: ConsentSubject = { resourceType: 'Observation', id: 'o1' };
const task: ConsentSubject = { resourceType: 'Task', id: 't1' };
const ask = (c: Consent, organization: string, resource: ConsentSubject, now = NOW, policy: ConsentPolicy = {}) => consentOutcome(c, { organization, resource, now }, policy);

describe('consent provisions (R4)', () => {
  it('a permit naming an actor permits it and nobody else', () => {
    const c = consent({ type: 'permit', actor: [actor(A)] });
    expect(ask(c, A, task)).toBe('permit');
    expect(ask(c, B, task)).toBe('none');
  });

  it('a nested deny withholds what it matches and only that (class, period, actor, data)', () => {
    const byClass = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', class: [cls('Observation')] }] });
    expect(ask(byClass, A, task)).toBe('permit');
    expect(ask(byClass, A, obs)).toBe('deny');
    // Within its parent's scope only: B was never permitted, and the nested deny does not make it so.
    expect(ask(byClass, B, task)).toBe('none');
    const byPeriod = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', period: { start: '2025-06-01T00:00:00Z', end: '2025-07-01T00:00:00Z' } }] });
    expect(ask(byPeriod, A, task)).toBe('deny');
    expect(ask(byPeriod, A, task, new Date('2025-07-02T00:00:00Z'))).toBe('permit');
    const byActor = consent({ type: 'permit', provision: [{ type: 'deny', actor: [actor(B)] }] });
    expect(ask(byActor, A, task)).toBe('permit');
    expect(ask(byActor, B, task)).toBe('deny');
    const byData = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/o1' } }] }] });
    expect(ask(byData, A, obs)).toBe('deny');
    expect(ask(byData, A, { resourceType: 'Observation', id: 'o2' })).toBe('permit');
  });

  it('a nested permit inside a deny allows again, recursively', () => {
    const c = consent({
      type: 'deny',
      provision: [{ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', class: [cls('Observation')], provision: [{ type: 'permit', data: [{ meaning: 'instance', reference: { reference: 'Observation/o1' } }] }] }] }],
    });
    expect(ask(c, B, task)).toBe('deny');
    expect(ask(c, A, task)).toBe('permit');
    expect(ask(c, A, { resourceType: 'Observation', id: 'o2' })).toBe('deny');
    expect(ask(c, A, obs)).toBe('permit');
  });

  it('siblings that disagree deny; a nested provision without type denies', () => {
    const c = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'permit', class: [cls('Observation')] }, { type: 'deny', data: [{ meaning: 'instance', reference: { reference: 'Observation/o1' } }] }] });
    expect(ask(c, A, obs)).toBe('deny');
    expect(ask(consent({ type: 'permit', provision: [{ class: [cls('Observation')] }] }), A, obs)).toBe('deny');
  });

  it('fails safe on what it cannot evaluate: a deny that may apply withholds, a permit that may not apply does not permit', () => {
    const maybeDeny: ConsentProvision[] = [
      { type: 'deny', purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HMARKT' }] },
      { type: 'deny', dataPeriod: { end: '2020-01-01' } },
      { type: 'deny', code: [{ coding: [{ system: 'http://loinc.org', code: '44261-6' }] }] },
      { type: 'deny', securityLabel: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] },
      { type: 'deny', actor: [actor('Practitioner/x')] },
      { type: 'deny', actor: [actor('Organization/b', 'AUT')] },
      { type: 'deny', data: [{ meaning: 'authoredby', reference: { reference: 'Practitioner/x' } }] },
      { type: 'deny', data: [{ meaning: 'dependents', reference: { reference: 'Condition/c1' } }] },
      { type: 'deny', class: [{ system: 'http://loinc.org', code: '11488-4' }] },
      { type: 'deny', action: [{ coding: [{ system: 'http://example.org/action', code: 'x' }] }] },
      { type: 'deny', period: { start: 'not a date' } },
    ];
    for (const nested of maybeDeny) expect([nested, ask(consent({ type: 'permit', actor: [actor(A)], provision: [nested] }), A, obs)]).toEqual([nested, 'deny']);
    // The same criteria on a permit do not permit.
    for (const nested of maybeDeny) expect([nested, ask(consent({ type: 'deny', provision: [{ actor: [actor(A)], ...nested, type: 'permit' }] }), A, obs)]).toEqual([nested, 'deny']);
    expect(ask(consent({ type: 'permit', actor: [actor(A)], purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'TREAT' }] }), A, obs)).toBe('none');
    // A modifier extension anywhere: the whole Consent denies.
    expect(ask(consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'permit', modifierExtension: [{ url: 'http://example.org/x', valueBoolean: true }] }] }), A, task)).toBe('deny');
  });

  it('decides what it can: codes and labels against content, actors who are not organisations, actions', () => {
    const labelled = { resourceType: 'Observation', id: 'o1', content: { meta: { security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] }, code: { coding: [{ system: 'http://loinc.org', code: '44261-6' }] } } } as ConsentSubject;
    const plain = { resourceType: 'Observation', id: 'o2', content: { code: { coding: [{ system: 'http://loinc.org', code: '718-7' }] } } } as ConsentSubject;
    const byLabel = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', securityLabel: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality', code: 'R' }] }] });
    expect(ask(byLabel, A, labelled)).toBe('deny');
    expect(ask(byLabel, A, plain)).toBe('permit');
    const byCode = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', code: [{ coding: [{ system: 'http://loinc.org', code: '44261-6' }] }] }] });
    expect(ask(byCode, A, labelled)).toBe('deny');
    expect(ask(byCode, A, plain)).toBe('permit');
    const family = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', actor: [{ role: { text: 'family' }, reference: { reference: 'RelatedPerson/r1' } }] }] });
    expect(ask(family, A, task)).toBe('permit');
    const collectOnly = consent({ type: 'permit', actor: [actor(A)], action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'collect' }] }] });
    expect(ask(collectOnly, A, task)).toBe('none');
    const disclose = consent({ type: 'permit', actor: [actor(A)], action: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentaction', code: 'disclose' }] }] });
    expect(ask(disclose, A, task)).toBe('permit');
  });

  it('reads date bounds as whole days in any time zone', () => {
    expect(boundRange('2025-06-30', true)).toEqual([Date.parse('2025-07-01T00:00:00Z') - 14 * 3600_000, Date.parse('2025-07-01T00:00:00Z') + 12 * 3600_000]);
    const c = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', period: { start: '2025-06-20', end: '2025-06-30' } }] });
    // The deny may already run somewhere on the 19th (UTC+14) and still runs late on the 30th (UTC-12).
    expect(ask(c, A, task, new Date('2025-06-19T11:00:00Z'))).toBe('deny');
    expect(ask(c, A, task, new Date('2025-07-01T11:00:00Z'))).toBe('deny');
    expect(ask(c, A, task, new Date('2025-06-19T09:00:00Z'))).toBe('permit');
    expect(ask(c, A, task, new Date('2025-07-01T13:00:00Z'))).toBe('permit');
  });

  it('root type: permit by default, deny under an OPTOUT policy; inactive Consents give nothing', () => {
    expect(ask(consent({ actor: [actor(A)] }), A, task)).toBe('permit');
    expect(ask(consent({ actor: [actor(A)] }, { policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTOUT' }] } }), A, task)).toBe('deny');
    for (const status of ['draft', 'proposed', 'rejected', 'inactive', 'entered-in-error'] as const) expect(ask(consent({ type: 'permit', actor: [actor(A)] }, { status }), A, task)).toBe('none');
    expect(ask(consent({ type: 'deny', actor: [actor(A)] }, { status: 'inactive' }), A, task)).toBe('none');
  });

  it('policies: a permit may have to name the actor, name the data, or ignore its data criteria', () => {
    const c = consent({ type: 'permit', actor: [actor(A)], class: [cls('Observation')] });
    expect(ask(consent({ type: 'permit' }), A, task, NOW, { requireActor: true })).toBe('none');
    expect(ask(consent({ type: 'deny', provision: [{ type: 'permit', actor: [actor(A)] }] }), A, task, NOW, { requireActor: true })).toBe('permit');
    expect(ask(c, A, task)).toBe('none');
    expect(ask(c, A, task, NOW, { ignorePermitData: true })).toBe('permit');
    expect(ask(c, A, obs, NOW, { requireData: true })).toBe('permit');
    expect(ask(consent({ type: 'permit', actor: [actor(A)] }), A, obs, NOW, { requireData: true })).toBe('none');
    // ignorePermitData leaves a deny's data criteria in force.
    expect(ask(consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', class: [cls('Task')] }] }), A, task, NOW, { ignorePermitData: true })).toBe('deny');
  });

  it('several Consents: a deny in any wins, otherwise any permit; until is the next change', () => {
    const permit = consent({ type: 'permit', actor: [actor(A)], period: { end: '2025-12-31T00:00:00Z' } }, { id: 'p' });
    const deny = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', class: [cls('Observation')] }] }, { id: 'd' });
    const q = (resource: ConsentSubject, now = NOW) => ({ organization: A, resource, now });
    expect(decideConsents([permit, deny], q(obs)).decision).toBe('deny');
    expect(decideConsents([permit, deny], q(task))).toMatchObject({ decision: 'permit', consent: permit });
    expect(decideConsents([permit], q(task)).until).toBe('2025-12-31T00:00:00.000Z');
    const gap = consent({ type: 'permit', actor: [actor(A)], provision: [{ type: 'deny', period: { start: '2025-08-01T00:00:00Z', end: '2025-09-01T00:00:00Z' } }] });
    expect(decideConsents([gap], q(task)).until).toBe('2025-08-01T00:00:00.000Z');
    expect(decideConsents([gap], q(task, new Date('2025-08-10T00:00:00Z')))).toEqual({ decision: 'deny', until: '2025-09-01T00:00:00.000Z' });
    expect(decideConsents([], q(task)).decision).toBe('none');
  });
});
