// Registered Backend Services clients: who they act for, which scopes they may be granted, which
// keys sign their assertions. Data, validated once at start; a bad registry stops the server with a
// message listing every problem.
import type { JSONWebKeySet } from 'jose';
import { ajv, describeErrors, isAcceptableKeyUrl } from './ajv.ts';
import { EXPLICIT_SCOPE_TYPES, parseScope } from './scopes.ts';

export interface ClientRegistration {
  clientId: string;
  /** Human-readable name for logs and audit displays. */
  name?: string;
  /** The Organization the client acts for, as `Organization/{id}`. */
  organization: string;
  /** The scopes the client may be granted (SMART v2 or v1 forms). */
  scopes: string[];
  /** Public keys inline; each key needs a kid. */
  jwks?: JSONWebKeySet;
  /** Or where the client publishes them. */
  jwksUrl?: string;
  /** May read resources labelled R (restricted) or V (very restricted) in meta.security. */
  sensitive?: boolean;
  /** May be granted AuditEvent scopes. */
  auditor?: boolean;
  /** The development client created by the embedded mode; refused in production. */
  development?: boolean;
  /** A disabled client cannot get tokens and its tokens stop working. */
  disabled?: boolean;
}

const publicKeySchema = {
  type: 'object',
  required: ['kty', 'kid'],
  properties: {
    kty: { enum: ['RSA', 'EC'] },
    kid: { type: 'string', minLength: 1 },
    alg: { enum: ['RS384', 'ES384'] },
    use: { const: 'sig' },
  },
  // A registry holds public keys only.
  not: { anyOf: [{ required: ['d'] }, { required: ['p'] }, { required: ['q'] }, { required: ['k'] }] },
} as const;

export const clientRegistrationSchema = {
  $id: 'urn:tic-exchange:schema:client-registration',
  type: 'object',
  additionalProperties: false,
  required: ['clientId', 'organization', 'scopes'],
  properties: {
    clientId: { type: 'string', pattern: '^[\\x21-\\x7E]{1,255}$' },
    name: { type: 'string', maxLength: 200 },
    organization: { type: 'string', pattern: '^Organization/[A-Za-z0-9\\-\\.]{1,64}$' },
    scopes: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', minLength: 1 } },
    jwks: {
      type: 'object',
      required: ['keys'],
      properties: { keys: { type: 'array', minItems: 1, items: publicKeySchema } },
    },
    jwksUrl: { type: 'string', minLength: 8 },
    sensitive: { type: 'boolean' },
    auditor: { type: 'boolean' },
    development: { type: 'boolean' },
    disabled: { type: 'boolean' },
  },
  anyOf: [{ required: ['jwks'] }, { required: ['jwksUrl'] }],
} as const;

export const clientRegistrySchema = {
  $id: 'urn:tic-exchange:schema:client-registry',
  type: 'array',
  items: { $ref: 'urn:tic-exchange:schema:client-registration' },
} as const;

ajv.addSchema(clientRegistrationSchema);
const validateRegistry = ajv.compile<ClientRegistration[]>(clientRegistrySchema);

export class ClientRegistry {
  private readonly byId: Map<string, ClientRegistration>;
  constructor(clients: readonly ClientRegistration[]) {
    this.byId = new Map(clients.map((c) => [c.clientId, c]));
  }
  /** The client, unless unknown or disabled. */
  get(clientId: string): ClientRegistration | undefined {
    const c = this.byId.get(clientId);
    return c && !c.disabled ? c : undefined;
  }
  list(): ClientRegistration[] {
    return [...this.byId.values()];
  }
  /** The development clients (created by the embedded mode). */
  developmentClients(): ClientRegistration[] {
    return this.list().filter((c) => c.development);
  }
}

/** Problems beyond the JSON schema: duplicates, scope syntax, auditor-only scopes, key URLs. */
function semanticProblems(clients: readonly ClientRegistration[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  clients.forEach((c, i) => {
    const at = `/${i}`;
    if (seen.has(c.clientId)) problems.push(`${at}/clientId "${c.clientId}" is registered more than once`);
    seen.add(c.clientId);
    c.scopes.forEach((s, j) => {
      const parsed = parseScope(s);
      if (!parsed) problems.push(`${at}/scopes/${j} "${s}" is not a SMART resource scope (e.g. system/Task.rs)`);
      else if (parsed.context === 'patient') problems.push(`${at}/scopes/${j} "${s}": patient/ scopes cannot be used by backend clients`);
      else if (EXPLICIT_SCOPE_TYPES.has(parsed.resourceType) && !c.auditor) {
        problems.push(`${at}/scopes/${j} "${s}" is only for clients registered with "auditor": true`);
      }
    });
    if (c.jwksUrl !== undefined && !isAcceptableKeyUrl(c.jwksUrl)) {
      problems.push(`${at}/jwksUrl must be an https URL (http only for localhost)`);
    }
    const kids = new Set<string>();
    for (const k of c.jwks?.keys ?? []) {
      if (k.kid && kids.has(k.kid)) problems.push(`${at}/jwks has the kid "${k.kid}" more than once`);
      if (k.kid) kids.add(k.kid);
    }
  });
  return problems;
}

/**
 * Validates a client registry (an array of registrations, or `{ clients: [...] }`) and returns it.
 * Throws an Error listing every problem found.
 */
export function loadClientRegistry(json: unknown): ClientRegistry {
  const list = json && typeof json === 'object' && !Array.isArray(json) && 'clients' in json ? (json as { clients: unknown }).clients : json;
  if (!validateRegistry(list)) {
    throw new Error(`Invalid client registry:\n  - ${describeErrors(validateRegistry.errors).join('\n  - ')}`);
  }
  const problems = semanticProblems(list);
  if (problems.length) throw new Error(`Invalid client registry:\n  - ${problems.join('\n  - ')}`);
  return new ClientRegistry(list);
}
