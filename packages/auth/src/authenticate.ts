// Bearer token checking (RFC 6750) for every request except the public paths. Verifies our own
// tokens (builtin mode) or an external identity provider's (external mode) and sets req.tic.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createRemoteJWKSet, decodeJwt, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import type { RequestContext } from '@tic/fhir';
import { unauthorized } from '@tic/fhir';
import type { ExternalIssuerConfig } from './config.ts';
import type { SigningKey } from './keys.ts';
import type { ClientRegistry } from './registry.ts';

/** The request context the auth layer sets: RequestContext plus the client's registry flags. */
export interface AuthRequestContext extends RequestContext {
  clientId: string;
  organization: string;
  scopes: string[];
  /** May read resources labelled R or V in meta.security. */
  sensitive: boolean;
  auditor: boolean;
}

/** An Express request after authenticate ran. */
export type TicRequest = Request & { tic?: RequestContext };

export class InvalidTokenError extends Error {}

export type TokenVerifier = (token: string) => Promise<AuthRequestContext>;

function reason(e: unknown): string {
  if (e instanceof InvalidTokenError) return e.message;
  if (e instanceof joseErrors.JWTExpired) return 'The access token has expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `The access token claim "${e.claim}" is invalid`;
  return 'The access token is invalid';
}

function scopesOf(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean);
  if (Array.isArray(value)) return value.filter((s): s is string => typeof s === 'string');
  return [];
}

function toOrganizationReference(value: unknown): string | undefined {
  if (typeof value !== 'string' || !value) return undefined;
  const ref = value.startsWith('Organization/') ? value : `Organization/${value}`;
  return /^Organization\/[A-Za-z0-9\-.]{1,64}$/.test(ref) ? ref : undefined;
}

/** Verifies access tokens issued by the built-in server. The client must still be registered. */
export function builtinVerifier(opts: { key: SigningKey; issuer: string; audience: string; registry: ClientRegistry; clockToleranceSeconds: number }): TokenVerifier {
  return async (token) => {
    const { payload } = await jwtVerify(token, opts.key.publicKey, {
      algorithms: [opts.key.alg],
      issuer: opts.issuer,
      audience: opts.audience,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'client_id', 'organization', 'scope'],
      clockTolerance: opts.clockToleranceSeconds,
    });
    const clientId = payload.client_id as string;
    const client = opts.registry.get(clientId);
    if (!client) throw new InvalidTokenError('The client of this access token is no longer registered');
    return {
      clientId,
      organization: client.organization,
      scopes: scopesOf(payload.scope),
      sensitive: client.sensitive === true,
      auditor: client.auditor === true,
    };
  };
}

/** Verifies tokens from an external identity provider, mapping its claims to the context. */
export function externalVerifier(cfg: ExternalIssuerConfig, registry: ClientRegistry, clockToleranceSeconds: number): TokenVerifier {
  const keys: JWTVerifyGetKey = createRemoteJWKSet(new URL(cfg.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  const orgClaim = cfg.organizationClaim ?? 'organization';
  const scopeClaim = cfg.scopeClaim ?? 'scope';
  const clientIdOf = (p: JWTPayload): unknown => (cfg.clientIdClaim ? p[cfg.clientIdClaim] : (p.client_id ?? p.azp ?? p.sub));
  return async (token) => {
    const { payload } = await jwtVerify(token, keys, {
      issuer: cfg.issuer,
      audience: cfg.audience,
      algorithms: cfg.algorithms ?? ['RS256', 'RS384', 'ES256', 'ES384'],
      requiredClaims: ['exp'],
      clockTolerance: clockToleranceSeconds,
    });
    const clientId = clientIdOf(payload);
    if (typeof clientId !== 'string' || !clientId) throw new InvalidTokenError('The access token does not identify the client');
    const organization = toOrganizationReference(payload[orgClaim]);
    if (!organization) throw new InvalidTokenError('The access token does not identify the organization');
    // Registry flags still apply to clients we know; unknown clients get none.
    const client = registry.get(clientId);
    return {
      clientId,
      organization,
      scopes: scopesOf(payload[scopeClaim]),
      sensitive: client?.sensitive === true,
      auditor: client?.auditor === true,
    };
  };
}

/**
 * Remembers verified tokens until they expire, so a client's requests pay for one signature check
 * per token (ES384/RS384 verification dominates a small request otherwise). Failures are never
 * cached. The map is bounded; the oldest entries go first.
 */
export function cachedVerifier(verify: TokenVerifier, options: { max?: number; now?: () => number } = {}): TokenVerifier {
  const max = options.max ?? 10_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { ctx: AuthRequestContext; expiresAt: number }>();
  return async (token) => {
    const hit = cache.get(token);
    if (hit) {
      if (hit.expiresAt > now()) return hit.ctx;
      cache.delete(token);
    }
    const ctx = await verify(token);
    const exp = decodeJwt(token).exp;
    if (typeof exp === 'number') {
      if (cache.size >= max) cache.delete(cache.keys().next().value as string);
      cache.set(token, { ctx, expiresAt: exp * 1000 });
    }
    return ctx;
  };
}

export interface AuthenticateOptions {
  verify: TokenVerifier;
  realm: string;
  /** Exact public paths, and prefixes (ending in '/'). */
  publicPaths: string[];
}

function pathOf(req: Request): string {
  const url = req.originalUrl || req.url;
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

export function isPublicPath(path: string, publicPaths: readonly string[]): boolean {
  const p = path.length > 1 ? path.replace(/\/+$/, '') : path;
  return publicPaths.some((pub) => (pub.endsWith('/') ? p.startsWith(pub) || `${p}/` === pub : p === pub));
}

/** Express middleware: sets req.tic or passes a 401 OperationOutcomeError to the error handler. */
export function authenticateMiddleware(opts: AuthenticateOptions): RequestHandler {
  const realm = `Bearer realm="${opts.realm}"`;
  return (req: Request, _res: Response, next: NextFunction) => {
    if (isPublicPath(pathOf(req), opts.publicPaths)) return next();
    const header = req.headers.authorization;
    if (!header) return next(unauthorized('An access token is required', realm));
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
    if (!m) {
      return next(unauthorized('The Authorization header must be "Bearer <access token>"', `${realm}, error="invalid_token", error_description="Malformed Authorization header"`));
    }
    opts.verify(m[1]).then(
      (ctx) => {
        const r = req as TicRequest;
        // The request id (the request logger's, from X-Request-Id when the client sent a valid one)
        // goes into the audit record of the access.
        const requestId = (req as { id?: unknown }).id;
        r.tic = { ...r.tic, ...ctx, ...(typeof requestId === 'string' ? { requestId } : {}) };
        next();
      },
      (e: unknown) => {
        const why = reason(e);
        next(unauthorized(why, `${realm}, error="invalid_token", error_description="${why.replace(/"/g, "'")}"`));
      },
    );
  };
}
