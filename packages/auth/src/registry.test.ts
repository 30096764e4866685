import { loadClientRegistry } from './registry.ts';
import { clientKey } from './test-utils.ts';
import type { JWK } from 'jose';

let jwk: JWK;
beforeAll(async () => {
  jwk = (await clientKey('ES384', 'k1')).publicJwk;
});

const valid = () => ({ clientId: 'ehr-1', organization: 'Organization/hosp', scopes: ['system/Task.rs'], jwks: { keys: [jwk] } });

test('a valid registry loads; disabled clients are not returned', () => {
  const reg = loadClientRegistry({ clients: [valid(), { ...valid(), clientId: 'off', disabled: true }, { clientId: 'remote', organization: 'Organization/x', scopes: ['system/*.read'], jwksUrl: 'https://remote.example.org/jwks.json' }] });
  expect(reg.get('ehr-1')?.organization).toBe('Organization/hosp');
  expect(reg.get('off')).toBeUndefined();
  expect(reg.get('remote')?.jwksUrl).toBe('https://remote.example.org/jwks.json');
  expect(reg.list()).toHaveLength(3);
});

function problems(json: unknown): string {
  try {
    loadClientRegistry(json);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected the registry to be refused');
}

test('schema problems are all listed with their location', () => {
  const msg = problems([{ clientId: 'a', organization: 'Patient/1', scopes: [], extra: 1 }]);
  expect(msg).toMatch(/^Invalid client registry:/);
  expect(msg).toContain('/0/organization must match pattern');
  expect(msg).toContain('/0/scopes must NOT have fewer than 1 items');
  expect(msg).toContain('(extra)');
  expect(msg).toContain("must have required property 'jwks'");
});

test('private keys, keys without kid and non-array input are refused', () => {
  expect(problems([{ ...valid(), jwks: { keys: [{ ...jwk, d: 'secret' }] } }])).toContain('/0/jwks/keys/0');
  const { kid: _kid, ...noKid } = jwk;
  expect(problems([{ ...valid(), jwks: { keys: [noKid] } }])).toContain("must have required property 'kid'");
  expect(problems('nope')).toContain('must be array');
});

test('semantic problems: duplicates, bad scopes, auditor-only scopes, http key URLs', () => {
  const msg = problems([
    valid(),
    { ...valid(), scopes: ['system/Task.xyz', 'patient/Task.rs', 'system/AuditEvent.rs'] },
    { clientId: 'h', organization: 'Organization/x', scopes: ['system/Task.rs'], jwksUrl: 'http://keys.example.org/jwks' },
  ]);
  expect(msg).toContain('/1/clientId "ehr-1" is registered more than once');
  expect(msg).toContain('/1/scopes/0 "system/Task.xyz" is not a SMART resource scope');
  expect(msg).toContain('/1/scopes/1 "patient/Task.rs"');
  expect(msg).toContain('/1/scopes/2 "system/AuditEvent.rs" is only for clients registered with "auditor": true');
  expect(msg).toContain('/2/jwksUrl must be an https URL');
  expect(() => loadClientRegistry([{ ...valid(), scopes: ['system/AuditEvent.rs'], auditor: true }])).not.toThrow();
});
