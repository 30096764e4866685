// The referral module on the real store (PGlite, and PostgreSQL when DATABASE_URL is set):
// state machine on writes, consent-governed disclosure through resource_share, open-Task claims.
import type { Consent, Observation, Organization, Patient, ServiceRequest, Task } from '@medplum/fhirtypes';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import { Repository } from '@tic/store';
import type { RepositoryServices } from '@tic/store';
import { openTestDatabase, testDatabaseKinds } from '@tic/store/testing';
import type { TestDatabase } from '@tic/store/testing';
import { businessStatus, businessStatusCode, SECTOR_SYSTEM } from './codes.ts';
import { referralModule } from './module.ts';
import { sharesOf, shareReason } from './shares.ts';

const CLINIC = 'Organization/org-clinic';
const HOUSING = 'Organization/org-housing';
const HOUSING2 = 'Organization/org-housing2';
const JUSTICE = 'Organization/org-justice';

async function status(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (isOperationOutcomeError(e)) return statusForOutcome(e);
    throw e;
  }
}

const consentBase = (patient: string, actors: string[], extra: Partial<NonNullable<Consent['provision']>> = {}): Consent => ({
  resourceType: 'Consent',
  status: 'active',
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
  policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
  patient: { reference: patient },
  provision: { type: 'permit', actor: actors.map((a) => ({ role: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'IRCP' }] }, reference: { reference: a } })), ...extra },
});

