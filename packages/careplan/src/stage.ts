// Recovery stage: a new stage gets its recorded date; moves in either direction are never
// refused. The history is read back from the plan's versions.
import type { CarePlan, Parameters, ParametersParameter, Provenance } from '@medplum/fhirtypes';
import { STAGES } from './constants.ts';
import type { StageRecord } from './extensions.ts';
import { readStage, withStageRecorded } from './extensions.ts';

/** When the stage changed but its recorded date did not, the date of this write is recorded. */
export function recordStageChange(next: CarePlan, previous: CarePlan | undefined, now: string): CarePlan {
  const stage = readStage(next);
  if (!stage) return next;
  const before = previous ? readStage(previous) : undefined;
  if (before && before.stage !== stage.stage && before.recorded === stage.recorded) return withStageRecorded(next, now);
  return next;
}

export type Direction = 'initial' | 'forward' | 'backward' | 'same';

export interface StageTransition {
  version: string;
  lastUpdated?: string;
  stage: StageRecord;
  from?: StageRecord;
  direction: Direction;
}

export function direction(from: StageRecord | undefined, to: StageRecord): Direction {
  if (!from) return 'initial';
  const d = STAGES.indexOf(to.stage) - STAGES.indexOf(from.stage);
  return d > 0 ? 'forward' : d < 0 ? 'backward' : 'same';
}

/** Each version at which the stage (or its recorded date) changed, oldest first. */
export function stageTransitions(versions: CarePlan[]): StageTransition[] {
  const sorted = [...versions].sort((a, b) => Number(a.meta?.versionId ?? 0) - Number(b.meta?.versionId ?? 0));
  const out: StageTransition[] = [];
  let last: StageRecord | undefined;
  for (const v of sorted) {
    const s = readStage(v);
    if (!s) continue;
    if (last && last.stage === s.stage && last.recorded === s.recorded) continue;
    out.push({ version: v.meta?.versionId ?? '', ...(v.meta?.lastUpdated ? { lastUpdated: v.meta.lastUpdated } : {}), stage: s, ...(last ? { from: last } : {}), direction: direction(last, s) });
    last = s;
  }
  return out;
}

/** The stage history as Parameters, one `transition` per change, with who made it when known. */
export function stageHistoryParameters(planId: string, transitions: StageTransition[], provenances: Provenance[]): Parameters {
  const byVersion = new Map<string, Provenance>();
  for (const p of provenances) {
    for (const t of p.target ?? []) {
      const m = new RegExp(`(?:^|/)CarePlan/${planId}/_history/([^/]+)$`).exec(t.reference ?? '');
      if (m) byVersion.set(m[1], p);
    }
  }
  const parameter: ParametersParameter[] = transitions.map((t) => {
    const part: ParametersParameter[] = [
      { name: 'stage', valueCoding: t.stage.coding },
      { name: 'recorded', valueDateTime: t.stage.recorded },
      { name: 'direction', valueCode: t.direction },
      { name: 'version', valueString: t.version },
    ];
    if (t.from) part.push({ name: 'from', valueCoding: t.from.coding });
    if (t.stage.note) part.push({ name: 'note', valueString: t.stage.note });
    const prov = byVersion.get(t.version);
    if (prov?.id) part.push({ name: 'provenance', valueReference: { reference: `Provenance/${prov.id}` } });
    const org = prov?.agent?.find((a) => a.onBehalfOf?.reference)?.onBehalfOf;
    if (org) part.push({ name: 'organization', valueReference: org });
    return { name: 'transition', part };
  });
  return { resourceType: 'Parameters', parameter };
}
