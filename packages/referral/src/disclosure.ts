// What a referral discloses to its receiving organisation under the person's Consents. Pure.
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import type { ConsentSubject } from '@tic/fhir';
import type { ConsentCoverage } from './consent.ts';
import { permits } from './consent.ts';

export interface ResourceKey {
  type: string;
  id: string;
  /** When its disclosure may next change (ISO): the share row expires then. */
  until?: string;
}

export function keyOf(reference: string | undefined): ResourceKey | undefined {
  if (!reference || reference.startsWith('#') || reference.includes('?')) return undefined;
  const parts = reference.split('/');
  if (parts.length < 2) return undefined;
  const [type, id] = parts.slice(-2);
  return /^[A-Z][A-Za-z]+$/.test(type) && /^[A-Za-z0-9\-.]{1,64}$/.test(id) ? { type, id } : undefined;
}

/** References to supporting data a referral carries (reasons, supporting info, Task inputs). */
export function supportingReferences(task: Task, sr: ServiceRequest | undefined): string[] {
  const refs = [
    ...(sr?.reasonReference ?? []).map((r) => r.reference),
    ...(sr?.supportingInfo ?? []).map((r) => r.reference),
    ...(task.input ?? []).map((i) => i.valueReference?.reference),
  ];
  return [...new Set(refs.filter((r): r is string => !!r))];
}

/**
 * The resources the receiver may see: the Task, its ServiceRequest, the Patient and the Consent
 * that permits it, each unless a deny withholds it, and supporting data only as far as the
 * Consents name it (by type, profile, code, label or resource) and do not withhold it.
 */
export function disclosedResources(task: Task, sr: ServiceRequest | undefined, coverage: ConsentCoverage): ResourceKey[] {
  const keys: ResourceKey[] = [];
  const add = (k: ResourceKey | undefined, part: 'referral' | 'supporting', content?: ConsentSubject['content']) => {
    if (!k || keys.some((x) => x.type === k.type && x.id === k.id)) return;
    const p = permits(coverage, { resourceType: k.type, id: k.id, ...(content ? { content } : {}) }, part);
    if (p) keys.push({ type: k.type, id: k.id, ...(p.until ? { until: p.until } : {}) });
  };
  add(task.id ? { type: 'Task', id: task.id } : undefined, 'referral', task);
  const srKey = keyOf(task.focus?.reference);
  if (srKey?.type === 'ServiceRequest') add(srKey, 'referral', sr && sr.id === srKey.id ? sr : undefined);
  add(keyOf(task.for?.reference), 'referral');
  if (coverage.consent.id) add({ type: 'Consent', id: coverage.consent.id }, 'referral', coverage.consent);
  for (const ref of supportingReferences(task, sr)) {
    const k = keyOf(ref);
    if (!k || k.type === 'Consent' || k.type === 'Patient') continue;
    add(k, 'supporting');
  }
  return keys;
}
