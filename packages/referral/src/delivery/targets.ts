// Where a referral goes: the receiving organisation's FHIR base from the directory
// (Organization.endpoint → Endpoint, status active, connectionType hl7-fhir-rest, address) and,
// when configured for that address, SMART Backend Services credentials. Static targets (tests, or a
// server without directory entries) take precedence.
import { readFileSync } from 'node:fs';
import type { Endpoint, Organization, Task } from '@medplum/fhirtypes';
import type { ResourceRepository } from '@tic/fhir';
import { keyOf } from '../disclosure.ts';
import { systemRepo } from '../referral-tasks.ts';
import type { DeliveryOptions, DeliveryTarget } from './jobs.ts';
import type { EndpointCredentials, TokenSourceOptions } from './smart-client.ts';
import { SmartTokenSource } from './smart-client.ts';

export const ENDPOINT_CONNECTION_TYPE_SYSTEM = 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type';

export const normalizeBase = (url: string) => url.trim().replace(/\/+$/, '');

/**
 * Reads REFERRAL_CREDENTIALS_FILE's content: { "<endpoint address>": { clientId, privateJwk (a JWK
 * or the path of a JSON file holding one), tokenUrl?, scope, requester?, owner? } }.
 */
export function parseCredentials(raw: unknown, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): Record<string, EndpointCredentials> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error('Referral credentials must be a JSON object keyed by endpoint address');
  const out: Record<string, EndpointCredentials> = {};
  for (const [address, value] of Object.entries(raw as Record<string, unknown>)) {
    const v = value as Partial<EndpointCredentials> & { privateJwk?: unknown };
    if (!v || typeof v.clientId !== 'string' || typeof v.scope !== 'string') throw new Error(`Referral credentials for ${address}: clientId and scope are required`);
    const jwk = typeof v.privateJwk === 'string' ? (JSON.parse(readFile(v.privateJwk)) as unknown) : v.privateJwk;
    if (!jwk || typeof jwk !== 'object' || typeof (jwk as { kid?: unknown }).kid !== 'string') throw new Error(`Referral credentials for ${address}: privateJwk must be a JWK with a kid (or a path to one)`);
    out[normalizeBase(address)] = { ...(v as EndpointCredentials), privateJwk: jwk as EndpointCredentials['privateJwk'] };
  }
  return out;
}

/** One token source per endpoint address, shared by every delivery and poll to it. */
export class CredentialStore {
  private readonly credentials: Record<string, EndpointCredentials>;
  private readonly sources = new Map<string, SmartTokenSource>();
  private readonly options: TokenSourceOptions;

  constructor(credentials: Record<string, EndpointCredentials> = {}, options: TokenSourceOptions = {}) {
    this.credentials = credentials;
    this.options = options;
  }

  credentialsFor(address: string): EndpointCredentials | undefined {
    return this.credentials[normalizeBase(address)];
  }

  tokenSource(address: string): SmartTokenSource | undefined {
    const base = normalizeBase(address);
    const c = this.credentials[base];
    if (!c) return undefined;
    let s = this.sources.get(base);
    if (!s) this.sources.set(base, (s = new SmartTokenSource(base, c, this.options)));
    return s;
  }

  /** Adds accessToken/invalidateToken to a target whose base has credentials (static targets from a file). */
  withTokens(target: DeliveryTarget): DeliveryTarget {
    const source = target.accessToken ? undefined : this.tokenSource(target.baseUrl);
    return source ? { ...target, accessToken: () => source.token(), invalidateToken: () => source.invalidate() } : target;
  }
}

function isFhirRest(e: Endpoint): boolean {
  return e.connectionType?.code === 'hl7-fhir-rest' && (!e.connectionType.system || e.connectionType.system === ENDPOINT_CONNECTION_TYPE_SYSTEM);
}

/** The active FHIR REST Endpoint of an organisation (first listed), or undefined. */
export async function fhirEndpointOf(repo: ResourceRepository, owner: string): Promise<Endpoint | undefined> {
  const k = keyOf(owner);
  if (!k || k.type !== 'Organization') return undefined;
  const sys = systemRepo(repo);
  let org: Organization;
  try {
    org = await sys.read<Organization>('Organization', k.id);
  } catch {
    return undefined;
  }
  for (const ref of org.endpoint ?? []) {
    const e = keyOf(ref.reference);
    if (!e || e.type !== 'Endpoint') continue;
    try {
      const endpoint = await sys.read<Endpoint>('Endpoint', e.id);
      if (endpoint.status === 'active' && isFhirRest(endpoint) && endpoint.address) return endpoint;
    } catch {
      // a dangling reference: try the next one
    }
  }
  return undefined;
}

/** Targets from the directory, authenticated with the credentials configured for each address. */
export function directoryTargets(store: CredentialStore): DeliveryOptions['resolveTarget'] {
  return async (owner, repo, task?: Task) => {
    const endpoint = await fhirEndpointOf(repo, owner);
    if (!endpoint?.address) return undefined;
    const baseUrl = normalizeBase(endpoint.address);
    const c = store.credentialsFor(baseUrl);
    const requester = c?.requester ?? task?.requester?.reference;
    if (!requester) return undefined;
    return store.withTokens({ baseUrl, requester, owner: c?.owner ?? owner });
  };
}

/** The first resolver that knows the owner wins (static overrides before the directory). */
export function firstTarget(...resolvers: Array<DeliveryOptions['resolveTarget']>): DeliveryOptions['resolveTarget'] {
  return async (owner, repo, task) => {
    for (const r of resolvers) {
      const t = await r(owner, repo, task);
      if (t) return t;
    }
    return undefined;
  };
}

/** A receiving FHIR base with its tokens, for deliveries that need no requester/owner mapping. */
export type FhirBaseTarget = Pick<DeliveryTarget, 'baseUrl' | 'accessToken' | 'invalidateToken'>;

/**
 * An organisation's FHIR base: a static target first, then the directory's Endpoint, authenticated
 * with the credentials configured for the address (used for care plan summary documents).
 */
export function fhirBaseTargets(store: CredentialStore, fixed: Record<string, DeliveryTarget> = {}): (organization: string, repo: ResourceRepository) => Promise<FhirBaseTarget | undefined> {
  return async (organization, repo) => {
    const known = fixed[organization];
    if (known) return known;
    const endpoint = await fhirEndpointOf(repo, organization);
    if (!endpoint?.address) return undefined;
    const baseUrl = normalizeBase(endpoint.address);
    const source = store.tokenSource(baseUrl);
    return source ? { baseUrl, accessToken: () => source.token(), invalidateToken: () => source.invalidate() } : { baseUrl };
  };
}
