// Reading the directory's extensions and codes off Organization and HealthcareService.
import type { CodeableConcept, Coding, Extension, HealthcareService, Organization } from '@medplum/fhirtypes';
import type { CapacityStatus } from './codes.ts';
import { CAPACITY_EXTENSION, CAPACITY_STATUS_SYSTEM, CAPACITY_STATUSES, CULTURAL_FIT_EXTENSION, SECTOR_SYSTEM, TIC_CAPABILITY_SYSTEM, TIC_LEVELS } from './codes.ts';

function codings(concepts: CodeableConcept[] | CodeableConcept | undefined): Coding[] {
  if (!concepts) return [];
  return (Array.isArray(concepts) ? concepts : [concepts]).flatMap((c) => c.coding ?? []);
}

export function codesIn(concepts: CodeableConcept[] | CodeableConcept | undefined, system: string): string[] {
  return codings(concepts)
    .filter((c) => c.system === system && !!c.code)
    .map((c) => c.code!);
}

export function organizationSectors(org: Organization | undefined): string[] {
  return codesIn(org?.type, SECTOR_SYSTEM);
}

/** A service's sectors: its own category codings, else its providing organisation's. */
export function serviceSectors(service: HealthcareService, provider?: Organization): string[] {
  const own = codesIn(service.category, SECTOR_SYSTEM);
  return own.length > 0 ? own : organizationSectors(provider);
}

/** Highest trauma-informed capability level (1-4) declared in characteristic, with its code; 0 when none. */
export function ticCapability(service: HealthcareService): { level: number; code?: string } {
  let best: { level: number; code?: string } = { level: 0 };
  for (const code of codesIn(service.characteristic, TIC_CAPABILITY_SYSTEM)) {
    const level = TIC_LEVELS[code] ?? 0;
    if (level > best.level) best = { level, code };
  }
  return best;
}

export interface Capacity {
  status: CapacityStatus;
  lastUpdated?: string;
}

export function capacityOf(service: HealthcareService): Capacity | undefined {
  const ext = service.extension?.find((e) => e.url === CAPACITY_EXTENSION);
  if (!ext) return undefined;
  const status = ext.extension?.find((e) => e.url === 'status')?.valueCoding;
  if (!status || status.system !== CAPACITY_STATUS_SYSTEM || !CAPACITY_STATUSES.includes(status.code as CapacityStatus)) return undefined;
  const lastUpdated = ext.extension?.find((e) => e.url === 'lastUpdated')?.valueDateTime;
  return { status: status.code as CapacityStatus, ...(lastUpdated ? { lastUpdated } : {}) };
}

export function capacityExtension(status: CapacityStatus, lastUpdated: string): Extension {
  return {
    url: CAPACITY_EXTENSION,
    extension: [
      { url: 'status', valueCoding: { system: CAPACITY_STATUS_SYSTEM, code: status } },
      { url: 'lastUpdated', valueDateTime: lastUpdated },
    ],
  };
}

export function culturalFit(service: HealthcareService): string[] {
  return (service.extension ?? [])
    .filter((e) => e.url === CULTURAL_FIT_EXTENSION)
    .map((e) => e.valueCodeableConcept?.text ?? e.valueCodeableConcept?.coding?.[0]?.display ?? e.valueString ?? '')
    .filter((s) => s.length > 0);
}

/** Language codes (BCP-47, lower-cased primary subtag) a service delivers in. */
export function serviceLanguages(service: HealthcareService): string[] {
  return codings(service.communication)
    .map((c) => c.code)
    .filter((c): c is string => !!c)
    .map(primaryLanguage);
}

export function primaryLanguage(code: string): string {
  return code.toLowerCase().split(/[-_]/)[0];
}
