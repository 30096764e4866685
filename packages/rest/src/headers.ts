import type { Resource } from '@medplum/fhirtypes';

/** ETag, Last-Modified and (for creates) Location of a stored resource version. */
export function versionHeaders(resource: Resource, baseUrl: string, withLocation: boolean): Record<string, string> {
  const headers: Record<string, string> = {};
  const vid = resource.meta?.versionId;
  if (vid) headers['ETag'] = `W/"${vid}"`;
  if (resource.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (withLocation && vid) headers['Location'] = `${baseUrl}/${resource.resourceType}/${resource.id}/_history/${vid}`;
  return headers;
}

/** The version id in an If-Match header: W/"3" or "3" or 3. */
export function parseETag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const m = /^(?:W\/)?"?([^"]*)"?$/.exec(value.trim());
  return m ? m[1] : value;
}

export type ReturnPreference = 'minimal' | 'representation' | 'OperationOutcome';

export function returnPreference(prefer: string | undefined): ReturnPreference {
  const m = /return=(minimal|representation|OperationOutcome)/.exec(prefer ?? '');
  return (m?.[1] as ReturnPreference) ?? 'representation';
}

export function strictHandling(prefer: string | undefined): boolean {
  return /handling=strict/.test(prefer ?? '');
}
