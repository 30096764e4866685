import request from 'supertest';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { createAuth } from './create-auth.ts';
import type { Auth } from './create-auth.ts';
import { signClientAssertion, tokenRequestBody } from './client-assertion.ts';
import type { ClientRegistration } from './registry.ts';
import { appWith, clientKey, serveJson } from './test-utils.ts';
import type { ClientKey } from './test-utils.ts';

const BASE = 'http://localhost:8080';
const TOKEN_URL = `${BASE}/auth/token`;

let es: ClientKey;
let rs: ClientKey;
let other: ClientKey;
let auth: Auth;
let app: ReturnType<typeof appWith>;

function registration(id: string, key: ClientKey, extra: Partial<ClientRegistration> = {}): ClientRegistration {
  return { clientId: id, organization: `Organization/org-${id}`, scopes: ['system/Task.cruds', 'system/Observation.rs'], jwks: { keys: [key.publicJwk] }, ...extra };
}

beforeAll(async () => {
  es = await clientKey('ES384', 'es-1');
  rs = await clientKey('RS384', 'rs-1');
  other = await clientKey('ES384', 'es-1'); // same kid, different key: a forger
  auth = await createAuth({
    mode: 'builtin',
    baseUrl: BASE,
    clients: [registration('es-client', es), registration('rs-client', rs, { sensitive: true })],
  });
  app = appWith(auth);
});

async function assertionFor(clientId: string, key: ClientKey, overrides: { aud?: string; iss?: string; sub?: string; exp?: number; jti?: string; kid?: string; noExp?: boolean; noJti?: boolean } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({})
    .setProtectedHeader({ alg: key.alg, kid: overrides.kid ?? key.kid, typ: 'JWT' })
    .setIssuer(overrides.iss ?? clientId)
    .setSubject(overrides.sub ?? clientId)
    .setAudience(overrides.aud ?? TOKEN_URL)
    .setIssuedAt(now);
  if (!overrides.noExp) jwt.setExpirationTime(overrides.exp ?? now + 240);
  if (!overrides.noJti) jwt.setJti(overrides.jti ?? crypto.randomUUID());
  return jwt.sign(key.privateKey);
}

function postToken(assertion: string, scope = 'system/Task.rs'): request.Test {
  return request(app).post('/auth/token').type('form').send(tokenRequestBody(assertion, scope).toString());
}

describe('token endpoint: success', () => {
  test.each([['ES384', 'es-client'], ['RS384', 'rs-client']])('%s client assertion gets a short-lived bearer token', async (alg, clientId) => {
    const key = alg === 'ES384' ? es : rs;
    const res = await postToken(await assertionFor(clientId, key), 'system/Task.rs system/Observation.rs');
    expect(res.status).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.token_type).toBe('bearer');
    expect(res.body.expires_in).toBeLessThanOrEqual(300);
    expect(res.body.scope).toBe('system/Task.rs system/Observation.rs');
    const claims = decodeJwt(res.body.access_token);
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(300);
    expect(claims.aud).toBe(`${BASE}/fhir`);
    expect(claims.client_id).toBe(clientId);
    expect(decodeProtectedHeader(res.body.access_token).typ).toBe('at+jwt');

    const api = await request(app).get('/fhir/Task').set('Authorization', `Bearer ${res.body.access_token}`);
    expect(api.status).toBe(200);
    expect(api.body.context).toMatchObject({
      clientId,
      organization: `Organization/org-${clientId}`,
      scopes: ['system/Task.rs', 'system/Observation.rs'],
      sensitive: clientId === 'rs-client',
    });
  });

  test('grants only the requested scopes the client is registered for', async () => {
    const res = await postToken(await assertionFor('es-client', es), 'system/Task.r system/Patient.rs system/Observation.cruds');
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('system/Task.r');
  });

  test('v1 scope request is granted when covered', async () => {
    const res = await postToken(await assertionFor('es-client', es), 'system/Task.read');
    expect(res.status).toBe(200);
    expect(res.body.scope).toBe('system/Task.read');
  });

  test('the signClientAssertion helper produces an accepted assertion', async () => {
    const a = await signClientAssertion({ clientId: 'es-client', tokenUrl: TOKEN_URL, key: es.privateKey, kid: es.kid, alg: 'ES384' });
    expect((await postToken(a)).status).toBe(200);
  });
});

