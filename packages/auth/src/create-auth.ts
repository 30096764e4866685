// Composes the auth layer from its configuration: the discovery document and token endpoint
// (router), the bearer check (authenticate), the per-client rate limit and the client registry.
import express from 'express';
import type { NextFunction, Request, RequestHandler, Response, Router } from 'express';
import type { JWK } from 'jose';
import type { ExternalIssuerConfig } from './config.ts';
import { resolveUrls, validateAuthConfig } from './config.ts';
import type { AuthConfig } from './config.ts';
import { authenticateMiddleware, builtinVerifier, cachedVerifier, externalVerifier } from './authenticate.ts';
import type { TokenVerifier } from './authenticate.ts';
import { devTokenCommand, ensureDevClient, ensureServerKey } from './dev-client.ts';
import type { DevClient } from './dev-client.ts';
import type { JtiStore } from './jti-store.ts';
import { MemoryJtiStore } from './jti-store.ts';
import { loadSigningKey } from './keys.ts';
import type { SigningKey } from './keys.ts';
import { createRateLimit } from './rate-limit.ts';
import { loadClientRegistry } from './registry.ts';
import type { ClientRegistry } from './registry.ts';
import { ASSERTION_ALGS, OAuthError, TokenService } from './token.ts';

/** The pino methods used here (a pino logger fits). */
export interface AuthLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface AuthDeps {
  /** Replay store for client assertions; required in production (use SqlJtiStore). */
  jtiStore?: JtiStore;
  logger?: AuthLogger;
  now?: () => number;
}

export interface Auth {
  config: AuthConfig;
  /** GET /.well-known/smart-configuration (also under the FHIR base path), POST /auth/token, GET /auth/jwks. */
  router: Router;
  /** Sets req.tic (AuthRequestContext) or passes a 401 OperationOutcomeError; skips public paths. */
  authenticate: RequestHandler;
  /** Per-client token bucket (a no-op when config.rateLimit is absent). Mount after authenticate. */
  rateLimit: RequestHandler;
  registry: ClientRegistry;
  /** Verifies a bearer token outside Express (e.g. a websocket bind). */
  verify: TokenVerifier;
  smartConfiguration: Record<string, unknown>;
  /** Built-in mode only. */
  signingKey?: SigningKey;
  /** Embedded mode only: the development client, and the command that prints a token for it. */
  devClient?: DevClient;
  devTokenCommand?: string;
}

const GENERIC_SCOPES = ['system/*.cruds', 'system/*.rs', 'system/*.read', 'system/*.write', 'system/AuditEvent.rs'];

function pathname(url: string): string {
  return new URL(url).pathname.replace(/\/+$/, '');
}

function smartConfiguration(config: AuthConfig, registry: ClientRegistry, urls: ReturnType<typeof resolveUrls>): Record<string, unknown> {
  const scopes = [...new Set([...GENERIC_SCOPES, ...registry.list().flatMap((c) => c.scopes)])];
  const base = config.baseUrl.replace(/\/+$/, '');
  if (config.mode === 'external') {
    const ext = config.external as ExternalIssuerConfig;
    const doc: Record<string, unknown> = {
      issuer: ext.issuer,
      jwks_uri: ext.jwksUrl,
      grant_types_supported: ['client_credentials'],
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
      scopes_supported: scopes,
      capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    };
    if (ext.tokenEndpoint) doc.token_endpoint = ext.tokenEndpoint;
    return doc;
  }
  return {
    issuer: urls.issuer,
    jwks_uri: `${base}/auth/jwks`,
    token_endpoint: urls.tokenUrl,
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGS],
    scopes_supported: scopes,
    response_types_supported: ['token'],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
  };
}

function noStore(res: Response): void {
  res.set('Cache-Control', 'no-store');
  res.set('Pragma', 'no-cache');
}

