// What a referral discloses to its receiving organisation under a Consent. Pure.
import type { ServiceRequest, Task } from '@medplum/fhirtypes';
import type { ConsentCoverage } from './consent.ts';
import { permitsSupporting } from './consent.ts';

export interface ResourceKey {
  type: string;
  id: string;
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
 * The resources the receiver may see: the Task, its ServiceRequest, the Patient, the Consent that
 * permits it, and supporting data only as far as the Consent names it (by type or by resource).
 */
export function disclosedResources(task: Task, sr: ServiceRequest | undefined, coverage: ConsentCoverage): ResourceKey[] {
  const keys: ResourceKey[] = [];
  const add = (k: ResourceKey | undefined) => {
    if (k && !keys.some((x) => x.type === k.type && x.id === k.id)) keys.push(k);
  };
  add(task.id ? { type: 'Task', id: task.id } : undefined);
  if (task.focus?.reference && keyOf(task.focus.reference)?.type === 'ServiceRequest') add(keyOf(task.focus.reference));
  add(keyOf(task.for?.reference));
  if (coverage.consent.id) add({ type: 'Consent', id: coverage.consent.id });
  for (const ref of supportingReferences(task, sr)) {
    const k = keyOf(ref);
    if (!k || k.type === 'Consent' || k.type === 'Patient') continue;
    if (permitsSupporting(coverage, ref)) add(k);
  }
  return keys;
}
