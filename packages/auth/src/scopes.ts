// SMART App Launch scopes (v2 `cruds` form, with the v1 `read`/`write`/`*` forms mapped) and the
// checks the REST layer makes with them. Backend Services clients hold `system/` scopes; `user/`
// scopes (from an external identity provider) are honoured the same way; `patient/` scopes never
// grant access here because this server has no patient launch context.
import type { RequestContext } from '@tic/fhir';
import { forbidden } from '@tic/fhir';

export type ScopeInteraction = 'create' | 'read' | 'update' | 'delete' | 'search';
export type ScopeContext = 'system' | 'user' | 'patient';

export interface ResourceScope {
  raw: string;
  context: ScopeContext;
  /** A resource type, or '*'. */
  resourceType: string;
  permissions: ReadonlySet<ScopeInteraction>;
  /** Query constraint (`?category=...`), if any. Constrained scopes never grant in isAllowed. */
  query?: string;
}

const letters: Record<string, ScopeInteraction> = { c: 'create', r: 'read', u: 'update', d: 'delete', s: 'search' };
const order = 'cruds';

/** Resource types whose access must be named explicitly: a `*` scope does not cover them. */
export const EXPLICIT_SCOPE_TYPES: ReadonlySet<string> = new Set(['AuditEvent']);

const scopePattern = /^(system|user|patient)\/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)(\?.+)?$/;

function permissionsOf(text: string): Set<ScopeInteraction> | undefined {
  if (text === 'read') return new Set(['read', 'search']);
  if (text === 'write') return new Set(['create', 'update', 'delete']);
  if (text === '*') return new Set(['create', 'read', 'update', 'delete', 'search']);
  // v2: letters from "cruds", each at most once, in that order.
  let last = -1;
  const out = new Set<ScopeInteraction>();
  for (const ch of text) {
    const i = order.indexOf(ch);
    if (i <= last) return undefined;
    last = i;
    out.add(letters[ch]);
  }
  return out.size ? out : undefined;
}

/** Parses one resource scope; undefined for anything else (openid, launch, malformed text). */
export function parseScope(raw: string): ResourceScope | undefined {
  const m = scopePattern.exec(raw);
  if (!m) return undefined;
  const permissions = permissionsOf(m[3]);
  if (!permissions) return undefined;
  // v1 forms cannot carry a query constraint.
  if (m[4] && !/^[cruds]+$/.test(m[3])) return undefined;
  const scope: ResourceScope = { raw, context: m[1] as ScopeContext, resourceType: m[2], permissions };
  if (m[4]) scope.query = m[4].slice(1);
  return scope;
}

/** Splits a space-separated scope string (or takes a list) and parses the resource scopes in it. */
export function parseScopes(scopes: string | readonly string[] | undefined): ResourceScope[] {
  if (!scopes) return [];
  const list = typeof scopes === 'string' ? scopes.split(/\s+/) : scopes;
  const out: ResourceScope[] = [];
  for (const s of list) {
    if (!s) continue;
    const p = parseScope(s);
    if (p) out.push(p);
  }
  return out;
}

/** True if the text is a resource scope this server understands. */
export function isValidScope(raw: string): boolean {
  return parseScope(raw) !== undefined;
}

function covers(scope: ResourceScope, resourceType: string): boolean {
  if (scope.resourceType === resourceType) return true;
  return scope.resourceType === '*' && !EXPLICIT_SCOPE_TYPES.has(resourceType);
}

type ScopeInput = string | readonly string[] | readonly ResourceScope[] | undefined;

function toParsed(scopes: ScopeInput): ResourceScope[] {
  if (!scopes) return [];
  if (typeof scopes === 'string') return parseScopes(scopes);
  if (scopes.length && typeof scopes[0] !== 'string') return scopes as ResourceScope[];
  return parseScopes(scopes as readonly string[]);
}

/**
 * May the holder of these scopes perform the interaction on the resource type? Query-constrained
 * scopes are treated conservatively: they never grant (the caller cannot prove the constraint
 * holds here). AuditEvent is readable only with a scope that names it, and never writable by clients.
 */
export function isAllowed(scopes: ScopeInput, resourceType: string, interaction: ScopeInteraction): boolean {
  if (resourceType === 'AuditEvent' && interaction !== 'read' && interaction !== 'search') return false;
  return toParsed(scopes).some(
    (s) => s.context !== 'patient' && s.query === undefined && covers(s, resourceType) && s.permissions.has(interaction),
  );
}

/** FHIR interactions mapped onto the five scope permissions. */
export function scopeInteractionFor(
  interaction: 'create' | 'read' | 'vread' | 'update' | 'patch' | 'delete' | 'search' | 'search-type' | 'history' | 'history-instance' | 'history-type' | 'operation',
): ScopeInteraction {
  switch (interaction) {
    case 'create':
      return 'create';
    case 'read':
    case 'vread':
    case 'history':
    case 'history-instance':
      return 'read';
    case 'update':
    case 'patch':
      return 'update';
    case 'delete':
      return 'delete';
    case 'search':
    case 'search-type':
    case 'history-type':
    case 'operation':
      return 'search';
  }
}

/** Throws 403 unless the request may do this. Internal (system) writes always may. */
export function requireScope(ctx: RequestContext | undefined, resourceType: string, interaction: ScopeInteraction): void {
  if (ctx?.system) return;
  if (!isAllowed(ctx?.scopes, resourceType, interaction)) {
    throw forbidden(`The access token's scopes do not permit ${interaction} on ${resourceType}`);
  }
}

/** Is the requested scope within what one of the registered scopes allows? */
function withinRegistered(req: ResourceScope, registered: readonly ResourceScope[]): boolean {
  return registered.some((r) => {
    if (r.context !== req.context) return false;
    if (r.query !== undefined && r.query !== req.query) return false;
    if (r.resourceType !== req.resourceType && !(r.resourceType === '*' && !EXPLICIT_SCOPE_TYPES.has(req.resourceType))) return false;
    for (const p of req.permissions) if (!r.permissions.has(p)) return false;
    return true;
  });
}

/**
 * The scopes granted for a token request: each requested scope that some registered scope covers
 * (so a client registered for `system/*.cruds` may ask for `system/Task.rs`). Unknown or malformed
 * requested scopes are dropped. Order and spelling of the request are kept.
 */
export function grantScopes(requested: string, registered: readonly string[]): string[] {
  const reg = parseScopes(registered);
  const out: string[] = [];
  for (const raw of requested.split(/\s+/)) {
    if (!raw || out.includes(raw)) continue;
    const p = parseScope(raw);
    if (p && withinRegistered(p, reg)) out.push(raw);
  }
  return out;
}

/** Shorthand used in error messages and the smart-configuration document. */
export function scopeLetters(scope: ResourceScope): string {
  return [...order].filter((c) => scope.permissions.has(letters[c])).join('');
}
