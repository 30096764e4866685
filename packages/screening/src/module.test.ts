// Exercises the hook and operation wiring with a small in-memory ResourceRepository (this file
// only). The end-to-end test through the real store and REST API belongs in tests/.
import { randomUUID } from 'node:crypto';
import type { Bundle, Condition, Observation, QuestionnaireResponse, Resource, Task } from '@medplum/fhirtypes';
import { createValidator, loadDefinitions } from '@tic/fhir';
import type { DomainModule, OperationOutcomeError, ResourceRepository, SearchQuery, WriteHookContext } from '@tic/fhir';
import type { ScreeningConfig } from './config.ts';
import { instrument, NO, respond, uniform, YES } from './fixtures.ts';
import { screeningConformanceResources } from './instruments.ts';
import { screeningModule } from './module.ts';

class MemoryRepo implements ResourceRepository {
  versions = new Map<string, Resource[]>();
  async create<T extends Resource>(resource: T): Promise<T> {
    const stored = { ...structuredClone(resource), id: randomUUID(), meta: { ...resource.meta, versionId: '1' } } as T;
    this.versions.set(`${stored.resourceType}/${stored.id}`, [stored]);
    return structuredClone(stored);
  }
  async read<T extends Resource>(type: T['resourceType'], id: string): Promise<T> {
    const list = this.versions.get(`${type}/${id}`);
    if (!list) throw new Error('not found');
    return structuredClone(list.at(-1) as T);
  }
  async update<T extends Resource>(resource: T): Promise<T> {
    const list = this.versions.get(`${resource.resourceType}/${resource.id}`) ?? [];
    const stored = { ...structuredClone(resource), meta: { ...resource.meta, versionId: String(list.length + 1) } } as T;
    this.versions.set(`${resource.resourceType}/${resource.id}`, [...list, stored]);
    return structuredClone(stored);
  }
  async delete(type: string, id: string): Promise<void> {
    this.versions.delete(`${type}/${id}`);
  }
  async history<T extends Resource>(type: T['resourceType'], id: string): Promise<T[]> {
    return (this.versions.get(`${type}/${id}`) ?? []).map((r) => structuredClone(r) as T);
  }
  all<T extends Resource>(type: T['resourceType']): T[] {
    return [...this.versions.values()].map((l) => l.at(-1) as T).filter((r) => r.resourceType === type);
  }
  /** Just the parameters this module uses: identifier, derived-from, url, patient/subject, code, category, _sort=-date, _count. */
  async search<T extends Resource>(type: T['resourceType'], query: SearchQuery): Promise<T[]> {
    const one = (k: string): string | undefined => (Array.isArray(query[k]) ? query[k][0] : (query[k] as string | undefined));
    const token = (codings: { system?: string; code?: string; value?: string }[] | undefined, q: string): boolean =>
      q.split(',').some((t) => {
        const [system, code] = t.includes('|') ? t.split('|') : [undefined, t];
        return (codings ?? []).some((c) => (c.code ?? c.value) === code && (system === undefined || c.system === system));
      });
    let out = this.all<T>(type).filter((r) => {
      const o = r as unknown as Record<string, any>;
      if (one('identifier') && !token(o.identifier, one('identifier') as string)) return false;
      if (one('derived-from') && !(o.derivedFrom ?? []).some((d: any) => d.reference === one('derived-from'))) return false;
      if (one('url') && o.url !== one('url')) return false;
      if (one('patient') && o.subject?.reference !== one('patient')) return false;
      if (one('subject') && o.subject?.reference !== one('subject')) return false;
      if (one('code') && !token(o.code?.coding, one('code') as string)) return false;
      if (one('category') && !(o.category ?? []).some((c: any) => token(c.coding, one('category') as string))) return false;
      return true;
    });
    if (one('_sort') === '-date') out = out.sort((a: any, b: any) => String(b.effectiveDateTime).localeCompare(String(a.effectiveDateTime)));
    return out.slice(0, Number(one('_count') ?? 100)).map((r) => structuredClone(r));
  }
}

