// What the server accepts as an R4 Subscription, checked in the write's transaction: a rest-hook
// channel to an http(s) endpoint, a JSON payload or none, well-formed headers, criteria that are a
// valid search on a subscribable type. A client's "requested" becomes "active" once that holds; only
// the server sets "error" (after repeated notification failures).
import type { Subscription } from '@medplum/fhirtypes';
import type { WriteHookContext } from '@tic/fhir';
import { badRequest, businessRule, notSupported } from '@tic/fhir';
import { parseSearch } from '@tic/store';
import { parseCriteria } from './criteria.ts';

const FORBIDDEN_HEADERS = ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'upgrade', 'expect'];

/** The payload MIME types this server sends (none means an empty POST). */
export function payloadKind(payload: string | undefined): 'none' | 'json' {
  if (!payload || payload.trim() === '') return 'none';
  const base = payload.split(';')[0].trim().toLowerCase();
  if (base === 'application/fhir+json' || base === 'application/json') return 'json';
  throw notSupported(`Subscription.channel.payload ${payload} is not supported (application/fhir+json, or none)`);
}

/** channel.header entries as name/value pairs ("Authorization: Bearer x"). */
export function parseHeaders(headers: string[] | undefined): Array<[string, string]> {
  return (headers ?? []).map((h) => {
    const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+):[ \t]*([^\r\n]*)$/.exec(h);
    if (!m) throw badRequest('Subscription.channel.header entries must be "Name: value"', 'Subscription.channel.header');
    if (FORBIDDEN_HEADERS.includes(m[1].toLowerCase())) throw badRequest(`Subscription.channel.header may not set ${m[1]}`, 'Subscription.channel.header');
    return [m[1], m[2]];
  });
}

export function checkEndpoint(endpoint: string | undefined): URL {
  let url: URL;
  try {
    url = new URL(endpoint ?? '');
  } catch {
    throw badRequest('Subscription.channel.endpoint must be an absolute http(s) URL', 'Subscription.channel.endpoint');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw badRequest('Subscription.channel.endpoint must be an absolute http(s) URL', 'Subscription.channel.endpoint');
  if (url.username || url.password) throw badRequest('Subscription.channel.endpoint may not carry credentials (use channel.header)', 'Subscription.channel.endpoint');
  return url;
}

export interface SubscriptionSupport {
  /** False on servers without the job worker (embedded PGlite): Subscriptions are refused. */
  enabled: boolean;
  now: () => Date;
}

/** beforeWrite for Subscription: refuses what the server cannot honour, activates what it can. */
export function checkSubscription(subscription: Subscription, ctx: WriteHookContext, support: SubscriptionSupport): Subscription {
  if (ctx.request.system) return subscription; // the server's own bookkeeping (status error)
  if (!support.enabled) throw businessRule('This server runs without its job worker (embedded mode): Subscriptions are not supported; run it on PostgreSQL');
  if (subscription.channel?.type !== 'rest-hook') throw notSupported('Only rest-hook Subscriptions are supported');
  checkEndpoint(subscription.channel.endpoint);
  payloadKind(subscription.channel.payload);
  parseHeaders(subscription.channel.header);
  const criteria = parseCriteria(subscription.criteria);
  // Parsed with strict handling: an unknown parameter or bad value answers 400 here. (Searches are
  // lenient by default and would drop it, silently widening what the Subscription matches.)
  parseSearch(criteria.resourceType, criteria.query, true);
  const previous = ctx.previous as Subscription | undefined;
  if (subscription.status === 'error' && previous?.status !== 'error') throw businessRule('Only the server sets a Subscription to error', 'Subscription.status');
  const ended = subscription.end !== undefined && Date.parse(subscription.end) <= support.now().getTime();
  if (subscription.status === 'requested' || subscription.status === 'active') {
    const { error: _error, ...rest } = subscription;
    return { ...rest, status: ended ? 'off' : 'active' };
  }
  return subscription;
}
