// POST CarePlan/{id}/$send-summary (Parameters: recipient = Reference(Organization)): sends the
// plan's summary document to the recipient's FHIR server through the durable job queue. The
// recipient must be an organisation of the plan's care team that the person's consent covers (the
// rule that decides who may read the plan). In the request's transaction the operation records the
// sending as a Communication (owned by the asking organisation; in-progress until the worker has
// delivered: completed, or not-done with the reason) and enqueues the job; it answers 200 with that
// Communication. PostgreSQL only: the embedded database has no job queue (422).
import type { CarePlan, Communication, Parameters } from '@medplum/fhirtypes';
import type { FhirOperation } from '@tic/fhir';
import { badRequest, businessRule, forbidden, unprocessable } from '@tic/fhir';
import { enqueueJob } from '@tic/jobs';
import { Repository } from '@tic/store';
import { isRecoveryPlan, refKey } from '../recognise.ts';
import { planAudience } from '../delivery/audience.ts';
import type { SummarySending } from '../delivery/document-id.ts';
import { SEND_SUMMARY_JOB, sendSummaryJobKey, summaryDocumentIdentifier } from '../delivery/document-id.ts';
import { sendingRecord } from '../delivery/record.ts';
import type { SendSummaryPayload } from '../delivery/send-job.ts';

export interface SendSummaryOptions {
  /** Attempts before the sending is marked failed (default 8: about 25 minutes of back-off). */
  maxAttempts?: number;
  now?: () => Date;
}

export const NEEDS_POSTGRES = 'Sending a summary needs the PostgreSQL deployment: delivery to another server runs on the durable job queue, which the embedded database (PGlite) does not have';

function recipientOf(body: Parameters | undefined): string {
  if (body?.resourceType !== 'Parameters') throw badRequest('$send-summary takes a Parameters resource with a recipient', 'Parameters');
  const params = (body.parameter ?? []).filter((p) => p.name === 'recipient');
  if (params.length !== 1) throw badRequest('$send-summary needs exactly one recipient parameter', 'Parameters.parameter');
  const key = refKey(params[0].valueReference?.reference);
  if (!key?.startsWith('Organization/') || params[0].valueReference?.reference?.includes('://')) {
    throw badRequest('recipient must be a valueReference to an Organization on this server (Organization/{id})', 'Parameters.parameter[0].valueReference');
  }
  return key;
}

export function sendSummaryOperation(options: SendSummaryOptions = {}): FhirOperation {
  const now = options.now ?? (() => new Date());
  return {
    code: 'send-summary',
    resourceTypes: ['CarePlan'],
    instance: true,
    affectsState: true,
    async handler(req) {
      if (!req.id) throw badRequest('$send-summary runs on a CarePlan instance');
      const recipient = recipientOf(req.body as Parameters | undefined);
      const repo = req.repo;
      if (!(repo instanceof Repository) || repo.db.dialect !== 'postgres') throw unprocessable(NEEDS_POSTGRES);
      return repo.transaction(async (tx) => {
        const plan = await tx.read<CarePlan>('CarePlan', req.id!);
        if (!isRecoveryPlan(plan)) throw unprocessable('CarePlan is not a recovery plan', 'CarePlan.category');
        const at = now();
        const sys = tx.asSystem();
        const audience = await planAudience(sys, plan, at);
        if (!audience.team.includes(recipient)) throw businessRule(`${recipient} is not an organisation of the plan's care team`, 'Parameters.parameter[0].valueReference');
        if (!audience.allowed.includes(recipient)) throw forbidden(`The person's consent does not cover ${recipient}: the plan cannot be sent there`);

        const sending: SummarySending = { sourceBase: req.request.baseUrl ?? '', carePlanId: plan.id!, version: plan.meta?.versionId ?? '1', recipient, ...(req.request.organization ? { sender: req.request.organization } : {}) };
        const ident = summaryDocumentIdentifier(sending);
        // Serialise repeated requests for the same sending: one record, one pending job.
        await tx.lock(sendSummaryJobKey(sending));
        const existing = (await sys.search<Communication>('Communication', { identifier: `${ident.system}|${ident.value}`, _count: '1' }))[0];
        let record: Communication;
        if (!existing) record = await tx.create(sendingRecord(sending, plan));
        else if (existing.status === 'not-done') {
          const { statusReason: _r, ...rest } = existing;
          record = await sys.update<Communication>({ ...rest, status: 'in-progress' });
        } else record = existing;
        const payload: SendSummaryPayload = { communicationId: record.id!, canReadRestricted: req.request.canReadRestricted === true };
        await enqueueJob(tx.db, SEND_SUMMARY_JOB, payload, { jobKey: sendSummaryJobKey(sending), maxAttempts: options.maxAttempts ?? 8 });
        return record;
      });
    },
  };
}
