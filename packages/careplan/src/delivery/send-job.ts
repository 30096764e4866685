// The worker's half of CarePlan/$send-summary: builds the summary document as the organisation that
// asked for the sending (only what it may itself read and so disclose), checks again that the
// recipient is in the plan's care team within the person's consent, and POSTs the document Bundle to
// the recipient's FHIR base as a conditional create on Bundle.identifier (a redelivery stores
// nothing new). A failure throws and graphile-worker retries with exponential back-off; after the
// last attempt the sending's Communication is not-done and an AuditEvent records why.
import type { Bundle, CarePlan, Communication, Composition, Identifier } from '@medplum/fhirtypes';
import type { JobHandler, TaskList } from '@tic/jobs';
import type { ResourceRepository } from '@tic/fhir';
import { Repository } from '@tic/store';
import { buildSummary } from '../operations/summary.ts';
import { isRecoveryPlan } from '../recognise.ts';
import { planAudience } from './audience.ts';
import type { SummarySending } from './document-id.ts';
import { SEND_SUMMARY_JOB, summaryCompositionId } from './document-id.ts';
import { auditSending, markNotDone, markSent, sendingOf } from './record.ts';

/** Where a recipient's FHIR server is, and how to authenticate there. */
export interface SummaryTarget {
  /** FHIR base URL of the receiving server. */
  baseUrl: string;
  /** Bearer token for the receiving server (SMART Backend Services), when it asks for one. */
  accessToken?: () => Promise<string | undefined>;
  /** Forget a cached token (after the receiver answers 401). */
  invalidateToken?: () => void;
}

export interface SummaryDeliveryOptions {
  /** This server's FHIR base URL (fullUrls and document identifiers are built from it). */
  sourceBase: string;
  /** The recipient's FHIR server (directory Endpoint or configuration); undefined when it has none. */
  resolveTarget(organization: string, repo: ResourceRepository): Promise<SummaryTarget | undefined>;
  now?: () => Date;
  /** Per-request timeout (ms, default 30 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface SendSummaryPayload {
  /** The sending's Communication. */
  communicationId: string;
  /** Whether the asking client could read R/V-labelled resources (what it may disclose). */
  canReadRestricted?: boolean;
}

export type SendOutcome = 'sent' | 'refused' | 'failed' | 'skipped';

/** An HTTP failure of the receiver, without its body (it may carry patient data). */
export class DeliveryHttpError extends Error {
  readonly status: number;
  constructor(status: number) {
    super(`HTTP ${status}`);
    this.name = 'DeliveryHttpError';
    this.status = status;
  }
}

function failureReason(e: unknown): string {
  if (e instanceof DeliveryHttpError) return e.message;
  const code = (e as { code?: string }).code ?? (e as { cause?: { code?: string } }).cause?.code;
  return code ?? (e instanceof Error ? e.name : 'error');
}

/** The summary document for a sending, with its stable identifier and Composition id. */
export async function summaryDocument(senderRepo: ResourceRepository, plan: CarePlan, s: SummarySending, identifier: Identifier, now: Date): Promise<Bundle> {
  const doc = await buildSummary(senderRepo, plan, s.sourceBase, s.sender ? { reference: s.sender } : undefined, now.toISOString());
  const compositionId = summaryCompositionId(identifier);
  return {
    ...doc,
    identifier,
    entry: (doc.entry ?? []).map((e) =>
      e.resource?.resourceType === 'Composition' ? { fullUrl: `${s.sourceBase}/Composition/${compositionId}`, resource: { ...(e.resource as Composition), id: compositionId } } : e,
    ),
  };
}

/** POSTs the document as a conditional create; true when the receiver created or already had it. */
export async function postDocument(target: SummaryTarget, document: Bundle, options: Pick<SummaryDeliveryOptions, 'fetch' | 'timeoutMs'> = {}): Promise<'created' | 'existing'> {
  const ident = document.identifier!;
  const token = await target.accessToken?.();
  const res = await (options.fetch ?? fetch)(`${target.baseUrl.replace(/\/+$/, '')}/Bundle`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/fhir+json',
      Accept: 'application/fhir+json',
      'If-None-Exist': `identifier=${encodeURIComponent(ident.system ?? '')}|${encodeURIComponent(ident.value ?? '')}`,
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(document),
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  });
  await res.arrayBuffer().catch(() => undefined);
  if (res.status === 401) target.invalidateToken?.();
  if (res.status === 201) return 'created';
  if (res.status === 200) return 'existing';
  throw new DeliveryHttpError(res.status);
}

