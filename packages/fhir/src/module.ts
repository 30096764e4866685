// How a domain module (screening, referral, careplan, ...) plugs into the FHIR core.
// The core calls these hooks for every write, whichever route it came by (REST create/update/
// patch, batch, transaction), inside the write's database transaction.
import type { OperationDefinition, Resource } from '@medplum/fhirtypes';

/** Who is acting. Filled by the auth layer; absent fields mean "system" (internal writes, seeding). */
export interface RequestContext {
  requestId?: string;
  clientId?: string;
  /** Organization/{id} reference of the acting client's organisation. */
  organization?: string;
  scopes?: string[];
  /** May read resources labelled R or V in meta.security. */
  canReadRestricted?: boolean;
  /** May search AuditEvents. */
  auditor?: boolean;
  /** Set for writes done by the server itself (seeding, protocols) that bypass client checks. */
  system?: boolean;
  /** The request's base URL, e.g. http://localhost:8080/fhir */
  baseUrl?: string;
  /** Raw X-Provenance header value (a Provenance resource as JSON), if the client sent one. */
  provenanceHeader?: string;
}

export type SearchQuery = Record<string, string | string[]>;

/** The part of the repository a domain module may use. Calls inside a hook join its transaction. */
export interface ResourceRepository {
  create<T extends Resource>(resource: T): Promise<T>;
  /**
   * Creates several new resources at once (one statement where no write hooks apply to their
   * types): validated, audited and all-or-nothing like single creates.
   */
  createMany?<T extends Resource>(resources: T[], options?: CreateManyOptions): Promise<T[]>;
  read<T extends Resource>(type: T['resourceType'], id: string): Promise<T>;
  /** Throws 412 when ifMatch (a version id) is given and stale. */
  update<T extends Resource>(resource: T, options?: UpdateOptions): Promise<T>;
  delete(type: string, id: string): Promise<void>;
  /**
   * Resources by business identifier, several look-ups (of any types) in one round trip: for each
   * { type, system, value }, the visible resources of that type carrying that identifier, at most
   * `limit` each, in the order given. The same matches as search(type, { identifier: system|value }).
   */
  findByIdentifiers?<T extends Resource>(lookups: IdentifierLookup[], limit: number): Promise<T[][]>;
  /** Matching resources (first page only unless _count says otherwise). */
  search<T extends Resource>(type: T['resourceType'], query: SearchQuery): Promise<T[]>;
  history<T extends Resource>(type: T['resourceType'], id: string): Promise<T[]>;
  /**
   * Lets organisation `org` (an "Organization/{id}" reference) read a resource it does not own, for
   * `reason` (e.g. "careplan:{id}"), until `expires`. Idempotent. Joins the hook's transaction.
   */
  share?(resourceType: string, id: string, org: string, reason: string, expires?: Date): Promise<void>;
  /** Removes every share made for `reason`. */
  unshare?(reason: string): Promise<void>;
  /**
   * Waits for, then holds until the write's transaction ends, a lock named `key` (PostgreSQL
   * advisory lock): hooks that look a derived resource up before creating it serialise on it, so
   * concurrent writes (a retried POST racing the first) do not both create it. No-op on PGlite.
   */
  lock?(key: string): Promise<void>;
  /**
   * The current, visible resources of `type` whose reference search parameter `code` refers to
   * `reference` ("Type/id"), at most `limit`, in _lastUpdated order: what
   * search(type, { [code]: reference }) matches, by a cheaper route (none at all when the
   * reference was created in the current transaction under an id this server generated: only
   * resources written in it can refer to it yet).
   */
  referring?<T extends Resource>(type: string, code: string, reference: string, limit: number): Promise<T[]>;
  /**
   * The current version of `reference` ("Type/id") when it was written in the current transaction
   * (what read() would answer, without the round trip); undefined otherwise (read instead).
   */
  writtenInTransaction?<T extends Resource>(reference: string): T | undefined;
  /** Enqueue a durable background job in the same transaction (see @tic/jobs). */
  enqueueJob?(task: string, payload: unknown, options?: { jobKey?: string; runAt?: Date; maxAttempts?: number }): Promise<void>;
}

