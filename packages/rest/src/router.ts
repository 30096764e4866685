// The Express FHIR router: content negotiation, body limits and parsing, then every interaction
// through handleFhirRequest. Mounted at the FHIR base (e.g. /fhir).
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import type { CapabilityStatement, Resource } from '@medplum/fhirtypes';
import type { DomainModule, FhirOperation, RequestContext } from '@tic/fhir';
import { badRequest, parseJsonBody, unsupportedMediaType } from '@tic/fhir';
import type { Db, RepositoryServices } from '@tic/store';
import { Repository } from '@tic/store';
import { handleFhirRequest } from './handler.ts';
import type { HandlerOptions } from './handler.ts';
import { createBundleProcessor } from './transaction.ts';
import { FHIR_JSON } from './errors.ts';
import type { FhirMethod, FhirRequest, FhirResponse, Interaction } from './types.ts';
import { applySummary } from './summary.ts';

export const MAX_BODY = '5mb';

export interface FhirRouterOptions {
  db: Db;
  baseUrl: string;
  modules: DomainModule[];
  services: Omit<RepositoryServices, 'modules'>;
  operations: FhirOperation[];
  capabilityStatement: () => CapabilityStatement;
  validate: HandlerOptions['validate'];
  authorize?: HandlerOptions['authorize'];
  onAccess?: HandlerOptions['onAccess'];
  auditRead?: HandlerOptions['auditRead'];
  /** The acting client, set by the auth middleware; the server itself when absent. */
  contextOf?: (req: Request) => RequestContext;
}

const jsonTypes = ['application/fhir+json', 'application/json', 'application/json+fhir'];

function mediaType(req: Request): string | undefined {
  const ct = req.headers['content-type'];
  return ct?.split(';')[0].trim().toLowerCase();
}

function queryOf(req: Request): Record<string, string[]> {
  // Null prototype: parameter names like "toString" or "__proto__" are plain keys here.
  const out: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  const qs = req.originalUrl.split('?')[1];
  if (qs) for (const [k, v] of new URLSearchParams(qs)) (Object.hasOwn(out, k) ? out[k] : (out[k] = [])).push(v);
  return out;
}

export function createFhirRouter(opts: FhirRouterOptions): Router {
  const router = express.Router();
  const services: RepositoryServices = { ...opts.services, modules: opts.modules };
  const { handlerOptions } = createBundleProcessor({
    baseUrl: opts.baseUrl,
    operations: opts.operations,
    authorize: opts.authorize,
    validate: opts.validate,
    onAccess: opts.onAccess,
    auditRead: opts.auditRead,
  });

  router.use(express.text({ type: () => true, limit: MAX_BODY }));

  router.get('/metadata', (_req, res) => {
    res.locals.route = { interaction: 'capabilities' };
    res.type(FHIR_JSON).send(JSON.stringify(opts.capabilityStatement()));
  });

  const handle = async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    try {
      const method = req.method.toUpperCase() as FhirMethod;
      const fmt = req.query._format;
      if (typeof fmt === 'string' && !/json/.test(fmt)) throw unsupportedMediaType(`_format ${fmt} is not supported; this server speaks application/fhir+json`);
      const query = queryOf(req);
      delete query._format;
      delete query._pretty;
      let body: unknown;
      const text = typeof req.body === 'string' ? req.body : '';
      const ct = mediaType(req);
      if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
        const path = req.path;
        const isSearch = method === 'POST' && /\/_search$/.test(path);
        if (isSearch && ct === 'application/x-www-form-urlencoded') {
          for (const [k, v] of new URLSearchParams(text)) (Object.hasOwn(query, k) ? query[k] : (query[k] = [])).push(v);
        } else if (text.length > 0 || !isSearch) {
          const allowed = method === 'PATCH' ? ['application/json-patch+json'] : jsonTypes;
          if (!ct) {
            if (text.length > 0 || method !== 'POST') throw unsupportedMediaType(`Content-Type is required (${allowed.join(' or ')})`);
          } else if (!allowed.includes(ct)) {
            throw unsupportedMediaType(`Content-Type ${ct} is not supported here; use ${allowed.join(' or ')}`);
          }
          if (text.length > 0) {
            body = parseJsonBody(text);
            // JSON text holds a NUL only as the escape \u0000 (JSON.parse refuses a raw one): a
            // body without that text has none, and is not walked.
            if (text.includes('\\u0000')) assertNoNul(body);
          }
          else if (method !== 'POST' || !/\/\$/.test(path)) throw badRequest('The request body is empty');
        }
      }
      const fhirReq: FhirRequest = {
        method,
        path: decodeURIComponent(req.path),
        query,
        body,
        ifMatch: req.get('if-match'),
        ifNoneExist: req.get('if-none-exist'),
        ifNoneMatch: req.get('if-none-match'),
        ifModifiedSince: req.get('if-modified-since'),
        prefer: req.get('prefer'),
        contentType: ct,
      };
      const segments = fhirReq.path.split('/').filter(Boolean);
      res.locals.route = { interaction: interactionName(method, segments), resourceType: segments[0] && /^[A-Z]/.test(segments[0]) ? segments[0] : undefined };
      const ctx = { ...(opts.contextOf?.(req) ?? { system: true }), baseUrl: opts.baseUrl, provenanceHeader: req.get('x-provenance') };
      const repo = new Repository(opts.db, ctx, services);
      const result = await handleFhirRequest(fhirReq, repo, handlerOptions);
      send(res, result, query);
    } catch (e) {
      next(e);
    }
  };

  router.all('/', handle);
  router.all('/{*rest}', handle);
  return router;
}

/** NUL cannot be stored in PostgreSQL text or jsonb, and is never valid in a FHIR string. */
function assertNoNul(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (v.includes('\u0000')) throw badRequest('The request body contains a NUL character');
    } else if (Array.isArray(v)) stack.push(...v);
    else if (v && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (k.includes('\u0000')) throw badRequest('The request body contains a NUL character');
        stack.push(item);
      }
    }
  }
}

function interactionName(method: FhirMethod, seg: string[]): Interaction | string {
  if (seg.length === 0) return method === 'POST' ? 'batch/transaction' : 'search-system';
  if (seg[0] === '_history') return 'history-system';
  if (seg.some((s) => s.startsWith('$'))) return 'operation';
  if (seg.length === 1) return ({ GET: 'search-type', POST: 'create', PUT: 'conditional-update', DELETE: 'conditional-delete', PATCH: 'patch' } as const)[method];
  if (seg[1] === '_search') return 'search-type';
  if (seg[1] === '_history') return 'history-type';
  if (seg.length === 2) return ({ GET: 'read', PUT: 'update', PATCH: 'patch', DELETE: 'delete', POST: 'create' } as const)[method];
  if (seg.length === 3) return 'history-instance';
  return 'vread';
}

function send(res: Response, result: FhirResponse, query: Record<string, string[]>): void {
  for (const [k, v] of Object.entries(result.headers)) if (v !== undefined) res.setHeader(k, v);
  res.status(result.status);
  if (result.body === undefined || result.status === 204 || result.status === 304) {
    res.end();
    return;
  }
  const body: Resource = applySummary(result.body, query);
  res.type(FHIR_JSON).send(JSON.stringify(body));
}