async function readOrUndefined<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch {
    return undefined;
  }
}

/**
 * One attempt at a sending. `system` is a repository acting as the server (Repository from
 * @tic/store: the document is read as the asking organisation through it).
 */
export async function deliverSummary(system: Repository, payload: SendSummaryPayload, options: SummaryDeliveryOptions, attempt: { attempts: number; maxAttempts: number }): Promise<SendOutcome> {
  const now = options.now?.() ?? new Date();
  const sys = system.asSystem();
  const record = await readOrUndefined(() => sys.read<Communication>('Communication', payload.communicationId));
  if (!record || !['in-progress', 'preparation', 'completed'].includes(record.status)) return 'skipped';
  const s = sendingOf(record, options.sourceBase);
  const identifier = record.identifier?.[0];
  if (!s || !identifier?.value) return 'skipped';
  // A sending already completed stays completed (the receiver has the document); a refused or
  // failed redelivery of it is only audited.
  const refuse = async (reason: string): Promise<SendOutcome> => {
    const current = (await readOrUndefined(() => sys.read<Communication>('Communication', record.id!))) ?? record;
    // The outcome and its AuditEvent together: a crash between them must not lose either.
    await sys.transaction(async (tx) => {
      if (current.status !== 'completed') await markNotDone(tx, current, reason);
      await auditSending(tx, current, '4', `Recovery plan summary not sent: ${reason}`, now);
    });
    return 'refused';
  };

  // The care team and consent as they are now: a withdrawal since the request stops the sending.
  const current = await readOrUndefined(() => sys.read<CarePlan>('CarePlan', s.carePlanId));
  if (!current || !isRecoveryPlan(current)) return refuse('the recovery plan is no longer available');
  const audience = await planAudience(sys, current, now);
  if (!audience.team.includes(s.recipient)) return refuse('the recipient is no longer an organisation of the plan\'s care team');
  if (!audience.allowed.includes(s.recipient)) return refuse('the person\'s consent no longer covers the recipient');

  // What the asking organisation may disclose: the document is read with its visibility.
  const senderRepo = s.sender
    ? new Repository(system.db, { organization: s.sender, canReadRestricted: payload.canReadRestricted === true, baseUrl: options.sourceBase }, system.services)
    : sys;
  const plan = await readOrUndefined(() => senderRepo.readVersion<CarePlan>('CarePlan', s.carePlanId, s.version));
  if (!plan) return refuse('the sending organisation can no longer read this version of the plan');
  const target = await options.resolveTarget(s.recipient, sys);
  if (!target) return refuse('the recipient has no active FHIR endpoint in the directory');
  const document = await summaryDocument(senderRepo, plan, s, identifier, now);
  try {
    await postDocument(target, document, options);
  } catch (e) {
    if (attempt.attempts < attempt.maxAttempts) throw e;
    const reason = `delivery failed after ${attempt.attempts} attempts: ${failureReason(e)}`;
    const latest = (await readOrUndefined(() => sys.read<Communication>('Communication', record.id!))) ?? record;
    await sys.transaction(async (tx) => {
      if (latest.status !== 'completed') await markNotDone(tx, latest, reason);
      await auditSending(tx, latest, '8', `Recovery plan summary ${reason}`, now);
    });
    return 'failed';
  }
  const latest = (await readOrUndefined(() => sys.read<Communication>('Communication', record.id!))) ?? record;
  await markSent(sys, latest, now);
  return 'sent';
}

/** The worker's task list for summary sendings; `repository()` gives a system repository on the database. */
export function summaryJobs(repository: () => Repository, options: SummaryDeliveryOptions): TaskList {
  const send: JobHandler = async (payload, helpers) => {
    await deliverSummary(repository(), payload as SendSummaryPayload, options, { attempts: helpers.job.attempts, maxAttempts: helpers.job.max_attempts });
  };
  return { [SEND_SUMMARY_JOB]: send };
}