export interface IdentifierLookup {
  type: string;
  system: string;
  value: string;
}

export interface CreateManyOptions {
  /**
   * Validate each shape once: `shape` gives a resource's structure with the values that may vary
   * masked, and only values the server built or copied from input it already validated, into
   * elements of the same type, may be masked (e.g. a derived Observation's subject id or effective
   * time taken from a validated QuestionnaireResponse). A resource whose shape passed validation
   * before is stored without validating it again; undefined = validate this one. It is given the
   * resource as passed (the id the store assigns is always valid).
   */
  shape?: (resource: Resource) => string | undefined;
  /**
   * Keep each resource's id, which the caller assigned (new and unused, e.g. a random UUID: a
   * transaction Bundle assigns ids before writing so references between its entries can be
   * resolved), instead of assigning one. An id in use fails the whole call (409).
   */
  keepIds?: boolean;
  /**
   * With keepIds: the kept ids were generated by this server for these creates (a transaction
   * Bundle's random UUIDs), so nothing outside the transaction can refer to them yet
   * (ResourceRepository.referring).
   */
  idsAssigned?: boolean;
  /** The error to throw for resource number `index` when it is refused (invalid, id in use), e.g. naming the caller's entry. */
  errorAt?: (index: number, error: unknown) => unknown;
}

export type WriteInteraction = 'create' | 'update' | 'patch' | 'delete';

export interface UpdateOptions {
  /** The version the stored resource must have (optimistic locking); 412 otherwise. */
  ifMatch?: string;
  /**
   * What the client itself sent as If-Match (a version id), or null when it sent none. Set by the
   * REST layer only, so hooks can require If-Match (428) for client updates.
   */
  clientIfMatch?: string | null;
}

export interface WriteHookContext {
  /** The client's If-Match for this write: a version id, null when none was sent, absent for internal writes. */
  ifMatch?: string | null;
  repo: ResourceRepository;
  request: RequestContext;
  interaction: WriteInteraction;
  /** The current stored version before this write (update, patch, delete). */
  previous?: Resource;
  /**
   * Set by a beforeWrite hook that validated what varies in the resource (e.g. a
   * QuestionnaireResponse's answers against its Questionnaire): the resource's shape, as
   * CreateManyOptions.shape, given the resource as it is after every hook. The store validates each
   * shape once; undefined = validate this one.
   */
  shape?: (resource: Resource) => string | undefined;
}

export interface OperationRequest {
  resourceType?: string;
  id?: string;
  method: 'GET' | 'POST';
  /** Parsed body (Parameters or a resource) for POST. */
  body?: Resource;
  query: Record<string, string[]>;
  repo: ResourceRepository;
  request: RequestContext;
}

export interface FhirOperation {
  /** Without the $, e.g. "extract". */
  code: string;
  resourceTypes: string[];
  system?: boolean;
  type?: boolean;
  instance?: boolean;
  /** Operations that change nothing may be called with GET. */
  affectsState?: boolean;
  definition?: OperationDefinition;
  handler(req: OperationRequest): Promise<Resource>;
}

export interface DomainModule {
  name: string;
  /**
   * Resource types whose writes the hooks need to see; omitted means every type. Writes of other
   * types skip the hooks (and so can take the single-statement fast path).
   */
  resourceTypes?: string[];
  /** Conformance resources (Questionnaires, CodeSystems, ...) seeded idempotently at start. */
  conformanceResources?(): Resource[];
  /**
   * Runs before a resource is stored, inside the transaction. May return a modified resource.
   * Throw an OperationOutcomeError to refuse the write (nothing is stored).
   */
  beforeWrite?(resource: Resource, ctx: WriteHookContext): Promise<Resource | void>;
  /** Runs after the resource is stored, inside the same transaction (e.g. write dependents). */
  afterWrite?(resource: Resource, ctx: WriteHookContext): Promise<void>;
  operations?: FhirOperation[];
}
