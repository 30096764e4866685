// Executes one FHIR interaction against a repository. Used for plain HTTP requests and for every
// entry of a batch or transaction Bundle, so both obey exactly the same rules.
import type { Bundle, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { FhirOperation, RequestContext } from '@tic/fhir';
import { allOk, badRequest, isKnownResourceType, methodNotAllowed, multipleMatches, notFound, outcome, preconditionFailed } from '@tic/fhir';
import type { Repository, SearchResult } from '@tic/store';
import { applyJsonPatch } from './patch.ts';
import { parseETag, returnPreference, strictHandling, versionHeaders } from './headers.ts';
import { historyBundle, searchBundle } from './bundles.ts';
import type { FhirRequest, FhirResponse, Interaction } from './types.ts';

export interface HandlerOptions {
  baseUrl: string;
  operations: FhirOperation[];
  /** Throws (403) when the context may not perform the interaction on the type. */
  authorize?: (ctx: RequestContext, resourceType: string, interaction: Interaction) => void;
  /** Validates without storing ($validate). */
  validate: (resource: Resource) => OperationOutcome;
  /** Runs a whole Bundle (batch/transaction); supplied by bundle.ts to avoid a cycle. */
  bundle?: (bundle: Bundle, repo: Repository) => Promise<Bundle>;
  /**
   * The audit record of a read by id for this repository's client (undefined: not audited). When
   * given, the read and its audit row are one statement (Repository.readAudited) and onAccess is
   * not called for it.
   */
  auditRead?: (repo: Repository, resourceType: string, id: string) => { ownerOrg: string | null; record: object; commit?: 'relaxed' } | undefined;
  /** Called with each successful read/search (audit of reads). */
  onAccess?: (repo: Repository, interaction: Interaction, resourceType: string | undefined, resources: Resource[], parameterNames?: string[]) => Promise<void>;
}

const idPattern = /^[A-Za-z0-9\-.]{1,64}$/;

function checkType(type: string): void {
  if (!isKnownResourceType(type)) throw notFound(`Unknown resource type "${type}"`);
}

function checkId(id: string): void {
  // "." and ".." match the FHIR id pattern but are path segments to every URL resolver.
  if (!idPattern.test(id) || /^\.+$/.test(id)) throw badRequest('Invalid resource id (FHIR ids are 1-64 of A-Z a-z 0-9 - .)');
}

function asResource(body: unknown, path: string): Resource {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('The request body must be a FHIR resource');
  const r = body as Resource;
  if (typeof r.resourceType !== 'string') throw badRequest('The resource has no resourceType', path);
  return r;
}

function respond(status: number, resource: Resource, req: FhirRequest, baseUrl: string, withLocation: boolean, informational?: string): FhirResponse {
  const headers = versionHeaders(resource, baseUrl, withLocation);
  switch (returnPreference(req.prefer)) {
    case 'minimal':
      return { status, headers };
    case 'OperationOutcome':
      return { status, headers, body: allOk(informational ?? 'OK') };
    default:
      return { status, headers, body: resource };
  }
}

function findOperation(ops: FhirOperation[], code: string, level: 'system' | 'type' | 'instance', type?: string): FhirOperation {
  const op = ops.find((o) => o.code === code && (level === 'system' ? o.system : (o.resourceTypes.includes(type!) || o.resourceTypes.includes('*')) && (level === 'type' ? o.type : o.instance)));
  if (!op) throw notFound(`Operation $${code} is not supported${type ? ` on ${type}` : ''} at ${level} level`);
  return op;
}

export async function handleFhirRequest(req: FhirRequest, repo: Repository, opts: HandlerOptions): Promise<FhirResponse> {
  const parts = req.path.split('/').filter(Boolean);
  const ctx = repo.ctx;
  const authorize = (type: string, interaction: Interaction) => opts.authorize?.(ctx, type, interaction);
  const [type, id, third, vid] = parts;

  // System level
  if (parts.length === 0) {
    if (req.method === 'POST') {
      const bundle = asResource(req.body, 'Bundle') as Bundle;
      if (bundle.resourceType !== 'Bundle') throw badRequest('POST to the base needs a batch or transaction Bundle', 'Bundle.type');
      if (!opts.bundle) throw badRequest('Bundles are not supported here');
      return { status: 200, headers: {}, body: await opts.bundle(bundle, repo) };
    }
    if (req.method === 'GET') {
      const types = req.query._type?.flatMap((t) => t.split(',')) ?? [];
      if (types.length !== 1) throw badRequest('System-level search needs exactly one type in _type');
      checkType(types[0]);
      authorize(types[0], 'search-system');
      const { _type: _, ...rest } = req.query;
      void _;
      const result = permittedIncludes(await repo.searchPage(types[0], rest), authorize);
      await opts.onAccess?.(repo, 'search-system', types[0], result.entries.map((e) => e.resource), Object.keys(rest));
      return { status: 200, headers: {}, body: searchBundle(result, opts.baseUrl, types[0], 'search') };
    }
    throw methodNotAllowed(`${req.method} is not allowed on the base`);
  }
  if (type === '_history' && parts.length === 1) {
    if (req.method !== 'GET') throw methodNotAllowed('History is read-only');
    authorize('*', 'history-system');
    const permitted = (t: string): boolean => {
      try {
        authorize(t, 'history-type');
        return true;
      } catch {
        return false;
      }
    };
    return audited(repo, opts, 'history-system', undefined, await historyBundle(repo, undefined, undefined, req.query, opts.baseUrl, permitted));
  }
  if (type.startsWith('$')) {
    const op = findOperation(opts.operations, type.slice(1), 'system');
    return runOperation(op, req, repo);
  }

  checkType(type);

  // Type level
  if (parts.length === 1) {
    switch (req.method) {
      case 'GET': {
        authorize(type, 'search-type');
        const result = permittedIncludes(await repo.searchPage(type, req.query), authorize);
        if (strictHandling(req.prefer) && result.warnings.length > 0) throw badRequest(result.warnings.join('; '));
        await opts.onAccess?.(repo, 'search-type', type, result.entries.map((e) => e.resource), Object.keys(req.query));
        return { status: 200, headers: {}, body: searchBundle(result, opts.baseUrl, type, 'search') };
      }
      case 'POST': {
        const resource = asResource(req.body, type);
        if (resource.resourceType !== type) throw badRequest(`Resource type ${resource.resourceType} does not match the URL (${type})`, `${resource.resourceType}`);
        authorize(type, 'create');
        const { id: _ignored, ...withoutId } = resource;
        void _ignored;
        if (req.ifNoneExist) {
          const r = await repo.conditionalCreate(withoutId as Resource, req.ifNoneExist);
          return respond(r.created ? 201 : 200, r.resource, req, opts.baseUrl, r.created);
        }
        const created = await repo.create(withoutId as Resource);
        return respond(201, created, req, opts.baseUrl, true, 'Created');
      }
      case 'PUT': {
        // Conditional update
        const resource = asResource(req.body, type);
        if (resource.resourceType !== type) throw badRequest(`Resource type ${resource.resourceType} does not match the URL (${type})`);
        authorize(type, 'update');
        const qs = toQueryString(req.query);
        return repo.transaction(async (tx) => {
          // Serialise conditional writes with the same criteria, so racing requests create one resource.
          if (tx.db.dialect === 'postgres') await tx.db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`create:${type}?${qs}`]);
          const matches = await tx.searchByQueryString(type, qs, 2);
          if (matches.length > 1) throw multipleMatches(`Conditional update matched ${matches.length} resources`);
          if (matches.length === 0) {
            if (resource.id) checkId(resource.id);
            const created = resource.id ? (await tx.updateWithOutcome(resource)).resource : await tx.create(resource);
            return respond(201, created, req, opts.baseUrl, true);
          }
          if (resource.id && resource.id !== matches[0].id) throw badRequest('The resource id does not match the resource found by the conditional update', `${type}.id`);
          const updated = await tx.update({ ...resource, id: matches[0].id }, { ifMatch: parseETag(req.ifMatch), clientIfMatch: parseETag(req.ifMatch) ?? null });
          return respond(200, updated, req, opts.baseUrl, false);
        });
      }
      case 'DELETE': {
        authorize(type, 'delete');
        const qs = toQueryString(req.query);
        return repo.transaction(async (tx) => {
          const matches = await tx.searchByQueryString(type, qs, 2);
          if (matches.length > 1) throw multipleMatches(`Conditional delete matched ${matches.length} resources`);
          if (matches.length === 1) await tx.delete(type, matches[0].id!);
          return { status: 204, headers: {} };
        });
      }
      default:
        throw methodNotAllowed(`${req.method} is not allowed on ${type}`);
    }
  }

  if (id === '_history' && parts.length === 2) {
    if (req.method !== 'GET') throw methodNotAllowed('History is read-only');
    authorize(type, 'history-type');
    return audited(repo, opts, 'history-type', type, await historyBundle(repo, type, undefined, req.query, opts.baseUrl));
  }
  if (id === '_search' && parts.length === 2) {
    if (req.method !== 'POST') throw methodNotAllowed('_search takes POST');
    authorize(type, 'search-type');
    const result = permittedIncludes(await repo.searchPage(type, req.query), authorize);
    if (strictHandling(req.prefer) && result.warnings.length > 0) throw badRequest(result.warnings.join('; '));
    await opts.onAccess?.(repo, 'search-type', type, result.entries.map((e) => e.resource), Object.keys(req.query));
    return { status: 200, headers: {}, body: searchBundle(result, opts.baseUrl, type, 'search') };
  }
  if (id.startsWith('$') && parts.length === 2) {
    return runOperation(findOperation(opts.operations, id.slice(1), 'type', type), req, repo);
  }

  checkId(id);

  // Instance level
  if (parts.length === 2) {
    switch (req.method) {
      case 'GET': {
        authorize(type, 'read');
        const audit = opts.auditRead?.(repo, type, id);
        const resource = audit ? await repo.readAudited(type, id, audit) : await repo.read(type, id);
        if (!audit) await opts.onAccess?.(repo, 'read', type, [resource]);
        const vidNow = resource.meta?.versionId;
        if (req.ifNoneMatch && vidNow && parseETag(req.ifNoneMatch) === vidNow) return { status: 304, headers: versionHeaders(resource, opts.baseUrl, false) };
        if (req.ifModifiedSince && resource.meta?.lastUpdated && new Date(resource.meta.lastUpdated) <= new Date(req.ifModifiedSince)) {
          return { status: 304, headers: versionHeaders(resource, opts.baseUrl, false) };
        }
        return { status: 200, headers: versionHeaders(resource, opts.baseUrl, false), body: resource };
      }
      case 'PUT': {
        const resource = asResource(req.body, type);
        if (resource.resourceType !== type) throw badRequest(`Resource type ${resource.resourceType} does not match the URL (${type})`);
        if (resource.id === undefined) throw badRequest('The resource in a PUT must carry its id', `${type}.id`);
        if (resource.id !== id) throw badRequest(`The resource id (${resource.id}) does not match the URL (${id})`, `${type}.id`);
        authorize(type, 'update');
        const r = await repo.updateWithOutcome(resource, { ifMatch: parseETag(req.ifMatch), clientIfMatch: parseETag(req.ifMatch) ?? null });
        return respond(r.created ? 201 : 200, r.resource, req, opts.baseUrl, r.created);
      }
      case 'PATCH': {
        authorize(type, 'patch');
        const ct = req.contentType ?? '';
        if (!ct.includes('json-patch+json')) throw badRequest('PATCH supports application/json-patch+json');
        return repo.transaction(async (tx) => {
          const current = await tx.read(type, id);
          const ifMatch = parseETag(req.ifMatch);
          if (ifMatch !== undefined && ifMatch !== current.meta?.versionId) throw preconditionFailed(`Version conflict: If-Match ${ifMatch} but current version is ${current.meta?.versionId}`);
          const patched = applyJsonPatch(current, req.body);
          if (patched.resourceType !== type || patched.id !== id) throw badRequest('A patch may not change resourceType or id');
          const updated = await tx.update(patched, { ifMatch: current.meta?.versionId, clientIfMatch: ifMatch ?? null });
          return respond(200, updated, req, opts.baseUrl, false);
        });
      }
      case 'DELETE': {
        authorize(type, 'delete');
        await repo.delete(type, id, { ifMatch: parseETag(req.ifMatch) });
        return { status: 204, headers: {} };
      }
      default:
        throw methodNotAllowed(`${req.method} is not allowed on ${type}/${id}`);
    }
  }

  if (third === '_history') {
    if (req.method !== 'GET') throw methodNotAllowed('History is read-only');
    if (parts.length === 3) {
      authorize(type, 'history-instance');
      // A resource hidden from this client has no visible history either.
      const visible = await repo.readRow(type, id);
      if (!visible) throw notFound(`${type}/${id} not found`);
      return audited(repo, opts, 'history-instance', type, await historyBundle(repo, type, id, req.query, opts.baseUrl));
    }
    if (parts.length === 4) {
      authorize(type, 'vread');
      // A resource hidden from this client now (another organisation's, or labelled R/V since) has
      // no visible versions either.
      if (!(await repo.readRow(type, id))) throw notFound(`${type}/${id} not found`);
      const resource = await repo.readVersion(type, id, vid);
      await opts.onAccess?.(repo, 'vread', type, [resource]);
      return { status: 200, headers: versionHeaders(resource, opts.baseUrl, false), body: resource };
    }
  }
  if (third?.startsWith('$') && parts.length === 3) {
    return runOperation(findOperation(opts.operations, third.slice(1), 'instance', type), { ...req }, repo, id);
  }
  throw notFound(`No route for ${req.method} ${req.path}`);
}

