// Shared helpers for the end-to-end tests: one API per test file, FHIR requests over supertest.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import request from 'supertest';
import type { Response } from 'supertest';
import type { Bundle, OperationOutcome, Resource } from '@medplum/fhirtypes';
import type { TestApi, TestClient } from '@tic/api/testing';

export const FHIR = 'application/fhir+json';

export interface Fhir {
  get(path: string, headers?: Record<string, string>): Promise<Response>;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  put(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  patch(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  del(path: string, headers?: Record<string, string>): Promise<Response>;
  create<T extends Resource>(resource: T): Promise<T>;
}

function withHeaders(req: request.Test, auth: string | undefined, headers: Record<string, string> = {}): request.Test {
  if (auth) req.set('Authorization', auth);
  for (const [k, v] of Object.entries(headers)) req.set(k, v);
  return req;
}

function text(body: unknown): string {
  return typeof body === 'string' ? body : JSON.stringify(body);
}

/** FHIR requests as a client (or without a token when client is undefined). */
export function fhir(t: TestApi, client: TestClient | undefined): Fhir {
  const app = t.api.app;
  const auth = client?.auth;
  const url = (p: string) => (p.startsWith('/') ? p : `/fhir/${p}`);
  const self: Fhir = {
    get: (p, h) => withHeaders(request(app).get(url(p)), auth, h),
    post: (p, body, h) => withHeaders(request(app).post(url(p)).set('Content-Type', FHIR), auth, h).send(text(body)),
    put: (p, body, h) => withHeaders(request(app).put(url(p)).set('Content-Type', FHIR), auth, h).send(text(body)),
    patch: (p, body, h) => withHeaders(request(app).patch(url(p)).set('Content-Type', 'application/json-patch+json'), auth, h).send(text(body)),
    del: (p, h) => withHeaders(request(app).delete(url(p)), auth, h),
    async create<T extends Resource>(resource: T): Promise<T> {
      const res = await self.post(resource.resourceType, resource);
      if (res.status !== 201) throw new Error(`create ${resource.resourceType} answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body as T;
    },
  };
  return self;
}

/** Asserts an OperationOutcome answer with the given status. */
export function expectOutcome(res: Response, status: number): OperationOutcome {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  expect(res.headers['content-type']).toMatch(/application\/fhir\+json/);
  expect(res.body.resourceType).toBe('OperationOutcome');
  expect(Array.isArray(res.body.issue)).toBe(true);
  return res.body as OperationOutcome;
}

export function ids(bundle: Bundle, type?: string): string[] {
  return (bundle.entry ?? []).filter((e) => e.resource && (!type || e.resource.resourceType === type) && e.search?.mode !== 'outcome').map((e) => e.resource!.id!);
}

export async function countRows(t: TestApi, table = 'resource'): Promise<number> {
  const r = await t.db.db.query<{ count: string }>(`select count(*)::text as count from ${table}`);
  return Number(r.rows[0].count);
}

/**
 * Rows of data, not counting AuditEvents, which refused requests add: resources (current versions)
 * and versions (every version stored: the current ones and the replaced ones in resource_version).
 */
export async function countData(t: TestApi): Promise<{ resources: number; versions: number }> {
  const q = async (table: string) => Number((await t.db.db.query<{ n: string }>(`select count(*)::text as n from ${table} where resource_type <> 'AuditEvent'`)).rows[0].n);
  const resources = await q('resource');
  return { resources, versions: resources + (await q('resource_version')) };
}

/** Every version stored of resources of `type`: the current ones (resource) and the replaced ones (resource_version). */
export async function countVersions(t: TestApi, type: string): Promise<number> {
  const r = await t.db.db.query<{ n: string }>(
    `select ((select count(*) from resource where resource_type = $1) + (select count(*) from resource_version where resource_type = $1))::text as n`,
    [type],
  );
  return Number(r.rows[0].n);
}

/** Unique text for test data, so tests in one database do not see each other's resources. */
export function unique(prefix = 'x'): string {
  return `${prefix}${Math.random().toString(36).slice(2, 10)}`;
}

/** A TCP port free on 127.0.0.1 right now (for servers the tests start). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Polls `fn` every 150 ms until it returns a value (not undefined); throws after `timeoutMs`. */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 150));
  }
}

/**
 * Records the text of every SQL statement the pg driver sends while installed (each one a round
 * trip): for tests that count what a request costs the database. PostgreSQL only. `on(database)`:
 * the statements sent to one database (two servers in one process); `reset()` forgets them all.
 */
export function countStatements(): { statements: string[]; on: (database: string) => string[]; reset: () => void; install: () => void; restore: () => void } {
  const statements: string[] = [];
  const byDatabase = new Map<string, string[]>();
  const original = pg.Client.prototype.query;
  return {
    statements,
    on: (database) => byDatabase.get(database) ?? [],
    reset: () => {
      statements.length = 0;
      byDatabase.clear();
    },
    install: () => {
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        const config = args[0] as string | { text?: string };
        const text = typeof config === 'string' ? config : (config?.text ?? '');
        statements.push(text);
        const db = this.database ?? '';
        byDatabase.set(db, [...(byDatabase.get(db) ?? []), text]);
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof original;
    },
    restore: () => {
      pg.Client.prototype.query = original;
    },
  };
}

/**
 * Organisation A's client on server B (SMART Backend Services): a new ES384 key, B's clients file
 * (in `dir`) registering `org-a-sender` for Organization/org-a with that public key, and the
 * private JWK A signs its assertions with.
 */
export function senderClientOnReceiver(dir: string): { clientsFile: string; privateJwk: Record<string, unknown> } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const kid = 'a-on-b';
  const pub = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES384', use: 'sig' };
  const clientsFile = join(dir, 'clients.json');
  writeFileSync(clientsFile, JSON.stringify([{ clientId: 'org-a-sender', organization: 'Organization/org-a', scopes: ['system/*.cruds'], jwks: { keys: [pub] } }]));
  return { clientsFile, privateJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg: 'ES384' } };
}
