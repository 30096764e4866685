// The benchmark's Backend Services client: one registered client (Organization/bench) with an
// ES384 key, registered through AUTH_CLIENTS_FILE, getting real tokens from POST /auth/token.
// The assertion is what @tic/auth's signClientAssertion builds (the tests package depends on jose,
// not on @tic/auth).
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey } from 'jose';

export const BENCH_CLIENT_ID = 'tic-bench';
export const BENCH_ORGANIZATION = 'Organization/bench';
const KID = 'tic-bench-1';

export interface BenchClient {
  clientsFile: string;
  /** A fresh access token (tokens live at most 300 s: take one per scenario). */
  token(baseUrl: string): Promise<string>;
}

export async function createBenchClient(clientsFile: string): Promise<BenchClient> {
  const { privateKey, publicKey } = await generateKeyPair('ES384', { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid: KID, alg: 'ES384', use: 'sig' };
  // sensitive: screening responses and their Observations are labelled R (restricted).
  const registry = [{ clientId: BENCH_CLIENT_ID, name: 'benchmark', organization: BENCH_ORGANIZATION, scopes: ['system/*.cruds'], sensitive: true, jwks: { keys: [publicJwk] } }];
  writeFileSync(clientsFile, JSON.stringify(registry, null, 2));
  return {
    clientsFile,
    token: (baseUrl) => requestToken(baseUrl, privateKey),
  };
}

async function requestToken(baseUrl: string, key: CryptoKey): Promise<string> {
  const tokenUrl = `${baseUrl}/auth/token`;
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES384', kid: KID, typ: 'JWT' })
    .setIssuer(BENCH_CLIENT_ID)
    .setSubject(BENCH_CLIENT_ID)
    .setAudience(tokenUrl)
    .setIssuedAt(now)
    .setExpirationTime(now + 240)
    .setJti(randomUUID())
    .sign(key);
  const body = new URLSearchParams({
    grant_type: 'client_credentials',
    scope: 'system/*.cruds',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  });
  const res = await fetch(tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
  const json = (await res.json()) as { access_token?: string };
  if (res.status !== 200 || !json.access_token) throw new Error(`token request failed: ${res.status} ${JSON.stringify(json)}`);
  return json.access_token;
}