describe('token endpoint: RFC 7523 failures answer invalid_client', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Promise<string>, RegExp][] = [
    ['iss is not the client', () => assertionFor('es-client', es, { iss: 'rs-client', sub: 'rs-client' }), /kid|signature/],
    ['iss is another client than sub', () => assertionFor('es-client', es, { iss: 'rs-client' }), /iss and sub/],
    ['sub differs from iss', () => assertionFor('es-client', es, { sub: 'someone-else' }), /iss and sub/],
    ['aud is not the token URL', () => assertionFor('es-client', es, { aud: `${BASE}/fhir` }), /"aud"/],
    ['exp more than 5 minutes ahead', () => assertionFor('es-client', es, { exp: now() + 900 }), /at most 300 seconds/],
    ['expired', () => assertionFor('es-client', es, { exp: now() - 120 }), /expired/],
    ['no exp', () => assertionFor('es-client', es, { noExp: true }), /"exp"/],
    ['no jti', () => assertionFor('es-client', es, { noJti: true }), /"jti"/],
    ['unknown kid', () => assertionFor('es-client', es, { kid: 'nope' }), /kid/],
    ['bad signature (same kid, other key)', () => assertionFor('es-client', other), /signature/],
    ['unknown client', () => assertionFor('nobody', es), /Unknown client/],
    ['not a JWT', async () => 'not.a.jwt', /not a JWT/],
  ];
  test.each(cases)('%s', async (_name, make, why) => {
    const res = await postToken(await make());
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
    expect(res.body.error_description).toMatch(why);
    expect(res.body.access_token).toBeUndefined();
  });

  test('a replayed jti is refused', async () => {
    const assertion = await assertionFor('es-client', es, { jti: 'replay-me' });
    expect((await postToken(assertion)).status).toBe(200);
    const again = await postToken(assertion);
    expect(again.status).toBe(401);
    expect(again.body).toMatchObject({ error: 'invalid_client', error_description: expect.stringContaining('jti') });
  });

  test('the same jti from two different clients is not a replay', async () => {
    expect((await postToken(await assertionFor('es-client', es, { jti: 'shared-jti' }))).status).toBe(200);
    expect((await postToken(await assertionFor('rs-client', rs, { jti: 'shared-jti' }))).status).toBe(200);
  });

  test('HS256 assertions are refused', async () => {
    const secret = new TextEncoder().encode('x'.repeat(48));
    const a = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'es-1' }).setIssuer('es-client').setSubject('es-client').setAudience(TOKEN_URL).setExpirationTime('2m').setJti('h').sign(secret);
    const res = await postToken(a);
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('invalid_client');
  });
});

