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
  /** Further Patients the data is about (the results of a search). */
  patients?: string[];
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

  const agents = agentsFor(input.ctx, input.clientAddress, server);

  const entities: AuditEventEntity[] = [];
  if (input.ctx?.requestId) {
    entities.push({
      type: { system: BALP_ENTITY_TYPE, code: 'XrequestId' },
      what: { identifier: { value: input.ctx.requestId } },
    });
  }
  const patients = patientsOf(input);
  for (const p of patients) entities.push(patientEntity(p));
  for (const reference of input.resources ?? []) {
    if (!patients.includes(reference)) entities.push(resourceEntity(reference));
  }
  if (search) entities.push(queryEntity(input.searchResourceType, input.searchParameterNames));

  return eventShell(input, agents, entities, when, server);
}

function patientsOf(input: { patient?: string; patients?: string[] }): string[] {
  const all = input.patient ? [input.patient, ...(input.patients ?? [])] : (input.patients ?? []);
  return all.length > 1 ? [...new Set(all)] : all;
}

const patientEntity = (reference: string): AuditEventEntity => ({
  what: { reference },
  type: { system: AUDIT_ENTITY_TYPE, code: '1', display: 'Person' },
  role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
});

const resourceEntity = (reference: string): AuditEventEntity => ({
  what: { reference },
  type: { system: AUDIT_ENTITY_TYPE, code: '2', display: 'System Object' },
  role: { system: OBJECT_ROLE, code: '4', display: 'Domain Resource' },
});

function queryEntity(resourceType: string | undefined, parameterNames: string[] | undefined): AuditEventEntity {
  const names = [...new Set(parameterNames ?? [])].sort();
  return {
    type: { system: AUDIT_ENTITY_TYPE, code: '2', display: 'System Object' },
    role: { system: OBJECT_ROLE, code: '24', display: 'Query' },
    description: `${resourceType ?? ''}?${names.join('&')}`,
  };
}

