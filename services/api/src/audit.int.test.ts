// A read or search whose audit record cannot be written is not answered: 503 with Retry-After
// (fail closed), and the journal goes on in a new file for the next access.
import { closeSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Patient } from '@medplum/fhirtypes';
import { isOperationOutcomeError, statusForOutcome } from '@tic/fhir';
import type { RequestContext } from '@tic/fhir';
import { AuditJournal, AuditQueue } from '@tic/store';
import { openTestDatabase } from '@tic/store/testing';
import type { TestDatabase } from '@tic/store/testing';
import { auditAccess, auditEventsFor } from './audit.ts';

describe('an access that cannot be audited', () => {
  let db: TestDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'tic-audit-fail-'));
  beforeAll(async () => {
    db = await openTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'pglite');
  }, 60_000);
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 503 transient with Retry-After, and the next access is audited again', async () => {
    const errors: unknown[] = [];
    const journal = AuditJournal.open(dir, { onError: (e) => errors.push(e) });
    const queue = new AuditQueue(db.db, { build: auditEventsFor, journal });
    const ctx = { clientId: 'c', organization: 'Organization/a' } as RequestContext;
    const patient = { resourceType: 'Patient', id: 'p1' } as Patient;
    await auditAccess(db.db, ctx, 'read', 'Patient', [patient], undefined, queue);
    // The journal's file fails under it (as a failing disk would).
    closeSync((journal as unknown as { current: { fd: number } }).current.fd);
    const refused = await auditAccess(db.db, ctx, 'read', 'Patient', [patient], undefined, queue).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isOperationOutcomeError(refused)).toBe(true);
    if (!isOperationOutcomeError(refused)) return;
    expect(statusForOutcome(refused)).toBe(503);
    expect(refused.outcome.issue[0]?.code).toBe('transient');
    expect(refused.headers).toEqual({ 'Retry-After': '1' });
    expect(errors).toHaveLength(1);
    await auditAccess(db.db, ctx, 'read', 'Patient', [patient], undefined, queue);
    await queue.stop();
    const stored = await db.db.query<{ n: string }>(`SELECT count(*) AS n FROM resource WHERE resource_type = 'AuditEvent'`);
    expect(Number(stored.rows[0]!.n)).toBeGreaterThanOrEqual(1);
  });
});
