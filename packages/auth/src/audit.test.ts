import { auditRecord, auditRecordJson, buildAuditEvent, buildAuditEvents, CLIENT_ID_SYSTEM, jsonString } from './audit.ts';
import type { AuditInput } from './audit.ts';

const ctx = { clientId: 'ehr-1', organization: 'Organization/hosp', scopes: ['system/*.cruds'], requestId: 'req-7' };
const when = new Date('2025-03-01T10:00:00.000Z');

test('a successful create: rest type, restful-interaction subtype, agents, entities', () => {
  const e = buildAuditEvent({ ctx, action: 'C', interaction: 'create', resources: ['QuestionnaireResponse/9'], patient: 'Patient/42', outcome: '0', httpStatus: 201, when, server: { name: 'tic-exchange', url: 'https://tic.example.org/fhir' } });
  expect(e.type).toEqual({ system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest', display: 'Restful Operation' });
  expect(e.subtype).toEqual([{ system: 'http://hl7.org/fhir/restful-interaction', code: 'create', display: 'create' }]);
  expect(e.action).toBe('C');
  expect(e.recorded).toBe('2025-03-01T10:00:00.000Z');
  expect(e.outcome).toBe('0');
  const [client, server, org] = e.agent;
  expect(client.type?.coding?.[0]).toMatchObject({ system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110153' });
  expect(client.who).toEqual({ type: 'Device', identifier: { system: CLIENT_ID_SYSTEM, value: 'ehr-1' } });
  expect(client.requestor).toBe(true);
  expect(server.type?.coding?.[0].code).toBe('110152');
  expect(server.network).toEqual({ address: 'https://tic.example.org/fhir', type: '5' });
  expect(org).toEqual({ who: { reference: 'Organization/hosp' }, requestor: false });
  expect(e.source.type?.[0]).toMatchObject({ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4' });
  const patient = e.entity?.find((x) => x.role?.code === '1');
  expect(patient).toMatchObject({ what: { reference: 'Patient/42' }, type: { code: '1' }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1', display: 'Patient' } });
  expect(e.entity?.find((x) => x.role?.code === '4')?.what).toEqual({ reference: 'QuestionnaireResponse/9' });
  expect(e.entity?.find((x) => x.type?.code === 'XrequestId')?.what).toEqual({ identifier: { value: 'req-7' } });
});

test('a search is action E with a query entity holding parameter names only', () => {
  const e = buildAuditEvent({ ctx, action: 'R', interaction: 'search-type', searchResourceType: 'Observation', searchParameterNames: ['subject', 'code', 'subject'], patient: 'Patient/42', outcome: '0', when });
  expect(e.action).toBe('E');
  const q = e.entity?.find((x) => x.role?.code === '24');
  expect(q?.description).toBe('Observation?code&subject');
  expect(q?.query).toBeUndefined();
  expect(JSON.stringify(e)).not.toContain('=');
});

test('failures carry the outcome and HTTP status; no client means an unauthenticated agent', () => {
  const e = buildAuditEvent({ ctx: undefined, action: 'R', interaction: 'read', resources: ['Task/1'], outcome: '4', httpStatus: 403, when });
  expect(e.outcome).toBe('4');
  expect(e.outcomeDesc).toBe('Minor failure (HTTP 403)');
  expect(e.agent[0].who).toEqual({ display: 'unauthenticated client' });
  expect(e.agent).toHaveLength(2);
});

describe('audit records and the AuditEvents built from them', () => {
  const at = (s: number) => new Date(Date.UTC(2025, 2, 1, 10, 0, s));

  test('a record alone becomes exactly the event buildAuditEvent makes', () => {
    const input = { ctx, action: 'R' as const, interaction: 'read' as const, resources: ['Observation/1'], patients: ['Patient/42'], outcome: '0' as const, when };
    const record = auditRecord(input);
    expect(JSON.stringify(record)).not.toContain('scopes');
    expect(buildAuditEvents([record])).toEqual([buildAuditEvent(input)]);
  });

  test('records of one client, interaction and outcome become one event; each access keeps its time and request', () => {
    const reads = [1, 2, 3].map((n) =>
      auditRecord({ ctx: { ...ctx, requestId: `req-${n}` }, action: 'R', interaction: 'read', resources: [`Observation/${n}`], patients: [n === 3 ? 'Patient/43' : 'Patient/42'], outcome: '0', when: at(n) }),
    );
    const other = auditRecord({ ctx: { ...ctx, clientId: 'ehr-2' }, action: 'R', interaction: 'read', resources: ['Observation/9'], outcome: '0', when: at(4) });
    const refused = auditRecord({ ctx, action: 'E', interaction: 'operation', outcome: '4', httpStatus: 403, when: at(5) });
    const events = buildAuditEvents([reads[2], other, reads[0], refused, reads[1]]);
    expect(events).toHaveLength(3);
    const grouped = events.find((e) => e.entity?.some((x) => x.what?.reference === 'Observation/1'))!;
    expect(grouped.period).toEqual({ start: at(1).toISOString(), end: at(3).toISOString() });
    expect(grouped.recorded).toBe(at(3).toISOString());
    expect(grouped.agent[0].who?.identifier?.value).toBe('ehr-1');
    const patients = grouped.entity!.filter((x) => x.role?.code === '1').map((x) => x.what?.reference);
    expect(patients.sort()).toEqual(['Patient/42', 'Patient/43']);
    const obs2 = grouped.entity!.find((x) => x.what?.reference === 'Observation/2')!;
    expect(obs2.role?.code).toBe('4');
    expect(obs2.detail).toEqual([{ type: 'recorded', valueString: at(2).toISOString() }, { type: 'XrequestId', valueString: 'req-2' }]);
    expect(events.find((e) => e.agent[0].who?.identifier?.value === 'ehr-2')?.period).toBeUndefined();
    expect(events.find((e) => e.outcome === '4')?.outcomeDesc).toBe('Minor failure (HTTP 403)');
  });

  test("writes share an event only within one request and patient; a request's record lists every resource as a plain entity", () => {
    const write = (requestId: string, resources: string[], patient: string, s: number) =>
      auditRecord({ ctx: { ...ctx, requestId }, action: 'C', interaction: 'create', resources, patients: [patient], outcome: '0', when: at(s) });
    const intake = write('req-1', ['QuestionnaireResponse/1/_history/1', 'Observation/1/_history/1', 'Observation/2/_history/1'], 'Patient/42', 1);
    const events = buildAuditEvents([intake, write('req-2', ['Observation/3/_history/1'], 'Patient/42', 2), write('req-3', ['Observation/4/_history/1'], 'Patient/42', 3)]);
    // Same client, interaction and outcome, but three requests: three events.
    expect(events).toHaveLength(3);
    const first = events.find((e) => e.entity?.some((x) => x.what?.reference === 'Observation/1/_history/1'))!;
    expect(first).toEqual(buildAuditEvent({ ctx: { ...ctx, requestId: 'req-1' }, action: 'C', interaction: 'create', resources: intake.resources, patients: ['Patient/42'], outcome: '0', when: at(1) }));
    expect(first.entity!.filter((x) => x.role?.code === '4').map((x) => x.what?.reference)).toEqual(intake.resources);
    expect(first.entity!.filter((x) => x.role?.code === '1').map((x) => x.what?.reference)).toEqual(['Patient/42']);
    // A batch Bundle's entries (one record each, the same request): one event per patient.
    const batch = buildAuditEvents([write('req-4', ['Observation/5/_history/1'], 'Patient/42', 4), write('req-4', ['Observation/6/_history/1'], 'Patient/42', 5), write('req-4', ['Observation/7/_history/1'], 'Patient/43', 6)]);
    expect(batch).toHaveLength(2);
    const of42 = batch.find((e) => e.entity?.some((x) => x.what?.reference === 'Patient/42'))!;
    expect(of42.entity!.filter((x) => x.role?.code === '4').map((x) => x.what?.reference)).toEqual(['Observation/5/_history/1', 'Observation/6/_history/1']);
    expect(of42.entity!.some((x) => x.what?.reference === 'Patient/43')).toBe(false);
    expect(of42.period).toEqual({ start: at(4).toISOString(), end: at(5).toISOString() });
  });

  test('grouped searches keep one query entity per search, with parameter names only', () => {
    const searches = ['subject', 'code'].map((p, i) =>
      auditRecord({ ctx, action: 'E', interaction: 'search-type', searchResourceType: 'Observation', searchParameterNames: [p], patients: ['Patient/42'], outcome: '0', when: at(i) }),
    );
    const [e] = buildAuditEvents(searches);
    expect(e.action).toBe('E');
    expect(e.entity?.filter((x) => x.role?.code === '24').map((x) => x.description)).toEqual(['Observation?subject', 'Observation?code']);
    expect(e.entity?.filter((x) => x.role?.code === '1')).toHaveLength(1);
  });
});

describe('auditRecordJson: the record as JSON text, written by hand', () => {
  test('every code unit 0-0x7f, non-ASCII, lone surrogates and escapes come out as JSON.stringify writes them', () => {
    const odd = ['', 'a"b', 'back\\slash', 'line\nbreak', 'tab\t', '\u0000nul', '\u007f', 'é', 'Zoë ✓', '\ud800', 'x\udc00y', '\u2028\u2029', '😀'];
    for (let c = 0; c < 0x80; c++) odd.push(`id-${String.fromCharCode(c)}-${c}`);
    for (const v of odd) expect(jsonString(v)).toBe(JSON.stringify(v));
  });

  test('the same text as JSON.stringify(auditRecord(input)) for reads, searches, refusals and writes', () => {
    // Without `when` the time is now, which two calls may read in different milliseconds: compared
    // with a time given, and on its own below.
    const withoutWhen: AuditInput = { ctx: { ...ctx, requestId: 'r"q\\1\n' }, action: 'R', interaction: 'read', resources: ['Observation/1'], patients: [], outcome: '0' };
    const inputs: AuditInput[] = [
      { ctx, action: 'R', interaction: 'read', resources: ['Observation/1'], patients: ['Patient/42'], outcome: '0', when },
      { ...withoutWhen, when },
      { ctx, action: 'E', interaction: 'search-type', resources: [], patients: ['Patient/1', 'Patient/2'], outcome: '0', searchResourceType: 'Observation', searchParameterNames: ['subject', 'code:text', 'päramé"ter'], when },
      { ctx, action: 'E', interaction: 'search-type', resources: [], patients: [], outcome: '0', searchResourceType: 'Observation', searchParameterNames: [], when },
      { ctx: undefined, action: 'E', interaction: 'operation', resources: [], outcome: '4', httpStatus: 401, searchResourceType: 'Patient', when },
      { ctx: { system: true }, action: 'C', interaction: 'create', resources: ['Task/1/_history/1', 'Task/2/_history/3'], patient: 'Patient/9', patients: ['Patient/9', 'Patient/8'], outcome: '0', when },
      { ctx: { clientId: 'c', organization: '' }, action: 'R', interaction: 'vread', resources: ['Observation/1/_history/2'], outcome: '8', httpStatus: 503, when },
    ];
    for (const input of inputs) expect(auditRecordJson(input)).toBe(JSON.stringify(auditRecord(input)));
    // Without `when`, the time is now: the same shape, a parseable ISO time.
    const parsed = JSON.parse(auditRecordJson(withoutWhen)) as { at: string };
    expect(new Date(parsed.at).toISOString()).toBe(parsed.at);
    expect({ ...parsed, at: undefined }).toEqual({ ...(JSON.parse(JSON.stringify(auditRecord(withoutWhen))) as object), at: undefined });
  });
});
