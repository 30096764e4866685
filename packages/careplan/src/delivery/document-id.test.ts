import { SEND_SUMMARY_JOB, sendSummaryJobKey, summaryCompositionId, summaryDocumentIdentifier, uuidV5 } from './document-id.ts';

const DNS = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';

describe('uuidV5', () => {
  it('matches published version 5 UUIDs (RFC 9562 appendix A.4; Python uuid.uuid5)', () => {
    expect(uuidV5('www.example.com', DNS)).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
    expect(uuidV5('python.org', DNS)).toBe('886313e1-3b8a-5372-9b90-0c9aee199e5d');
    // URL namespace by default (value checked with Python's uuid.uuid5(uuid.NAMESPACE_URL, ...)).
    expect(uuidV5('http://x/fhir/CarePlan/1')).toBe('9e93d07b-312a-5fc3-bb5c-c475cec4c142');
  });
});

describe('summary document identity', () => {
  const s = { sourceBase: 'https://a.example/fhir', carePlanId: 'p1', version: '3', recipient: 'Organization/org-b', sender: 'Organization/org-a' };

  it('is the same for the same sending and differs by version, recipient and sender', () => {
    const id = summaryDocumentIdentifier(s);
    expect(id.system).toBe('urn:ietf:rfc:3986');
    expect(id.value).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(summaryDocumentIdentifier({ ...s })).toEqual(id);
    const others = [{ ...s, version: '4' }, { ...s, recipient: 'Organization/org-c' }, { ...s, sender: undefined }, { ...s, carePlanId: 'p2' }].map((x) => summaryDocumentIdentifier(x).value);
    expect(new Set([id.value, ...others]).size).toBe(5);
  });

  it('derives a stable Composition id from the identifier', () => {
    const id = summaryDocumentIdentifier(s);
    expect(summaryCompositionId(id)).toBe(summaryCompositionId({ ...id }));
    expect(summaryCompositionId(id)).not.toBe(summaryCompositionId(summaryDocumentIdentifier({ ...s, version: '4' })));
  });

  it('keys the job per plan, version, recipient and sender', () => {
    expect(sendSummaryJobKey(s)).toBe(`${SEND_SUMMARY_JOB}:p1:3:Organization/org-b:Organization/org-a`);
    expect(sendSummaryJobKey({ ...s, sender: undefined })).toBe(`${SEND_SUMMARY_JOB}:p1:3:Organization/org-b:system`);
  });
});
