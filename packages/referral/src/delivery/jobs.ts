// Jobs that deliver a referral to the receiving organisation's FHIR server and bring its status
// back. They run on graphile-worker (see @tic/jobs): a failure throws and is retried with
// exponential back-off; after the last attempt the Task shows "delivery failed" and an AuditEvent
// records it. Redelivery is harmless: every entry is a conditional create.
import type { AuditEvent, Bundle, Consent, Patient, Resource, ServiceRequest, Task } from '@medplum/fhirtypes';
import { Client } from 'fhir-kit-client';
import type { JobHandler, TaskList } from '@tic/jobs';
import { enqueueJob } from '@tic/jobs';
import type { ResourceRepository } from '@tic/fhir';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import { Repository } from '@tic/store';
import type { StoredRow } from '@tic/store';
import { BUSINESS_STATUS, businessStatus, businessStatusCode } from '../codes.ts';
import { disclosedResources, keyOf } from '../disclosure.ts';
import type { ResourceKey } from '../disclosure.ts';
import { assumeConsents, coverageForTask, dbOf } from '../referral-tasks.ts';
import { coverageOf } from '../consent.ts';
import type { TaskStatus } from '../task-state.ts';
import { isReferralTask, TRANSITIONS } from '../task-state.ts';
import type { DeliveryParties } from './bundle.ts';
import { buildDeliveryBundle, sourceIdentifier } from './bundle.ts';

export const DELIVER_JOB = 'referral-deliver';
export const POLL_JOB = 'referral-poll';

export interface DeliveryTarget extends DeliveryParties {
  /** FHIR base URL of the receiving server. */
  baseUrl: string;
  /** Bearer token for the receiving server (SMART Backend Services), when it asks for one. */
  accessToken?: () => Promise<string | undefined>;
  /** Forget a cached token (called after the receiver answers 401). */
  invalidateToken?: () => void;
}

export interface DeliveryOptions {
  /** This server's FHIR base URL (source identifiers are built from it). */
  sourceBase: string;
  /** Attempts before "delivery failed" (default 8: about 25 minutes of back-off). */
  maxAttempts?: number;
  /** Interval between polls of the remote Task (default 60 s). */
  pollIntervalMs?: number;
  /** Where and as whom to deliver to an owner; undefined when it has no FHIR endpoint. */
  resolveTarget(owner: string, repo: ResourceRepository, task?: Task): Promise<DeliveryTarget | undefined>;
  now?: () => Date;
}

const FINAL: TaskStatus[] = ['completed', 'rejected', 'cancelled', 'failed', 'entered-in-error'];

async function readOrUndefined<T extends Resource>(repo: ResourceRepository, reference: string | undefined): Promise<T | undefined> {
  const k = keyOf(reference);
  if (!k) return undefined;
  try {
    return await repo.read<T>(k.type as T['resourceType'], k.id);
  } catch {
    return undefined;
  }
}

function clientFor(target: DeliveryTarget, token: string | undefined): Client {
  return new Client({ baseUrl: target.baseUrl, ...(token ? { bearerToken: token } : {}) });
}

async function setBusinessStatus(repo: ResourceRepository, task: Task, key: 'delivered' | 'deliveryFailed'): Promise<Task> {
  if (businessStatusCode(task) === BUSINESS_STATUS[key].code) return task;
  return repo.update<Task>({ ...task, businessStatus: businessStatus(key) });
}

async function auditFailure(repo: ResourceRepository, task: Task, attempts: number, reason: string, now: Date): Promise<void> {
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'RESTful Operation' },
    subtype: [{ system: 'http://hl7.org/fhir/restful-interaction', code: 'transaction', display: 'transaction' }],
    action: 'C',
    recorded: now.toISOString(),
    outcome: '8',
    outcomeDesc: `Referral delivery failed after ${attempts} attempts: ${reason}`,
    agent: [{ who: { display: 'tic-exchange referral delivery' }, requestor: false }],
    source: { observer: { display: 'tic-exchange worker' } },
    entity: [{ what: { reference: `Task/${task.id}` } }],
  };
  await repo.create(event);
}

/** What went wrong, without bodies (they may carry patient data). */
function failureReason(e: unknown): string {
  const status = (e as { response?: { status?: number } }).response?.status;
  if (status) return `HTTP ${status}`;
  const code = (e as { code?: string; cause?: { code?: string } }).code ?? (e as { cause?: { code?: string } }).cause?.code;
  return code ?? (e instanceof Error ? e.name : 'error');
}