/** What the core does for a write: beforeWrite, store, afterWrite. */
async function write(module: DomainModule, repo: MemoryRepo, resource: QuestionnaireResponse, organization?: string): Promise<QuestionnaireResponse> {
  const interaction = resource.id ? 'update' : 'create';
  const ctx: WriteHookContext = { repo, request: { organization }, interaction };
  const toStore = ((await module.beforeWrite?.(resource, ctx)) ?? resource) as QuestionnaireResponse;
  const stored = interaction === 'create' ? await repo.create(toStore) : await repo.update(toStore);
  await module.afterWrite?.(stored, ctx);
  return stored;
}

const config: ScreeningConfig = {
  defaults: { protocols: [{ questionnaire: 'pc-ptsd-5', task: { dueWithinHours: 72 } }] },
  organisations: {
    'Organization/clinic-a': {
      cutoffs: { 'pc-ptsd-5': 4 },
      protocols: [{ questionnaire: '*', on: ['positive', 'indeterminate'], task: { owner: 'CareTeam/ct1', dueWithinHours: 48, priority: 'urgent' }, condition: {} }],
    },
  },
};
const NOW = new Date('2025-03-02T08:00:00Z');
const pc = instrument('pc-ptsd-5');
const positive = () => respond(pc, { exposure: YES, ...uniform(5, 1, { 5: 0 }) }, { identifier: { system: 'urn:ehr', value: 'r-1' }, source: { reference: 'Patient/p1' } });

