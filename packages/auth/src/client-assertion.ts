// Signing a SMART Backend Services client assertion (what a client sends to a token endpoint).
// Used by the get-token CLI, by tests, and by anything here that calls another server's endpoint.
import { randomUUID } from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';

export interface ClientAssertionInput {
  clientId: string;
  tokenUrl: string;
  /** Private JWK (with kid) or an imported private key plus kid and alg. */
  privateJwk?: JWK;
  key?: CryptoKey;
  kid?: string;
  alg?: 'ES384' | 'RS384';
  /** Seconds until exp; SMART allows at most 300. Default 240. */
  lifetimeSeconds?: number;
  jti?: string;
  now?: () => number;
}

export async function signClientAssertion(input: ClientAssertionInput): Promise<string> {
  const alg = input.alg ?? (input.privateJwk?.alg as 'ES384' | 'RS384' | undefined) ?? 'ES384';
  const kid = input.kid ?? input.privateJwk?.kid;
  if (!kid) throw new Error('A kid is required to sign a client assertion');
  const key = input.key ?? (input.privateJwk ? ((await importJWK(input.privateJwk, alg)) as CryptoKey) : undefined);
  if (!key) throw new Error('A private key is required to sign a client assertion');
  const now = Math.floor((input.now ?? Date.now)() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg, kid, typ: 'JWT' })
    .setIssuer(input.clientId)
    .setSubject(input.clientId)
    .setAudience(input.tokenUrl)
    .setIssuedAt(now)
    .setExpirationTime(now + (input.lifetimeSeconds ?? 240))
    .setJti(input.jti ?? randomUUID())
    .sign(key);
}

/** The form body of a client_credentials token request. */
export function tokenRequestBody(assertion: string, scope: string): URLSearchParams {
  return new URLSearchParams({
    grant_type: 'client_credentials',
    scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  });
}
