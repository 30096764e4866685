// Test harness: the real API on a fresh database (PostgreSQL when DATABASE_URL is set, else PGlite),
// with registered clients of different organisations that obtain real tokens from the token endpoint.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import type { JWK } from 'jose';
import { pino } from 'pino';
import type { Logger } from 'pino';
import request from 'supertest';
import { signClientAssertion, tokenRequestBody } from '@tic/auth';
import type { ClientRegistration } from '@tic/auth';
import type { DomainModule } from '@tic/fhir';
import { openTestDatabase } from '@tic/store/testing';
import type { TestDatabase } from '@tic/store/testing';
import type { Api } from './app.ts';
import { createApi } from './app.ts';
import { loadConfig } from './config.ts';

export interface TestClient {
  clientId: string;
  organization: string;
  token: string;
  /** Authorization header value. */
  auth: string;
}

export interface TestApi {
  api: Api;
  db: TestDatabase;
  publicUrl: string;
  /**
   * One of the registered clients (a, b, c, auditor, sensitive, narrow, d, e: client-<name> of
   * Organization/org-<name>) with a fresh token; `scopes` narrows what it asks for.
   */
  client(name: string, options?: { scopes?: string[] }): Promise<TestClient>;
  close(): Promise<void>;
}

export interface TestApiOptions {
  kind?: 'postgres' | 'pglite';
  modules?: DomainModule[];
  publicUrl?: string;
  env?: Record<string, string>;
  /** The app's logger (default: silent), e.g. one writing to a stream a test reads. */
  logger?: Logger;
}

export async function createTestApi(options: TestApiOptions = {}): Promise<TestApi> {
  const kind = options.kind ?? (process.env.DATABASE_URL ? 'postgres' : 'pglite');
  const db = await openTestDatabase(kind);
  const publicUrl = options.publicUrl ?? 'http://127.0.0.1:8080';
  // Each app its own audit journal directory: a journal left behind is shipped by the next app that
  // starts on the directory, and another test's belongs to another test's database.
  const journalDir = mkdtempSync(join(tmpdir(), 'tic-test-journal-'));
  // Each app its own data directory too (the development client and the server's signing key are
  // written there), removed on close. A DATA_DIR the caller passes in is the caller's to keep, e.g. to
  // start another app on the same data; it is neither replaced nor removed.
  const ownDataDir = options.env?.DATA_DIR === undefined ? mkdtempSync(join(tmpdir(), 'tic-test-data-')) : undefined;
  const removeDirectories = () => {
    rmSync(journalDir, { recursive: true, force: true });
    if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
  };
  // A start that fails (an invalid configuration, a module that throws) leaves no database or directory behind.
  const { api, pending, names } = await start(options, db, publicUrl, journalDir, ownDataDir).catch(async (e: unknown) => {
    await db.drop().catch(() => undefined);
    removeDirectories();
    throw e;
  });
  const tokenUrl = `${publicUrl}/auth/token`;
  return {
    api,
    db,
    publicUrl,
    async client(name, opts = {}) {
      const p = pending.get(name);
      if (!p) throw new Error(`No test client "${name}" (have ${names.join(', ')})`);
      const scopes = opts.scopes ?? p.registration.scopes;
      const assertion = await signClientAssertion({ clientId: p.registration.clientId, tokenUrl, privateJwk: p.jwk });
      const res = await request(api.app).post('/auth/token').type('form').send(tokenRequestBody(assertion, scopes.join(' ')).toString());
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(res.body)}`);
      const token = res.body.access_token as string;
      return { clientId: p.registration.clientId, organization: p.registration.organization, token, auth: `Bearer ${token}` };
    },
    async close() {
      try {
        await api.close();
        await db.drop();
      } finally {
        // Only now: api.close() has stopped the audit queue and closed its journal, so nothing of
        // this app writes into these directories any more.
        removeDirectories();
      }
    },
  };
}

/** The app on its database, with the test clients' keys registered. */
async function start(options: TestApiOptions, db: TestDatabase, publicUrl: string, journalDir: string, ownDataDir: string | undefined) {
  const config = loadConfig({
    PUBLIC_URL: publicUrl,
    ...(ownDataDir ? { DATA_DIR: ownDataDir } : {}),
    AUDIT_JOURNAL_DIR: journalDir,
    DEMO_DATA: 'false',
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  // Keys are registered up front; createApi validates the registry once.
  const pending = new Map<string, { registration: ClientRegistration; jwk: JWK }>();
  const names = ['a', 'b', 'c', 'auditor', 'sensitive', 'narrow', 'd', 'e'];
  for (const name of names) {
    const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
    const kid = `test-${name}`;
    const pub = { ...(await exportJWK(publicKey)), kid, alg: 'ES384', use: 'sig' };
    const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES384' };
    const registration: ClientRegistration = {
      clientId: `client-${name}`,
      organization: `Organization/org-${name}`,
      scopes: name === 'auditor' ? ['system/*.cruds', 'system/AuditEvent.rs'] : name === 'narrow' ? ['system/Patient.rs'] : ['system/*.cruds'],
      jwks: { keys: [pub as never] },
      ...(name === 'auditor' ? { auditor: true } : {}),
      ...(name === 'sensitive' ? { sensitive: true } : {}),
    };
    pending.set(name, { registration, jwk });
  }
  const logger = options.logger ?? pino({ level: 'silent' });
  const api = await createApi({ config, db: db.db, logger, modules: options.modules, clients: [...pending.values()].map((p) => p.registration) });
  return { api, pending, names };
}

export { OPERATOR_ORGANIZATION } from './audit.ts';
