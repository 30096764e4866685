// Configuration of the auth layer, validated at start.
import type { JWK } from 'jose';
import { ajv, describeErrors, isAcceptableKeyUrl } from './ajv.ts';
import type { ClientRegistration } from './registry.ts';

export type SigningAlg = 'ES384' | 'RS384';

export interface ExternalIssuerConfig {
  /** The `iss` of the identity provider's access tokens. */
  issuer: string;
  /** The `aud` those tokens must carry (usually this server's FHIR base URL). */
  audience: string;
  jwksUrl: string;
  /** The identity provider's token endpoint, advertised in smart-configuration. */
  tokenEndpoint?: string;
  /** Accepted signing algorithms; default RS256, RS384, ES256, ES384. */
  algorithms?: string[];
  /** Claim holding the Organization (an id or `Organization/{id}`); default `organization`. */
  organizationClaim?: string;
  /** Claim holding the client id; default `client_id` (then `azp`, then `sub`). */
  clientIdClaim?: string;
  /** Claim holding the scopes (space-separated string or array); default `scope`. */
  scopeClaim?: string;
}

export interface AuthConfig {
  /** builtin: this server issues tokens; external: tokens come from the configured issuer. */
  mode: 'builtin' | 'external';
  /** production refuses the development client and requires a durable jti store. Default development. */
  environment?: 'development' | 'production';
  /** Public origin (and path prefix, if any) where the auth router is mounted, e.g. http://localhost:8080. */
  baseUrl: string;
  /** The FHIR base URL, the audience of our access tokens. Default `${baseUrl}/fhir`. */
  fhirBaseUrl?: string;
  /** `iss` of our access tokens. Default baseUrl. */
  issuer?: string;
  /** Access token lifetime in seconds, at most 300. Default 300. */
  tokenLifetimeSeconds?: number;
  /** Allowed clock skew in seconds when checking assertion and token times. Default 30. */
  clockToleranceSeconds?: number;
  /** Our signing key (private JWK); generated at start when absent (one per process: configure it for replicas). */
  signingKey?: { alg: SigningAlg; privateJwk?: JWK; kid?: string };
  clients?: ClientRegistration[];
  external?: ExternalIssuerConfig;
  /** Embedded mode: where the development client and key live (created on first start). */
  devDataDir?: string;
  /** WWW-Authenticate realm. Default "tic-exchange". */
  realm?: string;
  /** Per-client rate limit; omitted = no limit. */
  rateLimit?: { ratePerSecond: number; burst: number };
  /** Paths (besides the defaults) reachable without a token. Exact paths, or prefixes ending in '/'. */
  publicPaths?: string[];
}

export const authConfigSchema = {
  $id: 'urn:tic-exchange:schema:auth-config',
  type: 'object',
  additionalProperties: false,
  required: ['mode', 'baseUrl'],
  properties: {
    mode: { enum: ['builtin', 'external'] },
    environment: { enum: ['development', 'production'] },
    baseUrl: { type: 'string', pattern: '^https?://[^/?#]+(/[^?#]*[^/?#])?$' },
    fhirBaseUrl: { type: 'string', pattern: '^https?://' },
    issuer: { type: 'string', minLength: 1 },
    tokenLifetimeSeconds: { type: 'integer', minimum: 30, maximum: 300 },
    clockToleranceSeconds: { type: 'integer', minimum: 0, maximum: 120 },
    signingKey: {
      type: 'object',
      additionalProperties: false,
      required: ['alg'],
      properties: {
        alg: { enum: ['ES384', 'RS384'] },
        privateJwk: { type: 'object', required: ['kty', 'd'] },
        kid: { type: 'string', minLength: 1 },
      },
    },
    clients: { type: 'array', items: { type: 'object' } },
    external: {
      type: 'object',
      additionalProperties: false,
      required: ['issuer', 'audience', 'jwksUrl'],
      properties: {
        issuer: { type: 'string', minLength: 1 },
        audience: { type: 'string', minLength: 1 },
        jwksUrl: { type: 'string', pattern: '^https?://' },
        tokenEndpoint: { type: 'string', pattern: '^https?://' },
        algorithms: { type: 'array', minItems: 1, items: { enum: ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'EdDSA'] } },
        organizationClaim: { type: 'string', minLength: 1 },
        clientIdClaim: { type: 'string', minLength: 1 },
        scopeClaim: { type: 'string', minLength: 1 },
      },
    },
    devDataDir: { type: 'string', minLength: 1 },
    realm: { type: 'string', pattern: '^[^"\\\\]{1,100}$' },
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      required: ['ratePerSecond', 'burst'],
      properties: { ratePerSecond: { type: 'number', exclusiveMinimum: 0 }, burst: { type: 'integer', minimum: 1 } },
    },
    publicPaths: { type: 'array', items: { type: 'string', pattern: '^/' } },
  },
} as const;

const validateConfig = ajv.compile<AuthConfig>(authConfigSchema);

/** Throws an Error listing every problem; clients are checked by loadClientRegistry. */
export function validateAuthConfig(config: unknown): AuthConfig {
  if (!validateConfig(config)) {
    throw new Error(`Invalid auth configuration:\n  - ${describeErrors(validateConfig.errors).join('\n  - ')}`);
  }
  const problems: string[] = [];
  if (config.mode === 'external' && !config.external) problems.push('/external is required when mode is "external"');
  if (config.external && !isAcceptableKeyUrl(config.external.jwksUrl)) problems.push('/external/jwksUrl must be https (http only for localhost)');
  if (config.environment === 'production' && config.devDataDir) problems.push('/devDataDir (the development client) is not allowed in production');
  if (problems.length) throw new Error(`Invalid auth configuration:\n  - ${problems.join('\n  - ')}`);
  return config;
}

export interface ResolvedUrls {
  tokenUrl: string;
  fhirBaseUrl: string;
  issuer: string;
}

export function resolveUrls(config: AuthConfig): ResolvedUrls {
  const base = config.baseUrl.replace(/\/+$/, '');
  return {
    tokenUrl: `${base}/auth/token`,
    fhirBaseUrl: (config.fhirBaseUrl ?? `${base}/fhir`).replace(/\/+$/, ''),
    issuer: config.issuer ?? base,
  };
}
