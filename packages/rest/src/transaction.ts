// batch and transaction Bundles. A transaction is one database transaction: urn:uuid and
// conditional references are resolved first, entries run in the spec's order (DELETE, POST,
// PUT/PATCH, GET), and any failing entry fails the whole Bundle with that entry's error.
import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, Resource } from '@medplum/fhirtypes';
import { badRequest, parseJsonBody, isKnownResourceType, isOperationOutcomeError, issuesError, multipleMatches, notFound, OperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { Repository } from '@tic/store';
import { handleFhirRequest } from './handler.ts';
import type { HandlerOptions } from './handler.ts';
import type { FhirMethod, FhirRequest, FhirResponse } from './types.ts';

const order: Record<FhirMethod, number> = { DELETE: 0, POST: 1, PUT: 2, PATCH: 2, GET: 3 };
const statusText: Record<number, string> = { 200: 'OK', 201: 'Created', 204: 'No Content', 304: 'Not Modified' };
export const MAX_BUNDLE_ENTRIES = 1000;

function entryRequest(entry: BundleEntry, index: number): FhirRequest {
  const r = entry.request;
  if (!r?.method || !r.url) throw badRequest(`Bundle entry ${index} needs request.method and request.url`, `Bundle.entry[${index}].request`);
  const method = r.method.toUpperCase() as FhirMethod;
  if (!(method in order)) throw badRequest(`Unsupported method ${r.method} in entry ${index}`, `Bundle.entry[${index}].request.method`);
  const [path, qs] = r.url.replace(/^\//, '').split('?', 2);
  const query: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (const [k, v] of new URLSearchParams(qs ?? '')) (Object.hasOwn(query, k) ? query[k] : (query[k] = [])).push(v);
  let body: unknown = entry.resource;
  if (method === 'PATCH' && entry.resource?.resourceType === 'Binary') {
    const data = (entry.resource as { data?: string }).data;
    if (typeof data !== 'string' || !data) throw badRequest(`Bundle entry ${index} PATCH needs a Binary with the JSON Patch in data`, `Bundle.entry[${index}].resource`);
    body = parseJsonBody(Buffer.from(data, 'base64').toString('utf8'));
  }
  return {
    method,
    path,
    query,
    body,
    ifMatch: r.ifMatch,
    ifNoneExist: r.ifNoneExist,
    ifNoneMatch: r.ifNoneMatch,
    ifModifiedSince: r.ifModifiedSince,
    contentType: method === 'PATCH' ? 'application/json-patch+json' : 'application/fhir+json',
  };
}

function responseEntry(res: FhirResponse): BundleEntry {
  const entry: BundleEntry = {
    response: {
      status: `${res.status} ${statusText[res.status] ?? ''}`.trim(),
      location: res.headers['Location'],
      etag: res.headers['ETag'],
      lastModified: res.headers['Last-Modified'] ? new Date(res.headers['Last-Modified']).toISOString() : undefined,
    },
  };
  if (res.body) entry.resource = res.body;
  return entry;
}

function errorEntry(err: unknown): BundleEntry {
  if (isOperationOutcomeError(err)) return { response: { status: String(statusForOutcome(err)), outcome: err.outcome } };
  throw err;
}

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** The shape of Bundle.entry before anything runs: what the code below relies on. */
function checkEntries(entry: unknown): BundleEntry[] {
  if (entry === undefined) return [];
  if (!Array.isArray(entry)) throw badRequest('Bundle.entry must be an array', 'Bundle.entry');
  entry.forEach((e: unknown, i) => {
    const at = `Bundle.entry[${i}]`;
    if (!isObject(e)) throw badRequest(`${at} must be an object`, at);
    if (e.fullUrl !== undefined && typeof e.fullUrl !== 'string') throw badRequest(`${at}.fullUrl must be a string`, `${at}.fullUrl`);
    if (e.resource !== undefined && !isObject(e.resource)) throw badRequest(`${at}.resource must be a resource`, `${at}.resource`);
    if (!isObject(e.request)) throw badRequest(`${at}.request is required`, `${at}.request`);
    for (const k of ['method', 'url', 'ifMatch', 'ifNoneExist', 'ifNoneMatch', 'ifModifiedSince'] as const) {
      const v = e.request[k];
      if (v !== undefined && typeof v !== 'string') throw badRequest(`${at}.request.${k} must be a string`, `${at}.request.${k}`);
    }
  });
  return entry as BundleEntry[];
}

/** Replaces every Reference.reference equal to a key of `map` (deep). */
function rewriteReferences(value: unknown, map: Map<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => rewriteReferences(v, map));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = k === 'reference' && typeof v === 'string' && map.has(v) ? map.get(v) : rewriteReferences(v, map);
    }
    return out;
  }
  return value;
}

