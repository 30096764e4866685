// Ranking of directory services for a referral need. Pure and deterministic: the same need and
// directory give the same order, and every point of a score comes with the reason for it.
//
// Points (100 at most): language 30, trauma-informed capability 20, capacity 20, distance 20,
// sector 10. Inactive services, closed services and services outside a requested category are left
// out. Ties are broken by distance, then name, then id.
import type { HealthcareService, Location, Organization } from '@medplum/fhirtypes';
import { TIC_CAPABILITY_SYSTEM } from './codes.ts';
import { capacityOf, primaryLanguage, serviceLanguages, serviceSectors, ticCapability } from './directory.ts';

export type Urgency = 'routine' | 'urgent' | 'asap' | 'stat';

export interface MatchNeed {
  /** Service category/type codes (any system); a service must carry one of them. */
  category?: string[];
  sector?: string;
  /** BCP-47 code of the person's preferred language. */
  language?: string;
  postalCode?: string;
  position?: { latitude: number; longitude: number };
  urgency?: Urgency;
}

export interface MatchCandidate {
  service: HealthcareService;
  provider?: Organization;
  locations: Location[];
}

export type MatchFactor = 'language' | 'trauma-informed' | 'capacity' | 'distance' | 'sector';

export interface MatchReason {
  factor: MatchFactor;
  points: number;
  max: number;
  detail: string;
}

export interface RankedService {
  service: HealthcareService;
  /** 0..100 */
  total: number;
  /** Kilometres to the nearest location, when both positions are known. */
  distanceKm?: number;
  reasons: MatchReason[];
}

export const WEIGHTS: Record<MatchFactor, number> = { language: 30, 'trauma-informed': 20, capacity: 20, distance: 20, sector: 10 };
/** Capacity older than this counts half: the directory may be out of date. */
export const STALE_CAPACITY_DAYS = 30;
/** Distance points fall linearly to zero at this many kilometres. */
export const DISTANCE_HORIZON_KM = 50;

const round = (n: number, places = 2) => Math.round(n * 10 ** places) / 10 ** places;

export function haversineKm(a: { latitude: number; longitude: number }, b: { latitude: number; longitude: number }): number {
  const rad = (d: number) => (d * Math.PI) / 180;
  const dLat = rad(b.latitude - a.latitude);
  const dLon = rad(b.longitude - a.longitude);
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(rad(a.latitude)) * Math.cos(rad(b.latitude)) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(h)));
}

export function normalisePostcode(p: string): string {
  return p.toUpperCase().replace(/\s+/g, '');
}

/** The outward part of a postcode: before the space, or (UK style, no space) all but the last 3 characters. */
function outward(p: string): string {
  const trimmed = p.trim().toUpperCase();
  if (trimmed.includes(' ')) return trimmed.split(/\s+/)[0];
  const n = normalisePostcode(p);
  return n.length > 4 && /[A-Z]/.test(n) ? n.slice(0, -3) : n;
}

function area(p: string): string {
  return /^[A-Z]+/.exec(normalisePostcode(p))?.[0] ?? '';
}

function isVirtual(l: Location): boolean {
  return (l.physicalType?.coding ?? []).some((c) => c.code === 'vi');
}

function languageReason(need: MatchNeed, service: HealthcareService): MatchReason {
  const max = WEIGHTS.language;
  if (!need.language) return { factor: 'language', points: 0, max, detail: 'no language given' };
  const wanted = primaryLanguage(need.language);
  const langs = serviceLanguages(service);
  if (langs.includes(wanted)) return { factor: 'language', points: max, max, detail: `delivers in ${need.language}` };
  return { factor: 'language', points: 0, max, detail: langs.length ? `does not list ${need.language} (lists ${[...new Set(langs)].join(', ')}); an interpreter would be needed` : `lists no languages; ${need.language} not confirmed` };
}

function ticReason(service: HealthcareService): MatchReason {
  const max = WEIGHTS['trauma-informed'];
  const { level, code } = ticCapability(service);
  if (level === 0) return { factor: 'trauma-informed', points: 0, max, detail: `no trauma-informed capability recorded (${TIC_CAPABILITY_SYSTEM})` };
  return { factor: 'trauma-informed', points: (max * level) / 4, max, detail: `${code} (level ${level} of 4)` };
}

