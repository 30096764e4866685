import { isOperationOutcomeError } from '@tic/fhir';
import { grantScopes, isAllowed, parseScope, parseScopes, requireScope, scopeInteractionFor } from './scopes.ts';
import type { ScopeInteraction } from './scopes.ts';

const all: ScopeInteraction[] = ['create', 'read', 'update', 'delete', 'search'];

describe('parseScopes', () => {
  test('v2 forms', () => {
    const [s] = parseScopes('system/Task.rs');
    expect(s).toMatchObject({ context: 'system', resourceType: 'Task' });
    expect([...s.permissions].sort()).toEqual(['read', 'search']);
    expect([...parseScope('system/*.cruds')!.permissions].sort()).toEqual([...all].sort());
  });

  test('v1 forms map to v2 permissions', () => {
    expect([...parseScope('system/*.read')!.permissions].sort()).toEqual(['read', 'search']);
    expect([...parseScope('system/*.write')!.permissions].sort()).toEqual(['create', 'delete', 'update']);
    expect(parseScope('system/Task.*')!.permissions.size).toBe(5);
  });

  test('query-constrained scopes keep their constraint', () => {
    const s = parseScope('system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|survey');
    expect(s?.resourceType).toBe('Observation');
    expect(s?.query).toBe('category=http://terminology.hl7.org/CodeSystem/observation-category|survey');
  });

  test('malformed and non-resource scopes are dropped', () => {
    for (const bad of ['openid', 'launch', 'system/Task', 'system/Task.', 'system/Task.sr', 'system/Task.rr', 'system/task.rs', 'admin/Task.rs', 'system/Task.x', 'system/Task.read?x=1']) {
      expect(parseScope(bad)).toBeUndefined();
    }
    expect(parseScopes('openid  system/Task.rs fhirUser').map((s) => s.raw)).toEqual(['system/Task.rs']);
    expect(parseScopes(undefined)).toEqual([]);
  });
});

describe('isAllowed', () => {
  const matrix: [string, string, ScopeInteraction, boolean][] = [
    ['system/Task.rs', 'Task', 'read', true],
    ['system/Task.rs', 'Task', 'search', true],
    ['system/Task.rs', 'Task', 'create', false],
    ['system/Task.rs', 'Task', 'update', false],
    ['system/Task.rs', 'Task', 'delete', false],
    ['system/Task.rs', 'ServiceRequest', 'read', false],
    ['system/Task.cu', 'Task', 'create', true],
    ['system/Task.cu', 'Task', 'update', true],
    ['system/Task.cu', 'Task', 'read', false],
    ['system/*.cruds', 'Patient', 'delete', true],
    ['system/*.read', 'Patient', 'read', true],
    ['system/*.read', 'Patient', 'search', true],
    ['system/*.read', 'Patient', 'create', false],
    ['system/*.write', 'Patient', 'create', true],
    ['system/*.write', 'Patient', 'update', true],
    ['system/*.write', 'Patient', 'delete', true],
    ['system/*.write', 'Patient', 'read', false],
    ['user/Task.rs', 'Task', 'read', true],
    ['patient/Task.rs', 'Task', 'read', false],
    ['system/Observation.rs?category=survey', 'Observation', 'read', false],
    ['system/*.cruds', 'AuditEvent', 'read', false],
    ['system/AuditEvent.rs', 'AuditEvent', 'search', true],
    ['system/AuditEvent.cruds', 'AuditEvent', 'create', false],
    ['system/AuditEvent.cruds', 'AuditEvent', 'delete', false],
  ];
  test.each(matrix)('%s on %s %s -> %s', (scope, type, interaction, expected) => {
    expect(isAllowed([scope], type, interaction)).toBe(expected);
  });

  test('accepts a scope string, a list or parsed scopes; nothing allows nothing', () => {
    expect(isAllowed('openid system/Task.r', 'Task', 'read')).toBe(true);
    expect(isAllowed(parseScopes('system/Task.r'), 'Task', 'read')).toBe(true);
    expect(isAllowed(undefined, 'Task', 'read')).toBe(false);
    expect(isAllowed([], 'Task', 'read')).toBe(false);
  });

  test('FHIR interactions map to scope permissions', () => {
    expect(scopeInteractionFor('patch')).toBe('update');
    expect(scopeInteractionFor('vread')).toBe('read');
    expect(scopeInteractionFor('history-instance')).toBe('read');
    expect(scopeInteractionFor('search-type')).toBe('search');
  });
});

describe('requireScope', () => {
  test('throws a 403 OperationOutcome when not allowed', () => {
    let thrown: unknown;
    try {
      requireScope({ clientId: 'c', scopes: ['system/Task.rs'] }, 'Task', 'create');
    } catch (e) {
      thrown = e;
    }
    expect(isOperationOutcomeError(thrown)).toBe(true);
    if (isOperationOutcomeError(thrown)) {
      expect(thrown.status).toBe(403);
      expect(thrown.outcome.issue?.[0].code).toBe('forbidden');
    }
  });
  test('passes when allowed, and for internal system writes', () => {
    expect(() => requireScope({ scopes: ['system/Task.c'] }, 'Task', 'create')).not.toThrow();
    expect(() => requireScope({ system: true }, 'Task', 'delete')).not.toThrow();
    expect(() => requireScope(undefined, 'Task', 'read')).toThrow();
  });
});

describe('grantScopes', () => {
  test('requested scopes covered by the registration, in request order', () => {
    expect(grantScopes('system/Task.rs system/Patient.r', ['system/*.cruds'])).toEqual(['system/Task.rs', 'system/Patient.r']);
    expect(grantScopes('system/Task.cruds', ['system/Task.rs'])).toEqual([]);
    expect(grantScopes('system/Task.read system/Task.write', ['system/Task.rs'])).toEqual(['system/Task.read']);
    expect(grantScopes('system/AuditEvent.rs', ['system/*.cruds'])).toEqual([]);
    expect(grantScopes('system/AuditEvent.rs', ['system/AuditEvent.rs'])).toEqual(['system/AuditEvent.rs']);
    expect(grantScopes('user/Task.rs', ['system/Task.rs'])).toEqual([]);
    expect(grantScopes('openid junk system/Task.rs system/Task.rs', ['system/Task.rs'])).toEqual(['system/Task.rs']);
  });
  test('a query-constrained registration grants only the same constraint', () => {
    const reg = ['system/Observation.rs?category=survey'];
    expect(grantScopes('system/Observation.rs?category=survey', reg)).toEqual(['system/Observation.rs?category=survey']);
    expect(grantScopes('system/Observation.rs', reg)).toEqual([]);
    expect(grantScopes('system/Observation.rs?category=survey', ['system/Observation.rs'])).toEqual(['system/Observation.rs?category=survey']);
  });
});