function eventShell(input: AuditInput, agents: AuditEventAgent[], entities: AuditEventEntity[], when: Date, server: { name: string }): AuditEvent {
  const search = isSearch(input.interaction);
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

function agentsFor(ctx: RequestContext | undefined, clientAddress: string | undefined, server: { name: string; url?: string }): AuditEventAgent[] {
  const agents: AuditEventAgent[] = [clientAgent(ctx, clientAddress)];
  const serverAgent: AuditEventAgent = {
    type: { coding: [{ system: DCM, code: '110152', display: 'Destination Role ID' }] },
    who: { display: server.name },
    requestor: false,
  };
  if (server.url) serverAgent.network = { address: server.url, type: '5' };
  agents.push(serverAgent);
  if (ctx?.organization) agents.push({ who: { reference: ctx.organization }, requestor: false });
  return agents;
}

// ------------------------------------------------------------------ the compact audit record

/**
 * One audited access as the server records it durably at the time (a narrow row: in the same
 * statement as a write, group-committed before a read's response). AuditEvent resources are built
 * from these records moments later (buildAuditEvents), one per record or one per group of records
 * of the same client, interaction and outcome (docs/decisions/0004-audit-record.md).
 */
export interface AuditRecord {
  /** When the access happened (ISO 8601). */
  at: string;
  interaction: RestfulInteraction;
  action: AuditAction;
  outcome: AuditOutcome;
  httpStatus?: number;
  clientId?: string;
  organization?: string;
  /** The server itself acting (no client). */
  system?: boolean;
  requestId?: string;
  resources?: string[];
  patients?: string[];
  searchResourceType?: string;
  searchParameterNames?: string[];
}

/** The record of one access (the same fields an AuditEvent would hold, nothing more). */
export function auditRecord(input: AuditInput): AuditRecord {
  const r: AuditRecord = { at: (input.when ?? new Date()).toISOString(), interaction: input.interaction, action: input.action, outcome: input.outcome };
  if (input.httpStatus !== undefined) r.httpStatus = input.httpStatus;
  const ctx = input.ctx;
  if (ctx?.clientId) r.clientId = ctx.clientId;
  if (ctx?.organization) r.organization = ctx.organization;
  if (ctx?.system) r.system = true;
  if (ctx?.requestId) r.requestId = ctx.requestId;
  if (input.resources?.length) r.resources = input.resources;
  const patients = patientsOf(input);
  if (patients.length) r.patients = patients;
  if (input.searchResourceType) r.searchResourceType = input.searchResourceType;
  if (input.searchParameterNames?.length) r.searchParameterNames = input.searchParameterNames;
  return r;
}

/**
 * The record of one access as JSON text: exactly `JSON.stringify(auditRecord(input))` (same keys,
 * same order), written by hand. It is built on every audited read's response path, where building
 * the object and stringifying it cost about 2 µs of the API's time per read (a CPU profile of the
 * read benchmark, session 5); strings that need no escaping (ids, references, ISO times) are
 * quoted as they are, any other through JSON.stringify.
 */
export function auditRecordJson(input: AuditInput): string {
  let s = `{"at":"${(input.when ?? new Date()).toISOString()}","interaction":${jsonString(input.interaction)},"action":${jsonString(input.action)},"outcome":${jsonString(input.outcome)}`;
  if (input.httpStatus !== undefined) s += `,"httpStatus":${JSON.stringify(input.httpStatus)}`;
  const ctx = input.ctx;
  if (ctx?.clientId) s += `,"clientId":${jsonString(ctx.clientId)}`;
  if (ctx?.organization) s += `,"organization":${jsonString(ctx.organization)}`;
  if (ctx?.system) s += ',"system":true';
  if (ctx?.requestId) s += `,"requestId":${jsonString(ctx.requestId)}`;
  if (input.resources?.length) s += `,"resources":${jsonStrings(input.resources)}`;
  const patients = patientsOf(input);
  if (patients.length) s += `,"patients":${jsonStrings(patients)}`;
  if (input.searchResourceType) s += `,"searchResourceType":${jsonString(input.searchResourceType)}`;
  if (input.searchParameterNames?.length) s += `,"searchParameterNames":${jsonStrings(input.searchParameterNames)}`;
  return `${s}}`;
}

/** Printable ASCII without `"` and `\`: the strings JSON writes as they are. */
const PLAIN_JSON = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A string as JSON text (the same as JSON.stringify). */
export function jsonString(value: string): string {
  return PLAIN_JSON.test(value) ? `"${value}"` : JSON.stringify(value);
}

function jsonStrings(values: string[]): string {
  let s = '[';
  for (let i = 0; i < values.length; i++) s += (i > 0 ? ',' : '') + jsonString(values[i]!);
  return `${s}]`;
}

function inputOf(r: AuditRecord, server: { name: string; url?: string } | undefined): AuditInput {
  const ctx = r.clientId || r.organization || r.system || r.requestId ? ({ clientId: r.clientId, organization: r.organization, system: r.system, requestId: r.requestId } as RequestContext) : undefined;
  return {
    ctx,
    action: r.action,
    interaction: r.interaction,
    resources: r.resources,
    patients: r.patients,
    outcome: r.outcome,
    httpStatus: r.httpStatus,
    when: new Date(r.at),
    searchResourceType: r.searchResourceType,
    searchParameterNames: r.searchParameterNames,
    server,
  };
}

const isWrite = (r: AuditRecord): boolean => r.action === 'C' || r.action === 'U' || r.action === 'D';

/**
 * Records with the same key share one event. Reads, searches and refusals: the same client,
 * organisation, interaction and outcome (decision 0004). Writes: also the same request and patient
 * (a write record already lists every resource its request wrote for that patient in one
 * transaction; decision 0007): a batch Bundle's entries, each its own transaction, meet again
 * here, and writes of different requests never share an event.
 */
const groupKey = (r: AuditRecord): string =>
  JSON.stringify([
    r.clientId ?? null,
    r.organization ?? null,
    r.system ?? false,
    r.interaction,
    r.action,
    r.outcome,
    r.httpStatus ?? null,
    r.searchResourceType ?? null,
    ...(isWrite(r) ? [r.requestId ?? r.at, r.patients ?? []] : []),
  ]);

/**
 * AuditEvents for a batch of records. A record alone in its group becomes exactly the BALP event of
 * buildAuditEvent (a write record: one `entity` per resource written). Records of one group
 * (groupKey) become one event: `period` spans them, `recorded` is the last, every Patient appears
 * once, and each record's resources (or query) are entities whose details give that access's time
 * and request id.
 */
export function buildAuditEvents(records: AuditRecord[], server?: { name: string; url?: string }): AuditEvent[] {
  const groups = new Map<string, AuditRecord[]>();
  for (const r of records) {
    const k = groupKey(r);
    const g = groups.get(k);
    if (g) g.push(r);
    else groups.set(k, [r]);
  }
  const events: AuditEvent[] = [];
  for (const g of groups.values()) events.push(g.length === 1 ? buildAuditEvent(inputOf(g[0], server)) : aggregate(g, server ?? { name: 'tic-exchange' }));
  return events;
}

function aggregate(records: AuditRecord[], server: { name: string; url?: string }): AuditEvent {
  let first = records[0].at;
  let last = records[0].at;
  const patients = new Set<string>();
  for (const r of records) {
    if (r.at < first) first = r.at;
    if (r.at > last) last = r.at;
    for (const p of r.patients ?? []) patients.add(p);
  }
  const base = inputOf(records[0], server);
  const entities: AuditEventEntity[] = [...patients].map(patientEntity);
  for (const r of records) {
    const detail = [{ type: 'recorded', valueString: r.at }, ...(r.requestId ? [{ type: 'XrequestId', valueString: r.requestId }] : [])];
    let n = 0;
    for (const reference of r.resources ?? []) {
      if (patients.has(reference)) continue;
      entities.push({ ...resourceEntity(reference), detail });
      n++;
    }
    if (isSearch(r.interaction)) {
      entities.push({ ...queryEntity(r.searchResourceType, r.searchParameterNames), detail });
      n++;
    }
    if (n === 0) {
      // Nothing but the access itself (a refusal, or a read of a Patient): its request and time.
      entities.push({ type: { system: BALP_ENTITY_TYPE, code: 'XrequestId' }, ...(r.requestId ? { what: { identifier: { value: r.requestId } } } : {}), detail });
    }
  }
  const event = eventShell(base, agentsFor(base.ctx, undefined, server), entities, new Date(last), server);
  event.period = { start: first, end: last };
  return event;
}