describe('screeningModule hooks', () => {
  let repo: MemoryRepo;
  let module: DomainModule;
  beforeEach(() => {
    repo = new MemoryRepo();
    module = screeningModule(config, { now: () => NOW });
  });

  it('seeds the instruments and code systems', () => {
    expect(module.conformanceResources?.().length).toBe(screeningConformanceResources().length);
  });

  it('refuses an invalid response before it is stored', async () => {
    const qr = respond(pc, { exposure: NO, q1: 1 });
    await expect(write(module, repo, qr)).rejects.toMatchObject({ outcome: { issue: [{ code: 'business-rule', expression: ['QuestionnaireResponse.item[1].answer[0]'] }] } });
    expect(repo.all('QuestionnaireResponse')).toHaveLength(0);
  });

  it('refuses a response to an unknown Questionnaire (422) and a completed one without a Patient', async () => {
    const unknown = { ...positive(), questionnaire: 'https://example.org/Questionnaire/x' };
    const err = (await write(module, repo, unknown).catch((e: unknown) => e)) as OperationOutcomeError;
    expect(err.status).toBe(422);
    await expect(write(module, repo, { ...positive(), subject: { reference: 'Group/g1' } })).rejects.toMatchObject({ status: 422 });
  });

  it('scores, writes labelled Observations and runs the default protocol', async () => {
    const qr = await write(module, repo, positive());
    expect(qr.meta?.security?.map((s) => s.code)).toEqual(['R', 'BH']);
    const obs = repo.all<Observation>('Observation');
    expect(obs).toHaveLength(7); // exposure + 5 items + score
    const score = obs.find((o) => o.code.coding?.[0].code === '102017-1') as Observation;
    expect(score).toMatchObject({
      status: 'final',
      valueInteger: 4,
      subject: { reference: 'Patient/p1' },
      effectiveDateTime: '2025-03-01T10:00:00Z',
      performer: [{ reference: 'Practitioner/dr1' }],
      derivedFrom: [{ reference: `QuestionnaireResponse/${qr.id}` }],
      method: { coding: [{ code: 'self-administered' }] },
      interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'POS' }] }],
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] }],
    });
    expect(score.component?.find((c) => c.code.coding?.[0].code === 'cutoff-applied')?.valueInteger).toBe(3);
    expect(score.meta?.security?.map((s) => `${s.system}|${s.code}`)).toEqual([
      'http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R',
      'http://terminology.hl7.org/CodeSystem/v3-ActCode|BH',
    ]);
    const validator = createValidator({ terminology: screeningConformanceResources().filter((r) => r.resourceType === 'CodeSystem') as never });
    loadDefinitions();
    for (const o of obs) expect(validator.validate(o).filter((i) => i.severity === 'error')).toEqual([]);
    const tasks = repo.all<Task>('Task');
    expect(tasks).toHaveLength(1);
    expect(tasks[0]).toMatchObject({
      status: 'requested',
      intent: 'order',
      priority: 'routine',
      focus: { reference: `Observation/${score.id}` },
      for: { reference: 'Patient/p1' },
      restriction: { period: { end: '2025-03-05T08:00:00.000Z' } },
    });
    expect(validator.validate(tasks[0]).filter((i) => i.severity === 'error')).toEqual([]);
    expect(repo.all('Condition')).toHaveLength(0);
  });

  it('applies the organisation cut-off and protocol, records the cut-off used, creates an unconfirmed health concern', async () => {
    await write(module, repo, positive(), 'Organization/clinic-a'); // 4 Yes: positive at the clinic's cut-off 4
    const score = repo.all<Observation>('Observation').find((o) => o.code.coding?.[0].code === '102017-1') as Observation;
    expect(score.valueInteger).toBe(4);
    expect(score.component?.find((c) => c.code.coding?.[0].code === 'cutoff-applied')?.valueInteger).toBe(4);
    expect(score.interpretation?.[0].coding?.[0].code).toBe('POS');
    const [task] = repo.all<Task>('Task');
    expect(task).toMatchObject({ priority: 'urgent', owner: { reference: 'CareTeam/ct1' }, requester: { reference: 'Organization/clinic-a' }, restriction: { period: { end: '2025-03-04T08:00:00.000Z' } } });
    const [condition] = repo.all<Condition>('Condition');
    expect(condition).toMatchObject({
      verificationStatus: { coding: [{ code: 'unconfirmed' }] },
      category: [{ coding: [{ code: 'health-concern' }] }],
      evidence: [{ detail: [{ reference: `Observation/${score.id}` }] }],
    });
  });

  it('creates no protocol for a negative screen (no exposure: score 0)', async () => {
    await write(module, repo, respond(pc, { exposure: NO }));
    const score = repo.all<Observation>('Observation').find((o) => o.code.coding?.[0].code === '102017-1');
    expect(score).toMatchObject({ valueInteger: 0, interpretation: [{ coding: [{ code: 'NEG' }] }] });
    expect(repo.all('Task')).toHaveLength(0);
  });

  it('marks a partial total and runs the protocol on an indeterminate screen', async () => {
    await write(module, repo, respond(pc, { exposure: YES, ...uniform(5, 1, { 3: 0, 4: 'declined', 5: 0 }) }));
    const obs = repo.all<Observation>('Observation');
    expect(obs).toHaveLength(6); // the declined item has no Observation
    const score = obs.find((o) => o.code.coding?.[0].code === '102017-1') as Observation;
    expect(score.interpretation?.[0].coding?.[0].code).toBe('IND');
    expect(score.component?.map((c) => [c.code.coding?.[0].code, c.valueInteger])).toEqual([
      ['cutoff-applied', 3],
      ['declined-items', 1],
      ['score-lower-bound', 2],
      ['score-upper-bound', 3],
    ]);
    expect(score.note?.[0].text).toMatch(/Partial total/);
    expect(repo.all('Task')).toHaveLength(1);
  });

  it('is idempotent for a retried POST with the same response identifier', async () => {
    await write(module, repo, positive());
    await write(module, repo, positive());
    expect(repo.all('QuestionnaireResponse')).toHaveLength(2);
    expect(repo.all('Observation')).toHaveLength(7);
    expect(repo.all('Task')).toHaveLength(1);
  });

  it('re-scores an amended response and updates its Observations (history kept)', async () => {
    const first = await write(module, repo, positive());
    const amended: QuestionnaireResponse = { ...first, status: 'amended', item: respond(pc, { exposure: YES, ...uniform(5, 1) }).item };
    await write(module, repo, amended);
    const obs = repo.all<Observation>('Observation');
    expect(obs).toHaveLength(7);
    const score = obs.find((o) => o.code.coding?.[0].code === '102017-1') as Observation;
    expect(score).toMatchObject({ status: 'amended', valueInteger: 5 });
    expect(await repo.history('Observation', score.id as string)).toHaveLength(2);
    expect(repo.all('Task')).toHaveLength(1);
  });

  it('cancels the open follow-up Task when an amendment turns the screen negative, and opens it again when positive', async () => {
    const first = await write(module, repo, positive());
    const [task] = repo.all<Task>('Task');
    expect(task.status).toBe('requested');
    const negative: QuestionnaireResponse = { ...first, status: 'amended', item: respond(pc, { exposure: YES, ...uniform(5, 0, { 1: 1 }) }).item };
    await write(module, repo, negative);
    const cancelled = repo.all<Task>('Task');
    expect(cancelled).toHaveLength(1);
    expect(cancelled[0]).toMatchObject({ id: task.id, status: 'cancelled', statusReason: { text: 'The amended screening result no longer meets the cut-off' } });
    expect((await repo.history<Task>('Task', task.id as string)).map((t) => t.status)).toEqual(['requested', 'cancelled']);
    // Negative again: nothing more; positive again: the same Task, requested again.
    await write(module, repo, { ...negative });
    expect(await repo.history('Task', task.id as string)).toHaveLength(2);
    await write(module, repo, { ...first, status: 'amended' });
    expect(repo.all<Task>('Task').map((t) => [t.id, t.status])).toEqual([[task.id, 'requested']]);
  });

  it('leaves a follow-up that was started, and an indeterminate amendment, alone', async () => {
    const first = await write(module, repo, positive());
    const [task] = repo.all<Task>('Task');
    // Indeterminate (2 Yes and a declined item): it may still be positive, so the Task stays open.
    await write(module, repo, { ...first, status: 'amended', item: respond(pc, { exposure: YES, ...uniform(5, 0, { 1: 1, 2: 1, 3: 'declined' }) }).item });
    expect(repo.all<Task>('Task')[0].status).toBe('requested');
    await repo.update({ ...task, status: 'in-progress' });
    await write(module, repo, { ...first, status: 'amended', item: respond(pc, { exposure: NO }).item });
    expect(repo.all<Task>('Task').map((t) => t.status)).toEqual(['in-progress']);
  });

  it('marks the Observations entered-in-error when the response is', async () => {
    const first = await write(module, repo, positive());
    await write(module, repo, { ...first, status: 'entered-in-error' });
    expect(repo.all<Observation>('Observation').every((o) => o.status === 'entered-in-error')).toBe(true);
  });

  it('looks a stored (not hosted) Questionnaire up once per write', async () => {
    const own = { ...structuredClone(pc), id: undefined, url: 'https://clinic.example.org/Questionnaire/pc', version: '7' };
    await repo.create(own);
    const searched: string[] = [];
    const search = repo.search.bind(repo);
    repo.search = ((type: string, query: SearchQuery) => {
      searched.push(type);
      return search(type as never, query);
    }) as typeof repo.search;
    await write(module, repo, { ...positive(), questionnaire: 'https://clinic.example.org/Questionnaire/pc|7' });
    expect(searched.filter((t) => t === 'Questionnaire')).toHaveLength(1);
    expect(repo.all<Observation>('Observation')).toHaveLength(7);
  });

  it('records clinician administration', async () => {
    await write(module, repo, respond(instrument('phq-9'), uniform(9, 1)));
    const score = repo.all<Observation>('Observation').find((o) => o.code.coding?.[0].code === '44261-6');
    expect(score).toMatchObject({ valueInteger: 9, method: { coding: [{ code: 'clinician-administered' }] } });
    expect(score?.component?.find((c) => c.code.coding?.[0].code === 'severity')?.valueCodeableConcept?.coding?.[0].code).toBe('mild');
  });
});

