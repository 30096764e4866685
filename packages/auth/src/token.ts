// The built-in authorization server's token endpoint: SMART Backend Services client_credentials
// with a private_key_jwt client assertion (RFC 7523), answering RFC 6749 errors.
import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import type { JWTVerifyGetKey } from 'jose';
import type { JtiStore } from './jti-store.ts';
import type { SigningKey } from './keys.ts';
import type { ClientRegistration, ClientRegistry } from './registry.ts';
import { grantScopes } from './scopes.ts';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
export const ASSERTION_ALGS = ['RS384', 'ES384'] as const;
/** An assertion may not expire more than this far ahead (SMART Backend Services). */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300;

export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'invalid_scope' | 'unauthorized_client' | 'unsupported_grant_type';

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly status: number;
  constructor(error: OAuthErrorCode, description: string) {
    super(description);
    this.error = error;
    this.status = error === 'invalid_client' ? 401 : 400;
  }
  toJSON(): { error: OAuthErrorCode; error_description: string } {
    return { error: this.error, error_description: this.message };
  }
}

export interface TokenResponse {
  access_token: string;
  token_type: 'bearer';
  expires_in: number;
  scope: string;
}

export interface TokenServiceOptions {
  registry: ClientRegistry;
  jtiStore: JtiStore;
  signingKey: SigningKey;
  tokenUrl: string;
  issuer: string;
  audience: string;
  lifetimeSeconds: number;
  clockToleranceSeconds: number;
  now?: () => number;
}

/** Claims of the access tokens we issue (RFC 9068 shape, plus the acting organisation). */
export interface AccessTokenClaims {
  client_id: string;
  organization: string;
  scope: string;
}

export class TokenService {
  private readonly o: TokenServiceOptions;
  private readonly remoteKeys = new Map<string, JWTVerifyGetKey>();
  private readonly localKeys = new WeakMap<ClientRegistration, JWTVerifyGetKey>();

  constructor(options: TokenServiceOptions) {
    this.o = options;
  }

  private nowSeconds(): number {
    return Math.floor((this.o.now ?? Date.now)() / 1000);
  }

  private keysFor(client: ClientRegistration): JWTVerifyGetKey {
    if (client.jwks) {
      let k = this.localKeys.get(client);
      if (!k) this.localKeys.set(client, (k = createLocalJWKSet(client.jwks)));
      return k;
    }
    const url = client.jwksUrl as string;
    let k = this.remoteKeys.get(url);
    if (!k) this.remoteKeys.set(url, (k = createRemoteJWKSet(new URL(url), { timeoutDuration: 5000, cooldownDuration: 30_000 })));
    return k;
  }

  /** Handles one token request (the parsed form). Throws OAuthError. */
  async issue(form: Record<string, unknown>): Promise<{ response: TokenResponse; clientId: string }> {
    const param = (name: string): string | undefined => {
      const v = form[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new OAuthError('invalid_request', `${name} must be given once`);
      return v;
    };
    const grantType = param('grant_type');
    if (!grantType) throw new OAuthError('invalid_request', 'grant_type is required');
    if (grantType !== 'client_credentials') throw new OAuthError('unsupported_grant_type', 'Only client_credentials is supported');
    const assertionType = param('client_assertion_type');
    const assertion = param('client_assertion');
    if (!assertionType || !assertion) throw new OAuthError('invalid_request', 'client_assertion_type and client_assertion are required');
    if (assertionType !== CLIENT_ASSERTION_TYPE) throw new OAuthError('invalid_request', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
    const scope = param('scope');
    if (!scope || !scope.trim()) throw new OAuthError('invalid_scope', 'scope is required');

    const client = await this.authenticateClient(assertion, param('client_id'));

    const granted = grantScopes(scope, client.scopes);
    if (!granted.length) throw new OAuthError('invalid_scope', 'None of the requested scopes is registered for this client');

    const now = this.nowSeconds();
    const grantedScope = granted.join(' ');
    const claims: AccessTokenClaims = { client_id: client.clientId, organization: client.organization, scope: grantedScope };
    const accessToken = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: this.o.signingKey.alg, kid: this.o.signingKey.kid, typ: 'at+jwt' })
      .setIssuer(this.o.issuer)
      .setSubject(client.clientId)
      .setAudience(this.o.audience)
      .setIssuedAt(now)
      .setExpirationTime(now + this.o.lifetimeSeconds)
      .setJti(randomUUID())
      .sign(this.o.signingKey.privateKey);
    return {
      response: { access_token: accessToken, token_type: 'bearer', expires_in: this.o.lifetimeSeconds, scope: grantedScope },
      clientId: client.clientId,
    };
  }

