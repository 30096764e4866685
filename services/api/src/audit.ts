// The audit trail: an AuditEvent for every create, read, search, update and delete of data and for
// every refused request. Each access is first a compact record in the audit log (@tic/store
// audit-queue.ts): a write's in the write's own statement, a read's or a refusal's committed
// before the response is sent, so none is lost on a crash. AuditEvent resources are built from
// the records moments later (docs/decisions/0004-audit-record.md). A read by id and its record are
// one statement (one round trip, one commit).
import type { Resource } from '@medplum/fhirtypes';
import type { RequestContext, WriteInteraction } from '@tic/fhir';
import { isOperationOutcomeError, OperationOutcomeError, outcome } from '@tic/fhir';
import { auditRecord, auditRecordJson, buildAuditEvents } from '@tic/auth';
import type { AuditAction, AuditRecord, RestfulInteraction } from '@tic/auth';
import type { AuditedWrite, AuditQueue, Db, WritesAuditRow } from '@tic/store';
import { appendAuditRows, patientOf } from '@tic/store';

/** Owner of audit records that belong to no client organisation (e.g. refused unauthenticated calls). */
export const OPERATOR_ORGANIZATION = 'Organization/tic-exchange-operator';

const actionFor: Record<WriteInteraction, AuditAction> = { create: 'C', update: 'U', patch: 'U', delete: 'D' };

/**
 * The audit record of a read by id, for the store to write in the read's own statement (the
 * resource's patient is added there). Undefined for the server itself.
 */
export function auditRowForRead(ctx: RequestContext, type: string, id: string, commit: 'relaxed' | 'sync'): { ownerOrg: string | null; record: AuditRecord; commit?: 'relaxed' } | undefined {
  if (ctx.system) return undefined;
  const row = { ownerOrg: ownerOf(ctx), record: auditRecord({ ctx, action: 'R', interaction: 'read', resources: [`${type}/${id}`], outcome: '0' }) };
  return commit === 'relaxed' ? { ...row, commit } : row;
}

/** Audit records belong to the acting organisation, so its auditors see its own trail. */
function ownerOf(ctx: RequestContext | undefined): string | null {
  return ctx?.organization ?? null;
}

/**
 * The audit-log rows of writes: of one write outside a transaction (in the write's own statement),
 * or of every write of a transaction (inserted just before it commits; @tic/store db.ts). One
 * record per client request, interaction and patient, listing every resource written (each
 * versioned): a POST whose hooks derive 21 Observations is one record and becomes one AuditEvent
 * with 22 `entity` entries; a transaction Bundle about two patients is one record, and one event,
 * per patient (docs/decisions/0007-audit-per-request.md). The server's own writes and AuditEvents
 * are not audited.
 */
export function auditRowsForWrites(writes: AuditedWrite[]): WritesAuditRow[] {
  const groups = new Map<string, { ctx: RequestContext; interaction: WriteInteraction; patient: string | undefined; resources: string[] }>();
  for (const { ctx, interaction, resource } of writes) {
    if (resource.resourceType === 'AuditEvent' || ctx.system) continue;
    const patient = patientOf(resource);
    const key = `${ctx.organization ?? ''}\n${ctx.clientId ?? ''}\n${ctx.requestId ?? ''}\n${interaction}\n${patient ?? ''}`;
    const reference = `${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
    const group = groups.get(key);
    if (group) group.resources.push(reference);
    else groups.set(key, { ctx, interaction, patient, resources: [reference] });
  }
  const rows: WritesAuditRow[] = [];
  for (const g of groups.values()) {
    const record = auditRecord({
      ctx: g.ctx,
      action: actionFor[g.interaction],
      interaction: g.interaction === 'patch' ? 'patch' : g.interaction,
      resources: g.resources,
      patients: g.patient ? [g.patient] : undefined,
      outcome: '0',
    });
    // Weighed by its resources in a drain batch: a batch builds about as many entities as before.
    rows.push({ ownerOrg: ownerOf(g.ctx), content: JSON.stringify(record), records: g.resources.length });
  }
  return rows;
}

/**
 * The audit record of a read or search, committed before the response is sent: inside a
 * transaction Bundle with the transaction, otherwise group-committed through the queue. Not an
 * async function: the read path awaits the queue's promise itself, without another one around it.
 */
export function auditAccess(
  db: Db,
  ctx: RequestContext,
  interaction: RestfulInteraction,
  resourceType: string | undefined,
  resources: Resource[],
  parameterNames: string[] | undefined,
  queue: AuditQueue,
): Promise<void> {
  if (ctx.system) return Promise.resolve();
  const search = interaction.startsWith('search');
  const patients: string[] = [];
  for (const r of resources) {
    const p = patientOf(r);
    if (p && !patients.includes(p)) patients.push(p);
  }
  // The record's JSON text, written by hand (auditRecordJson: the same text as JSON.stringify of auditRecord).
  const content = auditRecordJson({
    ctx,
    action: search ? 'E' : 'R',
    interaction,
    resources: search ? [] : resources.map((r) => `${r.resourceType}/${r.id}`),
    patients,
    outcome: '0',
    searchResourceType: search ? resourceType : undefined,
    searchParameterNames: parameterNames,
  });
  if (db.inTransaction) return appendAuditRows(db, [{ ownerOrg: ownerOf(ctx), content }]);
  return queue.recordJson(ownerOf(ctx), content).catch(auditUnavailable);
}

/** An access whose record could not be made durable is not answered (fail closed): 503, retry. */
export function auditUnavailable(e: unknown): never {
  if (isOperationOutcomeError(e)) throw e;
  throw new OperationOutcomeError(outcome('transient', 'The access could not be audited, so nothing is returned; retry shortly'), 503, { 'Retry-After': '1' });
}

/** The audit record of a refused request (401/403/...), committed before the refusal is sent. */
export async function auditRefusal(queue: AuditQueue, ctx: RequestContext | undefined, status: number, resourceType: string | undefined): Promise<void> {
  const record = auditRecord({
    ctx,
    action: 'E',
    interaction: 'operation',
    resources: [],
    outcome: status >= 500 ? '8' : '4',
    httpStatus: status,
    searchResourceType: resourceType,
  });
  // Unauthenticated refusals belong to the server operator: no client organisation's auditor sees them.
  await queue.record(ctx?.organization ?? OPERATOR_ORGANIZATION, record);
}

/** The AuditEvents of a batch of audit records (the audit queue's drain). */
export function auditEventsFor(records: unknown[]): Resource[] {
  return buildAuditEvents(records as AuditRecord[]);
}