describe('$extract', () => {
  const module = screeningModule(config);
  const extract = module.operations?.find((o) => o.code === 'extract');

  it('returns the Observations as a transaction Bundle of conditional updates and stores nothing', async () => {
    const repo = new MemoryRepo();
    const body = { resourceType: 'Parameters' as const, parameter: [{ name: 'questionnaire-response', resource: positive() }] };
    const bundle = (await extract!.handler({ method: 'POST', body, query: {}, repo, request: {} })) as Bundle;
    expect(bundle.type).toBe('transaction');
    expect(bundle.entry).toHaveLength(7);
    expect(bundle.entry?.[0].request?.url).toMatch(/^Observation\?identifier=https%3A%2F%2Ftic-exchange\.org%2Ffhir%2Fsid%2Fscreening-observation%7C/);
    expect(bundle.entry?.every((e) => e.request?.method === 'PUT')).toBe(true);
    expect(repo.versions.size).toBe(0);
  });

  it('takes the response as the body, and a stored one at instance level', async () => {
    const repo = new MemoryRepo();
    const asBody = (await extract!.handler({ method: 'POST', body: positive(), query: {}, repo, request: {} })) as Bundle;
    const stored = await repo.create(positive());
    const instance = (await extract!.handler({ method: 'GET', id: stored.id, resourceType: 'QuestionnaireResponse', query: {}, repo, request: {} })) as Bundle;
    expect(asBody.entry?.map((e) => e.request?.url)).toEqual(instance.entry?.map((e) => e.request?.url));
    expect((instance.entry?.at(-1)?.resource as Observation).derivedFrom?.[0].reference).toBe(`QuestionnaireResponse/${stored.id}`);
  });

  it('refuses an invalid response', async () => {
    const repo = new MemoryRepo();
    await expect(extract!.handler({ method: 'POST', body: respond(pc, { exposure: NO, q2: 1 }), query: {}, repo, request: {} })).rejects.toMatchObject({ status: 422 });
  });
});

