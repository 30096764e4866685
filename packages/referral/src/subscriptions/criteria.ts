// R4 Subscription.criteria for this server: a search on Task ("Task?status=accepted&owner=...").
// Only search parameters that select resources are allowed; result parameters (_count, _sort,
// _include, ...) make no sense for "does this one Task match" and are refused.
import type { Subscription } from '@medplum/fhirtypes';
import { badRequest, notSupported } from '@tic/fhir';

export const SUBSCRIBABLE_TYPES = ['Task'];

const RESULT_PARAMETERS = ['_count', '_sort', '_include', '_revinclude', '_elements', '_summary', '_total', '_contained', '_containedType', '_format', '_pretty', '_page', '_cursor'];

export interface SubscriptionCriteria {
  resourceType: string;
  query: Record<string, string[]>;
}

export function parseCriteria(criteria: string | undefined): SubscriptionCriteria {
  if (!criteria || criteria.trim() === '') throw badRequest('Subscription.criteria is required', 'Subscription.criteria');
  const [type, ...rest] = criteria.trim().split('?');
  const queryString = rest.join('?');
  if (!/^[A-Z][A-Za-z]+$/.test(type)) throw badRequest('Subscription.criteria must be a search on a resource type, e.g. Task?status=accepted', 'Subscription.criteria');
  if (!SUBSCRIBABLE_TYPES.includes(type)) throw notSupported(`Subscriptions on ${type} are not supported (supported: ${SUBSCRIBABLE_TYPES.join(', ')})`);
  const query: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (const [k, v] of new URLSearchParams(queryString)) {
    const name = k.split(':')[0];
    if (RESULT_PARAMETERS.includes(name)) throw badRequest(`Subscription.criteria may not use ${name}`, 'Subscription.criteria');
    (Object.hasOwn(query, k) ? query[k] : (query[k] = [])).push(v);
  }
  return { resourceType: type, query };
}

/** The criteria's query narrowed to one resource (FHIR search semantics decide the match). */
export function matchQuery(criteria: SubscriptionCriteria, id: string): Record<string, string[]> {
  return { ...criteria.query, _id: [...(criteria.query._id ?? []), id], _count: ['1'] };
}

export function criteriaType(subscription: Subscription): string | undefined {
  const t = subscription.criteria?.trim().split('?')[0];
  return t && /^[A-Z][A-Za-z]+$/.test(t) ? t : undefined;
}
