import type { Resource } from '@medplum/fhirtypes';

export type FhirMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** One FHIR interaction, whether it came over HTTP or inside a batch/transaction Bundle. */
export interface FhirRequest {
  method: FhirMethod;
  /** Path relative to the FHIR base, without leading slash or query: "Patient/123/_history/2". */
  path: string;
  query: Record<string, string[]>;
  body?: unknown;
  ifMatch?: string;
  ifNoneExist?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  prefer?: string;
  contentType?: string;
}

export interface FhirResponse {
  status: number;
  body?: Resource;
  headers: Record<string, string>;
}

export type Interaction = 'read' | 'vread' | 'update' | 'patch' | 'delete' | 'history-instance' | 'history-type' | 'history-system' | 'create' | 'search-type' | 'search-system' | 'batch' | 'transaction' | 'operation' | 'capabilities';