function collectConditionalReferences(value: unknown, out: Set<string>): void {
  if (Array.isArray(value)) value.forEach((v) => collectConditionalReferences(v, out));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'reference' && typeof v === 'string' && /^[A-Z][A-Za-z]+\?/.test(v)) out.add(v);
      else collectConditionalReferences(v, out);
    }
  }
}

export function createBundleProcessor(opts: Omit<HandlerOptions, 'bundle'>) {
  const handlerOptions: HandlerOptions = { ...opts };
  const processor = async (bundle: Bundle, repo: Repository): Promise<Bundle> => {
    if (bundle.type !== 'batch' && bundle.type !== 'transaction') throw badRequest('Bundle.type must be batch or transaction', 'Bundle.type');
    const entries = checkEntries(bundle.entry);
    if (entries.length > MAX_BUNDLE_ENTRIES) throw badRequest(`A Bundle may hold at most ${MAX_BUNDLE_ENTRIES} entries`);
    return bundle.type === 'batch' ? runBatch(entries, repo) : runTransaction(entries, repo);
  };
  handlerOptions.bundle = processor;

  async function runBatch(entries: BundleEntry[], repo: Repository): Promise<Bundle> {
    const out: BundleEntry[] = [];
    for (let i = 0; i < entries.length; i++) {
      try {
        const req = entryRequest(entries[i], i);
        if (req.path === '' && req.method === 'POST') throw badRequest('Nested Bundles are not allowed in a batch', `Bundle.entry[${i}]`);
        out.push(responseEntry(await handleFhirRequest(req, repo, handlerOptions)));
      } catch (e) {
        out.push(errorEntry(e));
      }
    }
    return { resourceType: 'Bundle', type: 'batch-response', entry: out };
  }

  async function runTransaction(entries: BundleEntry[], repo: Repository): Promise<Bundle> {
    const requests = entries.map((e, i) => entryRequest(e, i));
    return repo.transaction(async (tx) => {
      // 1. Identities: every POST gets its id now (or the existing match for a conditional create),
      //    so urn:uuid references anywhere in the Bundle can be rewritten before anything runs.
      const refMap = new Map<string, string>();
      const existing = new Map<number, Resource>();
      const fullUrls = new Set<string>();
      const creates: number[] = [];
      for (let i = 0; i < requests.length; i++) {
        const fullUrl = entries[i].fullUrl;
        if (fullUrl) {
          if (fullUrls.has(fullUrl)) throw badRequest(`Duplicate fullUrl ${fullUrl}`, `Bundle.entry[${i}].fullUrl`);
          fullUrls.add(fullUrl);
        }
        const req = requests[i];
        if (req.method === 'POST' && !req.path.includes('/') && req.path !== '') creates.push(i);
      }
      // Conditional creates: locked (as a standalone conditional create locks, so two Bundles
      // carrying the same identifiers cannot both create) and looked up together, in two round
      // trips for the whole Bundle.
      const conditional = creates.filter((i) => requests[i].ifNoneExist);
      await tx.lockAll(conditional.map((i) => `create:${requests[i].path}?${requests[i].ifNoneExist}`));
      const found = await findMatches(tx, conditional.map((i) => ({ type: requests[i].path, query: requests[i].ifNoneExist!, at: i })));
      conditional.forEach((i, k) => {
        const matches = found[k];
        if (matches.length > 1) throw entryError(i, multipleMatches(`If-None-Exist matched ${matches.length} resources`));
        if (matches.length === 1) existing.set(i, matches[0]);
      });
      for (const i of creates) {
        const req = requests[i];
        const id = existing.get(i)?.id ?? randomUUID();
        if (req.body && typeof req.body === 'object') (req.body as Resource).id = id;
        const fullUrl = entries[i].fullUrl;
        if (fullUrl) refMap.set(fullUrl, `${req.path}/${id}`);
      }
      for (let i = 0; i < requests.length; i++) {
        const req = requests[i];
        const fullUrl = entries[i].fullUrl;
        if (fullUrl?.startsWith('urn:uuid:') && req.method === 'PUT' && req.path.includes('/')) refMap.set(fullUrl, req.path.split('/').slice(0, 2).join('/'));
      }
      // 2. Conditional references ("Patient?identifier=...") must match exactly one resource.
      const references: Array<{ type: string; query: string; ref: string; at: number }> = [];
      for (let i = 0; i < requests.length; i++) {
        const refs = new Set<string>();
        collectConditionalReferences(requests[i].body, refs);
        for (const ref of refs) {
          if (refMap.has(ref) || references.some((r) => r.ref === ref)) continue;
          const [type, qs] = ref.split('?', 2);
          if (!isKnownResourceType(type)) throw entryError(i, badRequest(`Conditional reference to unknown type ${type}`));
          references.push({ type, query: qs, ref, at: i });
        }
      }
      const targets = await findMatches(tx, references);
      references.forEach(({ type, ref, at }, k) => {
        const matches = targets[k];
        if (matches.length !== 1) throw entryError(at, (matches.length === 0 ? notFound : multipleMatches)(`Conditional reference ${type}?… matched ${matches.length} resources`));
        refMap.set(ref, `${type}/${matches[0].id}`);
      });
      for (const req of requests) if (req.body !== undefined) req.body = rewriteReferences(req.body, refMap);
      // 3. Run in the spec's processing order; results go back in the Bundle's order. Plain creates
      //    (not conditional, of types without write hooks) are written together in one statement
      //    when the first POST's turn comes, each validated and audited as a single create.
      const indices = requests.map((_, i) => i).sort((a, b) => order[requests[a].method] - order[requests[b].method] || a - b);
      const results: BundleEntry[] = new Array(requests.length);
      const isCreate = (req: FhirRequest) => req.method === 'POST' && !req.path.includes('/') && req.path !== '' && !req.path.startsWith('$');
      const plain = creates.filter((i) => isCreate(requests[i]) && !requests[i].ifNoneExist && !tx.hasWriteHooks(requests[i].path));
      const inBatch = new Set(plain);
      let batchWritten = false;
      for (const i of indices) {
        const req = requests[i];
        if (req.path === '' && req.method === 'POST') throw entryError(i, badRequest('Nested Bundles are not allowed in a transaction'));
        if (inBatch.has(i)) {
          if (!batchWritten) {
            batchWritten = true;
            await createTogether(tx, requests, plain, results);
          }
          continue;
        }
        try {
          if (req.method === 'POST' && existing.has(i)) {
            const found = existing.get(i)!;
            // The match, answered like a create's entry: absolute Location, ETag and Last-Modified.
            results[i] = {
              response: {
                status: '200 OK',
                location: `${opts.baseUrl}/${found.resourceType}/${found.id}/_history/${found.meta?.versionId}`,
                etag: `W/"${found.meta?.versionId}"`,
                ...(found.meta?.lastUpdated ? { lastModified: found.meta.lastUpdated } : {}),
              },
            };
            continue;
          }
          if (isCreate(req)) {
            // Create with the id assigned in step 1 (a new random UUID: nothing outside this
            // transaction refers to it yet).
            const created = await tx.create(checkedCreate(tx, req), { id: (req.body as Resource).id, idAssigned: true });
            results[i] = createdEntry(created);
            continue;
          }
          results[i] = responseEntry(await handleFhirRequest(req, tx, handlerOptions));
        } catch (e) {
          throw entryError(i, e, req.body);
        }
      }
      return { resourceType: 'Bundle', type: 'transaction-response', entry: results };
    });
  }

  /** The resource of a create entry, once its type and the client's right to create it are checked. */
  function checkedCreate(tx: Repository, req: FhirRequest): Resource {
    const resource = req.body as Resource | undefined;
    if (!isKnownResourceType(req.path)) throw notFound(`Unknown resource type "${req.path}"`);
    if (resource?.resourceType !== req.path) throw badRequest(`Resource type ${resource?.resourceType} does not match ${req.path}`);
    handlerOptions.authorize?.(tx.ctx, req.path, 'create');
    return resource;
  }

  function createdEntry(created: Resource): BundleEntry {
    return responseEntry({ status: 201, headers: { Location: `${opts.baseUrl}/${created.resourceType}/${created.id}/_history/${created.meta?.versionId}`, ETag: `W/"${created.meta?.versionId}"`, 'Last-Modified': new Date(created.meta!.lastUpdated!).toUTCString() }, body: created });
  }

  /**
   * The plain creates `at` (entry indices, in Bundle order) checked in that order and written in
   * one statement with their audit rows, each validated in full and keeping the id step 1 gave it;
   * a refused entry fails the Bundle with its index.
   */
  async function createTogether(tx: Repository, requests: FhirRequest[], at: number[], results: BundleEntry[]): Promise<void> {
    const resources = at.map((i) => {
      try {
        return checkedCreate(tx, requests[i]);
      } catch (e) {
        throw entryError(i, e, requests[i].body);
      }
    });
    const created = await tx.createMany(resources, { keepIds: true, idsAssigned: true, errorAt: (k, e) => entryError(at[k], e, resources[k]) });
    created.forEach((r, k) => (results[at[k]] = createdEntry(r)));
  }

  return { processor, handlerOptions };
}