/** Several resources by reference in one round trip where the repository allows it. */
async function readAll(repo: ResourceRepository, keys: ResourceKey[]): Promise<Map<string, Resource>> {
  const found = new Map<string, Resource>();
  const wanted = keys.filter((k, i) => keys.findIndex((x) => x.type === k.type && x.id === k.id) === i);
  if (wanted.length === 0) return found;
  const resources = repo instanceof Repository ? await repo.readMany(wanted) : (await Promise.all(wanted.map((k) => readOrUndefined(repo, `${k.type}/${k.id}`)))).filter((r): r is Resource => !!r);
  for (const r of resources) found.set(`${r.resourceType}/${r.id}`, r);
  return found;
}

/**
 * The Task, its focus and subject, and the subject's Consents, in one statement (the worker's
 * reads before sending). Undefined when that does not apply (not the PostgreSQL repository acting
 * as the server, or a Task whose focus or subject is not a plain "Type/id" reference): the caller
 * reads them one by one. Consents are the subject's whatever their status, in _lastUpdated order.
 */
async function readReferral(repo: ResourceRepository, taskId: string): Promise<{ task?: Task; row?: StoredRow; references: Map<string, Resource>; consents: Consent[] } | undefined> {
  if (!(repo instanceof Repository) || !repo.ctx.system) return undefined;
  const r = await repo.db.query<{ k: number; content: string; version_id: string | null; last_updated: string | null; owner_org: string | null }>(
    `WITH t AS (SELECT content, version_id, last_updated, owner_org FROM resource WHERE resource_type = 'Task' AND id = $1 AND NOT deleted),
     refs AS (SELECT DISTINCT x.code, x.target_type, x.target_id FROM sp_reference x
       WHERE x.resource_type = 'Task' AND x.id = $1 AND x.code IN ('subject', 'focus') AND x.target_type IS NOT NULL AND EXISTS (SELECT 1 FROM t))
     SELECT 0 AS k, t.content, t.version_id, t.last_updated, t.owner_org FROM t
     UNION ALL SELECT 1, r.content, NULL, NULL, NULL FROM (SELECT DISTINCT target_type, target_id FROM refs) f JOIN resource r ON r.resource_type = f.target_type AND r.id = f.target_id WHERE NOT r.deleted
     UNION ALL SELECT 2, r.content, NULL, NULL, NULL FROM (SELECT DISTINCT c.id FROM refs JOIN sp_reference c ON c.resource_type = 'Consent' AND c.code = 'patient' AND c.target_type = refs.target_type AND c.target_id = refs.target_id WHERE refs.code = 'subject') c
       JOIN resource r ON r.resource_type = 'Consent' AND r.id = c.id WHERE NOT r.deleted`,
    [taskId],
    { prepare: true },
  );
  const rows = r.rows.map((row) => ({ k: Number(row.k), resource: JSON.parse(row.content) as Resource }));
  const task = rows.find((row) => row.k === 0)?.resource as Task | undefined;
  const taskRow = r.rows.find((row) => Number(row.k) === 0);
  const plain = (ref: string | undefined) => ref === undefined || /^[A-Z][A-Za-z]+\/[A-Za-z0-9\-.]{1,64}$/.test(ref);
  if (task && (!plain(task.for?.reference) || !plain(task.focus?.reference))) return undefined;
  const references = new Map(rows.filter((row) => row.k === 1).map((row) => [`${row.resource.resourceType}/${row.resource.id}`, row.resource]));
  const at = (c: Resource) => c.meta?.lastUpdated ?? '';
  const consents = rows
    .filter((row) => row.k === 2)
    .map((row) => row.resource as Consent)
    .sort((a, b) => (at(a) < at(b) ? -1 : at(a) > at(b) ? 1 : a.id! < b.id! ? -1 : a.id! > b.id! ? 1 : 0));
  const row: StoredRow | undefined = taskRow ? { content: taskRow.content, version_id: taskRow.version_id!, deleted: false, last_updated: taskRow.last_updated!, owner_org: taskRow.owner_org } : undefined;
  return { ...(task ? { task } : {}), ...(row ? { row } : {}), references, consents };
}

/**
 * After the receiver accepted the Bundle: businessStatus "delivered" and, while the Task is open,
 * the next status poll, in one transaction. The Task read before sending is updated only if it is
 * still the current version (If-Match); if it changed meanwhile, it is read again and the update
 * retried, so a concurrent change is neither lost nor overwritten. `consents`: the subject's active
 * Consents read with that version, which the update's hooks may take as current (assumeConsents:
 * If-Match makes that safe); a retry looks them up again.
 */
