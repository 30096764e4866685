import type { CarePlan } from '@medplum/fhirtypes';
import { summaryDocumentIdentifier } from './document-id.ts';
import { sendingOf, sendingRecord } from './record.ts';

describe('the sending record (Communication)', () => {
  const plan: CarePlan = { resourceType: 'CarePlan', id: 'p1', status: 'active', intent: 'plan', subject: { reference: 'Patient/x' }, meta: { versionId: '2' } };
  const s = { sourceBase: 'https://a.example/fhir', carePlanId: 'p1', version: '2', recipient: 'Organization/org-b', sender: 'Organization/org-a' };

  it('names sender, recipient, subject, the plan version and the document identifier', () => {
    const c = sendingRecord(s, plan);
    expect(c.status).toBe('in-progress');
    expect(c.identifier).toEqual([summaryDocumentIdentifier(s)]);
    expect(c.sender?.reference).toBe('Organization/org-a');
    expect(c.recipient).toEqual([{ reference: 'Organization/org-b' }]);
    expect(c.subject?.reference).toBe('Patient/x');
    expect(c.about).toEqual([{ reference: 'CarePlan/p1' }]);
    expect(c.payload?.[0].contentReference?.reference).toBe('CarePlan/p1/_history/2');
  });

  it('reads the sending back from the record (round trip), also without a sender', () => {
    expect(sendingOf(sendingRecord(s, plan), s.sourceBase)).toEqual(s);
    const { sender: _sender, ...bySystem } = s;
    expect(sendingOf(sendingRecord(bySystem, plan), s.sourceBase)).toEqual(bySystem);
    expect(sendingOf({ ...sendingRecord(s, plan), payload: [{ contentString: 'x' }] }, s.sourceBase)).toBeUndefined();
  });
});
