// The FHIR repository: create, read, vread, update, patch, delete, history and search over the
// Db, with validation and domain-module write hooks run inside the write's transaction.
import { randomUUID } from 'node:crypto';
import type { Resource } from '@medplum/fhirtypes';
import type { CreateManyOptions, DomainModule, IdentifierLookup, RequestContext, ResourceRepository, SearchQuery, UpdateOptions, WriteHookContext, WriteInteraction } from '@tic/fhir';
import { badRequest, conflict, forbidden, gone, multipleMatches, notFound, preconditionFailed } from '@tic/fhir';
import type { Db } from './db.ts';
import { newResourceId } from './ids.ts';
import { indexResource, parseReference, referenceIndex } from './indexer.ts';
import type { VisibilityRule } from './access.ts';
import { isRestricted, isSystemContext, numberPlaceholders, visibilityPredicate } from './access.ts';
import { insertNewResources, writeNextVersion, writeVersion } from './write.ts';
import { patientOfSql } from './audit-queue.ts';
import type { AuditRow, CompanionRow } from './write.ts';
import type { AuditedWrite, AuditWrites } from './journal.ts';
import { searchResources } from './search.ts';
import { searchParam } from './search-query.ts';
import { splitToken } from './search-values.ts';
import type { SearchResult } from './search.ts';

export interface RepositoryServices {
  modules: DomainModule[];
  /** Structure/binding/profile validation; throws an OperationOutcomeError. */
  validate?: (resource: Resource) => void;
  visibilityRules?: VisibilityRule[];
  /** Enqueues a job in the given transaction (see @tic/jobs). */
  enqueueJob?: (db: Db, task: string, payload: unknown, options?: { jobKey?: string; runAt?: Date; maxAttempts?: number }) => Promise<void>;
  /**
   * The audit-log rows of stored writes: of a write outside a transaction, inserted in the write's
   * own statement; of every write in a transaction, made from all of them at once and inserted just
   * before it commits (db.ts). Either way all or nothing with the writes.
   */
  audit?: AuditWrites;
}

export interface StoredRow {
  content: string;
  version_id: string;
  deleted: boolean;
  last_updated: string;
  owner_org: string | null;
}

export interface HistoryOptions {
  since?: string;
  before?: string;
  /**
   * `_at`: only versions that were current at some point in [start, end): written before the end
   * and replaced (or deleted) after the start, or not replaced at all.
   */
  at?: [start: string, end: string];
  count: number;
  offset: number;
  /** Resource types left out (system history of a client whose scopes do not cover them). */
  excludeTypes?: string[];
}

export interface HistoryEntry {
  resource: Resource;
  deleted: boolean;
  versionId: number;
  lastUpdated: string;
}

const MAX_WRITE_RETRIES = 5;
/** A FHIR id (R4 id datatype). */
const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

/** Shapes (CreateManyOptions.shape) that passed validation, per validator. */
const validatedShapes = new WeakMap<(resource: Resource) => void, Set<string>>();
const MAX_VALIDATED_SHAPES = 20_000;

export class Repository implements ResourceRepository {
  readonly db: Db;
  readonly ctx: RequestContext;
  readonly services: RepositoryServices;

  constructor(db: Db, ctx: RequestContext, services: RepositoryServices) {
    this.db = db;
    this.ctx = ctx;
    this.services = services;
  }

  /** The same repository bound to another Db (a transaction). */
  withDb(db: Db): Repository {
    return new Repository(db, this.ctx, this.services);
  }

  /** The same repository acting as the server itself (protocols, seeding). */
  asSystem(): Repository {
    return new Repository(this.db, { ...this.ctx, system: true }, this.services);
  }

  async transaction<T>(fn: (repo: Repository) => Promise<T>): Promise<T> {
    if (this.db.inTransaction) return fn(this);
    return this.db.transaction((tx) => fn(this.withDb(tx)));
  }

  // ---------------------------------------------------------------- reads

  private visibility(start: number): { sql: string; params: unknown[]; next: number } {
    const v = visibilityPredicate(this.ctx, this.services.visibilityRules);
    if (!v) return { sql: 'true', params: [], next: start };
    const n = numberPlaceholders(v.sql, start);
    return { sql: n.sql, params: v.params, next: n.next };
  }

  /** The current row, or undefined when it never existed or is hidden from this client. */
  async readRow(type: string, id: string, forUpdate = false): Promise<StoredRow | undefined> {
    const vis = this.visibility(3);
    const lock = forUpdate && this.db.inTransaction ? ' FOR UPDATE' : '';
    const r = await this.db.query<StoredRow>(
      `SELECT content, version_id, deleted, last_updated, owner_org FROM resource r WHERE resource_type = $1 AND id = $2 AND ${vis.sql}${lock}`,
      [type, id, ...vis.params],
      { prepare: true },
    );
    return r.rows[0];
  }

  async read<T extends Resource>(type: T['resourceType'] | string, id: string): Promise<T> {
    const row = await this.readRow(type, id);
    if (!row) throw notFound(`${type}/${id} not found`);
    if (row.deleted) throw gone(`${type}/${id} was deleted`);
    return JSON.parse(row.content) as T;
  }