async function recordDelivered(repo: ResourceRepository, taskId: string, task: Task, pollIntervalMs: number, read?: { consents: Consent[]; row?: StoredRow }): Promise<void> {
  let current = task;
  for (let attempt = 0; ; attempt++) {
    const run = async (tx: ResourceRepository) => {
      // The first attempt writes against what was read before sending (no second read; If-Match guards it).
      if (attempt === 0 && read && current.for?.reference) assumeConsents(tx, current.for.reference, read.consents);
      const delivered: Task = { ...current, businessStatus: businessStatus('delivered') };
      const options = { ifMatch: current.meta?.versionId, ...(attempt === 0 && read?.row ? { current: read.row } : {}) };
      if (businessStatusCode(current) !== BUSINESS_STATUS.delivered.code) await (tx instanceof Repository ? tx.update<Task>(delivered, options) : tx.update<Task>(delivered, { ifMatch: options.ifMatch }));
      if (!FINAL.includes(current.status)) await enqueueJob(dbOf(tx), POLL_JOB, { taskId }, { jobKey: `${POLL_JOB}:${taskId}`, runAt: new Date(Date.now() + pollIntervalMs) });
    };
    try {
      if (repo instanceof Repository) await repo.transaction(run);
      else await run(repo);
      return;
    } catch (e) {
      if (attempt >= 5 || !isOperationOutcomeError(e) || statusForOutcome(e) !== 412) throw e;
      const fresh = await readOrUndefined<Task>(repo, `Task/${taskId}`);
      if (!fresh) return;
      current = fresh;
    }
  }
}

export async function deliverReferral(repo: ResourceRepository, taskId: string, options: DeliveryOptions, attempt: { attempts: number; maxAttempts: number }): Promise<'sent' | 'skipped' | 'failed'> {
  const now = options.now?.() ?? new Date();
  // The Task, its focus, subject and the subject's Consents together where the repository allows.
  const read = await readReferral(repo, taskId);
  const task = read ? read.task : await readOrUndefined<Task>(repo, `Task/${taskId}`);
  if (!task || !isReferralTask(task) || task.status === 'draft' || task.status === 'entered-in-error' || !task.owner?.reference) return 'skipped';
  // Consent is checked again at send time: a revocation since enqueueing stops the delivery.
  const activeConsents = read?.consents.filter((c) => c.status === 'active').slice(0, 100);
  const coverage = read && task.for?.reference ? coverageOf(activeConsents!, task.for.reference, task.owner.reference, now, task) : await coverageForTask(repo, task, now);
  if (!coverage) return 'skipped';
  const target = await options.resolveTarget(task.owner.reference, repo, task);
  if (!target) return 'skipped';
  // The ServiceRequest, the Patient and the supporting data the Task itself names, together; then
  // whatever the ServiceRequest adds (none in the common case).
  const srKey = keyOf(task.focus?.reference);
  const patientKey = keyOf(task.for?.reference);
  const supportingOf = (sr: ServiceRequest | undefined) => disclosedResources(task, sr, coverage).filter((k) => !['Task', 'ServiceRequest', 'Patient', 'Consent'].includes(k.type));
  const wanted = [...(srKey?.type === 'ServiceRequest' ? [srKey] : []), ...(patientKey ? [patientKey] : [])];
  const loaded = read ? new Map([...read.references].filter(([k]) => wanted.some((w) => `${w.type}/${w.id}` === k))) : new Map<string, Resource>();
  for (const [k, v] of await readAll(repo, [...(read ? [] : wanted), ...supportingOf(undefined)])) loaded.set(k, v);
  const serviceRequest = srKey?.type === 'ServiceRequest' ? (loaded.get(`${srKey.type}/${srKey.id}`) as ServiceRequest | undefined) : undefined;
  const patient = patientKey ? (loaded.get(`${patientKey.type}/${patientKey.id}`) as Patient | undefined) : undefined;
  if (!patient) return 'skipped';
  const keys = supportingOf(serviceRequest);
  const more = await readAll(repo, keys.filter((k) => !loaded.has(`${k.type}/${k.id}`)));
  const supporting = keys.map((k) => loaded.get(`${k.type}/${k.id}`) ?? more.get(`${k.type}/${k.id}`)).filter((r): r is Resource => !!r);
  const bundle = buildDeliveryBundle({ task, serviceRequest, patient, consent: coverage.consent as Consent, supporting }, options.sourceBase, target);
  try {
    const token = await target.accessToken?.();
    const response = (await clientFor(target, token).transaction({ body: bundle as never })) as unknown as Bundle;
    if (response.resourceType !== 'Bundle') throw new Error('unexpected transaction response');
  } catch (e) {
    if ((e as { response?: { status?: number } }).response?.status === 401) target.invalidateToken?.();
    if (attempt.attempts >= attempt.maxAttempts) {
      // The Task's "delivery failed" and its AuditEvent together: a crash between them loses neither.
      const fail = async (r: ResourceRepository) => {
        const current = (await readOrUndefined<Task>(r, `Task/${taskId}`)) ?? task;
        await setBusinessStatus(r, current, 'deliveryFailed');
        await auditFailure(r, current, attempt.attempts, failureReason(e), now);
      };
      if (repo instanceof Repository) await repo.transaction(fail);
      else await fail(repo);
      return 'failed';
    }
    throw e;
  }
  await recordDelivered(repo, taskId, task, options.pollIntervalMs ?? 60_000, read ? { consents: activeConsents!, ...(read.row ? { row: read.row } : {}) } : undefined);
  return 'sent';
}

