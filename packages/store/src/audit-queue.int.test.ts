import type { AuditEvent } from '@medplum/fhirtypes';
import { AuditQueue } from './audit-queue.ts';
import { Repository } from './repository.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const event = (n: number): AuditEvent => ({
  resourceType: 'AuditEvent',
  type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
  recorded: '2026-11-26T00:00:00Z',
  agent: [{ requestor: true, who: { identifier: { system: 'urn:test-client', value: `c${n}` } } }],
  source: { observer: { display: 'test' } },
  entity: [{ what: { reference: `Patient/p${n}` } }],
});

describe.each(testDatabaseKinds())('audit queue on %s', (kind) => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await openTestDatabase(kind);
  }, 60_000);
  afterAll(async () => t?.drop());

  it('commits each event before resolving, then stores them as AuditEvents exactly once', async () => {
    const q = new AuditQueue(t.db);
    await Promise.all([q.record('Organization/a', event(1)), q.record('Organization/a', event(2)), q.record(null, event(3))]);
    const queued = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_queue');
    expect(Number(queued.rows[0].n)).toBe(3);
    // Two drainers (as two replicas would run): SKIP LOCKED hands each row to exactly one.
    const other = new AuditQueue(t.db);
    const [first, second] = await Promise.all([q.drain(), other.drain()]);
    expect(first + second).toBe(3);
    expect(await q.drain()).toBe(0);
    const repoA = new Repository(t.db, { organization: 'Organization/a' }, { modules: [] });
    const mine = await repoA.search<AuditEvent>('AuditEvent', { entity: 'Patient/p1,Patient/p2,Patient/p3' });
    expect(mine.map((e) => e.entity?.[0].what?.reference).sort()).toEqual(['Patient/p1', 'Patient/p2', 'Patient/p3']);
    const repoB = new Repository(t.db, { organization: 'Organization/b', canReadRestricted: true }, { modules: [] });
    expect(await repoB.search<AuditEvent>('AuditEvent', { entity: 'Patient/p1' })).toHaveLength(0);
    const total = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM resource WHERE resource_type = 'AuditEvent'`);
    expect(Number(total.rows[0].n)).toBe(3);
  });

  it('drains what is queued when stopped', async () => {
    const q = new AuditQueue(t.db);
    q.start(60_000);
    await q.record('Organization/a', event(4));
    await q.stop();
    const left = await t.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_queue');
    expect(Number(left.rows[0].n)).toBe(0);
  });
});