export async function createAuth(rawConfig: AuthConfig, deps: AuthDeps = {}): Promise<Auth> {
  const config = validateAuthConfig(rawConfig);
  const production = config.environment === 'production';
  const urls = resolveUrls(config);
  const clock = config.clockToleranceSeconds ?? 30;

  // Registry: configured clients, plus the development client in the embedded mode.
  let devClient: DevClient | undefined;
  const clients = [...(config.clients ?? [])];
  if (config.devDataDir && !production) {
    devClient = await ensureDevClient(config.devDataDir);
    if (!clients.some((c) => c.clientId === devClient?.registration.clientId)) clients.push(devClient.registration);
  }
  const registry = loadClientRegistry(clients);
  if (production && registry.developmentClients().length) {
    throw new Error(
      `Refusing to start in production with a development client registered (${registry.developmentClients().map((c) => c.clientId).join(', ')})`,
    );
  }

  let signingKey: SigningKey | undefined;
  let verify: TokenVerifier;
  let tokenService: TokenService | undefined;
  if (config.mode === 'builtin') {
    if (production && !deps.jtiStore) throw new Error('Production needs a durable jti store (SqlJtiStore) for the built-in token endpoint');
    let keyConfig = config.signingKey;
    if (!keyConfig?.privateJwk && config.devDataDir && !production) {
      const alg = keyConfig?.alg ?? 'ES384';
      keyConfig = { alg, privateJwk: (await ensureServerKey(config.devDataDir, alg)) as JWK, kid: keyConfig?.kid };
    }
    if (!keyConfig?.privateJwk) {
      deps.logger?.warn({ alg: keyConfig?.alg ?? 'ES384' }, 'auth: no signing key configured; generated one for this process only (tokens will not verify on other replicas)');
    }
    signingKey = await loadSigningKey(keyConfig);
    tokenService = new TokenService({
      registry,
      jtiStore: deps.jtiStore ?? new MemoryJtiStore(deps.now),
      signingKey,
      tokenUrl: urls.tokenUrl,
      issuer: urls.issuer,
      audience: urls.fhirBaseUrl,
      lifetimeSeconds: config.tokenLifetimeSeconds ?? 300,
      clockToleranceSeconds: clock,
      now: deps.now,
    });
    verify = builtinVerifier({ key: signingKey, issuer: urls.issuer, audience: urls.fhirBaseUrl, registry, clockToleranceSeconds: clock });
  } else {
    verify = externalVerifier(config.external as ExternalIssuerConfig, registry, clock);
  }

  const discovery = smartConfiguration(config, registry, urls);
  const basePath = pathname(config.baseUrl);
  const fhirPath = pathname(urls.fhirBaseUrl);
  const router = express.Router();
  const sendDiscovery = (_req: Request, res: Response): void => {
    res.set('Cache-Control', 'public, max-age=300');
    res.json(discovery);
  };
  router.get('/.well-known/smart-configuration', sendDiscovery);
  const fhirRelative = fhirPath.startsWith(basePath) ? fhirPath.slice(basePath.length) : '';
  if (fhirRelative) router.get(`${fhirRelative}/.well-known/smart-configuration`, sendDiscovery);

  if (tokenService && signingKey) {
    const service = tokenService;
    const jwks = { keys: [signingKey.publicJwk] };
    router.get('/auth/jwks', (_req, res) => {
      res.set('Cache-Control', 'public, max-age=300');
      res.json(jwks);
    });
    router.post('/auth/token', express.urlencoded({ extended: false, limit: '16kb' }), (req: Request, res: Response, next: NextFunction) => {
      noStore(res);
      if (!req.is('application/x-www-form-urlencoded')) {
        const e = new OAuthError('invalid_request', 'The token request must be application/x-www-form-urlencoded');
        res.status(e.status).json(e.toJSON());
        return;
      }
      service.issue((req.body ?? {}) as Record<string, unknown>).then(
        ({ response, clientId }) => {
          deps.logger?.info({ clientId, scope: response.scope }, 'auth: token issued');
          res.json(response);
        },
        (e: unknown) => {
          if (e instanceof OAuthError) {
            deps.logger?.info({ error: e.error }, 'auth: token request refused');
            res.status(e.status).json(e.toJSON());
          } else next(e);
        },
      );
    });
  }

  const publicPaths = [
    '/metadata',
    `${fhirPath}/metadata`,
    '/.well-known/',
    `${fhirPath}/.well-known/`,
    '/healthz',
    '/readyz',
    `${basePath}/auth/token`,
    `${basePath}/auth/jwks`,
    ...(config.publicPaths ?? []),
  ];
  const authenticate = authenticateMiddleware({ verify: cachedVerifier(verify, deps.now ? { now: deps.now } : {}), realm: config.realm ?? 'tic-exchange', publicPaths });
  const rateLimit: RequestHandler = config.rateLimit
    ? createRateLimit({ ...config.rateLimit, ...(deps.now ? { now: deps.now } : {}) })
    : (_req, _res, next) => next();

  const auth: Auth = { config, router, authenticate, rateLimit, registry, verify, smartConfiguration: discovery };
  if (signingKey) auth.signingKey = signingKey;
  if (devClient) {
    auth.devClient = devClient;
    auth.devTokenCommand = devTokenCommand(config.baseUrl, config.devDataDir);
  }
  return auth;
}