function capacityReason(need: MatchNeed, service: HealthcareService, now: Date): MatchReason | 'closed' {
  const max = WEIGHTS.capacity;
  const cap = capacityOf(service);
  if (!cap) return { factor: 'capacity', points: 5, max, detail: 'capacity unknown' };
  if (cap.status === 'closed') return 'closed';
  const urgent = need.urgency !== undefined && need.urgency !== 'routine';
  let points = cap.status === 'accepting' ? max : urgent ? 0 : 8;
  let detail = cap.status === 'accepting' ? 'accepting referrals' : urgent ? 'waitlist (need is urgent)' : 'waitlist';
  if (cap.lastUpdated) {
    const ageDays = Math.floor((now.getTime() - Date.parse(cap.lastUpdated)) / 86_400_000);
    if (ageDays > STALE_CAPACITY_DAYS) {
      points /= 2;
      detail += `; last updated ${ageDays} days ago, counted half`;
    } else {
      detail += `; updated ${cap.lastUpdated.slice(0, 10)}`;
    }
  } else {
    points /= 2;
    detail += '; update date unknown, counted half';
  }
  return { factor: 'capacity', points, max, detail };
}

function distanceReason(need: MatchNeed, locations: Location[]): { reason: MatchReason; km?: number } {
  const max = WEIGHTS.distance;
  if (need.position) {
    const kms = locations.filter((l) => l.position).map((l) => haversineKm(need.position!, { latitude: l.position!.latitude!, longitude: l.position!.longitude! }));
    if (kms.length > 0) {
      const km = Math.min(...kms);
      const points = max * Math.max(0, 1 - km / DISTANCE_HORIZON_KM);
      return { reason: { factor: 'distance', points, max, detail: `${round(km, 1)} km to the nearest location` }, km };
    }
  }
  if (need.postalCode) {
    const postcodes = locations.map((l) => l.address?.postalCode).filter((p): p is string => !!p);
    const want = need.postalCode;
    if (postcodes.some((p) => normalisePostcode(p) === normalisePostcode(want))) return { reason: { factor: 'distance', points: max, max, detail: `same postcode ${want}` } };
    if (postcodes.some((p) => outward(p) === outward(want))) return { reason: { factor: 'distance', points: 12, max, detail: `same postcode district ${outward(want)}` } };
    if (postcodes.some((p) => area(p) !== '' && area(p) === area(want))) return { reason: { factor: 'distance', points: 5, max, detail: `same postcode area ${area(want)}` } };
  }
  if (locations.some(isVirtual)) return { reason: { factor: 'distance', points: max / 2, max, detail: 'delivered remotely' } };
  if (!need.position && !need.postalCode) return { reason: { factor: 'distance', points: 0, max, detail: 'no place given' } };
  return { reason: { factor: 'distance', points: 0, max, detail: 'no location near the place given' } };
}

function sectorReason(need: MatchNeed, sectors: string[]): MatchReason {
  const max = WEIGHTS.sector;
  if (!need.sector) return { factor: 'sector', points: 0, max, detail: 'no sector given' };
  if (sectors.includes(need.sector)) return { factor: 'sector', points: max, max, detail: `sector ${need.sector}` };
  return { factor: 'sector', points: 0, max, detail: sectors.length ? `sector ${sectors.join(', ')}, not ${need.sector}` : 'sector unknown' };
}

function inCategory(need: MatchNeed, c: MatchCandidate): boolean {
  if (!need.category || need.category.length === 0) return true;
  const s = c.service;
  const codes = new Set([...(s.category ?? []), ...(s.type ?? []), ...(s.specialty ?? [])].flatMap((cc) => cc.coding ?? []).map((x) => x.code));
  return need.category.some((code) => codes.has(code));
}

export function scoreService(need: MatchNeed, c: MatchCandidate, now: Date): RankedService | undefined {
  if (c.service.active === false || !inCategory(need, c)) return undefined;
  const capacity = capacityReason(need, c.service, now);
  if (capacity === 'closed') return undefined;
  const distance = distanceReason(need, c.locations);
  const reasons = [languageReason(need, c.service), ticReason(c.service), capacity, distance.reason, sectorReason(need, serviceSectors(c.service, c.provider))].map((r) => ({ ...r, points: round(r.points) }));
  const total = round(reasons.reduce((sum, r) => sum + r.points, 0));
  return { service: c.service, total, ...(distance.km !== undefined ? { distanceKm: round(distance.km, 3) } : {}), reasons };
}

/** Ranked candidates, best first. */
export function rankServices(need: MatchNeed, candidates: MatchCandidate[], now: Date = new Date()): RankedService[] {
  const ranked = candidates.map((c) => scoreService(need, c, now)).filter((r): r is RankedService => !!r);
  return ranked.sort(
    (a, b) =>
      b.total - a.total ||
      (a.distanceKm ?? Number.POSITIVE_INFINITY) - (b.distanceKm ?? Number.POSITIVE_INFINITY) ||
      (a.service.name ?? '').localeCompare(b.service.name ?? '') ||
      (a.service.id ?? '').localeCompare(b.service.id ?? ''),
  );
}