describe('token endpoint: request errors', () => {
  test('scope not registered -> invalid_scope', async () => {
    const res = await postToken(await assertionFor('es-client', es), 'system/Patient.rs');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  test('AuditEvent scope is not granted through a wildcard to a non-auditor', async () => {
    const wild = await createAuth({ mode: 'builtin', baseUrl: BASE, clients: [registration('wild', es, { scopes: ['system/*.rs'] })] });
    const a = await assertionFor('wild', es);
    const res = await request(appWith(wild)).post('/auth/token').type('form').send(tokenRequestBody(a, 'system/AuditEvent.rs').toString());
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  test('missing scope -> invalid_scope', async () => {
    const form = tokenRequestBody(await assertionFor('es-client', es), 'x');
    form.delete('scope');
    const res = await request(app).post('/auth/token').type('form').send(form.toString());
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_scope');
  });

  test('other grant types -> unsupported_grant_type', async () => {
    const res = await request(app).post('/auth/token').type('form').send('grant_type=password&username=a&password=b');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('unsupported_grant_type');
  });

  test('missing grant_type or assertion -> invalid_request', async () => {
    expect((await request(app).post('/auth/token').type('form').send('scope=system/Task.rs')).body.error).toBe('invalid_request');
    const res = await request(app).post('/auth/token').type('form').send('grant_type=client_credentials&scope=system/Task.rs');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });

  test('wrong client_assertion_type -> invalid_request', async () => {
    const form = tokenRequestBody(await assertionFor('es-client', es), 'system/Task.rs');
    form.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:saml2-bearer');
    const res = await request(app).post('/auth/token').type('form').send(form.toString());
    expect(res.body.error).toBe('invalid_request');
  });

  test('JSON body -> invalid_request', async () => {
    const res = await request(app).post('/auth/token').send({ grant_type: 'client_credentials' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
  });
});

describe('token lifetime', () => {
  test('a shorter configured lifetime is honoured; more than 300 s is rejected at start', async () => {
    const short = await createAuth({ mode: 'builtin', baseUrl: BASE, tokenLifetimeSeconds: 60, clients: [registration('es-client', es)] });
    const res = await request(appWith(short)).post('/auth/token').type('form').send(tokenRequestBody(await assertionFor('es-client', es), 'system/Task.rs').toString());
    expect(res.body.expires_in).toBe(60);
    const c = decodeJwt(res.body.access_token);
    expect((c.exp as number) - (c.iat as number)).toBe(60);
    await expect(createAuth({ mode: 'builtin', baseUrl: BASE, tokenLifetimeSeconds: 3600 })).rejects.toThrow(/tokenLifetimeSeconds/);
  });
});

describe('client keys from a JWKS URL', () => {
  test('the key is chosen by kid from the client JWKS URL', async () => {
    const k1 = await clientKey('RS384', 'url-1');
    const k2 = await clientKey('ES384', 'url-2');
    const server = await serveJson(() => ({ keys: [k1.publicJwk, k2.publicJwk] }));
    try {
      const remote = await createAuth({
        mode: 'builtin',
        baseUrl: BASE,
        clients: [{ clientId: 'remote', organization: 'Organization/r', scopes: ['system/Task.rs'], jwksUrl: server.url }],
      });
      const remoteApp = appWith(remote);
      for (const k of [k1, k2]) {
        const res = await request(remoteApp).post('/auth/token').type('form').send(tokenRequestBody(await assertionFor('remote', k), 'system/Task.rs').toString());
        expect(res.status).toBe(200);
      }
      const bad = await request(remoteApp).post('/auth/token').type('form').send(tokenRequestBody(await assertionFor('remote', k1, { kid: 'url-3' }), 'system/Task.rs').toString());
      expect(bad.status).toBe(401);
      expect(bad.body.error).toBe('invalid_client');
    } finally {
      await server.close();
    }
  });
});

describe('smart-configuration', () => {
  test('advertises the token endpoint, private_key_jwt, RS384/ES384, client_credentials and scopes', async () => {
    for (const path of ['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration']) {
      const res = await request(app).get(path);
      expect(res.status).toBe(200);
      expect(res.body.token_endpoint).toBe(TOKEN_URL);
      expect(res.body.token_endpoint_auth_methods_supported).toEqual(['private_key_jwt']);
      expect(res.body.token_endpoint_auth_signing_alg_values_supported).toEqual(expect.arrayContaining(['RS384', 'ES384']));
      expect(res.body.grant_types_supported).toEqual(['client_credentials']);
      expect(res.body.scopes_supported).toEqual(expect.arrayContaining(['system/*.cruds', 'system/Task.cruds']));
    }
  });

  test('the server JWKS verifies issued tokens', async () => {
    const res = await request(app).get('/auth/jwks');
    expect(res.status).toBe(200);
    expect(res.body.keys).toHaveLength(1);
    expect(res.body.keys[0].d).toBeUndefined();
    expect(res.body.keys[0].kid).toBe(auth.signingKey?.kid);
  });
});
