// _summary and _elements applied to an output resource (https://hl7.org/fhir/R4/search.html#summary,
// #elements). The REST layer calls these on each entry; a reduced resource is marked SUBSETTED.
import { getDataType } from '@medplum/core';
import type { Coding, Resource } from '@medplum/fhirtypes';
import { loadDefinitions } from '@tic/fhir';

export const SUBSETTED: Coding = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED', display: 'subsetted' };

/** Elements always kept: the spec requires id and meta; resourceType makes it a resource. */
const ALWAYS = new Set(['resourceType', 'id', 'meta']);

function markSubsetted<T extends Resource>(resource: T): T {
  const tags = resource.meta?.tag ?? [];
  if (tags.some((t) => t.system === SUBSETTED.system && t.code === SUBSETTED.code)) return resource;
  return { ...resource, meta: { ...resource.meta, tag: [...tags, SUBSETTED] } };
}

/** The element name a JSON key belongs to: "valueQuantity" → "value" when value[x] is an element. */
function elementOf(key: string, names: Set<string>): string {
  const plain = key.startsWith('_') ? key.slice(1) : key;
  if (names.has(plain)) return plain;
  for (let i = plain.length - 1; i > 0; i--) {
    if (plain[i] >= 'A' && plain[i] <= 'Z' && names.has(plain.slice(0, i))) return plain.slice(0, i);
  }
  return plain;
}

function pick<T extends Resource>(resource: T, keep: (element: string) => boolean): T {
  const out: Record<string, unknown> = {};
  let dropped = false;
  for (const [k, v] of Object.entries(resource)) {
    if (ALWAYS.has(k) || keep(k)) out[k] = v;
    else dropped = true;
  }
  return dropped ? markSubsetted(out as T) : (out as T);
}

/**
 * `_elements=a,b` (or `Type.a`): keeps only the listed top-level elements plus id and meta, and
 * marks the result SUBSETTED. Choice elements match by base name ("value" keeps valueQuantity).
 */
export function applyElements<T extends Resource>(resource: T, elements: string[]): T {
  const names = new Set<string>();
  for (const e of elements) {
    const dot = e.indexOf('.');
    if (dot < 0) names.add(e);
    else if (e.slice(0, dot) === resource.resourceType) names.add(e.slice(dot + 1));
  }
  return pick(resource, (k) => names.has(elementOf(k, names)));
}

function summaryElements(type: string): Set<string> {
  loadDefinitions();
  try {
    return getDataType(type).summaryProperties ?? new Set();
  } catch {
    return new Set();
  }
}

/**
 * `_summary`: 'true' keeps the elements marked isSummary; 'text' keeps text, id, meta and
 * mandatory top-level elements; 'data' removes text; 'false' returns the resource unchanged.
 */
export function summarize<T extends Resource>(resource: T, mode: 'true' | 'text' | 'data' | 'false'): T {
  if (mode === 'false') return resource;
  if (mode === 'data') return pick(resource, (k) => k !== 'text');
  if (mode === 'text') {
    loadDefinitions();
    let mandatory = new Set<string>();
    try {
      const schema = getDataType(resource.resourceType);
      mandatory = new Set(Object.entries(schema.elements).filter(([, e]) => e.min > 0).map(([n]) => n.replace('[x]', '')));
    } catch {
      // Unknown type: keep only text, id and meta.
    }
    return pick(resource, (k) => k === 'text' || mandatory.has(elementOf(k, mandatory)));
  }
  const names = summaryElements(resource.resourceType);
  return pick(resource, (k) => names.has(elementOf(k, names)));
}
