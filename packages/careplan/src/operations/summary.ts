// CarePlan/{id}/$summary: the plan as a FHIR document Bundle another sector can store and read
// without further calls: a Composition (sections goals, strengths, stage, crisis preferences,
// care team, recent measures, each with narrative) followed by every resource it references that
// the caller may read. Sending it to a care-team organisation's endpoint belongs to the referral
// delivery (not here).
import { randomUUID } from 'node:crypto';
import type { Bundle, CarePlan, CareTeam, Composition, CompositionSection, Goal, Observation, Reference, Resource } from '@medplum/fhirtypes';
import type { FhirOperation, ResourceRepository } from '@tic/fhir';
import { badRequest, unprocessable } from '@tic/fhir';
import { SYSTEM } from '../constants.ts';
import { readCrisisPreferences, readStage, readStrengths, readWhatHelps } from '../extensions.ts';
import { isRecoveryPlan, refKey } from '../recognise.ts';
import { inTurn } from '../in-turn.ts';

/** How many of the most recent results per measure code the summary carries. */
export const MEASURES_PER_CODE = 3;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const div = (inner: string): { status: 'generated'; div: string } => ({ status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${inner}</div>` });
const list = (items: string[]): string => (items.length ? `<ul>${items.map((i) => `<li>${esc(i)}</li>`).join('')}</ul>` : '<p>None recorded.</p>');
const ref = (r: Resource): Reference => ({ reference: `${r.resourceType}/${r.id}` });
const section = (code: string, title: string, items: string[], entries: Resource[]): CompositionSection => ({
  title,
  code: { coding: [{ system: SYSTEM.document, code, display: title }] },
  text: div(list(items)),
  ...(entries.length ? { entry: entries.map(ref) } : { emptyReason: { text: 'None recorded' } }),
});

async function readRef<T extends Resource>(repo: ResourceRepository, reference: string | undefined): Promise<T | undefined> {
  const key = refKey(reference);
  if (!key || reference?.includes('://')) return undefined;
  const [type, id] = key.split('/');
  return repo.read<T>(type as T['resourceType'], id).catch(() => undefined);
}

const conceptText = (c: { text?: string; coding?: Array<{ display?: string; code?: string }> } | undefined): string => c?.text ?? c?.coding?.[0]?.display ?? c?.coding?.[0]?.code ?? '';
const refText = (r: Reference | undefined): string => r?.display ?? r?.reference ?? '';

function measureText(o: Observation): string {
  const value = o.valueQuantity?.value ?? o.valueInteger ?? o.valueString ?? conceptText(o.valueCodeableConcept);
  const when = o.effectiveDateTime ?? o.issued ?? '';
  return `${conceptText(o.code)}: ${String(value ?? 'no value')}${when ? ` (${when})` : ''}`;
}

/** The latest `n` results per code, newest first. */
export function recentMeasures(observations: Observation[], n = MEASURES_PER_CODE): Observation[] {
  const when = (o: Observation) => o.effectiveDateTime ?? o.effectivePeriod?.end ?? o.issued ?? '';
  const sorted = [...observations].sort((a, b) => when(b).localeCompare(when(a)));
  const perCode = new Map<string, number>();
  return sorted.filter((o) => {
    const code = o.code?.coding?.map((c) => `${c.system}|${c.code}`).join(',') ?? o.code?.text ?? '';
    const count = perCode.get(code) ?? 0;
    perCode.set(code, count + 1);
    return count < n;
  });
}

export async function buildSummary(repo: ResourceRepository, plan: CarePlan, baseUrl: string, author: Reference | undefined, now: string): Promise<Bundle> {
  const goals = (await inTurn((plan.goal ?? []), (r) => readRef<Goal>(repo, r.reference))).filter((g): g is Goal => !!g);
  const teams = (await inTurn((plan.careTeam ?? []), (r) => readRef<CareTeam>(repo, r.reference))).filter((t): t is CareTeam => !!t);
  const observations = (await inTurn(goals.flatMap((g) => g.outcomeReference ?? []), (r) => readRef<Observation>(repo, r.reference))).filter(
    (o): o is Observation => o?.resourceType === 'Observation',
  );
  const measures = recentMeasures([...new Map(observations.map((o) => [o.id, o])).values()]);
  const patient = await readRef<Resource>(repo, plan.subject?.reference);
  const stage = readStage(plan);
  const preferences = readCrisisPreferences(plan);
  const prefLabel: Record<string, string> = {
    'helps-when-distressed': 'What helps when distressed',
    avoid: 'Please avoid',
    'alternative-to-restrictive-practice': 'Instead of restrictive practices',
    contact: 'Who to contact',
  };

  const sections: CompositionSection[] = [
    section(
      'goals',
      'Goals',
      goals.map((g) => `${conceptText(g.category?.[0])}: ${g.description?.text ?? conceptText(g.description)}${g.expressedBy?.reference?.startsWith('Patient/') ? " (in the person's own words)" : ''}${g.lifecycleStatus ? ` [${g.lifecycleStatus}]` : ''}`),
      goals,
    ),
    section('strengths', 'Strengths and what helps', [...readStrengths(plan).map((s) => `Strength: ${conceptText(s)}`), ...readWhatHelps(plan).map((s) => `What helps: ${conceptText(s)}`)], [plan]),
    section('stage', 'Recovery stage', stage ? [`${stage.coding.display ?? stage.stage} (recorded ${stage.recorded})${stage.note ? `: ${stage.note}` : ''}`] : [], [plan]),
    section('crisis-preferences', 'Crisis and advance preferences', preferences.map((p) => `${prefLabel[p.type]}: ${p.type === 'contact' ? refText(p.contact) : (p.detail ?? '')}`), [plan]),
    section(
      'care-team',
      'Care team',
      teams.flatMap((t) => (t.participant ?? []).map((p) => `${conceptText(p.role?.[0])}: ${refText(p.member)}${p.onBehalfOf ? ` (${refText(p.onBehalfOf)})` : ''}`)),
      teams,
    ),
    section('measures', 'Recent measures', measures.map(measureText), measures),
  ];
  const composition: Composition = {
    resourceType: 'Composition',
    id: randomUUID(),
    status: 'final',
    type: { coding: [{ system: SYSTEM.document, code: 'recovery-plan-summary', display: 'Recovery plan summary' }] },
    subject: plan.subject,
    date: now,
    author: [(author ?? plan.author ?? { display: 'tic-exchange' }) as NonNullable<Composition['author']>[number]],
    title: plan.title ? `Recovery plan summary: ${plan.title}` : 'Recovery plan summary',
    event: [{ period: plan.period, detail: [{ reference: `CarePlan/${plan.id}/_history/${plan.meta?.versionId ?? '1'}` }] }],
    section: sections,
  };
  const resources: Resource[] = [composition, plan, ...(patient ? [patient] : []), ...goals, ...teams, ...measures];
  const seen = new Set<string>();
  return {
    resourceType: 'Bundle',
    type: 'document',
    identifier: { system: 'urn:ietf:rfc:3986', value: `urn:uuid:${randomUUID()}` },
    timestamp: now,
    entry: resources
      .filter((r) => {
        const k = `${r.resourceType}/${r.id}`;
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      })
      .map((r) => ({ fullUrl: `${baseUrl}/${r.resourceType}/${r.id}`, resource: r })),
  };
}

export function summaryOperation(now: () => Date = () => new Date()): FhirOperation {
  return {
    code: 'summary',
    resourceTypes: ['CarePlan'],
    instance: true,
    affectsState: false,
    async handler(req) {
      if (!req.id) throw badRequest('$summary runs on a CarePlan instance');
      const plan = await req.repo.read<CarePlan>('CarePlan', req.id);
      if (!isRecoveryPlan(plan)) throw unprocessable('CarePlan is not a recovery plan', 'CarePlan.category');
      const author = req.request.organization ? { reference: req.request.organization } : undefined;
      return buildSummary(req.repo, plan, req.request.baseUrl ?? '', author, now().toISOString());
    },
  };
}