  /**
   * The current versions of several resources in one query, in no particular order; those missing,
   * deleted or hidden from this client are left out.
   */
  async readMany<T extends Resource>(keys: Array<{ type: string; id: string }>): Promise<T[]> {
    if (keys.length === 0) return [];
    const vis = this.visibility(3);
    const r = await this.db.query<{ content: string }>(
      `SELECT r.content FROM unnest($1::text[], $2::text[]) AS k(t, i) JOIN resource r ON r.resource_type = k.t AND r.id = k.i WHERE NOT r.deleted AND ${vis.sql}`,
      [keys.map((k) => k.type), keys.map((k) => k.id), ...vis.params],
      { prepare: true },
    );
    return r.rows.map((row) => JSON.parse(row.content) as T);
  }

  /**
   * read(), and in the same statement (one round trip, one commit) the audit-log row of the read
   * when a current version is visible: `record` is the audit record, to which the statement adds
   * `patients` (the resource's patient, patientOfSql).
   */
  async readAudited<T extends Resource>(type: string, id: string, audit: { ownerOrg: string | null; record: object; commit?: 'relaxed' }): Promise<T> {
    const vis = this.visibility(5);
    const r = await this.db.query<StoredRow>(
      `WITH r AS (SELECT resource_type, id, content, version_id, deleted, last_updated, owner_org FROM resource r WHERE resource_type = $1 AND id = $2 AND ${vis.sql}),
      a AS (INSERT INTO audit_queue (owner_org, content)
        SELECT $3, ($4::jsonb || CASE WHEN pt.p IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('patients', jsonb_build_array(pt.p)) END)::text
        FROM r CROSS JOIN LATERAL (SELECT ${patientOfSql(type)} AS p) pt WHERE NOT r.deleted)
      SELECT content, version_id, deleted, last_updated, owner_org FROM r`,
      [type, id, audit.ownerOrg, JSON.stringify(audit.record), ...vis.params],
      { prepare: true, commit: audit.commit },
    );
    const row = r.rows[0];
    if (!row) throw notFound(`${type}/${id} not found`);
    if (row.deleted) throw gone(`${type}/${id} was deleted`);
    return JSON.parse(row.content) as T;
  }

  async readVersion<T extends Resource>(type: string, id: string, versionId: string): Promise<T> {
    if (!/^\d{1,18}$/.test(versionId)) throw notFound(`Version ${versionId} of ${type}/${id} not found`);
    const vis = this.visibility(4);
    // The current version is in resource, the replaced ones in resource_version (write.ts): a
    // version is in one of them, read from the same snapshot.
    const where = `resource_type = $1 AND id = $2 AND version_id = $3 AND ${vis.sql}`;
    const cols = 'content, version_id, deleted, last_updated, owner_org';
    const r = await this.db.query<StoredRow>(`SELECT ${cols} FROM resource r WHERE ${where} UNION ALL SELECT ${cols} FROM resource_version r WHERE ${where}`, [
      type,
      id,
      versionId,
      ...vis.params,
    ]);
    const row = r.rows[0];
    if (!row) throw notFound(`Version ${versionId} of ${type}/${id} not found`);
    if (row.deleted) throw gone(`Version ${versionId} of ${type}/${id} is a deletion`);
    return JSON.parse(row.content) as T;
  }

  // ---------------------------------------------------------------- writes

  private hooksFor(type: string): DomainModule[] {
    return this.services.modules.filter((m) => (m.beforeWrite || m.afterWrite) && (!m.resourceTypes || m.resourceTypes.includes(type)));
  }

  private needsTransaction(type: string): boolean {
    return this.hooksFor(type).length > 0;
  }

  /** Whether domain-module write hooks apply to the type (createMany writes those one by one). */
  hasWriteHooks(type: string): boolean {
    return this.needsTransaction(type);
  }

  /**
   * Creates a resource with a server-assigned id (or `id` when given, for create-on-update).
   * `idAssigned`: the given id was generated by this server for this create (a transaction
   * Bundle's), so nothing outside the transaction can refer to it yet (see referringInTransaction).
   */
  async create<T extends Resource>(resource: T, options: { id?: string; idAssigned?: boolean } = {}): Promise<T> {
    const id = options.id ?? newResourceId();
    const toStore = { ...resource, id } as T;
    const assigned = options.id === undefined || options.idAssigned === true;
    if (!this.db.inTransaction && this.needsTransaction(resource.resourceType)) {
      return this.transaction((repo) => repo.storeVersion(toStore, undefined, 'create', undefined, false, assigned));
    }
    return this.storeVersion(toStore, undefined, 'create', undefined, false, assigned);
  }

