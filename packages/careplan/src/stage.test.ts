import type { CarePlan } from '@medplum/fhirtypes';
import { EXT, SYSTEM } from './constants.ts';
import { readStage } from './extensions.ts';
import { recordStageChange, stageHistoryParameters, stageTransitions } from './stage.ts';

const plan = (code: string, recorded: string, versionId: string): CarePlan => ({
  resourceType: 'CarePlan',
  id: 'p1',
  meta: { versionId },
  status: 'active',
  intent: 'plan',
  subject: { reference: 'Patient/x' },
  extension: [{ url: EXT.stage, extension: [{ url: 'stage', valueCoding: { system: SYSTEM.stage, code } }, { url: 'recorded', valueDateTime: recorded }] }],
});

describe('recordStageChange', () => {
  it('records the date of the write when the stage changed but its date did not', () => {
    const out = recordStageChange(plan('growth', '2025-01-01', '2'), plan('awareness', '2025-01-01', '1'), '2025-03-01T10:00:00.000Z');
    expect(readStage(out)).toMatchObject({ stage: 'growth', recorded: '2025-03-01T10:00:00.000Z' });
  });
  it('keeps a date the client gave, and leaves an unchanged stage alone', () => {
    expect(readStage(recordStageChange(plan('growth', '2025-02-15', '2'), plan('awareness', '2025-01-01', '1'), 'now'))?.recorded).toBe('2025-02-15');
    expect(readStage(recordStageChange(plan('awareness', '2025-01-01', '2'), plan('awareness', '2025-01-01', '1'), 'now'))?.recorded).toBe('2025-01-01');
  });
});

describe('stageTransitions', () => {
  it('lists each change with its direction, in version order, skipping versions without a change', () => {
    const versions = [plan('rebuilding', '2025-02-01', '3'), plan('moratorium', '2025-01-01', '1'), plan('moratorium', '2025-01-01', '2'), plan('awareness', '2025-03-01', '4'), plan('awareness', '2025-03-01', '5')];
    const t = stageTransitions(versions);
    expect(t.map((x) => [x.version, x.stage.stage, x.direction, x.from?.stage])).toEqual([
      ['1', 'moratorium', 'initial', undefined],
      ['3', 'rebuilding', 'forward', 'moratorium'],
      ['4', 'awareness', 'backward', 'rebuilding'],
    ]);
  });
  it('names the organisation from the Provenance of each version', () => {
    const params = stageHistoryParameters('p1', stageTransitions([plan('growth', '2025-01-01', '1')]), [
      { resourceType: 'Provenance', id: 'pv', recorded: '2025-01-01T00:00:00Z', target: [{ reference: 'CarePlan/p1/_history/1' }], agent: [{ who: { display: 'c' }, onBehalfOf: { reference: 'Organization/a' } }] },
    ]);
    const parts = params.parameter![0].part!;
    expect(parts.find((p) => p.name === 'organization')?.valueReference?.reference).toBe('Organization/a');
    expect(parts.find((p) => p.name === 'provenance')?.valueReference?.reference).toBe('Provenance/pv');
  });
});
