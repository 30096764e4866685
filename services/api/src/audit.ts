// The audit trail: an AuditEvent for every create, read, search, update and delete of data and for
// every refused request. Writes are audited in the write's own transaction; reads before the
// response is sent, so none is lost on a crash.
import type { AuditEvent, Resource } from '@medplum/fhirtypes';
import type { RequestContext, WriteInteraction } from '@tic/fhir';
import { buildAuditEvent } from '@tic/auth';
import type { AuditAction, RestfulInteraction } from '@tic/auth';
import type { Db } from '@tic/store';
import { Repository } from '@tic/store';
import type { AuditQueue } from '@tic/store';

/** Owner of audit records that belong to no client organisation (e.g. refused unauthenticated calls). */
export const OPERATOR_ORGANIZATION = 'Organization/tic-exchange-operator';

const actionFor: Record<WriteInteraction, AuditAction> = { create: 'C', update: 'U', patch: 'U', delete: 'D' };

/** The Patient a resource is about, when it says so plainly. */
export function patientOf(resource: Resource | undefined): string | undefined {
  if (!resource) return undefined;
  if (resource.resourceType === 'Patient') return `Patient/${resource.id}`;
  const r = resource as unknown as Record<string, { reference?: string } | undefined>;
  for (const key of ['subject', 'patient', 'for', 'beneficiary']) {
    const ref = r[key]?.reference;
    if (typeof ref === 'string' && ref.startsWith('Patient/')) return ref;
  }
  return undefined;
}

function auditRepo(db: Db, ctx: RequestContext): Repository {
  // Owned by the acting organisation, so its auditors see its own trail; written by the server.
  return new Repository(db, auditOwner(ctx), { modules: [] });
}

/** The AuditEvent of a write, stored in the same statement as the write itself (store companions). */
export function auditEventsForWrite(ctx: RequestContext, interaction: WriteInteraction, resource: Resource): Resource[] {
  if (resource.resourceType === 'AuditEvent' || ctx.system) return [];
  return [
    buildAuditEvent({
      ctx,
      action: actionFor[interaction],
      interaction: interaction === 'patch' ? 'patch' : interaction,
      resources: [`${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`],
      patient: patientOf(resource),
      outcome: '0',
    }),
  ];
}

/**
 * The AuditEvent of a read or search, committed before the response is sent. Outside a
 * transaction it is queued (one narrow row; concurrent reads share one INSERT) and becomes an
 * AuditEvent resource when the queue is drained, moments later.
 */
export async function auditAccess(
  db: Db,
  ctx: RequestContext,
  interaction: RestfulInteraction,
  resourceType: string | undefined,
  resources: Resource[],
  parameterNames: string[] | undefined,
  queue: AuditQueue,
): Promise<void> {
  if (ctx.system) return;
  const patients = [...new Set(resources.map(patientOf).filter((p): p is string => !!p))];
  const event = buildAuditEvent({
    ctx,
    action: interaction.startsWith('search') ? 'E' : 'R',
    interaction,
    resources: interaction.startsWith('search') ? [] : resources.map((r) => `${r.resourceType}/${r.id}`),
    patient: patients[0],
    outcome: '0',
    searchResourceType: interaction.startsWith('search') ? resourceType : undefined,
    searchParameterNames: parameterNames,
  });
  if (db.inTransaction) await auditRepo(db, ctx).create<AuditEvent>(event);
  else await queue.record(ctx.organization ?? null, event);
}

function auditOwner(ctx: RequestContext): RequestContext {
  return ctx.organization ? { organization: ctx.organization, clientId: ctx.clientId } : { system: true };
}

export async function auditRefusal(db: Db, ctx: RequestContext | undefined, status: number, resourceType: string | undefined): Promise<void> {
  const event = buildAuditEvent({
    ctx,
    action: 'E',
    interaction: 'operation',
    resources: [],
    outcome: status >= 500 ? '8' : '4',
    httpStatus: status,
    searchResourceType: resourceType,
  });
  // Unauthenticated refusals belong to the server operator: no client organisation's auditor sees them.
  await new Repository(db, { organization: ctx?.organization ?? OPERATOR_ORGANIZATION }, { modules: [] }).create<AuditEvent>(event);
}
