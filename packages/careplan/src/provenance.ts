// A Provenance for every change of a recovery plan, goal or care team, written in the write's
// transaction. The client's X-Provenance header (a Provenance as JSON) supplies the author,
// reason and activity it declares; the server adds the acting client and its organisation, the
// versioned target and the time.
import type { CodeableConcept, Provenance, ProvenanceAgent, Resource } from '@medplum/fhirtypes';
import type { RequestContext, WriteInteraction } from '@tic/fhir';
import { badRequest } from '@tic/fhir';
import { HL7, SYSTEM } from './constants.ts';

/** The X-Provenance header as a Provenance; 400 when it is not one. Undefined when absent. */
export function parseProvenanceHeader(raw: string | undefined): Provenance | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw badRequest('X-Provenance must be a Provenance resource as JSON');
  }
  if (!parsed || typeof parsed !== 'object' || (parsed as Resource).resourceType !== 'Provenance') throw badRequest('X-Provenance must be a Provenance resource as JSON');
  const p = parsed as Provenance;
  if (p.agent !== undefined && (!Array.isArray(p.agent) || p.agent.some((a) => !a || typeof a !== 'object' || !a.who))) throw badRequest('Every agent in X-Provenance needs who', 'Provenance.agent');
  return p;
}

const OPERATION: Record<WriteInteraction, string> = { create: 'CREATE', update: 'UPDATE', patch: 'UPDATE', delete: 'DELETE' };

const participantType = (code: string): CodeableConcept => ({ coding: [{ system: HL7.participantType, code }] });

/** The agent for the acting client: author when the header names no author, else enterer. */
function clientAgent(request: RequestContext, headerHasAuthor: boolean): ProvenanceAgent | undefined {
  if (!request.clientId && !request.organization) return undefined;
  const agent: ProvenanceAgent = {
    type: participantType(headerHasAuthor ? 'enterer' : 'author'),
    who: request.clientId ? { identifier: { system: SYSTEM.clientId, value: request.clientId }, display: request.clientId } : { reference: request.organization },
  };
  if (request.organization) agent.onBehalfOf = { reference: request.organization };
  return agent;
}

export function isAuthorAgent(a: ProvenanceAgent): boolean {
  const codes = (a.type?.coding ?? []).map((c) => c.code);
  return codes.length === 0 || codes.includes('author');
}

/** The Provenance of one stored version (`target` carries meta.versionId). */
export function buildProvenance(target: Resource, interaction: WriteInteraction, request: RequestContext, header: Provenance | undefined, now: string): Provenance {
  const declared = header?.agent ?? [];
  const client = clientAgent(request, declared.some(isAuthorAgent));
  const agent = [...declared, ...(client ? [client] : [])];
  if (agent.length === 0) agent.push({ type: participantType('author'), who: { display: 'tic-exchange server' } });
  const version = target.meta?.versionId;
  const provenance: Provenance = {
    resourceType: 'Provenance',
    target: [{ reference: `${target.resourceType}/${target.id}${version ? `/_history/${version}` : ''}` }],
    recorded: now,
    activity: header?.activity ?? { coding: [{ system: HL7.dataOperation, code: OPERATION[interaction] }] },
    reason: header?.reason?.length ? header.reason : [{ coding: [{ system: HL7.actReason, code: 'TREAT' }] }],
    agent,
  };
  if (header?.occurredDateTime) provenance.occurredDateTime = header.occurredDateTime;
  if (header?.occurredPeriod) provenance.occurredPeriod = header.occurredPeriod;
  if (header?.policy) provenance.policy = header.policy;
  if (header?.entity) provenance.entity = header.entity;
  if (header?.signature) provenance.signature = header.signature;
  if (header?.location) provenance.location = header.location;
  return provenance;
}