  /** Validates the client assertion (RFC 7523 section 3, SMART Backend Services) and returns the client. */
  private async authenticateClient(assertion: string, clientIdParam: string | undefined): Promise<ClientRegistration> {
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: ReturnType<typeof decodeJwt>;
    try {
      header = decodeProtectedHeader(assertion);
      unverified = decodeJwt(assertion);
    } catch {
      throw new OAuthError('invalid_client', 'client_assertion is not a JWT');
    }
    if (typeof header.alg !== 'string' || !(ASSERTION_ALGS as readonly string[]).includes(header.alg)) {
      throw new OAuthError('invalid_client', `client_assertion must be signed with ${ASSERTION_ALGS.join(' or ')}`);
    }
    if (!header.kid) throw new OAuthError('invalid_client', 'client_assertion header must carry a kid');
    const iss = unverified.iss;
    if (typeof iss !== 'string' || !iss) throw new OAuthError('invalid_client', 'client_assertion must carry iss (the client_id)');
    if (unverified.sub !== iss) throw new OAuthError('invalid_client', 'client_assertion iss and sub must both be the client_id');
    if (clientIdParam !== undefined && clientIdParam !== iss) throw new OAuthError('invalid_client', 'client_id does not match the client_assertion');
    const client = this.o.registry.get(iss);
    if (!client) throw new OAuthError('invalid_client', 'Unknown client');

    let payload: Awaited<ReturnType<typeof jwtVerify>>['payload'];
    try {
      ({ payload } = await jwtVerify(assertion, this.keysFor(client), {
        algorithms: [...ASSERTION_ALGS],
        issuer: client.clientId,
        subject: client.clientId,
        audience: this.o.tokenUrl,
        requiredClaims: ['exp', 'jti'],
        clockTolerance: this.o.clockToleranceSeconds,
        currentDate: new Date(this.nowSeconds() * 1000),
      }));
    } catch (e) {
      throw new OAuthError('invalid_client', assertionFailure(e));
    }
    const now = this.nowSeconds();
    const exp = payload.exp as number;
    if (exp > now + MAX_ASSERTION_LIFETIME_SECONDS + this.o.clockToleranceSeconds) {
      throw new OAuthError('invalid_client', `client_assertion exp must be at most ${MAX_ASSERTION_LIFETIME_SECONDS} seconds ahead`);
    }
    const jti = payload.jti;
    if (typeof jti !== 'string' || !jti) throw new OAuthError('invalid_client', 'client_assertion must carry a jti');
    // Keyed by client so one client's jti never blocks another's.
    const fresh = await this.o.jtiStore.claim(`${client.clientId} ${jti}`, new Date((exp + this.o.clockToleranceSeconds) * 1000));
    if (!fresh) throw new OAuthError('invalid_client', 'client_assertion jti has already been used');
    return client;
  }
}

function assertionFailure(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'client_assertion has expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `client_assertion claim "${e.claim}" is invalid (${e.reason})`;
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'No registered key matches the client_assertion kid';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'client_assertion signature is invalid';
  if (e instanceof joseErrors.JWKSTimeout || e instanceof joseErrors.JOSEError) return `client_assertion could not be verified (${e.code})`;
  return 'client_assertion could not be verified';
}
