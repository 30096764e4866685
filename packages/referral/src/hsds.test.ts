import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HealthcareService, Location, Organization } from '@medplum/fhirtypes';
import { createValidator } from '@tic/fhir';
import { isOperationOutcomeError } from '@tic/fhir';
import { HSDS_IDENTIFIER_SYSTEM, SECTOR_SYSTEM } from './codes.ts';
import { capacityOf, serviceLanguages } from './directory.ts';
import { fhirIdFor, hsdsToBundle } from './hsds.ts';

const services = JSON.parse(readFileSync(join(__dirname, 'testdata/hsds-services.json'), 'utf8')) as unknown[];

describe('hsdsToBundle', () => {
  const bundle = hsdsToBundle(services, { now: '2025-06-01T00:00:00Z' });
  const byType = (t: string) => (bundle.entry ?? []).map((e) => e.resource!).filter((r) => r.resourceType === t);

  it('maps organizations, locations and services into a PUT transaction, organizations first', () => {
    expect(bundle.type).toBe('transaction');
    expect(bundle.entry!.map((e) => e.resource!.resourceType)).toEqual(['Organization', 'Location', 'HealthcareService', 'HealthcareService']);
    for (const e of bundle.entry!) expect(e.request).toEqual({ method: 'PUT', url: `${e.resource!.resourceType}/${e.resource!.id}` });
  });

  it('maps the service fields', () => {
    const svc = byType('HealthcareService')[0] as HealthcareService;
    expect(svc.id).toBe('hsds-4b1a3f5e-8c1d-4f57-9c5e-2d7a3b6e9f01');
    expect(svc.identifier).toEqual([{ system: HSDS_IDENTIFIER_SYSTEM, value: '4b1a3f5e-8c1d-4f57-9c5e-2d7a3b6e9f01' }]);
    expect(svc.providedBy).toEqual({ reference: 'Organization/hsds-9d2c7e10-1111-4a4a-8b8b-000000000001' });
    expect(svc.location).toEqual([{ reference: 'Location/hsds-7e6f5d4c-2222-4b4b-9c9c-000000000002' }]);
    expect(svc.category).toEqual([{ coding: [{ system: SECTOR_SYSTEM, code: 'housing' }] }]);
    expect(svc.type?.[0]).toEqual({ coding: [{ code: 'BH-1800.1500', display: 'Domestic Violence Shelters' }], text: 'Domestic Violence Shelters' });
    expect(serviceLanguages(svc)).toEqual(['en', 'ur']);
    expect(svc.eligibility?.[0].comment).toBe('Women aged 16 and over; minimum age 16');
    expect(svc.availableTime).toEqual([{ daysOfWeek: ['mon', 'tue', 'wed', 'thu', 'fri'], availableStartTime: '09:00:00', availableEndTime: '17:30:00' }]);
    expect(capacityOf(svc)).toEqual({ status: 'accepting', lastUpdated: '2025-05-30T08:00:00Z' });
    expect(svc.telecom).toEqual([
      { system: 'phone', value: '0161 000 0000' },
      { system: 'email', value: 'outreach@refuge.example.org' },
      { system: 'url', value: 'https://refuge.example.org/outreach' },
    ]);
    expect(svc.extraDetails).toMatch(/Interpretation services: Telephone interpreting on request/);
  });

  it('maps the location and organization', () => {
    const loc = byType('Location')[0] as Location;
    expect(loc.position).toEqual({ latitude: 53.4808, longitude: -2.2426 });
    expect(loc.address).toMatchObject({ line: ['1 Example Street'], city: 'Manchester', state: 'Greater Manchester', postalCode: 'M1 1AA', country: 'GB' });
    const org = byType('Organization')[0] as Organization;
    expect(org.name).toBe('Northgate Refuge Trust');
    expect(org.telecom).toEqual([{ system: 'email', value: 'info@refuge.example.org' }, { system: 'url', value: 'https://refuge.example.org' }]);
  });

  it('turns a temporarily closed service into capacity closed, and hashes ids that are not FHIR ids', () => {
    const paused = byType('HealthcareService')[1] as HealthcareService;
    expect(paused.id).toBe(fhirIdFor('service/with spaces'));
    expect(paused.id).toMatch(/^hsds-[0-9a-f]{40}$/);
    expect(capacityOf(paused)?.status).toBe('closed');
  });

  it('gives organisations without sector attributes the default sector', () => {
    const b = hsdsToBundle([{ id: 'o1', name: 'Peer collective', description: 'x', website: 'https://p.example.org', services: [{ id: 's1', name: 'Peer group', status: 'active' }] }], { defaultSector: 'peer-support' });
    const org = b.entry![0].resource as Organization;
    const svc = b.entry!.find((e) => e.resource!.resourceType === 'HealthcareService')!.resource as HealthcareService;
    expect(org.type).toEqual([{ coding: [{ system: SECTOR_SYSTEM, code: 'peer-support' }] }]);
    expect(svc.category).toEqual([{ coding: [{ system: SECTOR_SYSTEM, code: 'peer-support' }] }]);
    expect(svc.providedBy?.reference).toBe('Organization/hsds-o1');
  });

  it('reads the tabular form { organizations, services, locations, service_at_locations }', () => {
    const b = hsdsToBundle({
      organizations: [{ id: 'o1', name: 'Org' }],
      locations: [{ id: 'l1', name: 'Loc', organization_id: 'o1' }],
      services: [{ id: 's1', organization_id: 'o1', name: 'Svc', status: 'active' }],
      service_at_locations: [{ id: 'x', service_id: 's1', location_id: 'l1' }],
    });
    const svc = b.entry!.find((e) => e.resource!.resourceType === 'HealthcareService')!.resource as HealthcareService;
    expect(svc.location).toEqual([{ reference: 'Location/hsds-l1' }]);
    expect((b.entry!.find((e) => e.resource!.resourceType === 'Location')!.resource as Location).managingOrganization).toEqual({ reference: 'Organization/hsds-o1' });
  });

  it('produces resources that pass the FHIR R4 validator', () => {
    const validator = createValidator({ profiles: [], terminology: [] });
    for (const e of bundle.entry!) expect(validator.validate(e.resource!).filter((i) => i.severity === 'error')).toEqual([]);
  });

  it('refuses input that is not an export, and unknown sectors', () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return isOperationOutcomeError(e) ? e.message : 'other';
      }
      return 'none';
    };
    expect(err(() => hsdsToBundle('nope'))).toMatch(/JSON array or object/);
    expect(err(() => hsdsToBundle([{ name: 'no id' }]))).toMatch(/needs an id/);
    expect(err(() => hsdsToBundle([], { defaultSector: 'banking' }))).toMatch(/Unknown sector/);
  });
});
