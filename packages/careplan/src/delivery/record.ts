// The sender's view of a sending: a Communication (sender, recipient, subject, about the plan,
// identifier = the document's identifier) owned by the organisation that asked for it.
// in-progress while the job is pending, completed (with `sent`) once the receiver stored the
// document, not-done with a statusReason when the sending was refused at send time or failed after
// the last attempt. An AuditEvent records every refusal and failure.
import type { AuditEvent, CarePlan, Communication } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import type { SummarySending } from './document-id.ts';
import { summaryDocumentIdentifier } from './document-id.ts';

export const SUMMARY_TOPIC = 'Recovery plan summary';

export function sendingRecord(s: SummarySending, plan: CarePlan): Communication {
  return {
    resourceType: 'Communication',
    identifier: [summaryDocumentIdentifier(s)],
    status: 'in-progress',
    ...(plan.subject ? { subject: plan.subject } : {}),
    about: [{ reference: `CarePlan/${s.carePlanId}` }],
    topic: { text: SUMMARY_TOPIC },
    recipient: [{ reference: s.recipient }],
    ...(s.sender ? { sender: { reference: s.sender } } : {}),
    payload: [{ contentReference: { reference: `CarePlan/${s.carePlanId}/_history/${s.version}`, display: SUMMARY_TOPIC } }],
  };
}

/** The sending as the job reads it back from its record. */
export function sendingOf(record: Communication, sourceBase: string): SummarySending | undefined {
  const content = record.payload?.[0]?.contentReference?.reference?.match(/^CarePlan\/([^/]+)\/_history\/([^/]+)$/);
  const recipient = record.recipient?.[0]?.reference;
  if (!content || !recipient) return undefined;
  return { sourceBase, carePlanId: content[1], version: content[2], recipient, ...(record.sender?.reference ? { sender: record.sender.reference } : {}) };
}

export async function markSent(repo: ResourceRepository, record: Communication, now: Date): Promise<Communication> {
  if (record.status === 'completed') return record;
  const { statusReason: _reason, ...rest } = record;
  return repo.update<Communication>({ ...rest, status: 'completed', sent: now.toISOString() });
}

export async function markNotDone(repo: ResourceRepository, record: Communication, reason: string): Promise<Communication> {
  const { sent: _sent, ...rest } = record;
  return repo.update<Communication>({ ...rest, status: 'not-done', statusReason: { text: reason } });
}

/** An AuditEvent for a sending that was refused ('4') or failed for good ('8'). No bodies, no patient data. */
export async function auditSending(repo: ResourceRepository, record: Communication, outcome: '4' | '8', description: string, now: Date): Promise<void> {
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
    subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'create', display: 'create' }],
    action: 'C',
    recorded: now.toISOString(),
    outcome,
    outcomeDesc: description,
    agent: [
      { who: { display: 'tic-exchange care plan summary delivery' }, requestor: false },
      ...(record.sender?.reference ? [{ who: { reference: record.sender.reference }, requestor: true }] : []),
    ],
    source: { observer: { display: 'tic-exchange worker' } },
    entity: [{ what: { reference: `Communication/${record.id}` } }, ...(record.about ?? []).map((what) => ({ what }))],
  };
  await repo.create(event);
}
