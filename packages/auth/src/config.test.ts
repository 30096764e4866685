import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveUrls, validateAuthConfig } from './config.ts';
import { createAuth } from './create-auth.ts';
import { DEV_CLIENT_ID, devTokenCommand, ensureDevClient } from './dev-client.ts';
import { MemoryJtiStore } from './jti-store.ts';

test('configuration errors are listed', () => {
  let msg = '';
  try {
    validateAuthConfig({ mode: 'magic', baseUrl: 'ftp://x', tokenLifetimeSeconds: 600, extra: true });
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(msg).toMatch(/^Invalid auth configuration:/);
  for (const part of ['/mode must be equal to one of the allowed values', '/baseUrl must match pattern', '/tokenLifetimeSeconds must be <= 300', '(extra)']) {
    expect(msg).toContain(part);
  }
  expect(() => validateAuthConfig({ mode: 'external', baseUrl: 'http://localhost:8080' })).toThrow(/\/external is required/);
  expect(() => validateAuthConfig({ mode: 'external', baseUrl: 'http://x', external: { issuer: 'i', audience: 'a', jwksUrl: 'http://idp.example.org/jwks' } })).toThrow(/jwksUrl must be https/);
});

test('derived URLs', () => {
  expect(resolveUrls({ mode: 'builtin', baseUrl: 'https://tic.example.org/' })).toEqual({
    tokenUrl: 'https://tic.example.org/auth/token',
    fhirBaseUrl: 'https://tic.example.org/fhir',
    issuer: 'https://tic.example.org',
  });
});

describe('development client', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tic-auth-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  test('created on first start with a private key file, reused afterwards', async () => {
    const first = await createAuth({ mode: 'builtin', baseUrl: 'http://localhost:8080', devDataDir: dir });
    expect(first.registry.get(DEV_CLIENT_ID)?.development).toBe(true);
    expect(first.devTokenCommand).toBe(`node packages/auth/src/cli/get-token.ts --base-url http://localhost:8080 --data-dir ${dir}`);
    const keyFile = join(dir, 'private-key.jwk.json');
    expect((await stat(keyFile)).mode & 0o077).toBe(0);
    const jwk = JSON.parse(await readFile(keyFile, 'utf8'));
    expect(jwk.d).toBeDefined();
    const second = await createAuth({ mode: 'builtin', baseUrl: 'http://localhost:8080', devDataDir: dir });
    expect(second.registry.get(DEV_CLIENT_ID)?.jwks?.keys[0].kid).toBe(jwk.kid);
    expect(second.signingKey?.kid).toBe(first.signingKey?.kid); // server key persisted too
  });

  test('production refuses to start with the development client', async () => {
    const dev = await ensureDevClient(dir);
    await expect(
      createAuth({ mode: 'builtin', environment: 'production', baseUrl: 'https://tic.example.org', clients: [dev.registration] }, { jtiStore: new MemoryJtiStore() }),
    ).rejects.toThrow(/Refusing to start in production with a development client/);
    await expect(createAuth({ mode: 'builtin', environment: 'production', baseUrl: 'https://tic.example.org', devDataDir: dir })).rejects.toThrow(/devDataDir/);
  });

  test('production builtin mode requires a durable jti store', async () => {
    await expect(createAuth({ mode: 'builtin', environment: 'production', baseUrl: 'https://tic.example.org' })).rejects.toThrow(/jti store/);
  });

  test('devTokenCommand', () => {
    expect(devTokenCommand('http://localhost:8080/')).toBe('node packages/auth/src/cli/get-token.ts --base-url http://localhost:8080 --data-dir ./data/dev-client');
  });
});
