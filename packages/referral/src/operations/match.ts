// HealthcareService/$match: ranked directory services for a need, each with its reasons.
// The need comes from a ServiceRequest (and its Patient) or from parameters; parameters given
// explicitly override what the ServiceRequest implies.
import type { Bundle, BundleEntry, Extension, HealthcareService, Location, Organization, Patient, Resource, ServiceRequest } from '@medplum/fhirtypes';
import type { FhirOperation, OperationRequest, ResourceRepository } from '@tic/fhir';
import { badRequest } from '@tic/fhir';
import { MATCH_REASON_EXTENSION, SECTOR_SYSTEM, SECTORS } from '../codes.ts';
import { codesIn } from '../directory.ts';
import type { MatchCandidate, MatchNeed, RankedService, Urgency } from '../match.ts';
import { rankServices } from '../match.ts';
import { operationInputs } from './params.ts';

const URGENCIES: Urgency[] = ['routine', 'urgent', 'asap', 'stat'];
const MAX_CANDIDATES = 1000;

function idOf(reference: string | undefined, type: string): string | undefined {
  if (!reference) return undefined;
  const [t, id] = reference.split('/').slice(-2);
  return t === type && id ? id : undefined;
}

async function needFromServiceRequest(repo: ResourceRepository, reference: string): Promise<MatchNeed> {
  const id = idOf(reference, 'ServiceRequest');
  if (!id) throw badRequest('serviceRequest must reference a ServiceRequest', 'serviceRequest');
  const sr = await repo.read<ServiceRequest>('ServiceRequest', id);
  const sectors = [...codesIn(sr.category, SECTOR_SYSTEM), ...codesIn(sr.code, SECTOR_SYSTEM), ...codesIn(sr.performerType, SECTOR_SYSTEM)];
  const need: MatchNeed = {};
  if (sectors[0]) need.sector = sectors[0];
  if (sr.priority) need.urgency = sr.priority;
  const patientId = idOf(sr.subject?.reference, 'Patient');
  if (patientId) {
    const patient = await repo.read<Patient>('Patient', patientId);
    const comms = patient.communication ?? [];
    const preferred = comms.find((c) => c.preferred) ?? comms[0];
    const lang = preferred?.language.coding?.[0]?.code;
    if (lang) need.language = lang;
    const address = patient.address?.find((a) => a.use === 'home') ?? patient.address?.[0];
    if (address?.postalCode) need.postalCode = address.postalCode;
  }
  return need;
}

export async function needFromRequest(req: OperationRequest): Promise<MatchNeed> {
  const inputs = operationInputs(req);
  const srRef = inputs.reference('serviceRequest');
  const need: MatchNeed = srRef ? await needFromServiceRequest(req.repo, srRef) : {};
  const category = inputs.strings('category');
  if (category.length) need.category = category;
  const sector = inputs.string('sector');
  if (sector) {
    if (!(SECTORS as readonly string[]).includes(sector)) throw badRequest(`Unknown sector ${sector}`, 'sector');
    need.sector = sector;
  }
  const language = inputs.string('language');
  if (language) need.language = language;
  const postalCode = inputs.string('postalCode');
  if (postalCode) need.postalCode = postalCode;
  const latitude = inputs.number('latitude');
  const longitude = inputs.number('longitude');
  if ((latitude === undefined) !== (longitude === undefined)) throw badRequest('latitude and longitude go together', 'latitude');
  if (latitude !== undefined && longitude !== undefined) {
    if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180) throw badRequest('latitude/longitude out of range', 'latitude');
    need.position = { latitude, longitude };
  }
  const urgency = inputs.string('urgency');
  if (urgency) {
    if (!URGENCIES.includes(urgency as Urgency)) throw badRequest(`urgency must be one of ${URGENCIES.join(', ')}`, 'urgency');
    need.urgency = urgency as Urgency;
  }
  return need;
}

async function byIds<T extends Resource>(repo: ResourceRepository, type: T['resourceType'], ids: string[]): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  const unique = [...new Set(ids)];
  for (let i = 0; i < unique.length; i += 100) {
    const chunk = unique.slice(i, i + 100);
    for (const r of await repo.search<T>(type, { _id: chunk.join(','), _count: String(chunk.length) })) out.set(r.id!, r);
  }
  return out;
}

export async function loadCandidates(repo: ResourceRepository): Promise<MatchCandidate[]> {
  const services = await repo.search<HealthcareService>('HealthcareService', { active: 'true', _count: String(MAX_CANDIDATES) });
  const locations = await byIds<Location>(repo, 'Location', services.flatMap((s) => (s.location ?? []).map((l) => idOf(l.reference, 'Location')).filter((x): x is string => !!x)));
  const orgs = await byIds<Organization>(repo, 'Organization', services.map((s) => idOf(s.providedBy?.reference, 'Organization')).filter((x): x is string => !!x));
  return services.map((service) => ({
    service,
    provider: orgs.get(idOf(service.providedBy?.reference, 'Organization') ?? ''),
    locations: (service.location ?? []).map((l) => locations.get(idOf(l.reference, 'Location') ?? '')).filter((l): l is Location => !!l),
  }));
}

function reasonExtension(r: RankedService['reasons'][number]): Extension {
  return {
    url: MATCH_REASON_EXTENSION,
    extension: [
      { url: 'factor', valueCode: r.factor },
      { url: 'points', valueDecimal: r.points },
      { url: 'max', valueDecimal: r.max },
      { url: 'detail', valueString: r.detail },
    ],
  };
}

export function matchBundle(ranked: RankedService[], baseUrl: string | undefined, count: number): Bundle {
  const entry: BundleEntry[] = ranked.slice(0, count).map((r) => ({
    fullUrl: `${baseUrl ?? ''}${baseUrl ? '/' : ''}HealthcareService/${r.service.id}`,
    resource: r.service,
    search: { mode: 'match', score: Number((r.total / 100).toFixed(4)), extension: r.reasons.map(reasonExtension) },
  }));
  return { resourceType: 'Bundle', type: 'searchset', total: ranked.length, entry };
}

export function matchOperation(options: { now?: () => Date } = {}): FhirOperation {
  return {
    code: 'match',
    resourceTypes: ['HealthcareService'],
    type: true,
    affectsState: false,
    async handler(req) {
      const need = await needFromRequest(req);
      const count = operationInputs(req).number('count') ?? 20;
      if (!Number.isInteger(count) || count < 1 || count > 200) throw badRequest('count must be an integer from 1 to 200', 'count');
      const ranked = rankServices(need, await loadCandidates(req.repo), options.now?.() ?? new Date());
      return matchBundle(ranked, req.request.baseUrl, count);
    },
  };
}
