// The CapabilityStatement, generated from what this code supports: every R4 resource type from the
// definitions, the search parameters the engine indexes, and the registered operations.
import type { CapabilityStatement, CapabilityStatementRestResource } from '@medplum/fhirtypes';
import type { FhirOperation } from '@tic/fhir';
import { allResourceTypes, searchParametersFor } from '@tic/fhir';
import { compiledParamsFor } from '@tic/store';

export interface CapabilityOptions {
  baseUrl: string;
  version: string;
  operations: FhirOperation[];
  /** Added to rest.security (SMART) by the auth layer. */
  smart?: { tokenUrl: string };
  /** The instantiated time; fixed at start. */
  date: string;
}

const interactions: CapabilityStatementRestResource['interaction'] = [
  'read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type',
].map((code) => ({ code: code as NonNullable<CapabilityStatementRestResource['interaction']>[number]['code'] }));

export function buildCapabilityStatement(opts: CapabilityOptions): CapabilityStatement {
  const resource: CapabilityStatementRestResource[] = allResourceTypes().map((type) => {
    const indexed = new Set(compiledParamsFor(type).map((p) => p.code));
    const params = Object.entries(searchParametersFor(type))
      .filter(([code]) => indexed.has(code) || code === '_id' || code === '_lastUpdated')
      .map(([code, sp]) => ({ name: code, definition: sp.url, type: sp.type }));
    const ops = opts.operations.filter((o) => o.resourceTypes.includes(type) && (o.type || o.instance));
    return {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: interactions,
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'modified-since',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      referencePolicy: ['literal', 'logical'],
      searchInclude: ['*'],
      searchRevInclude: ['*'],
      searchParam: params,
      ...(ops.length > 0 ? { operation: ops.map((o) => ({ name: o.code, definition: o.definition?.url ?? `${opts.baseUrl}/OperationDefinition/${o.code}` })) } : {}),
    } as CapabilityStatementRestResource;
  });
  const system = opts.operations.filter((o) => o.system);
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: opts.date,
    publisher: 'tic-exchange',
    kind: 'instance',
    software: { name: 'tic-exchange', version: opts.version },
    implementation: { description: 'tic-exchange FHIR R4 server', url: opts.baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        ...(opts.smart
          ? {
              security: {
                cors: false,
                service: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }] }],
                extension: [
                  {
                    url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
                    extension: [{ url: 'token', valueUri: opts.smart.tokenUrl }],
                  },
                ],
              },
            }
          : {}),
        resource,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'history-system' }, { code: 'search-system' }],
        searchParam: [
          { name: '_count', type: 'number' },
          { name: '_sort', type: 'string' },
          { name: '_include', type: 'string' },
          { name: '_revinclude', type: 'string' },
          { name: '_total', type: 'token' },
          { name: '_summary', type: 'token' },
          { name: '_elements', type: 'string' },
        ],
        ...(system.length > 0 ? { operation: system.map((o) => ({ name: o.code, definition: o.definition?.url ?? `${opts.baseUrl}/OperationDefinition/${o.code}` })) } : {}),
      },
    ],
  };
}
