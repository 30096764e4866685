import request from 'supertest';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey } from 'jose';
import { createAuth } from './create-auth.ts';
import type { Auth } from './create-auth.ts';
import { signClientAssertion, tokenRequestBody } from './client-assertion.ts';
import { isPublicPath } from './authenticate.ts';
import { appWith, clientKey, serveJson } from './test-utils.ts';

const BASE = 'http://localhost:8080';

describe('builtin mode bearer check', () => {
  let auth: Auth;
  let app: ReturnType<typeof appWith>;
  let now = Date.now();
  let token: string;

  beforeAll(async () => {
    const key = await clientKey('ES384', 'k1');
    auth = await createAuth(
      { mode: 'builtin', baseUrl: BASE, realm: 'tic-test', clockToleranceSeconds: 0, clients: [{ clientId: 'c1', organization: 'Organization/o1', scopes: ['system/Task.rs'], jwks: { keys: [key.publicJwk] } }] },
      { now: () => now },
    );
    app = appWith(auth);
    const assertion = await signClientAssertion({ clientId: 'c1', tokenUrl: `${BASE}/auth/token`, key: key.privateKey, kid: 'k1', alg: 'ES384', now: () => now });
    const res = await request(app).post('/auth/token').type('form').send(tokenRequestBody(assertion, 'system/Task.rs').toString());
    expect(res.status).toBe(200);
    token = res.body.access_token;
  });
  afterEach(() => {
    now = Date.now();
  });

  test('missing token: 401 OperationOutcome with a Bearer challenge and no error code', async () => {
    const res = await request(app).get('/fhir/Task');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Bearer realm="tic-test"');
    expect(res.body.resourceType).toBe('OperationOutcome');
    expect(res.body.issue[0].code).toBe('login');
  });

  test('invalid token: 401 with error="invalid_token"', async () => {
    const res = await request(app).get('/fhir/Task').set('Authorization', 'Bearer abc.def.ghi');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="tic-test", error="invalid_token"/);
    expect(res.body.resourceType).toBe('OperationOutcome');
  });

  test('a token signed by another key is refused', async () => {
    const { privateKey } = await generateKeyPair('ES384');
    const forged = await new SignJWT({ client_id: 'c1', organization: 'Organization/o1', scope: 'system/*.cruds' })
      .setProtectedHeader({ alg: 'ES384', typ: 'at+jwt', kid: auth.signingKey?.kid })
      .setIssuer(BASE).setAudience(`${BASE}/fhir`).setSubject('c1').setExpirationTime('2m').sign(privateKey);
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${forged}`);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  test('non-Bearer scheme: 401 invalid_token', async () => {
    const res = await request(app).get('/fhir/Task').set('Authorization', 'Basic dXNlcjpwYXNz');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  test('valid token passes; expired token is refused', async () => {
    expect((await request(app).get('/fhir/Task').set('Authorization', `Bearer ${token}`)).status).toBe(200);
    // jose checks exp against the real clock: wait is impractical, so verify with a token whose exp has passed.
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${await expiredToken(auth)}`);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(res.body.issue[0].diagnostics).toMatch(/expired/);
  });

  test('public paths are open without a token', async () => {
    expect((await request(app).get('/healthz')).status).toBe(200);
    expect((await request(app).get('/fhir/metadata')).status).toBe(200);
    expect((await request(app).get('/.well-known/smart-configuration')).status).toBe(200);
    expect((await request(app).get('/fhir/.well-known/smart-configuration')).status).toBe(200);
    // The token endpoint answers OAuth errors, not a 401 OperationOutcome.
    const t = await request(app).post('/auth/token').type('form').send('grant_type=client_credentials');
    expect(t.body.error).toBe('invalid_request');
  });

  test('paths that only look public are not', async () => {
    expect((await request(app).get('/fhir/Task/metadata')).status).toBe(401);
    expect((await request(app).get('/healthz-x')).status).toBe(401);
  });
});

async function expiredToken(auth: Auth): Promise<string> {
  const key = auth.signingKey as NonNullable<Auth['signingKey']>;
  const past = Math.floor(Date.now() / 1000) - 600;
  return new SignJWT({ client_id: 'c1', organization: 'Organization/o1', scope: 'system/Task.rs' })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
    .setIssuer(BASE).setAudience(`${BASE}/fhir`).setSubject('c1').setIssuedAt(past).setExpirationTime(past + 300)
    .sign(key.privateKey);
}

