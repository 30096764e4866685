import { generateKeyPairSync, verify } from 'node:crypto';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import { signAssertion } from '../delivery/smart-client.ts';
import { checkEndpoint, parseHeaders, payloadKind } from './check.ts';
import { matchQuery, parseCriteria } from './criteria.ts';

const status = (fn: () => unknown): number => {
  try {
    fn();
  } catch (e) {
    if (isOperationOutcomeError(e)) return statusForOutcome(e);
    throw e;
  }
  return 0;
};

describe('Subscription criteria', () => {
  it('parses a Task search and narrows it to one id', () => {
    const c = parseCriteria('Task?status=accepted&owner=Organization/x&status=requested');
    expect(c).toEqual({ resourceType: 'Task', query: { status: ['accepted', 'requested'], owner: ['Organization/x'] } });
    expect(matchQuery(c, 't1')).toEqual({ status: ['accepted', 'requested'], owner: ['Organization/x'], _id: ['t1'], _count: ['1'] });
    expect(matchQuery(parseCriteria('Task?_id=a'), 'b')._id).toEqual(['a', 'b']);
    expect(parseCriteria('Task').query).toEqual({});
  });
  it('refuses other types, result parameters and garbage', () => {
    expect(status(() => parseCriteria('Patient?name=x'))).toBe(400);
    expect(status(() => parseCriteria('Task?_count=1'))).toBe(400);
    expect(status(() => parseCriteria('Task?_include=Task:focus'))).toBe(400);
    expect(status(() => parseCriteria('http://x/Task?status=a'))).toBe(400);
    expect(status(() => parseCriteria(''))).toBe(400);
  });
});

describe('Subscription channel', () => {
  it('accepts http(s) endpoints only, without credentials', () => {
    expect(checkEndpoint('https://h.example/hook').host).toBe('h.example');
    for (const bad of ['ftp://h/x', 'javascript:alert(1)', 'hook', 'http://u:p@h/x', undefined]) expect(status(() => checkEndpoint(bad))).toBe(400);
  });
  it('knows the payloads it sends', () => {
    expect(payloadKind(undefined)).toBe('none');
    expect(payloadKind('')).toBe('none');
    expect(payloadKind('application/fhir+json; fhirVersion=4.0')).toBe('json');
    expect(status(() => payloadKind('application/fhir+xml'))).toBe(400);
  });
  it('parses headers and refuses injected or hop-by-hop ones', () => {
    expect(parseHeaders(['Authorization: Bearer x', 'X-A:b'])).toEqual([['Authorization', 'Bearer x'], ['X-A', 'b']]);
    expect(status(() => parseHeaders(['X-A: b\r\nX-B: c']))).toBe(400);
    expect(status(() => parseHeaders(['Host: evil']))).toBe(400);
    expect(status(() => parseHeaders(['no colon']))).toBe(400);
  });
});

describe('SMART client assertion', () => {
  it('signs an ES384 JWT the public key verifies, with the SMART claims', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const jwt = signAssertion({ clientId: 'c1', scope: 'system/*.rs', privateJwk: { ...privateKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES384' } }, 'https://t.example/token', 1_700_000_000_000);
    const [h, p, s] = jwt.split('.');
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({ alg: 'ES384', kid: 'k1', typ: 'JWT' });
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    expect(claims).toMatchObject({ iss: 'c1', sub: 'c1', aud: 'https://t.example/token', iat: 1_700_000_000, exp: 1_700_000_240 });
    expect(typeof claims.jti).toBe('string');
    expect(verify('sha384', Buffer.from(`${h}.${p}`), { key: publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'))).toBe(true);
  });
});
