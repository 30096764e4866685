// $import-hsds: loads an Open Referral HSDS JSON export into the directory. The directory is
// reference data every organisation may read, so it is written by the server itself, in one
// transaction, by a client allowed to write HealthcareService, Organization and Location.
import type { Bundle, BundleEntry, Parameters, Resource } from '@medplum/fhirtypes';
import type { FhirOperation, RequestContext, ResourceRepository } from '@tic/fhir';
import { badRequest, forbidden } from '@tic/fhir';
import { Repository } from '@tic/store';
import { hsdsToBundle } from '../hsds.ts';

function mayWrite(ctx: RequestContext, type: string): boolean {
  if (ctx.system || !ctx.organization) return true;
  return (ctx.scopes ?? []).some((s) => {
    const m = /^(system|user)\/([A-Za-z*]+)\.([a-z*]+)$/.exec(s);
    if (!m || (m[2] !== '*' && m[2] !== type)) return false;
    return m[3] === '*' || m[3] === 'write' || (m[3].includes('c') && m[3].includes('u'));
  });
}

function hsdsPayload(body: Resource | undefined): { data: unknown; sector?: string } {
  if (!body || body.resourceType !== 'Parameters') throw badRequest('POST a Parameters resource with an "hsds" parameter (valueString or valueAttachment.data holding the JSON export)');
  const params = (body as Parameters).parameter ?? [];
  const p = params.find((x) => x.name === 'hsds');
  const text = p?.valueString ?? (p?.valueAttachment?.data ? Buffer.from(p.valueAttachment.data, 'base64').toString('utf8') : undefined);
  if (!text) throw badRequest('Parameter "hsds" is required', 'hsds');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw badRequest('Parameter "hsds" is not valid JSON', 'hsds');
  }
  const sector = params.find((x) => x.name === 'sector')?.valueCode;
  return { data, ...(sector ? { sector } : {}) };
}

/** Writes every entry of a PUT-only transaction Bundle; returns a transaction-response. */
export async function applyDirectoryBundle(repo: ResourceRepository, bundle: Bundle): Promise<Bundle> {
  const write = async (r: ResourceRepository): Promise<BundleEntry[]> => {
    const out: BundleEntry[] = [];
    for (const e of bundle.entry ?? []) {
      const resource = e.resource!;
      if (r instanceof Repository) {
        const { resource: stored, created } = await r.updateWithOutcome(resource);
        out.push({ response: { status: created ? '201 Created' : '200 OK', location: `${stored.resourceType}/${stored.id}/_history/${stored.meta?.versionId}` } });
      } else {
        const stored = await r.update(resource);
        out.push({ response: { status: '200 OK', location: `${stored.resourceType}/${stored.id}/_history/${stored.meta?.versionId}` } });
      }
    }
    return out;
  };
  const entry = repo instanceof Repository ? await repo.asSystem().transaction((tx) => write(tx)) : await write(repo);
  return { resourceType: 'Bundle', type: 'transaction-response', entry };
}

export function importHsdsOperation(options: { now?: () => Date } = {}): FhirOperation {
  return {
    code: 'import-hsds',
    resourceTypes: [],
    system: true,
    affectsState: true,
    async handler(req) {
      if (req.method !== 'POST') throw badRequest('$import-hsds needs POST');
      for (const type of ['Organization', 'Location', 'HealthcareService']) {
        if (!mayWrite(req.request, type)) throw forbidden(`Importing a directory needs write access to ${type}`);
      }
      const { data, sector } = hsdsPayload(req.body);
      const bundle = hsdsToBundle(data, { ...(sector ? { defaultSector: sector } : {}), now: (options.now?.() ?? new Date()).toISOString() });
      return applyDirectoryBundle(req.repo, bundle);
    },
  };
}
