// Confidentiality labels in meta.security: R (restricted) and V (very restricted) resources are
// readable only by clients registered as `sensitive`.
import type { Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';

export const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const RESTRICTED = new Set(['R', 'V']);

export function isRestricted(resource: Pick<Resource, 'meta'>): boolean {
  return (resource.meta?.security ?? []).some((c) => c.system === CONFIDENTIALITY && !!c.code && RESTRICTED.has(c.code));
}

/** Internal (system) access and clients flagged `sensitive` see restricted resources; others do not. */
export function canSeeResource(ctx: (RequestContext & { sensitive?: boolean }) | undefined, resource: Pick<Resource, 'meta'>): boolean {
  if (!isRestricted(resource)) return true;
  return ctx?.system === true || ctx?.sensitive === true;
}
