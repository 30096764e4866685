// The If-Match rule of the module's beforeWrite, once the core passes the client's If-Match to hooks.
import type { CarePlan, Resource } from '@medplum/fhirtypes';
import type { ResourceRepository, WriteHookContext } from '@tic/fhir';
import { OperationOutcomeError } from '@tic/fhir';
import { loadExamples } from '@tic/fhir-profiles';
import { careplanModule } from './module.ts';

const plan = structuredClone(loadExamples().find((r) => r.id === 'recovery-careplan-example')) as CarePlan;
const repo = {} as ResourceRepository;
const ctx = (extra: Record<string, unknown>): WriteHookContext => ({ repo, request: { organization: 'Organization/a', clientId: 'c' }, interaction: 'update', previous: { ...plan, meta: { versionId: '4' } } as Resource, ...extra });

describe('If-Match on recovery plans', () => {
  const m = careplanModule();
  it('answers 428 naming the current version when the client sent no If-Match', async () => {
    const err = await m.beforeWrite!(plan, ctx({ ifMatch: null })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationOutcomeError);
    expect((err as OperationOutcomeError).status).toBe(428);
    expect((err as OperationOutcomeError).outcome.issue[0].diagnostics).toContain('current version is 4');
  });
  it('accepts an update with If-Match, and creates without', async () => {
    await expect(m.beforeWrite!(plan, ctx({ ifMatch: '4' }))).resolves.toBeDefined();
    await expect(m.beforeWrite!(plan, { ...ctx({ ifMatch: null }), interaction: 'create', previous: undefined })).resolves.toBeDefined();
  });
  it('leaves other resources alone', async () => {
    await expect(m.beforeWrite!({ resourceType: 'CarePlan', status: 'active', intent: 'order', subject: { reference: 'Patient/x' } }, ctx({ ifMatch: null }))).resolves.toBeUndefined();
  });
});