test('isPublicPath matches exact paths and prefixes only', () => {
  const pub = ['/metadata', '/fhir/metadata', '/.well-known/', '/healthz'];
  expect(isPublicPath('/fhir/metadata', pub)).toBe(true);
  expect(isPublicPath('/fhir/metadata/', pub)).toBe(true);
  expect(isPublicPath('/.well-known/smart-configuration', pub)).toBe(true);
  expect(isPublicPath('/fhir/Patient', pub)).toBe(false);
  expect(isPublicPath('/fhir/Patient/metadata', pub)).toBe(false);
  expect(isPublicPath('/.well-knownx', pub)).toBe(false);
});

describe('external issuer mode', () => {
  let idpKey: CryptoKey;
  let server: Awaited<ReturnType<typeof serveJson>>;
  let app: ReturnType<typeof appWith>;
  const ISSUER = 'https://idp.example.org/realms/tic';

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    idpKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
    server = await serveJson(() => ({ keys: [jwk] }));
    const auth = await createAuth({
      mode: 'external',
      baseUrl: BASE,
      external: { issuer: ISSUER, audience: `${BASE}/fhir`, jwksUrl: server.url, organizationClaim: 'org' },
      clients: [{ clientId: 'ehr', organization: 'Organization/ignored', scopes: ['system/*.rs'], jwksUrl: 'https://ehr.example.org/jwks', sensitive: true }],
    });
    app = appWith(auth);
  });
  afterAll(() => server.close());

  const idpToken = (claims: Record<string, unknown>, opts: { iss?: string; aud?: string; exp?: string } = {}): Promise<string> =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'idp-1' })
      .setIssuer(opts.iss ?? ISSUER)
      .setAudience(opts.aud ?? `${BASE}/fhir`)
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m')
      .sign(idpKey);

  test('maps the configured claims to the request context', async () => {
    const t = await idpToken({ client_id: 'ehr', org: 'hospital-1', scope: 'system/Task.rs system/Observation.rs' });
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${t}`);
    expect(res.status).toBe(200);
    expect(res.body.context).toMatchObject({
      clientId: 'ehr',
      organization: 'Organization/hospital-1',
      scopes: ['system/Task.rs', 'system/Observation.rs'],
      sensitive: true,
    });
  });

  test('array-valued scope claims and unregistered clients', async () => {
    const t = await idpToken({ client_id: 'app2', org: 'Organization/clinic', scope: ['system/Task.rs'] });
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${t}`);
    expect(res.status).toBe(200);
    expect(res.body.context).toMatchObject({ clientId: 'app2', organization: 'Organization/clinic', scopes: ['system/Task.rs'], sensitive: false });
  });

  test.each([
    ['wrong issuer', () => idpToken({ client_id: 'ehr', org: 'h' }, { iss: 'https://evil.example.org' })],
    ['wrong audience', () => idpToken({ client_id: 'ehr', org: 'h' }, { aud: 'https://other.example.org/fhir' })],
    ['expired', () => idpToken({ client_id: 'ehr', org: 'h' }, { exp: '-10m' })],
    ['no organization claim', () => idpToken({ client_id: 'ehr' })],
  ])('%s -> 401 invalid_token', async (_name, make) => {
    const res = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${await make()}`);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  test('no token endpoint is served in external mode', async () => {
    const res = await request(app).post('/auth/token').type('form').send('grant_type=client_credentials');
    expect(res.status).toBe(404);
  });
});

describe('cachedVerifier', () => {
  it('checks a token once until it expires, and never caches failures', async () => {
    const { cachedVerifier: cached } = await import('./authenticate.ts');
    const { SignJWT } = await import('jose');
    let now = 1_000_000_000_000;
    const exp = Math.floor(now / 1000) + 60;
    const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime(exp).sign(new Uint8Array(32));
    let calls = 0;
    const ctx = { clientId: 'c', organization: 'Organization/o', scopes: [], sensitive: false, auditor: false };
    const verify = cached(async () => {
      calls++;
      return ctx;
    }, { now: () => now });
    await verify(token);
    await verify(token);
    expect(calls).toBe(1);
    now = exp * 1000 + 1;
    await verify(token);
    expect(calls).toBe(2);
    let failing = 0;
    const bad = cached(async () => {
      failing++;
      throw new Error('invalid');
    });
    await expect(bad(token)).rejects.toThrow();
    await expect(bad(token)).rejects.toThrow();
    expect(failing).toBe(2);
  });
});
