// _summary=true|text|data|false and _elements on responses (read and search results), using the
// store's element rules (isSummary flags from the R4 definitions; SUBSETTED tag per the spec).
import type { Bundle, Resource } from '@medplum/fhirtypes';
import { applyElements, summarize } from '@tic/store';

function transform(resource: Resource, query: Record<string, string[]>): Resource {
  const elements = query._elements?.flatMap((e) => e.split(',')).map((e) => e.trim()).filter(Boolean);
  if (elements && elements.length > 0) return applyElements(resource, elements);
  const summary = query._summary?.[0];
  if (summary === 'true' || summary === 'text' || summary === 'data') return summarize(resource, summary);
  return resource;
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