/**
 * The matches (at most 2) of each conditional query, looked up together; a failing query fails
 * with the index of the entry that holds it.
 */
async function findMatches(tx: Repository, queries: Array<{ type: string; query: string; at: number }>): Promise<Resource[][]> {
  try {
    return await tx.findConditionalMatches(queries, 2);
  } catch (e) {
    // Which query failed is not known from a batch: repeat one by one for the entry's index.
    if (!(e instanceof OperationOutcomeError)) throw e;
    for (const q of queries) {
      try {
        await tx.searchByQueryString(q.type, q.query, 2);
      } catch (inner) {
        throw entryError(q.at, inner);
      }
    }
    throw e;
  }
}

/**
 * The failing entry's error, located: its issues' diagnostics prefixed with the entry, and their
 * expressions given within the Bundle (`Patient.gender` of entry 7's Patient becomes
 * `Bundle.entry[7].resource.gender`; issues without an expression rooted in the entry's resource
 * get `Bundle.entry[7]` first).
 */
function entryError(index: number, err: unknown, body?: unknown): unknown {
  if (!(err instanceof OperationOutcomeError)) return err;
  const at = `Bundle.entry[${index}]`;
  const type = isObject(body) && typeof body.resourceType === 'string' ? body.resourceType : undefined;
  const issues = (err.outcome.issue ?? []).map((iss) => {
    const located = (iss.expression ?? []).map((e) => (type && (e === type || e.startsWith(`${type}.`)) ? `${at}.resource${e.slice(type.length)}` : e));
    const expression = located.length > 0 && located.every((e) => e.startsWith(`${at}.`) || e === at) ? located : [at, ...located];
    return { ...iss, diagnostics: `${at}: ${iss.diagnostics ?? iss.code}`, expression };
  });
  return issuesError(issues, statusForOutcome(err));
}
