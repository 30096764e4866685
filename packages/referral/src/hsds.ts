// Open Referral HSDS 3.x (JSON) → FHIR directory: organization → Organization, location →
// Location, service → HealthcareService. Field names follow the HSDS 3.x schema reference
// (openreferral/specification, schema/*.json). Ids are derived from the HSDS ids so that
// importing the same export again updates rather than duplicates.
import { createHash } from 'node:crypto';
import type { Address, Bundle, BundleEntry, CodeableConcept, ContactPoint, HealthcareService, HealthcareServiceAvailableTime, Location, Organization, Resource } from '@medplum/fhirtypes';
import { badRequest } from '@tic/fhir';
import type { CapacityStatus } from './codes.ts';
import { HSDS_IDENTIFIER_SYSTEM, LANGUAGE_SYSTEM, SECTOR_SYSTEM, SECTORS } from './codes.ts';
import { capacityExtension } from './directory.ts';

type Json = Record<string, unknown>;

export interface HsdsPhone { number?: string; type?: string }
export interface HsdsLanguage { name?: string; code?: string }
export interface HsdsAddress { address_1?: string; address_2?: string; city?: string; region?: string; state_province?: string; postal_code?: string; country?: string; address_type?: string }
export interface HsdsSchedule { byday?: string; opens_at?: string; closes_at?: string; description?: string }
export interface HsdsCapacity { available?: number; maximum?: number; updated?: string; description?: string }
export interface HsdsAttribute { taxonomy_term?: { code?: string; name?: string; taxonomy?: string; term_uri?: string } }

export interface HsdsLocation {
  id: string; organization_id?: string; location_type?: string; name?: string; alternate_name?: string; description?: string;
  latitude?: number; longitude?: number; addresses?: HsdsAddress[]; phones?: HsdsPhone[]; languages?: HsdsLanguage[]; url?: string;
}
export interface HsdsServiceAtLocation { id?: string; service_id?: string; location_id?: string; location?: HsdsLocation }
export interface HsdsService {
  id: string; organization_id?: string; name?: string; alternate_name?: string; description?: string; url?: string; email?: string;
  status?: string; eligibility_description?: string; minimum_age?: number; maximum_age?: number; interpretation_services?: string;
  application_process?: string; fees_description?: string; alert?: string; last_modified?: string; assured_date?: string;
  phones?: HsdsPhone[]; languages?: HsdsLanguage[]; schedules?: HsdsSchedule[]; service_at_locations?: HsdsServiceAtLocation[];
  capacities?: HsdsCapacity[]; attributes?: HsdsAttribute[]; organization?: HsdsOrganization;
}
export interface HsdsOrganization {
  id: string; name?: string; alternate_name?: string; description?: string; email?: string; website?: string;
  phones?: HsdsPhone[]; locations?: HsdsLocation[]; services?: HsdsService[]; attributes?: HsdsAttribute[];
}

export interface HsdsImportOptions {
  /** Sector given to organisations whose attributes carry none. */
  defaultSector?: string;
  /** When capacity was last known, for services whose record has no date (default now). */
  now?: string;
}

/** A FHIR id for an HSDS id: `hsds-<id>` when it is a valid id, else a hash. */
export function fhirIdFor(hsdsId: string): string {
  const candidate = `hsds-${hsdsId}`;
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(candidate)) return candidate;
  return `hsds-${createHash('sha256').update(hsdsId).digest('hex').slice(0, 40)}`;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

function identifier(id: string) {
  return [{ system: HSDS_IDENTIFIER_SYSTEM, value: id }];
}

function telecom(phones: HsdsPhone[] | undefined, email?: string, url?: string): ContactPoint[] | undefined {
  const out: ContactPoint[] = [];
  for (const p of phones ?? []) {
    const value = str(p.number);
    if (!value) continue;
    const system = p.type === 'fax' ? 'fax' : p.type === 'pager' ? 'pager' : p.type === 'text' ? 'sms' : 'phone';
    out.push({ system, value, ...(p.type === 'cell' ? { use: 'mobile' as const } : {}) });
  }
  if (str(email)) out.push({ system: 'email', value: str(email)! });
  if (str(url)) out.push({ system: 'url', value: str(url)! });
  return out.length > 0 ? out : undefined;
}

