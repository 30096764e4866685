import { buildAuditEvent, CLIENT_ID_SYSTEM } from './audit.ts';

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
