// SMART Backend Services as a client: a signed client assertion (RFC 7523, ES384 or RS384 with a
// private JWK) exchanged at the receiving server's token endpoint for an access token. The token URL
// is configured or discovered from `<base>/.well-known/smart-configuration`; tokens are cached until
// shortly before they expire. Signing uses node:crypto so the package needs no JOSE library.
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import type { JsonWebKey } from 'node:crypto';

export interface EndpointCredentials {
  clientId: string;
  /** Private JWK with kid (alg ES384 or RS384; ES384 when absent). */
  privateJwk: JsonWebKey & { kid?: string; alg?: string };
  /** Token endpoint; discovered from the base's smart-configuration when absent. */
  tokenUrl?: string;
  scope: string;
  /** This server's organisation as the receiving server knows it (default: the Task's requester). */
  requester?: string;
  /** The receiving organisation on the receiving server (default: the same reference as here). */
  owner?: string;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export function signAssertion(credentials: EndpointCredentials, tokenUrl: string, nowMs = Date.now()): string {
  const alg = credentials.privateJwk.alg ?? 'ES384';
  if (alg !== 'ES384' && alg !== 'RS384') throw new Error(`Unsupported client assertion algorithm ${alg}`);
  if (!credentials.privateJwk.kid) throw new Error('The private JWK needs a kid');
  const now = Math.floor(nowMs / 1000);
  const header = b64url(JSON.stringify({ alg, kid: credentials.privateJwk.kid, typ: 'JWT' }));
  const payload = b64url(JSON.stringify({ iss: credentials.clientId, sub: credentials.clientId, aud: tokenUrl, iat: now, exp: now + 240, jti: randomUUID() }));
  const key = createPrivateKey({ key: credentials.privateJwk, format: 'jwk' });
  const signature = sign('sha384', Buffer.from(`${header}.${payload}`), alg === 'ES384' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${header}.${payload}.${b64url(signature)}`;
}

export interface TokenSourceOptions {
  fetch?: typeof fetch;
  now?: () => number;
  /** Refresh this long before expiry (ms, default 60 s). */
  marginMs?: number;
  timeoutMs?: number;
}

/** Access tokens for one receiving FHIR base, cached; `invalidate()` after a 401. */
export class SmartTokenSource {
  private readonly base: string;
  private readonly credentials: EndpointCredentials;
  private readonly options: TokenSourceOptions;
  private tokenUrl: string | undefined;
  private cached: { token: string; until: number } | undefined;
  private pending: Promise<string> | undefined;
  /** Token requests made (tests, metrics). */
  requests = 0;

  constructor(base: string, credentials: EndpointCredentials, options: TokenSourceOptions = {}) {
    this.base = base.replace(/\/+$/, '');
    this.credentials = credentials;
    this.options = options;
    this.tokenUrl = credentials.tokenUrl;
  }

  private get fetch(): typeof fetch {
    return this.options.fetch ?? fetch;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private async discover(): Promise<string> {
    if (this.tokenUrl) return this.tokenUrl;
    const res = await this.fetch(`${this.base}/.well-known/smart-configuration`, { headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    if (!res.ok) throw new Error(`smart-configuration answered HTTP ${res.status}`);
    const config = (await res.json()) as { token_endpoint?: unknown };
    if (typeof config.token_endpoint !== 'string') throw new Error('smart-configuration has no token_endpoint');
    this.tokenUrl = config.token_endpoint;
    return this.tokenUrl;
  }

  private async request(): Promise<string> {
    const tokenUrl = await this.discover();
    const body = new URLSearchParams({
      grant_type: 'client_credentials',
      scope: this.credentials.scope,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: signAssertion(this.credentials, tokenUrl, this.now()),
    });
    this.requests++;
    const res = await this.fetch(tokenUrl, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' }, body, signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
    const json = (await res.json()) as { access_token?: unknown; expires_in?: unknown };
    if (typeof json.access_token !== 'string') throw new Error('token response has no access_token');
    const lifetime = typeof json.expires_in === 'number' ? json.expires_in * 1000 : 300_000;
    this.cached = { token: json.access_token, until: this.now() + Math.max(lifetime - (this.options.marginMs ?? 60_000), lifetime / 2) };
    return json.access_token;
  }

  async token(): Promise<string> {
    if (this.cached && this.now() < this.cached.until) return this.cached.token;
    this.pending ??= this.request().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  invalidate(): void {
    this.cached = undefined;
  }
}