  async createMany<T extends Resource>(resources: T[], options: CreateManyOptions = {}): Promise<T[]> {
    if (resources.length === 0) return [];
    const errorAt = (i: number, e: unknown): unknown => (options.errorAt ? options.errorAt(i, e) : e);
    if (options.keepIds) {
      resources.forEach((r, i) => {
        if (typeof r.id !== 'string' || !ID_PATTERN.test(r.id)) throw errorAt(i, badRequest(`Invalid id ${JSON.stringify(r.id)}`, `${r.resourceType}.id`));
      });
    }
    if (resources.some((r) => this.needsTransaction(r.resourceType))) {
      return this.transaction(async (repo) => {
        const out: T[] = [];
        for (let i = 0; i < resources.length; i++) {
          try {
            out.push(await repo.create(resources[i], options.keepIds ? { id: resources[i].id, idAssigned: options.idsAssigned === true } : {}));
          } catch (e) {
            throw errorAt(i, e instanceof WriteConflict ? conflict(`${resources[i].resourceType}/${resources[i].id} exists already`) : e);
          }
        }
        return out;
      });
    }
    const lastUpdated = new Date().toISOString();
    const stored: T[] = [];
    const rows: CompanionRow[] = [];
    resources.forEach((r, i) => {
      const resource = { ...r, id: options.keepIds ? r.id : newResourceId() } as T;
      // The shape is the caller's resource's: an id the store assigns is always valid (a kept one
      // was checked above).
      try {
        this.validateShape(resource, options.shape?.(r));
      } catch (e) {
        throw errorAt(i, e);
      }
      const row = newResourceRow(this.ctx, resource, lastUpdated);
      // The stored form itself, not its JSON parsed back (the same resource, one parse less each).
      stored.push(row.resource as T);
      rows.push(row);
    });
    const audited = stored.map((r) => this.audited('create', r));
    try {
      await insertNewResources(this.db, rows, this.auditRowsNow(audited));
    } catch (e) {
      if (options.keepIds && (e as { code?: unknown }).code === '23505') throw conflict('A resource with one of the given ids exists already');
      throw e;
    }
    const assigned = !options.keepIds || options.idsAssigned === true;
    rows.forEach((c, k) =>
      this.db.journal?.record({ type: c.row.resourceType, id: c.row.id, content: c.row.content, index: c.index, ownerOrg: c.row.ownerOrg, restricted: c.row.restricted, created: assigned, audit: audited[k] }),
    );
    return stored;
  }

  /** Validates a resource unless its shape (CreateManyOptions.shape) was validated before. */
  private validateShape(resource: Resource, shape: string | undefined): void {
    const validate = this.services.validate;
    if (!validate) return;
    if (shape === undefined) return validate(resource);
    let shapes = validatedShapes.get(validate);
    if (!shapes) validatedShapes.set(validate, (shapes = new Set()));
    if (shapes.has(shape)) return;
    validate(resource);
    if (shapes.size >= MAX_VALIDATED_SHAPES) shapes.clear();
    shapes.add(shape);
  }

  /** Conditional create: returns the existing match instead when the query finds exactly one. */
  async conditionalCreate<T extends Resource>(resource: T, query: string): Promise<{ resource: T; created: boolean }> {
    return this.transaction(async (repo) => {
      await repo.lock(`create:${resource.resourceType}?${query}`);
      const matches = await repo.searchByQueryString<T>(resource.resourceType, query, 2);
      if (matches.length > 1) throw multipleMatches(`If-None-Exist matched ${matches.length} resources`);
      if (matches.length === 1) return { resource: matches[0], created: false };
      return { resource: await repo.create(resource), created: true };
    });
  }

  /** Update (PUT). Creates the resource with the client's id when it does not exist. */
  async update<T extends Resource>(resource: T, options: UpdateOptions & { current?: StoredRow } = {}): Promise<T> {
    return (await this.updateWithOutcome(resource, options)).resource;
  }

  /**
   * `current`: the stored row as the caller read it, to write against without reading it again
   * (one round trip less). Used only with If-Match on its version: had the row moved on since,
   * the write finds another version and fails with 412 as If-Match does.
   */
  async updateWithOutcome<T extends Resource>(resource: T, options: UpdateOptions & { current?: StoredRow } = {}): Promise<{ resource: T; created: boolean }> {
    if (!resource.id) throw badRequest('Resource id is required for update', `${resource.resourceType}.id`);
    // Without hooks, the one-statement path validates the resource; the general path then need not again.
    const validated = !this.needsTransaction(resource.resourceType);
    if (validated) {
      const stored = await this.nextVersionInOneStatement(resource, 'update', options.ifMatch);
      if (stored) return { resource: stored, created: false };
    }
    const run = async (repo: Repository): Promise<{ resource: T; created: boolean }> => {
      for (let attempt = 0; ; attempt++) {
        const known = attempt === 0 && options.ifMatch !== undefined && options.current?.version_id === options.ifMatch && !options.current.deleted ? options.current : undefined;
        const current = known ?? (await repo.readRow(resource.resourceType, resource.id!, true));
        if (options.ifMatch !== undefined && (!current || current.version_id !== options.ifMatch)) {
          throw preconditionFailed(
            current ? `Version conflict: If-Match ${options.ifMatch} but current version is ${current.version_id}` : `If-Match ${options.ifMatch} but ${resource.resourceType}/${resource.id} does not exist`,
          );
        }
        if (!current) {
          if (!isSystemContext(repo.ctx) && (await repo.existsHidden(resource.resourceType, resource.id!))) throw forbidden(`Not allowed to write ${resource.resourceType}/${resource.id}`);
          try {
            return { resource: await repo.storeVersion(resource, undefined, 'create', options.clientIfMatch, validated), created: true };
          } catch (e) {
            if (e instanceof WriteConflict && attempt < MAX_WRITE_RETRIES) continue;
            throw e;
          }
        }
        repo.assertWritable(current);
        const previous = current.deleted ? undefined : (JSON.parse(current.content) as Resource);
        try {
          const stored = await repo.storeVersion(resource, { row: current, resource: previous }, 'update', options.clientIfMatch, validated);
          return { resource: stored, created: false };
        } catch (e) {
          if (e instanceof WriteConflict) {
            if (options.ifMatch !== undefined) throw preconditionFailed(`Version conflict: ${resource.resourceType}/${resource.id} changed concurrently`);
            if (attempt < MAX_WRITE_RETRIES) continue;
          }
          throw e;
        }
      }
    };
    return this.needsTransaction(resource.resourceType) && !this.db.inTransaction ? this.transaction(run) : run(this);
  }