function sectorsFrom(attributes: HsdsAttribute[] | undefined): string[] {
  return (attributes ?? [])
    .map((a) => a.taxonomy_term)
    .filter((t) => !!t && (t.taxonomy === SECTOR_SYSTEM || t.term_uri?.startsWith(`${SECTOR_SYSTEM}#`) === true))
    .map((t) => t!.code ?? t!.term_uri?.split('#')[1] ?? '')
    .filter((c) => (SECTORS as readonly string[]).includes(c));
}

function typesFrom(attributes: HsdsAttribute[] | undefined): CodeableConcept[] {
  return (attributes ?? [])
    .map((a) => a.taxonomy_term)
    .filter((t) => !!t && !!t.code && t.taxonomy !== SECTOR_SYSTEM)
    .map((t) => ({ coding: [{ ...(t!.taxonomy && /^[a-z]+:/.test(t!.taxonomy) ? { system: t!.taxonomy } : {}), code: t!.code!, ...(t!.name ? { display: t!.name } : {}) }], ...(t!.name ? { text: t!.name } : {}) }));
}

function sectorConcepts(codes: string[]): CodeableConcept[] {
  return [...new Set(codes)].map((code) => ({ coding: [{ system: SECTOR_SYSTEM, code }] }));
}

function address(a: HsdsAddress): Address {
  const line = [str(a.address_1), str(a.address_2)].filter((l): l is string => !!l);
  return {
    use: 'work',
    type: a.address_type === 'postal' ? 'postal' : 'physical',
    ...(line.length ? { line } : {}),
    ...(str(a.city) ? { city: str(a.city) } : {}),
    ...(str(a.region) ? { district: str(a.region) } : {}),
    ...(str(a.state_province) ? { state: str(a.state_province) } : {}),
    ...(str(a.postal_code) ? { postalCode: str(a.postal_code) } : {}),
    ...(str(a.country) ? { country: str(a.country) } : {}),
  };
}

type Day = NonNullable<HealthcareServiceAvailableTime['daysOfWeek']>[number];
const days: Record<string, Day> = {
  MO: 'mon', TU: 'tue', WE: 'wed', TH: 'thu', FR: 'fri', SA: 'sat', SU: 'sun',
};

/** HH:MM with an optional zone suffix → FHIR time (the zone is dropped: FHIR time has none). */
function fhirTime(v: string | undefined): string | undefined {
  const m = /^(\d{2}):(\d{2})(?::(\d{2}))?/.exec(v ?? '');
  return m ? `${m[1]}:${m[2]}:${m[3] ?? '00'}` : undefined;
}

function availableTime(schedules: HsdsSchedule[] | undefined): HealthcareServiceAvailableTime[] | undefined {
  const out: HealthcareServiceAvailableTime[] = [];
  for (const s of schedules ?? []) {
    const daysOfWeek = (s.byday ?? '')
      .split(',')
      .map((d) => days[d.trim().replace(/^[-+]?\d+/, '').toUpperCase()])
      .filter((d): d is Day => !!d);
    const start = fhirTime(s.opens_at);
    const end = fhirTime(s.closes_at);
    if (daysOfWeek.length === 0 && !start && !end) continue;
    out.push({ ...(daysOfWeek.length ? { daysOfWeek } : {}), ...(start ? { availableStartTime: start } : {}), ...(end ? { availableEndTime: end } : {}) });
  }
  return out.length ? out : undefined;
}

function capacityStatus(service: HsdsService): CapacityStatus | undefined {
  if (service.status === 'temporarily closed') return 'closed';
  const caps = service.capacities ?? [];
  if (caps.length === 0) return undefined;
  return caps.some((c) => typeof c.available === 'number' && c.available > 0) ? 'accepting' : 'waitlist';
}

export function mapOrganization(o: HsdsOrganization, options: HsdsImportOptions = {}): Organization {
  const sectors = sectorsFrom(o.attributes);
  if (sectors.length === 0 && options.defaultSector) sectors.push(options.defaultSector);
  return {
    resourceType: 'Organization',
    id: fhirIdFor(o.id),
    identifier: identifier(o.id),
    active: true,
    ...(sectors.length ? { type: sectorConcepts(sectors) } : {}),
    name: str(o.name) ?? o.id,
    ...(str(o.alternate_name) ? { alias: [str(o.alternate_name)!] } : {}),
    ...(telecom(o.phones, o.email, o.website) ? { telecom: telecom(o.phones, o.email, o.website) } : {}),
  };
}

