// A minimal snapshot generator for constraint profiles written as a differential only, so that
// reviewed source in fhir-profiles/ need not carry generated snapshots. It covers what simple
// profiles do to existing elements: tighten min/max, bind a value set, fix or pattern a value,
// restrict types, add invariants. Slices and constraints on elements inside datatypes (e.g.
// Patient.name.family) need a snapshot produced by the IG Publisher or SUSHI.
import type { ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';

const MERGED_KEYS = ['short', 'definition', 'comment', 'min', 'max', 'type', 'binding', 'mustSupport', 'isModifier', 'isSummary', 'maxLength', 'minValue', 'maxValue'] as const;

export class SnapshotError extends Error {}

/**
 * The profile with a snapshot: itself when it already has one, else one generated from its
 * base (resolved with `resolveBase`) and its differential.
 */
export function withSnapshot(profile: StructureDefinition, resolveBase: (url: string) => StructureDefinition | undefined): StructureDefinition {
  if (profile.snapshot?.element?.length) return profile;
  const baseUrl = profile.baseDefinition;
  if (!baseUrl) throw new SnapshotError(`Profile ${profile.url ?? ''} has neither snapshot nor baseDefinition`);
  const base = resolveBase(baseUrl);
  if (!base) throw new SnapshotError(`Base definition ${baseUrl} of profile ${profile.url ?? ''} is not known`);
  const baseWithSnapshot = withSnapshot(base, resolveBase);
  const elements: ElementDefinition[] = structuredClone(baseWithSnapshot.snapshot?.element ?? []);
  const byId = new Map<string, ElementDefinition>();
  for (const el of elements) byId.set(el.id ?? el.path, el);

  for (const diff of profile.differential?.element ?? []) {
    const key = diff.id ?? diff.path;
    const target = byId.get(key) ?? (diff.id ? undefined : byId.get(diff.path));
    if (!target) {
      throw new SnapshotError(`Differential element ${key} of profile ${profile.url ?? ''} needs a generated snapshot (slices and datatype children are not supported)`);
    }
    mergeElement(target, diff);
  }
  return { ...profile, snapshot: { element: elements } };
}

function mergeElement(target: ElementDefinition, diff: ElementDefinition): void {
  const t = target as unknown as Record<string, unknown>;
  const d = diff as unknown as Record<string, unknown>;
  for (const k of MERGED_KEYS) if (d[k] !== undefined) t[k] = structuredClone(d[k]);
  for (const k of Object.keys(d)) {
    if (k.startsWith('fixed') || k.startsWith('pattern')) t[k] = structuredClone(d[k]);
  }
  if (diff.constraint?.length) {
    const existing = target.constraint ?? [];
    const keys = new Set(existing.map((c) => c.key));
    target.constraint = [...existing, ...diff.constraint.filter((c) => !keys.has(c.key))];
  }
}
