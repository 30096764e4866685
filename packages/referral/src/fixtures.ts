// Directory fixtures shared by the tests: three housing and mental-health services around
// Manchester (positions are the real city-centre coordinates of the named places, rounded).
import type { HealthcareService, Location, Organization } from '@medplum/fhirtypes';
import { LANGUAGE_SYSTEM, SECTOR_SYSTEM, TIC_CAPABILITY_SYSTEM } from './codes.ts';
import { capacityExtension } from './directory.ts';

export const NOW = new Date('2025-06-01T12:00:00Z');

export const organizations: Organization[] = [
  { resourceType: 'Organization', id: 'shelter-north', name: 'Shelter North', type: [{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }] },
  { resourceType: 'Organization', id: 'mind-city', name: 'Mind City', type: [{ coding: [{ system: SECTOR_SYSTEM, code: 'mental-health' }] }] },
];

export const locations: Location[] = [
  { resourceType: 'Location', id: 'loc-piccadilly', status: 'active', name: 'Piccadilly', address: { postalCode: 'M1 2AB' }, position: { latitude: 53.4774, longitude: -2.2309 } },
  { resourceType: 'Location', id: 'loc-salford', status: 'active', name: 'Salford', address: { postalCode: 'M5 4WT' }, position: { latitude: 53.4875, longitude: -2.2901 } },
  { resourceType: 'Location', id: 'loc-leeds', status: 'active', name: 'Leeds', address: { postalCode: 'LS1 4DY' }, position: { latitude: 53.7997, longitude: -1.5492 } },
];

const tic = (code: string) => ({ coding: [{ system: TIC_CAPABILITY_SYSTEM, code }] });
const lang = (code: string) => ({ coding: [{ system: LANGUAGE_SYSTEM, code }] });
const sector = (code: string) => ({ coding: [{ system: SECTOR_SYSTEM, code }] });

export const services: HealthcareService[] = [
  {
    resourceType: 'HealthcareService',
    id: 'svc-tenancy',
    active: true,
    name: 'Tenancy sustainment',
    providedBy: { reference: 'Organization/shelter-north' },
    category: [sector('housing')],
    characteristic: [tic('trauma-informed')],
    communication: [lang('en'), lang('ar')],
    location: [{ reference: 'Location/loc-piccadilly' }],
    extension: [capacityExtension('accepting', '2025-05-20T09:00:00Z')],
  },
  {
    resourceType: 'HealthcareService',
    id: 'svc-hostel',
    active: true,
    name: 'Emergency hostel',
    providedBy: { reference: 'Organization/shelter-north' },
    category: [sector('housing')],
    characteristic: [tic('trauma-aware')],
    communication: [lang('en')],
    location: [{ reference: 'Location/loc-salford' }],
    extension: [capacityExtension('waitlist', '2025-05-30T09:00:00Z')],
  },
  {
    resourceType: 'HealthcareService',
    id: 'svc-leeds',
    active: true,
    name: 'Leeds housing advice',
    providedBy: { reference: 'Organization/shelter-north' },
    category: [sector('housing')],
    characteristic: [tic('trauma-responsive')],
    communication: [lang('ar')],
    location: [{ reference: 'Location/loc-leeds' }],
    extension: [capacityExtension('accepting', '2025-01-01T09:00:00Z')],
  },
  {
    resourceType: 'HealthcareService',
    id: 'svc-closed',
    active: true,
    name: 'Closed service',
    providedBy: { reference: 'Organization/shelter-north' },
    category: [sector('housing')],
    location: [{ reference: 'Location/loc-piccadilly' }],
    extension: [capacityExtension('closed', '2025-05-30T09:00:00Z')],
  },
  {
    resourceType: 'HealthcareService',
    id: 'svc-talking',
    active: true,
    name: 'Talking therapies',
    providedBy: { reference: 'Organization/mind-city' },
    characteristic: [tic('trauma-informed')],
    communication: [lang('ar-EG')],
    location: [{ reference: 'Location/loc-piccadilly' }],
    extension: [capacityExtension('accepting', '2025-05-31T09:00:00Z')],
  },
  { resourceType: 'HealthcareService', id: 'svc-inactive', active: false, name: 'Old service', category: [sector('housing')] },
];

export function candidates() {
  const orgs = new Map(organizations.map((o) => [`Organization/${o.id}`, o]));
  const locs = new Map(locations.map((l) => [`Location/${l.id}`, l]));
  return services.map((service) => ({
    service,
    provider: orgs.get(service.providedBy?.reference ?? ''),
    locations: (service.location ?? []).map((l) => locs.get(l.reference ?? '')).filter((l): l is Location => !!l),
  }));
}
