// _summary=true|text|data|false and _elements on responses (read and search results).
import type { Bundle, Resource } from '@medplum/fhirtypes';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };
const alwaysKept = new Set(['resourceType', 'id', 'meta']);

function subset(resource: Resource, keep: (key: string) => boolean): Resource {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(resource)) if (alwaysKept.has(k) || keep(k)) out[k] = v;
  const meta = (out.meta as Resource['meta']) ?? {};
  out.meta = { ...meta, tag: [...(meta.tag ?? []), SUBSETTED] };
  return out as unknown as Resource;
}

function transform(resource: Resource, query: Record<string, string[]>): Resource {
  const elements = query._elements?.flatMap((e) => e.split(',')).map((e) => e.trim()).filter(Boolean);
  const summary = query._summary?.[0];
  if (elements && elements.length > 0) {
    const set = new Set(elements.map((e) => (e.includes('.') ? e.split('.').pop()! : e)));
    return subset(resource, (k) => set.has(k));
  }
  if (summary === 'text') return subset(resource, (k) => k === 'text');
  if (summary === 'data') return subset(resource, (k) => k !== 'text');
  if (summary === 'true') return subset(resource, (k) => k !== 'text' && k !== 'contained' && k !== 'extension' && !isLargeElement(resource.resourceType, k));
  return resource;
}

// Elements not in the summary for the resource types where that matters most (a full list would
// come from ElementDefinition.isSummary; these are the bulky ones).
function isLargeElement(type: string, key: string): boolean {
  return key === 'item' || key === 'note' || key === 'component' || key === 'contained' || (type === 'Binary' && key === 'data');
}

export function applySummary(body: Resource, query: Record<string, string[]>): Resource {
  if (!query._elements && (!query._summary || query._summary[0] === 'false' || query._summary[0] === 'count')) return body;
  if (body.resourceType === 'Bundle' && (body as Bundle).type === 'searchset') {
    const b = body as Bundle;
    return { ...b, entry: b.entry?.map((e) => (e.resource && e.search?.mode === 'match' ? { ...e, resource: transform(e.resource, query) } : e)) };
  }
  if (body.resourceType === 'Bundle' || body.resourceType === 'OperationOutcome') return body;
  return transform(body, query);
}