  async delete(type: string, id: string, options: { ifMatch?: string } = {}): Promise<void> {
    if (!this.needsTransaction(type) && (await this.nextVersionInOneStatement({ resourceType: type, id } as Resource, 'delete', options.ifMatch))) return;
    const run = async (repo: Repository): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        const current = await repo.readRow(type, id, true);
        if (!current) throw notFound(`${type}/${id} not found`);
        if (options.ifMatch !== undefined && current.version_id !== options.ifMatch) {
          throw preconditionFailed(`Version conflict: If-Match ${options.ifMatch} but current version is ${current.version_id}`);
        }
        if (current.deleted) return;
        repo.assertWritable(current);
        const previous = JSON.parse(current.content) as Resource;
        try {
          await repo.storeVersion({ resourceType: type, id } as Resource, { row: current, resource: previous }, 'delete');
          return;
        } catch (e) {
          if (e instanceof WriteConflict && attempt < MAX_WRITE_RETRIES && options.ifMatch === undefined) continue;
          if (e instanceof WriteConflict) throw preconditionFailed(`Version conflict: ${type}/${id} changed concurrently`);
          throw e;
        }
      }
    };
    return this.needsTransaction(type) && !this.db.inTransaction ? this.transaction(run) : run(this);
  }

  /**
   * Update or delete of a resource that exists, is visible and writable (and at the If-Match version,
   * when given) in one statement, for types without write hooks (nothing needs the previous
   * version). Undefined when that did not hold: the general path then finds out why (create on
   * update, 404, 410, 412, 403) and answers.
   */
  private async nextVersionInOneStatement<T extends Resource>(input: T, interaction: 'update' | 'delete', ifMatch: string | undefined): Promise<T | undefined> {
    const deleting = interaction === 'delete';
    // Validated first, whatever follows: the general path relies on it when this one returns undefined.
    if (!deleting) this.services.validate?.(input);
    if (ifMatch !== undefined && !/^\d{1,18}$/.test(ifMatch)) return undefined;
    const lastUpdated = new Date().toISOString();
    const token = versionToken();
    const stored = (deleting
      ? { resourceType: input.resourceType, id: input.id, meta: { versionId: token, lastUpdated } }
      : { ...input, meta: { ...input.meta, versionId: token, lastUpdated } }) as T;
    const index = deleting ? undefined : indexResource(stored);
    const written = await writeNextVersion(
      this.db,
      { resourceType: stored.resourceType, id: stored.id!, lastUpdated, deleted: deleting, content: JSON.stringify(stored), restricted: !deleting && isRestricted(stored) },
      index,
      token,
      (next) => {
        const vis = this.visibility(next);
        const extra: string[] = [];
        const params = [...vis.params];
        if (ifMatch !== undefined) {
          params.push(ifMatch);
          extra.push(`r.version_id = $${vis.next}::bigint`);
        }
        if (deleting) extra.push('NOT r.deleted');
        return { sql: [vis.sql, ...extra].join(' AND '), params };
      },
      // The version number is not known yet: the statement puts it where the rows hold the token.
      this.auditRowsNow([this.audited(interaction, stored)]),
    );
    if (written === undefined) return undefined;
    const out = { ...stored, meta: { ...stored.meta, versionId: String(written.version) } } as T;
    this.db.journal?.record({
      type: out.resourceType,
      id: out.id!,
      content: deleting ? undefined : JSON.stringify(out),
      index,
      ownerOrg: written.ownerOrg,
      restricted: !deleting && isRestricted(out),
      created: false,
      audit: this.audited(interaction, out),
    });
    return out;
  }

  /** Clients write only what their organisation owns or what was shared with it; never server reference data. */
  private assertWritable(row: StoredRow): void {
    if (isSystemContext(this.ctx)) return;
    if (row.owner_org === null) throw forbidden('Reference data maintained by the server cannot be changed by clients');
  }

  private async existsHidden(type: string, id: string): Promise<boolean> {
    const r = await this.db.query('SELECT 1 FROM resource WHERE resource_type = $1 AND id = $2', [type, id]);
    return r.rows.length > 0;
  }

  /** A transaction-scoped advisory lock (see ResourceRepository.lock). */
  async lock(key: string): Promise<void> {
    if (this.db.dialect === 'postgres') await this.db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [key]);
  }

  /**
   * Several transaction-scoped advisory locks in one round trip, taken in a fixed order (by hash)
   * so that two transactions locking overlapping sets cannot deadlock on them.
   */
  async lockAll(keys: string[]): Promise<void> {
    const unique = [...new Set(keys)];
    if (unique.length === 0 || this.db.dialect !== 'postgres') return;
    if (unique.length === 1) return this.lock(unique[0]);
    await this.db.query('SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1 OFFSET 0) s', [unique], { prepare: true });
  }

  /** See ResourceRepository.findByIdentifiers: identifier queries answered together by findConditionalMatches. */
  async findByIdentifiers<T extends Resource>(lookups: IdentifierLookup[], limit: number): Promise<T[][]> {
    return this.matchesOf<T>(
      lookups.map((l) =>
        // A system and value with nothing to escape are the identifier query they would make
        // (identifierQuery), without making and parsing it. Otherwise escaped as in a search
        // (backslash before , | $ and backslash), such a value stays one value (and that look-up
        // runs as its own search).
        plainIdentifier(l) ?? { type: l.type, query: `identifier=${encodeURIComponent(`${escapeToken(l.system)}|${escapeToken(l.value)}`)}` },
      ),
      limit,
    );
  }

  /**
   * The matches of several conditional queries (If-None-Exist, conditional references), at most
   * `limit` each, in the order given. Queries on a business identifier alone
   * (`identifier=system|value`) are answered together in one round trip; any other query runs as
   * its own search. Same matches as searchByQueryString for each.
   */
  async findConditionalMatches<T extends Resource>(queries: Array<{ type: string; query: string }>, limit: number): Promise<T[][]> {
    return this.matchesOf<T>(queries, limit);
  }

  /** findConditionalMatches, each query given as its text or as the identifier query it is. */
  private async matchesOf<T extends Resource>(queries: Array<{ type: string; query: string } | IdentifierQuery>, limit: number): Promise<T[][]> {
    const out: T[][] = queries.map(() => []);
    const batch: Array<{ at: number; type: string; system: string; value: string }> = [];
    for (let i = 0; i < queries.length; i++) {
      const q = queries[i];
      const ident = 'query' in q ? identifierQuery(q.type, q.query) : q;
      if (ident) batch.push({ at: i, type: ident.type, system: ident.system, value: ident.value });
      else out[i] = await this.searchByQueryString<T>(q.type, (q as { query: string }).query, limit);
    }
    if (batch.length === 0) return out;
    const vis = this.visibility(5);
    const r = await this.db.query<{ i: number; content: string }>(
      `SELECT q.i::int AS i, m.content FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q(t, s, v, i)
       CROSS JOIN LATERAL (
         SELECT r.content FROM (SELECT DISTINCT x.id FROM sp_token x WHERE x.resource_type = q.t AND x.code = 'identifier' AND x.value = q.v AND x.system = q.s) d
         JOIN resource r ON r.resource_type = q.t AND r.id = d.id
         WHERE NOT r.deleted AND ${vis.sql} LIMIT $4) m`,
      [batch.map((b) => b.type), batch.map((b) => b.system), batch.map((b) => b.value), limit, ...vis.params],
      { prepare: true },
    );
    for (const row of r.rows) out[batch[Number(row.i) - 1].at].push(JSON.parse(row.content) as T);
    return out;
  }

  /**
   * The current, visible resources of `type` whose reference search parameter `code` refers to
   * `reference` ("Type/id"), at most `limit`, in _lastUpdated order: the matches of
   * search(type, { [code]: reference }) for write hooks that look up what refers to a resource.
   * Answered from the transaction when it can (referringInTransaction: no statement), otherwise by
   * one prepared statement reading the reference's index rows (a plan that needs no statistics).
   */
  async referring<T extends Resource>(type: string, code: string, reference: string, limit: number): Promise<T[]> {
    const here = this.referringInTransaction<T>(type, code, reference);
    if (here) return here.slice(0, limit);
    const target = parseReference(reference);
    if (!target.type || !target.id || /^[a-z][a-z0-9+.-]*:/i.test(reference)) return (await this.search<T>(type, { [code]: reference, _count: String(limit) })).slice(0, limit);
    // A derived parameter (Task.patient: Task.for's rows of target type Patient) reads its base codes' rows.
    const { codes, targetType } = referenceIndex(type, code);
    if (targetType && targetType !== target.type) return [];
    const vis = this.visibility(6);
    const r = await this.db.query<{ content: string }>(
      `SELECT r.content FROM (SELECT DISTINCT x.id FROM sp_reference x WHERE x.resource_type = $1 AND x.code = ANY($2::text[]) AND x.target_id = $3 AND x.target_type = $4) d
       JOIN resource r ON r.resource_type = $1 AND r.id = d.id WHERE NOT r.deleted AND ${vis.sql} ORDER BY r.last_updated, r.id LIMIT $5`,
      [type, codes, target.id, target.type, limit, ...vis.params],
      { prepare: true },
    );
    return r.rows.map((row) => JSON.parse(row.content) as T);
  }

  /**
   * The resources of `type` whose reference search parameter `code` refers to `reference`
   * ("Type/id"), found without a search when `reference` was created in the current transaction
   * under an id this server generated: nothing outside the transaction can refer to it before it
   * commits, so the resources written in it (journal.ts) are all there are. The same current
   * versions as search(type, { [code]: reference }) (deleted ones left out, in _lastUpdated order),
   * all of them. Undefined when that does not hold, or when one of them might be hidden from this
   * client (the caller searches).
   */
  referringInTransaction<T extends Resource>(type: string, code: string, reference: string): T[] | undefined {
    const journal = this.db.journal;
    const target = parseReference(reference);
    if (!journal || !target.type || !target.id || reference !== `${target.type}/${target.id}` || !journal.createdHere(target.type, target.id)) return undefined;
    const { codes, targetType } = referenceIndex(type, code);
    if (targetType && targetType !== target.type) return [];
    const found: Array<{ resource: T; at: string }> = [];
    for (const e of journal.written(type)) {
      if (e.content === undefined || !e.index) continue;
      if (!e.index.reference.some(([c, t, i]) => codes.includes(c) && t === target.type && i === target.id)) continue;
      if (!this.plainlyVisible(e.ownerOrg, e.restricted)) return undefined;
      const resource = JSON.parse(e.content) as T;
      found.push({ resource, at: resource.meta?.lastUpdated ?? '' });
    }
    return found.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.resource.id! < b.resource.id! ? -1 : a.resource.id! > b.resource.id! ? 1 : 0)).map((f) => f.resource);
  }

  /**
   * The current version of `reference` ("Type/id") when it was written in the current transaction
   * and is visible to this client as the store's own rule has it (owner or reference data): what
   * read() would answer, without the round trip. Undefined otherwise (deleted, not written here, or
   * for the caller to read).
   */
  writtenInTransaction<T extends Resource>(reference: string): T | undefined {
    const target = parseReference(reference);
    if (!this.db.journal || !target.type || !target.id || reference !== `${target.type}/${target.id}`) return undefined;
    const e = this.db.journal.written(target.type).find((x) => x.id === target.id);
    if (!e?.content || !this.plainlyVisible(e.ownerOrg, e.restricted)) return undefined;
    return JSON.parse(e.content) as T;
  }

  /** Visible to this client by ownership alone (the part of the access rule that needs no query). */
  private plainlyVisible(ownerOrg: string | null, restricted: boolean): boolean {
    if (isSystemContext(this.ctx)) return true;
    if (restricted && !this.ctx.canReadRestricted) return false;
    return ownerOrg === null || ownerOrg === this.ctx.organization;
  }

  /**
   * Validates, runs hooks, assigns meta and writes one version. `previous` is the current stored
   * row for update/delete. Throws WriteConflict when the stored version moved underneath.
   */
  private async storeVersion<T extends Resource>(
    input: T,
    previous: { row: StoredRow; resource: Resource | undefined } | undefined,
    interaction: WriteInteraction,
    clientIfMatch?: string | null,
    /** The caller validated this very resource already (and no hook will change it). */
    alreadyValidated = false,
    /** A create under an id this server generated for it (see create). */
    assignedId = false,
  ): Promise<T> {
    let resource = input;
    const deleting = interaction === 'delete';
    const hooks = this.hooksFor(resource.resourceType);
    // Hooks are server code keeping the organisation's own invariants (e.g. derived resources looked
    // up by identifier so a retry does not duplicate them): within the client's organisation they
    // also see resources labelled R/V, which the client itself may not be allowed to read.
    const hookRepo = isSystemContext(this.ctx) || this.ctx.canReadRestricted ? this : new Repository(this.db, { ...this.ctx, canReadRestricted: true }, this.services);
    const hookCtx: WriteHookContext = { repo: hookRepo as ResourceRepository, request: this.ctx, interaction, previous: previous?.resource };
    if (clientIfMatch !== undefined) hookCtx.ifMatch = clientIfMatch;
    if (!deleting) {
      for (const m of hooks) {
        if (m.beforeWrite) {
          const changed = await m.beforeWrite(resource, hookCtx);
          if (changed) resource = changed as T;
        }
      }
      // A hook that checked what varies may give the resource's shape: each shape validated once.
      if (!alreadyValidated || hooks.length > 0) this.validateShape(resource, hookCtx.shape?.(resource));
    }
    const versionId = previous ? Number(previous.row.version_id) + 1 : 1;
    const lastUpdated = new Date().toISOString();
    const stored = deleting
      ? ({ resourceType: resource.resourceType, id: resource.id, meta: { versionId: String(versionId), lastUpdated } } as T)
      : ({ ...resource, meta: { ...resource.meta, versionId: String(versionId), lastUpdated } } as T);
    const ownerOrg = previous ? previous.row.owner_org : isSystemContext(this.ctx) ? null : this.ctx.organization!;
    const content = JSON.stringify(stored);
    const index = deleting ? undefined : indexResource(stored);
    const restricted = !deleting && isRestricted(stored);
    const audited = this.audited(interaction, stored);
    const ok = await writeVersion(
      this.db,
      { resourceType: stored.resourceType, id: stored.id!, versionId, lastUpdated, deleted: deleting, content, ownerOrg, restricted },
      index,
      previous ? Number(previous.row.version_id) : undefined,
      this.auditRowsNow([audited]),
    );
    if (!ok) throw new WriteConflict();
    this.db.journal?.record({ type: stored.resourceType, id: stored.id!, content: deleting ? undefined : content, index, ownerOrg, restricted, created: interaction === 'create' && assignedId, audit: audited });
    for (const m of hooks) if (m.afterWrite) await m.afterWrite(deleting ? previous!.resource! : stored, hookCtx);
    return stored;
  }

  /** A stored write as the audit sees it (undefined when writes are not audited). */
  private audited(interaction: WriteInteraction, stored: Resource): AuditedWrite | undefined {
    return this.services.audit ? { ctx: this.ctx, interaction, resource: stored } : undefined;
  }

  /**
   * The audit-log rows to insert in a write's own statement. Outside a transaction: those of these
   * writes. Inside one: none; the transaction's journal keeps the writes (journal.record's `audit`),
   * and the rows of all of them are made at once and inserted just before it commits (db.ts): one
   * record per patient for the whole transaction, however many resources it writes.
   */
  private auditRowsNow(writes: Array<AuditedWrite | undefined>): AuditRow[] {
    const audit = this.services.audit;
    if (!audit) return [];
    if (this.db.journal) {
      this.db.journal.auditWith(audit);
      return [];
    }
    const list = writes.filter((w): w is AuditedWrite => w !== undefined);
    return list.length > 0 ? audit(list) : [];
  }

  // ---------------------------------------------------------------- history

  async historyEntries(type: string | undefined, id: string | undefined, options: HistoryOptions): Promise<HistoryEntry[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('$?', `$${params.length}`));
    };
    if (type) add('resource_type = $?', type);
    if (id) add('id = $?', id);
    if (options.since) add('last_updated >= $?', options.since);
    if (options.before) add('last_updated <= $?', options.before);
    if (options.excludeTypes?.length) add('resource_type <> ALL($?::text[])', options.excludeTypes);
    if (options.at) add('last_updated < $?', options.at[1]);
    const vis = this.visibility(params.length + 1);
    where.push(vis.sql);
    params.push(...vis.params);
    // The current versions (resource) and the replaced ones (resource_version): each table's first
    // offset + count in the page's order, walked by its own index, then merged. (The order is in
    // each branch: PostgreSQL plans a branch with conditions of its own apart from the ORDER BY
    // around the union, which would read every match of both tables and sort them.)
    const old = [...where];
    // A replaced version was current until the next version of its resource was written: the next
    // is in resource_version or, for the last replaced one, the current row (both by primary key).
    if (options.at) {
      params.push(options.at[0]);
      old.push(`COALESCE(
        (SELECT s.last_updated FROM resource_version s WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.version_id > r.version_id ORDER BY s.version_id LIMIT 1),
        (SELECT c.last_updated FROM resource c WHERE c.resource_type = r.resource_type AND c.id = r.id)) > $${params.length}`);
    }
    // Versions of a resource whose current version is labelled R/V are hidden with it (the
    // current version itself by the visibility rule).
    if (!isSystemContext(this.ctx) && !this.ctx.canReadRestricted) {
      old.push('NOT EXISTS (SELECT 1 FROM resource c WHERE c.resource_type = r.resource_type AND c.id = r.id AND c.restricted)');
    }
    // A resource has one current row: its branch needs no version_id to order ties.
    const [order, currentOrder] = id
      ? ['version_id DESC', 'version_id DESC']
      : ['last_updated DESC, resource_type DESC, id DESC, version_id DESC', 'last_updated DESC, resource_type DESC, id DESC'];
    params.push(options.count, options.offset, options.count + options.offset);
    const [count, offset, first] = [`$${params.length - 2}`, `$${params.length - 1}`, `$${params.length}`];
    const cols = 'resource_type, id, version_id, last_updated, deleted, content';
    const r = await this.db.query<StoredRow>(
      `SELECT content, version_id, deleted, last_updated FROM (
        (SELECT ${cols} FROM resource r WHERE ${where.join(' AND ')} ORDER BY ${currentOrder} LIMIT ${first})
        UNION ALL
        (SELECT ${cols} FROM resource_version r WHERE ${old.join(' AND ')} ORDER BY ${order} LIMIT ${first})) r
      ORDER BY ${order} LIMIT ${count} OFFSET ${offset}`,
      params,
    );
    return r.rows.map((row) => ({ resource: JSON.parse(row.content) as Resource, deleted: row.deleted, versionId: Number(row.version_id), lastUpdated: row.last_updated }));
  }

  async history<T extends Resource>(type: T['resourceType'], id: string): Promise<T[]> {
    const entries = await this.historyEntries(type, id, { count: 1000, offset: 0 });
    return entries.filter((e) => !e.deleted).map((e) => e.resource as T);
  }

  // ---------------------------------------------------------------- search

  async searchPage(type: string | undefined, query: Record<string, string[]>): Promise<SearchResult> {
    // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the driver (500).
    for (const [k, vs] of Object.entries(query)) if (k.includes('\u0000') || vs.some((v) => v.includes('\u0000'))) throw badRequest('Search parameters may not contain NUL characters');
    return searchResources(this.db, this.ctx, this.services.visibilityRules ?? [], type, query);
  }

  async search<T extends Resource>(type: T['resourceType'] | string, query: SearchQuery): Promise<T[]> {
    const q: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(query)) q[k] = Array.isArray(v) ? v : [v];
    const result = await this.searchPage(type, q);
    return result.entries.filter((e) => e.mode === 'match').map((e) => e.resource as T);
  }

  async searchByQueryString<T extends Resource>(type: string, queryString: string, limit: number): Promise<T[]> {
    const q: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
    for (const [k, v] of new URLSearchParams(queryString)) (Object.hasOwn(q, k) ? q[k] : (q[k] = [])).push(v);
    if (Object.keys(q).length === 0) throw badRequest('A conditional request needs search parameters');
    q._count = [String(limit)];
    const result = await this.searchPage(type, q);
    return result.entries.filter((e) => e.mode === 'match').map((e) => e.resource as T);
  }

  // ---------------------------------------------------------------- sharing (resource_share)

  async share(resourceType: string, id: string, org: string, reason: string, expires?: Date): Promise<void> {
    await this.db.query(
      'INSERT INTO resource_share (resource_type, id, org, reason, expires) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (resource_type, id, org, reason) DO UPDATE SET expires = EXCLUDED.expires',
      [resourceType, id, org, reason, expires ?? null],
    );
  }

  async unshare(reason: string): Promise<void> {
    await this.db.query('DELETE FROM resource_share WHERE reason = $1', [reason]);
  }

  async enqueueJob(task: string, payload: unknown, options?: { jobKey?: string; runAt?: Date; maxAttempts?: number }): Promise<void> {
    if (!this.services.enqueueJob) throw new Error('No job queue configured');
    await this.services.enqueueJob(this.db, task, payload, options);
  }
}