/** Shortest path of allowed transitions from one status to another (the local Task keeps each step in its history). */
export function transitionPath(from: TaskStatus, to: TaskStatus): TaskStatus[] | undefined {
  if (from === to) return [];
  const prev = new Map<TaskStatus, TaskStatus>();
  const queue: TaskStatus[] = [from];
  while (queue.length) {
    const s = queue.shift()!;
    for (const n of TRANSITIONS[s]) {
      if (n === from || prev.has(n)) continue;
      prev.set(n, s);
      if (n === to) {
        const path: TaskStatus[] = [n];
        let p = s;
        while (p !== from) {
          path.unshift(p);
          p = prev.get(p)!;
        }
        return path;
      }
      queue.push(n);
    }
  }
  return undefined;
}

/** Brings the remote Task's status, reason and outputs back to the local Task. */
export async function pollReferral(repo: ResourceRepository, taskId: string, options: DeliveryOptions): Promise<TaskStatus | undefined> {
  let task = await readOrUndefined<Task>(repo, `Task/${taskId}`);
  if (!task || !task.owner?.reference || FINAL.includes(task.status)) return task?.status;
  const target = await options.resolveTarget(task.owner.reference, repo, task);
  if (!target) return task.status;
  const ident = sourceIdentifier(options.sourceBase, task);
  const token = await target.accessToken?.();
  const found = (await clientFor(target, token).search({ resourceType: 'Task', searchParams: { identifier: `${ident.system}|${ident.value}` } })) as unknown as Bundle;
  const remote = found.entry?.map((e) => e.resource).find((r): r is Task => r?.resourceType === 'Task');
  if (remote && remote.status !== task.status) {
    const path = transitionPath(task.status, remote.status) ?? [];
    for (const status of path) {
      const last = status === remote.status;
      task = await repo.update<Task>({
        ...task,
        status,
        ...(last && remote.statusReason ? { statusReason: remote.statusReason } : !last && ['on-hold', 'failed', 'cancelled', 'rejected'].includes(status) ? { statusReason: { text: 'synchronised from the receiving server' } } : {}),
        ...(last && remote.output ? { output: remote.output } : {}),
      });
    }
  }
  if (!FINAL.includes(task.status)) await enqueueJob(dbOf(repo), POLL_JOB, { taskId }, { jobKey: `${POLL_JOB}:${taskId}`, runAt: new Date(Date.now() + (options.pollIntervalMs ?? 60_000)) });
  return task.status;
}

/** The worker's task list for referral delivery; `repository()` gives a system repository on the database. */
export function referralJobs(repository: () => ResourceRepository, options: DeliveryOptions): TaskList {
  const deliver: JobHandler = async (payload, helpers) => {
    const { taskId } = payload as { taskId: string };
    await deliverReferral(repository(), taskId, options, { attempts: helpers.job.attempts, maxAttempts: helpers.job.max_attempts });
  };
  const poll: JobHandler = async (payload) => {
    const { taskId } = payload as { taskId: string };
    await pollReferral(repository(), taskId, options);
  };
  return { [DELIVER_JOB]: deliver, [POLL_JOB]: poll };
}

/** Resolves targets from a static map of receiving servers (owner reference → target). */
export function staticTargets(targets: Record<string, DeliveryTarget>): DeliveryOptions['resolveTarget'] {
  return async (owner) => targets[owner];
}