describe('$lastn', () => {
  it('returns the most recent Observations per code for a patient', async () => {
    const repo = new MemoryRepo();
    const module = screeningModule({});
    for (const [authored, yes] of [['2025-01-01T00:00:00Z', 1], ['2025-02-01T00:00:00Z', 3], ['2025-03-01T00:00:00Z', 2]] as const) {
      await write(module, repo, respond(pc, { exposure: YES, ...uniform(5, 0, Object.fromEntries(Array.from({ length: yes }, (_, i) => [i + 1, 1]))) }, { authored }));
    }
    const lastn = module.operations?.find((o) => o.code === 'lastn');
    const one = (await lastn!.handler({ method: 'GET', query: { patient: ['Patient/p1'], code: ['http://loinc.org|102017-1'] }, repo, request: { baseUrl: 'http://x/fhir' } })) as Bundle<Observation>;
    expect(one.type).toBe('searchset');
    expect(one.entry?.map((e) => e.resource?.valueInteger)).toEqual([2]);
    expect(one.entry?.[0].fullUrl).toMatch(/^http:\/\/x\/fhir\/Observation\//);
    const two = (await lastn!.handler({ method: 'GET', query: { patient: ['p1'], code: ['102017-1'], max: ['2'] }, repo, request: {} })) as Bundle<Observation>;
    expect(two.entry?.map((e) => e.resource?.valueInteger)).toEqual([2, 3]);
    const all = (await lastn!.handler({ method: 'GET', query: { patient: ['Patient/p1'], category: ['survey'] }, repo, request: {} })) as Bundle<Observation>;
    expect(all.entry).toHaveLength(7); // one per code: exposure, five items, score
    await expect(lastn!.handler({ method: 'GET', query: {}, repo, request: {} })).rejects.toMatchObject({ status: 400 });
  });
});