/**
 * `identifier=system|value` alone (one value, both parts, no escapes or OR), on a type whose
 * identifier parameter is a token: the system and value; otherwise undefined.
 */
function escapeToken(s: string): string {
  return s.replace(/[\\,$|]/g, '\\$&');
}

interface IdentifierQuery {
  type: string;
  system: string;
  value: string;
}

/**
 * The identifier query a look-up makes (`identifier=system|value`) as identifierQuery would read
 * it back, when its system and value hold nothing a token escapes (\\ , | $) or NUL; else undefined.
 */
function plainIdentifier(l: IdentifierLookup): IdentifierQuery | undefined {
  if (!l.system || !l.value || /[\\,|$\u0000]/.test(l.system) || /[\\,|$\u0000]/.test(l.value)) return undefined;
  return searchParam(l.type, 'identifier')?.type === 'token' ? { type: l.type, system: l.system, value: l.value } : undefined;
}

function identifierQuery(type: string, query: string): IdentifierQuery | undefined {
  const params = [...new URLSearchParams(query)];
  if (params.length !== 1 || params[0][0] !== 'identifier') return undefined;
  const raw = params[0][1];
  if (raw.includes(',') || raw.includes('\\') || raw.includes('\u0000')) return undefined;
  const { system, code } = splitToken(raw);
  if (!system || !code || searchParam(type, 'identifier')?.type !== 'token') return undefined;
  return { type, system, value: code };
}

// Stands for the version number in content written before the number is known (writeNextVersion):
// random per process, so no client-supplied text can contain it.
const VERSION_TOKEN = `tic-version-${randomUUID()}`;
const versionToken = (): string => VERSION_TOKEN;

/** The stored version changed between read and write (optimistic concurrency). */
export class WriteConflict extends Error {
  constructor() {
    super('write conflict');
  }
}

/**
 * The stored form of a new resource written by the server on behalf of `ctx` (version 1, owned by
 * the acting organisation): for append-only records (AuditEvents) and bulk inserts. No validation or hooks.
 */
export function newResourceRow(ctx: RequestContext, resource: Resource, lastUpdated = new Date().toISOString()): CompanionRow & { resource: Resource } {
  const stored = { ...resource, id: resource.id ?? newResourceId(), meta: { ...resource.meta, versionId: '1', lastUpdated } } as Resource;
  return {
    resource: stored,
    row: {
      resourceType: stored.resourceType,
      id: stored.id!,
      versionId: 1,
      lastUpdated,
      deleted: false,
      content: JSON.stringify(stored),
      ownerOrg: isSystemContext(ctx) ? null : ctx.organization!,
      restricted: isRestricted(stored),
    },
    index: indexResource(stored),
  };
}
