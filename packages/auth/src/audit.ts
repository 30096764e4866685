// AuditEvents after IHE Basic Audit Log Patterns (BALP 1.1): type `rest` with the FHIR restful
// interaction as subtype; the client as Source Role ID agent, this server as Destination Role ID,
// the client's Organization as a further agent; entities are references only (no patient data,
// no query values: only search parameter names).
import type { AuditEvent, AuditEventAgent, AuditEventEntity, Coding } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';

export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
export const AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
export const RESTFUL_INTERACTION = 'http://hl7.org/fhir/restful-interaction';
export const AUDIT_ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
export const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';
export const SECURITY_SOURCE_TYPE = 'http://terminology.hl7.org/CodeSystem/security-source-type';
export const BALP_ENTITY_TYPE = 'https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType';
/** Identifier system for our client ids (the OAuth client_id of a registered client). */
export const CLIENT_ID_SYSTEM = 'urn:tic-exchange:oauth-client-id';

export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';
export type AuditOutcome = '0' | '4' | '8' | '12';
/** Codes of http://hl7.org/fhir/restful-interaction. */
export type RestfulInteraction =
  | 'read' | 'vread' | 'update' | 'patch' | 'delete' | 'history' | 'history-instance' | 'history-type' | 'history-system'
  | 'create' | 'search' | 'search-type' | 'search-system' | 'capabilities' | 'transaction' | 'batch' | 'operation';

export interface AuditInput {
  ctx: RequestContext | undefined;
  action: AuditAction;
  interaction: RestfulInteraction;
  /** References of the resources acted on, e.g. "Task/123" or "Task/123/_history/2". */
  resources?: string[];
  /** The Patient the data is about, e.g. "Patient/42". */
  patient?: string;
  outcome: AuditOutcome;
  httpStatus?: number;
  when?: Date;
  /** For searches: the parameter names (never their values), e.g. ["subject", "code"]. */
  searchParameterNames?: string[];
  searchResourceType?: string;
  /** Client network address as seen by the server. */
  clientAddress?: string;
  /** This server: a display name and its base URL. */
  server?: { name: string; url?: string };
}

const interactionDisplay: Record<RestfulInteraction, string> = {
  read: 'read', vread: 'vread', update: 'update', patch: 'patch', delete: 'delete', history: 'history',
  'history-instance': 'history-instance', 'history-type': 'history-type', 'history-system': 'history-system',
  create: 'create', search: 'search', 'search-type': 'search-type', 'search-system': 'search-system',
  capabilities: 'capabilities', transaction: 'transaction', batch: 'batch', operation: 'operation',
};

const outcomeText: Record<AuditOutcome, string> = { '0': 'Success', '4': 'Minor failure', '8': 'Serious failure', '12': 'Major failure' };

const isSearch = (i: RestfulInteraction): boolean => i === 'search' || i === 'search-type' || i === 'search-system';

function clientAgent(ctx: RequestContext | undefined, address: string | undefined): AuditEventAgent {
  const agent: AuditEventAgent = {
    type: { coding: [{ system: DCM, code: '110153', display: 'Source Role ID' }] },
    who: ctx?.clientId
      ? { type: 'Device', identifier: { system: CLIENT_ID_SYSTEM, value: ctx.clientId } }
      : { display: ctx?.system ? 'tic-exchange (internal)' : 'unauthenticated client' },
    requestor: true,
  };
  if (address) agent.network = { address, type: '2' };
  return agent;
}

/** Builds one AuditEvent for a FHIR interaction. The caller stores it (in the write's transaction). */
export function buildAuditEvent(input: AuditInput): AuditEvent {
  const when = input.when ?? new Date();
  const server = input.server ?? { name: 'tic-exchange' };
  const search = isSearch(input.interaction);

  const agents: AuditEventAgent[] = [clientAgent(input.ctx, input.clientAddress)];
  const serverAgent: AuditEventAgent = {
    type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] },
    who: { display: server.name },
    requestor: false,
  };
  if (server.url) serverAgent.network = { address: server.url, type: '5' };
  agents.push(serverAgent);
  if (input.ctx?.organization) agents.push({ who: { reference: input.ctx.organization }, requestor: false });

  const entities: AuditEventEntity[] = [];
  if (input.ctx?.requestId) {
    entities.push({
      type: { system: BALP_ENTITY_TYPE, code: 'XrequestId' },
      what: { identifier: { value: input.ctx.requestId } },
    });
  }
  if (input.patient) {
    entities.push({
      what: { reference: input.patient },
      type: { system: AUDIT_ENTITY_TYPE, code: '1', display: 'Person' },
      role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
    });
  }
  for (const reference of input.resources ?? []) {
    if (reference === input.patient) continue;
    entities.push({
      what: { reference },
      type: { system: AUDIT_ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' },
    });
  }
  if (search) {
    const names = [...new Set(input.searchParameterNames ?? [])].sort();
    const entity: AuditEventEntity = {
      type: { system: AUDIT_ENTITY_TYPE, code: '2', display: 'System Object' },
      role: { system: OBJECT_ROLE, code: '24', display: 'Query' },
      description: `${input.searchResourceType ?? ''}?${names.join('&')}`,
    };
    entities.push(entity);
  }

  const subtype: Coding = { system: RESTFUL_INTERACTION, code: input.interaction, display: interactionDisplay[input.interaction] };
  const event: AuditEvent = {
    resourceType: 'AuditEvent',
    type: { system: AUDIT_EVENT_TYPE, code: 'rest', display: 'Restful Operation' },
    subtype: [subtype],
    action: search ? 'E' : input.action,
    recorded: when.toISOString(),
    outcome: input.outcome,
    agent: agents,
    source: {
      observer: { display: server.name },
      type: [{ system: SECURITY_SOURCE_TYPE, code: '4', display: 'Application Server' }],
    },
  };
  if (input.outcome !== '0' || input.httpStatus !== undefined) {
    event.outcomeDesc = `${outcomeText[input.outcome]}${input.httpStatus !== undefined ? ` (HTTP ${input.httpStatus})` : ''}`;
  }
  if (entities.length) event.entity = entities;
  return event;
}