async function runOperation(op: FhirOperation, req: FhirRequest, repo: Repository, id?: string): Promise<FhirResponse> {
  if (req.method === 'GET' && op.affectsState) throw methodNotAllowed(`$${op.code} changes state and needs POST`);
  if (req.method !== 'GET' && req.method !== 'POST') throw methodNotAllowed(`$${op.code} takes GET or POST`);
  const parts = req.path.split('/').filter(Boolean);
  const resourceType = parts[0]?.startsWith('$') ? undefined : parts[0];
  const body = req.method === 'POST' && req.body !== undefined ? asResource(req.body, 'Parameters') : undefined;
  const result = await op.handler({ resourceType, id, method: req.method, body, query: req.query, repo, request: repo.ctx });
  return { status: 200, headers: {}, body: result };
}

/** History is a read of data: audited like one, with the versions it returned. */
async function audited(repo: Repository, opts: HandlerOptions, interaction: Interaction, type: string | undefined, bundle: Bundle): Promise<FhirResponse> {
  const resources = (bundle.entry ?? []).flatMap((e) => (e.resource ? [e.resource] : []));
  await opts.onAccess?.(repo, interaction, type, resources);
  return { status: 200, headers: {}, body: bundle };
}

/**
 * Drops _include/_revinclude results of types the client's scopes do not let it search: an include
 * must not reach what a search of that type would refuse (e.g. AuditEvent, or types outside a
 * narrow scope).
 */
function permittedIncludes(result: SearchResult, authorize: (type: string, interaction: Interaction) => void): SearchResult {
  const allowed = new Map<string, boolean>();
  const ok = (type: string): boolean => {
    let v = allowed.get(type);
    if (v === undefined) {
      try {
        authorize(type, 'search-type');
        v = true;
      } catch {
        v = false;
      }
      allowed.set(type, v);
    }
    return v;
  };
  const entries = result.entries.filter((e) => e.mode === 'match' || ok(e.resource.resourceType));
  return entries.length === result.entries.length ? result : { ...result, entries };
}

export function operationOutcomeBody(code: 'informational', message: string): OperationOutcome {
  return outcome(code, message, undefined, 'information');
}

function toQueryString(query: Record<string, string[]>): string {
  const pairs: Array<[string, string]> = Object.entries(query).flatMap(([k, vs]) => vs.map((v): [string, string] => [k, v]));
  return new URLSearchParams(pairs).toString();
}
