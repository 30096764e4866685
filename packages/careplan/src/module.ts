// careplanModule: the DomainModule the api registers for recovery care plans.
// beforeWrite: profile claimed, extension/reference/consent rules, If-Match required on updates,
//   stage date recorded, goal wording protected.
// afterWrite (same transaction): a Provenance for the change, then the plan's shares recomputed.
import type { CarePlan, CareTeam, Consent, Goal, Provenance, Resource } from '@medplum/fhirtypes';
import type { DomainModule, ResourceRepository, WriteHookContext } from '@tic/fhir';
import { issuesError, preconditionRequired } from '@tic/fhir';
import { SYSTEM, shareReason } from './constants.ts';
import { checkCareTeam, checkGoalReferences, checkPlanReferences } from './checks.ts';
import { checkPlanExtensions } from './extensions.ts';
import { authoredByPerson, changedWording, expressedByPerson, wordingForbidden } from './goal-wording.ts';
import { buildProvenance, parseProvenanceHeader } from './provenance.ts';
import { hasCoding, isRecoveryCareTeam, isRecoveryGoal, isRecoveryPlan, isRecoveryResource, profileFor, refKey, withProfile } from './recognise.ts';
import { sharePlan } from './sharing.ts';
import { recordStageChange } from './stage.ts';
import { stageHistoryOperation } from './operations/stage-history.ts';
import { summaryOperation } from './operations/summary.ts';
import { sendSummaryOperation } from './operations/send-summary.ts';

export interface CareplanModuleOptions {
  /** Clock (tests). */
  now?: () => Date;
  /** $send-summary: attempts before a sending is marked failed (default 8). */
  delivery?: { maxAttempts?: number };
}

/**
 * The hook context as the core may extend it: `ifMatch` is the version the client asserted with
 * If-Match (null when it sent none). Until the core passes it, If-Match cannot be required here.
 */
type HookContext = WriteHookContext & { ifMatch?: string | null };

function requireIfMatch(resource: Resource, ctx: HookContext): void {
  if (ctx.interaction === 'create' || ctx.interaction === 'delete' || !ctx.previous || ctx.request.system) return;
  if (!('ifMatch' in ctx)) return;
  if (ctx.ifMatch === undefined || ctx.ifMatch === null || ctx.ifMatch === '') {
    throw preconditionRequired(`Updates of a recovery ${resource.resourceType} need If-Match with the version you changed (current version is ${ctx.previous.meta?.versionId ?? '?'})`);
  }
}

function refuse(issues: ReturnType<typeof checkPlanExtensions>): void {
  if (issues.length) throw issuesError(issues, 422);
}

async function guardGoalWording(previous: Goal | undefined, next: Goal | undefined, ctx: WriteHookContext): Promise<void> {
  if (!previous || !expressedByPerson(previous)) return;
  const changed = changedWording(previous, next);
  if (!changed) return;
  const person = refKey(previous.subject?.reference);
  const header = parseProvenanceHeader(ctx.request.provenanceHeader);
  if (!person || !(await authoredByPerson(header, person, ctx.repo))) throw wordingForbidden(changed);
}

async function plansReferencing(repo: ResourceRepository, param: string, reference: string): Promise<CarePlan[]> {
  const plans = await repo.search<CarePlan>('CarePlan', { [param]: reference, _count: '200' });
  return plans.filter(isRecoveryPlan);
}

export function careplanModule(options: CareplanModuleOptions = {}): DomainModule {
  const now = options.now ?? (() => new Date());
  return {
    name: 'careplan',
    resourceTypes: ['CarePlan', 'Goal', 'CareTeam', 'Consent'],

    async beforeWrite(resource, ctx) {
      if (ctx.interaction === 'delete' || !isRecoveryResource(resource)) return undefined;
      requireIfMatch(resource, ctx);
      let out: Resource = withProfile(resource, profileFor(resource)!);
      if (isRecoveryPlan(out)) {
        refuse([...checkPlanExtensions(out), ...checkPlanReferences(out)]);
        out = recordStageChange(out, ctx.previous as CarePlan | undefined, now().toISOString());
      } else if (isRecoveryGoal(out)) {
        refuse(checkGoalReferences(out));
        if (ctx.previous?.resourceType === 'Goal') await guardGoalWording(ctx.previous, out, ctx);
      } else if (isRecoveryCareTeam(out)) {
        refuse(await checkCareTeam(out, ctx.repo));
      }
      return out;
    },

    async afterWrite(resource, ctx) {
      const stored = resource;
      if (stored.resourceType === 'Consent') {
        const patient = refKey((stored as Consent).patient?.reference);
        if (!patient) return;
        // The person's recovery plans (no look-up at all for a person created in this transaction).
        const plans = ctx.repo.referring
          ? (await ctx.repo.referring<CarePlan>('CarePlan', 'subject', patient, 1000)).filter((p) => hasCoding(p.category, SYSTEM.category, 'recovery')).slice(0, 200)
          : await ctx.repo.search<CarePlan>('CarePlan', { subject: patient, category: `${SYSTEM.category}|recovery`, _count: '200' });
        for (const plan of plans) await sharePlan(ctx.repo, plan, now());
        return;
      }
      if (!isRecoveryResource(stored)) return;
      if (ctx.interaction === 'delete' && stored.resourceType === 'Goal') await guardGoalWording(stored, undefined, ctx);
      const header = parseProvenanceHeader(ctx.request.provenanceHeader);
      // On delete the hook gets the last version; the Provenance names the deletion's version.
      const target = ctx.interaction === 'delete' ? { ...stored, meta: { ...stored.meta, versionId: String(Number(stored.meta?.versionId ?? 0) + 1) } } : stored;
      await ctx.repo.create<Provenance>(buildProvenance(target, ctx.interaction, ctx.request, header, now().toISOString()));

      if (isRecoveryPlan(stored)) {
        if (ctx.interaction === 'delete') await ctx.repo.unshare?.(shareReason(stored.id!));
        else await sharePlan(ctx.repo, stored, now());
      } else if (isRecoveryGoal(stored)) {
        for (const plan of await plansReferencing(ctx.repo, 'goal', `Goal/${stored.id}`)) await sharePlan(ctx.repo, plan, now());
      } else if (isRecoveryCareTeam(stored as CareTeam)) {
        for (const plan of await plansReferencing(ctx.repo, 'care-team', `CareTeam/${stored.id}`)) await sharePlan(ctx.repo, plan, now());
      }
    },

    operations: [summaryOperation(), stageHistoryOperation(), sendSummaryOperation({ now, maxAttempts: options.delivery?.maxAttempts })],
  };
}