export function mapLocation(l: HsdsLocation, organizationId?: string): Location {
  const physical = (l.addresses ?? []).filter((a) => a.address_type !== 'postal');
  const addr = physical[0] ?? l.addresses?.[0];
  const lat = typeof l.latitude === 'number' ? l.latitude : undefined;
  const lon = typeof l.longitude === 'number' ? l.longitude : undefined;
  const org = l.organization_id ?? organizationId;
  return {
    resourceType: 'Location',
    id: fhirIdFor(l.id),
    identifier: identifier(l.id),
    status: 'active',
    mode: 'instance',
    ...(str(l.name) ? { name: str(l.name) } : {}),
    ...(str(l.alternate_name) ? { alias: [str(l.alternate_name)!] } : {}),
    ...(str(l.description) ? { description: str(l.description) } : {}),
    ...(l.location_type === 'virtual' ? { physicalType: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/location-physical-type', code: 'vi', display: 'Virtual' }] } } : {}),
    ...(addr ? { address: address(addr) } : {}),
    ...(lat !== undefined && lon !== undefined ? { position: { latitude: lat, longitude: lon } } : {}),
    ...(telecom(l.phones, undefined, l.url) ? { telecom: telecom(l.phones, undefined, l.url) } : {}),
    ...(org ? { managingOrganization: { reference: `Organization/${fhirIdFor(org)}` } } : {}),
  };
}

export function mapService(s: HsdsService, locationIds: string[], providerSectors: string[], options: HsdsImportOptions = {}): HealthcareService {
  const organizationId = s.organization_id ?? s.organization?.id;
  const ownSectors = sectorsFrom(s.attributes);
  const sectors = ownSectors.length ? ownSectors : providerSectors;
  const types = typesFrom(s.attributes);
  const languages = [...new Set((s.languages ?? []).map((l) => str(l.code)).filter((c): c is string => !!c))];
  const eligibility = [
    str(s.eligibility_description),
    typeof s.minimum_age === 'number' ? `minimum age ${s.minimum_age}` : undefined,
    typeof s.maximum_age === 'number' ? `maximum age ${s.maximum_age}` : undefined,
  ].filter((e): e is string => !!e);
  const capacity = capacityStatus(s);
  const capacityDate = s.capacities?.map((c) => c.updated).find((u): u is string => !!u) ?? s.last_modified ?? s.assured_date ?? options.now ?? new Date().toISOString();
  const hours = availableTime(s.schedules);
  return {
    resourceType: 'HealthcareService',
    id: fhirIdFor(s.id),
    identifier: identifier(s.id),
    active: s.status === undefined || s.status === 'active' || s.status === 'temporarily closed',
    ...(organizationId ? { providedBy: { reference: `Organization/${fhirIdFor(organizationId)}` } } : {}),
    ...(sectors.length ? { category: sectorConcepts(sectors) } : {}),
    ...(types.length ? { type: types } : {}),
    ...(locationIds.length ? { location: locationIds.map((id) => ({ reference: `Location/${id}` })) } : {}),
    name: str(s.name) ?? s.id,
    ...(str(s.description) ? { comment: str(s.description) } : {}),
    ...(str(s.application_process) || str(s.fees_description) || str(s.interpretation_services)
      ? {
          extraDetails: [
            str(s.application_process) && `Application process: ${str(s.application_process)}`,
            str(s.fees_description) && `Fees: ${str(s.fees_description)}`,
            str(s.interpretation_services) && `Interpretation services: ${str(s.interpretation_services)}`,
          ]
            .filter(Boolean)
            .join('\n\n'),
        }
      : {}),
    ...(telecom(s.phones, s.email, s.url) ? { telecom: telecom(s.phones, s.email, s.url) } : {}),
    ...(eligibility.length ? { eligibility: [{ comment: eligibility.join('; ') }] } : {}),
    ...(languages.length ? { communication: languages.map((code) => ({ coding: [{ system: LANGUAGE_SYSTEM, code }] })) } : {}),
    ...(hours ? { availableTime: hours } : {}),
    ...(str(s.alert) ? { availabilityExceptions: str(s.alert) } : {}),
    ...(capacity ? { extension: [capacityExtension(capacity, capacityDate)] } : {}),
  };
}

interface Collected {
  organizations: Map<string, HsdsOrganization>;
  locations: Map<string, HsdsLocation>;
  services: Map<string, HsdsService>;
  links: HsdsServiceAtLocation[];
}

function collect(input: unknown): Collected {
  const c: Collected = { organizations: new Map(), locations: new Map(), services: new Map(), links: [] };
  const addLocation = (l: unknown, orgId?: string) => {
    if (!isObject(l) || !str(l.id)) return;
    const loc = l as unknown as HsdsLocation;
    c.locations.set(loc.id, { ...loc, organization_id: loc.organization_id ?? orgId });
  };
  const addService = (s: unknown, orgId?: string) => {
    if (!isObject(s) || !str(s.id)) throw badRequest('Every HSDS service needs an id');
    const svc = s as unknown as HsdsService;
    if (svc.organization) addOrganization(svc.organization);
    c.services.set(svc.id, { ...svc, organization_id: svc.organization_id ?? svc.organization?.id ?? orgId });
    for (const link of svc.service_at_locations ?? []) {
      const locationId = link.location_id ?? link.location?.id;
      if (link.location) addLocation(link.location, svc.organization_id ?? orgId);
      if (locationId) c.links.push({ service_id: svc.id, location_id: locationId });
    }
  };
  const addOrganization = (o: unknown) => {
    if (!isObject(o) || !str(o.id)) throw badRequest('Every HSDS organization needs an id');
    const org = o as unknown as HsdsOrganization;
    const existing = c.organizations.get(org.id);
    c.organizations.set(org.id, { ...existing, ...org, services: undefined, locations: undefined });
    for (const l of org.locations ?? []) addLocation(l, org.id);
    for (const s of org.services ?? []) addService(s, org.id);
  };
  const items = Array.isArray(input) ? input : isObject(input) && !('organizations' in input || 'services' in input || 'locations' in input) ? [input] : undefined;
  if (items) {
    for (const item of items) {
      if (!isObject(item)) throw badRequest('HSDS items must be objects');
      // A service has an organization or service_at_locations; an organization has services/locations.
      if ('services' in item || 'locations' in item || 'organization_identifiers' in item || 'website' in item) addOrganization(item);
      else addService(item);
    }
    return c;
  }
  const obj = input as Json;
  for (const o of (obj.organizations as unknown[]) ?? []) addOrganization(o);
  for (const l of (obj.locations as unknown[]) ?? []) addLocation(l);
  for (const s of (obj.services as unknown[]) ?? []) addService(s);
  for (const link of (obj.service_at_locations as HsdsServiceAtLocation[]) ?? []) if (link.service_id && link.location_id) c.links.push(link);
  return c;
}

/**
 * Maps an HSDS export — an array of services (compiled service.json form, with organization and
 * service_at_locations nested), an array of organizations (with services and locations nested), or
 * an object of tables { organizations, services, locations, service_at_locations } — to a FHIR
 * transaction Bundle of PUTs (Organizations, then Locations, then HealthcareServices).
 */
export function hsdsToBundle(input: unknown, options: HsdsImportOptions = {}): Bundle {
  if (!Array.isArray(input) && !isObject(input)) throw badRequest('An HSDS export is a JSON array or object');
  if (options.defaultSector && !(SECTORS as readonly string[]).includes(options.defaultSector)) throw badRequest(`Unknown sector ${options.defaultSector}`, 'sector');
  const c = collect(input);
  const orgs = new Map<string, Organization>();
  for (const o of c.organizations.values()) orgs.set(o.id, mapOrganization(o, options));
  const locationsByService = new Map<string, string[]>();
  for (const link of c.links) {
    if (!link.service_id || !link.location_id) continue;
    const list = locationsByService.get(link.service_id) ?? [];
    const id = fhirIdFor(link.location_id);
    if (!list.includes(id)) list.push(id);
    locationsByService.set(link.service_id, list);
  }
  const resources: Resource[] = [...orgs.values()];
  for (const l of c.locations.values()) resources.push(mapLocation(l));
  for (const s of c.services.values()) {
    const provider = s.organization_id ? orgs.get(s.organization_id) : undefined;
    const providerSectors = (provider?.type ?? []).flatMap((t) => t.coding ?? []).filter((x) => x.system === SECTOR_SYSTEM).map((x) => x.code!);
    if (providerSectors.length === 0 && options.defaultSector) providerSectors.push(options.defaultSector);
    resources.push(mapService(s, locationsByService.get(s.id) ?? [], providerSectors, options));
  }
  const entry: BundleEntry[] = resources.map((r) => ({ fullUrl: `${r.resourceType}/${r.id}`, resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } }));
  return { resourceType: 'Bundle', type: 'transaction', entry };
}