describe.each(testDatabaseKinds())('referral module on %s', (kind) => {
  let t: TestDatabase;
  let services: RepositoryServices;
  const repo = (org?: string) => new Repository(t.db, org ? { organization: org, clientId: `client-${org}` } : { system: true }, services);

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    services = { modules: [referralModule()] };
    const org = (ref: string, sector: string): Organization => ({ resourceType: 'Organization', id: ref.split('/')[1], name: ref, type: [{ coding: [{ system: SECTOR_SYSTEM, code: sector }] }] });
    for (const [ref, sector] of [[CLINIC, 'health'], [HOUSING, 'housing'], [HOUSING2, 'housing'], [JUSTICE, 'justice']]) await repo().update(org(ref, sector));
  }, 120_000);
  afterAll(async () => t?.drop());

  async function referral(owner: string | undefined, extra: Partial<Task> = {}) {
    const clinic = repo(CLINIC);
    const patient = await clinic.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Rivera', given: ['Alex'] }], birthDate: '1988-04-12' });
    const obs = await clinic.create<Observation>({ resourceType: 'Observation', status: 'final', code: { text: 'PC-PTSD-5 total' }, subject: { reference: `Patient/${patient.id}` }, valueInteger: 4 });
    const sr = await clinic.create<ServiceRequest>({
      resourceType: 'ServiceRequest',
      status: 'active',
      intent: 'order',
      subject: { reference: `Patient/${patient.id}` },
      requester: { reference: CLINIC },
      reasonReference: [{ reference: `Observation/${obs.id}` }],
    });
    const task = await clinic.create<Task>({
      resourceType: 'Task',
      status: 'requested',
      intent: 'order',
      code: { coding: [{ system: 'http://hl7.org/fhir/CodeSystem/task-code', code: 'fulfill' }] },
      focus: { reference: `ServiceRequest/${sr.id}` },
      for: { reference: `Patient/${patient.id}` },
      requester: { reference: CLINIC },
      ...(owner ? { owner: { reference: owner } } : {}),
      ...extra,
    });
    return { patient, obs, sr, task };
  }

  it('discloses nothing without consent, the referral with it, screening only when covered, and stops on revocation', async () => {
    const { patient, obs, sr, task } = await referral(HOUSING);
    expect(businessStatusCode(task)).toBe('awaiting-consent');
    const housing = repo(HOUSING);
    expect(await status(housing.read('Task', task.id!))).toBe(404);
    expect(await status(housing.read('ServiceRequest', sr.id!))).toBe(404);
    expect(await status(housing.read('Patient', patient.id!))).toBe(404);

    const consent = await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING]));
    const seen = await housing.read<Task>('Task', task.id!);
    expect(businessStatusCode(seen)).toBe('consented');
    expect(seen.meta?.versionId).toBe('2');
    expect((await housing.read<ServiceRequest>('ServiceRequest', sr.id!)).id).toBe(sr.id);
    expect((await housing.read<Patient>('Patient', patient.id!)).id).toBe(patient.id);
    expect(await status(housing.read('Observation', obs.id!))).toBe(404);
    expect(await status(repo(JUSTICE).read('Task', task.id!))).toBe(404);
    // Search and _include obey it too.
    const page = await housing.searchPage('Task', { _id: [task.id!], _include: ['Task:focus', 'Task:patient'] });
    expect(page.entries.map((e) => `${e.resource.resourceType}/${e.resource.id}`).sort()).toEqual([`Patient/${patient.id}`, `ServiceRequest/${sr.id}`, `Task/${task.id}`].sort());

    // Widen the consent to screening Observations.
    const wider = await repo(CLINIC).update<Consent>({ ...consent, provision: { ...consent.provision, class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] } });
    expect((await housing.read<Observation>('Observation', obs.id!)).id).toBe(obs.id);

    // Revoke: refused at once, and the Task waits again.
    await repo(CLINIC).update<Consent>({ ...wider, status: 'inactive' });
    for (const [type, id] of [['Task', task.id], ['ServiceRequest', sr.id], ['Patient', patient.id], ['Observation', obs.id]] as const) {
      expect(await status(housing.read(type, id!))).toBe(404);
    }
    expect((await housing.search('Task', { _id: task.id! })).length).toBe(0);
    expect(await sharesOf(t.db, shareReason(task.id!))).toEqual([]);
    expect(businessStatusCode(await repo(CLINIC).read<Task>('Task', task.id!))).toBe('awaiting-consent');
    // History of the Task is refused to the receiver as well.
    expect((await housing.historyEntries('Task', task.id!, { count: 10, offset: 0 })).length).toBe(0);
  });

  it('keeps the shares through an update that changes nothing they depend on, rewrites them when it does', async () => {
    const { patient, task } = await referral(HOUSING);
    await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING]));
    const before = await sharesOf(t.db, shareReason(task.id!));
    expect(before.map((r) => r.resource_type).sort()).toEqual(['Consent', 'Patient', 'ServiceRequest', 'Task']);
    const current = await repo().read<Task>('Task', task.id!);
    const delivered = await repo().update<Task>({ ...current, businessStatus: businessStatus('delivered') });
    expect(await sharesOf(t.db, shareReason(task.id!))).toEqual(before);
    expect((await repo(HOUSING).read<Task>('Task', task.id!)).businessStatus?.text).toBe('delivered');
    // A status change by the requester does rewrite them: entered-in-error discloses nothing.
    await repo(CLINIC).update<Task>({ ...delivered, status: 'entered-in-error' });
    expect(await sharesOf(t.db, shareReason(task.id!))).toEqual([]);
    expect(await status(repo(HOUSING).read('Task', task.id!))).toBe(404);
  });

  it('ends disclosure when the consent period ends (share rows expire)', async () => {
    const { patient, task } = await referral(HOUSING);
    const end = new Date(Date.now() + 1500).toISOString();
    await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING], { period: { start: '2020-01-01', end } }));
    expect((await repo(HOUSING).read<Task>('Task', task.id!)).id).toBe(task.id);
    expect((await sharesOf(t.db, shareReason(task.id!)))[0].expires).not.toBeNull();
    await new Promise((r) => setTimeout(r, 2000));
    expect(await status(repo(HOUSING).read('Task', task.id!))).toBe(404);
  });

  it('enforces the state machine on writes: wrong party 403, disallowed transition 422', async () => {
    const { patient, task } = await referral(HOUSING);
    await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING]));
    const current = await repo(HOUSING).read<Task>('Task', task.id!);
    expect(await status(repo(CLINIC).update({ ...current, status: 'accepted' }))).toBe(403);
    expect(await status(repo(HOUSING).update({ ...current, status: 'completed' }))).toBe(422);
    expect(await status(repo(HOUSING).update({ ...current, status: 'rejected' }))).toBe(422);
    const accepted = await repo(HOUSING).update<Task>({ ...current, status: 'accepted' });
    expect(accepted.status).toBe('accepted');
    expect(businessStatusCode(accepted)).toBe('consented');
    const done = await repo(HOUSING).update<Task>({ ...accepted, status: 'in-progress' });
    const completed = await repo(HOUSING).update<Task>({ ...done, status: 'completed', output: [{ type: { text: 'outcome' }, valueString: 'tenancy secured' }] });
    expect(completed.status).toBe('completed');
    expect(await status(repo(CLINIC).update({ ...completed, status: 'cancelled', statusReason: { text: 'x' } }))).toBe(422);
    expect(await status(repo(CLINIC).delete('Task', task.id!))).toBe(403);
    expect(await status(repo(HOUSING).create<Task>({ ...task, id: undefined, requester: { reference: CLINIC } }))).toBe(403);
  });

  it('offers an open Task to organisations of its sector; of two concurrent claims one wins', async () => {
    const { patient, task } = await referral(undefined, { performerType: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }] });
    await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING, HOUSING2]));
    const offered = await repo(HOUSING).read<Task>('Task', task.id!);
    expect(offered.id).toBe(task.id);
    expect(await status(repo(HOUSING).read('Patient', patient.id!))).toBe(404);
    expect(await status(repo(JUSTICE).read('Task', task.id!))).toBe(404);
    // A justice organisation cannot claim even by id (it cannot see it).
    expect(await status(repo(JUSTICE).update({ ...offered, owner: { reference: JUSTICE } }))).toBe(403);

    const version = offered.meta!.versionId!;
    const claims = await Promise.allSettled([
      repo(HOUSING).update<Task>({ ...offered, owner: { reference: HOUSING }, status: 'accepted' }, { ifMatch: version }),
      repo(HOUSING2).update<Task>({ ...offered, owner: { reference: HOUSING2 }, status: 'accepted' }, { ifMatch: version }),
    ]);
    const won = claims.filter((c) => c.status === 'fulfilled');
    const lost = claims.filter((c) => c.status === 'rejected') as PromiseRejectedResult[];
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(isOperationOutcomeError(lost[0].reason) ? statusForOutcome(lost[0].reason) : 0).toBe(412);
    const winner = (won[0] as PromiseFulfilledResult<Task>).value.owner!.reference!;
    const loser = winner === HOUSING ? HOUSING2 : HOUSING;
    // The winner sees the referral and the person; the loser's offer is withdrawn.
    expect((await repo(winner).read<Patient>('Patient', patient.id!)).id).toBe(patient.id);
    expect(await status(repo(loser).read('Task', task.id!))).toBe(404);
  });

  it('without If-Match the later claim is refused once the first has landed', async () => {
    const { patient, task } = await referral(undefined, { performerType: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }] });
    await repo(CLINIC).create(consentBase(`Patient/${patient.id}`, [HOUSING, HOUSING2]));
    const offered = await repo(HOUSING).read<Task>('Task', task.id!);
    const claims = await Promise.allSettled([
      repo(HOUSING).update<Task>({ ...offered, owner: { reference: HOUSING } }),
      repo(HOUSING2).update<Task>({ ...offered, owner: { reference: HOUSING2 } }),
    ]);
    expect(claims.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
    const reason = (claims.find((c) => c.status === 'rejected') as PromiseRejectedResult).reason;
    expect(isOperationOutcomeError(reason) ? statusForOutcome(reason) : 0).toBeGreaterThanOrEqual(403);
  });
});
