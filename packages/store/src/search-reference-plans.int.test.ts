// Migration 29 dropped sp_reference (target_type, target_id, code) (sp_reference_search_1_idx): every
// statement that looks up reference rows by their target states the source type and code, so
// sp_reference_target_updated_idx (resource_type, code, target_id, target_type, last_updated, id)
// serves it: filters and drivers, _has, _revinclude (Type:param and Type:*, in the page statement and
// in :iterate rounds) and Repository.referring. The plans are PostgreSQL's (PGlite plans
// differently); the indexes left are checked on both.
import type { Observation, Patient, QuestionnaireResponse, Task } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { Db } from './db.ts';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import type { RecordedQuery, TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };

describe.each(testDatabaseKinds())('sp_reference indexes after migration 29 on %s', (kind) => {
  it('keeps the (resource_type, id, code) and (resource_type, code, target_id, …) indexes only', async () => {
    const t = await openTestDatabase(kind);
    try {
      const r = await t.db.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE tablename = 'sp_reference' ORDER BY 1`);
      expect(r.rows.map((x) => x.indexname)).toEqual(['sp_reference_resource_code_idx', 'sp_reference_target_updated_idx']);
    } finally {
      await t.drop();
    }
  });
});

/** The sp_reference indexes a statement's plan reads, and whether it reads the table sequentially. */
async function referenceScans(db: Db, q: RecordedQuery): Promise<{ indexes: string[]; seq: boolean; plan: string }> {
  const plan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${q.sql}`, q.params)).rows.map((row) => row['QUERY PLAN']).join('\n');
  const indexes = [...new Set([...plan.matchAll(/(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (sp_reference\w*)/g)].map((m) => m[1]))].sort();
  return { indexes, seq: /Seq Scan on sp_reference/.test(plan), plan };
}

// Skipped without DATABASE_URL: it checks PostgreSQL's query plans; CI sets it.
(process.env.DATABASE_URL ? describe : describe.skip)('look-ups of reference rows by target on postgres', () => {
  let t: TestDatabase;
  const patients: Patient[] = [];
  const responses: QuestionnaireResponse[] = [];

  beforeAll(async () => {
    t = await openTestDatabase('postgres');
    const repo = new Repository(t.db, system, { modules: [] });
    // 2,000 Patients, each with a response, 4 Observations derived from it and a Task: ~16,000
    // reference rows under several codes and types, analysed.
    for (let b = 0; b < 4; b++) {
      patients.push(...(await repo.createMany(Array.from({ length: 500 }, (_, i): Patient => ({ resourceType: 'Patient', name: [{ family: `f${(b * 500 + i) % 40}` }] })))));
    }
    for (let b = 0; b < 4; b++) {
      const subjects = patients.slice(b * 500, b * 500 + 500).map((p) => ({ reference: `Patient/${p.id}` }));
      const qrs = await repo.createMany(subjects.map((subject): QuestionnaireResponse => ({ resourceType: 'QuestionnaireResponse', status: 'completed', subject, author: subject, source: subject })));
      responses.push(...qrs);
      await repo.createMany(
        qrs.flatMap((qr, i) =>
          Array.from({ length: 4 }, (_, k): Observation => ({
            resourceType: 'Observation',
            status: k === 0 ? 'preliminary' : 'final',
            code: { coding: [{ system: 'http://loinc.org', code: `c${k}` }] },
            subject: subjects[i],
            performer: [subjects[i]],
            derivedFrom: [{ reference: `QuestionnaireResponse/${qr.id}` }],
          })),
        ),
      );
      await repo.createMany(subjects.map((subject, i): Task => ({ resourceType: 'Task', status: 'requested', intent: 'order', for: subject, focus: { reference: `QuestionnaireResponse/${qrs[i].id}` } })));
    }
    await t.db.query('ANALYZE');
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  /** The statements a search sends, each with the sp_reference indexes its plan reads. */
  const searched = async (type: string, q: Record<string, string>) => {
    const { db, calls } = recordingDb(t.db);
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = [v];
    const r = await searchResources(db, system, [], type, query);
    return { r, scans: await Promise.all(calls.map((c) => referenceScans(t.db, c))) };
  };
  const target = ['sp_reference_target_updated_idx'];

  it('a reference filter, plain and derived (patient = subject rows of type Patient), drives from the target index', async () => {
    const queries: Array<Record<string, string>> = [{ subject: `Patient/${patients[7].id}` }, { patient: patients[7].id! }, { 'derived-from': `QuestionnaireResponse/${responses[7].id}` }];
    for (const q of queries) {
      const { r, scans } = await searched('Observation', q);
      expect(r.entries).toHaveLength(4);
      expect(scans.map((s) => ({ q, indexes: s.indexes, seq: s.seq }))).toEqual([{ q, indexes: target, seq: false }]);
    }
  });

  it('_has probes the target index', async () => {
    const { r, scans } = await searched('Patient', { family: 'f7', '_has:Observation:subject:status': 'preliminary' });
    expect(r.entries.length).toBeGreaterThan(0);
    expect(scans.map((s) => ({ indexes: s.indexes, seq: s.seq }))).toEqual([{ indexes: target, seq: false }]);
    const derived = await searched('Patient', { family: 'f7', '_has:Observation:patient:status': 'preliminary' });
    expect(derived.r.entries.map((e) => e.resource.id)).toEqual(r.entries.map((e) => e.resource.id));
    expect(derived.scans.map((s) => ({ indexes: s.indexes, seq: s.seq }))).toEqual([{ indexes: target, seq: false }]);
  });

  it('_revinclude by a parameter and by Type:*, in the page statement and in :iterate rounds, reads the target index', async () => {
    for (const rev of ['Observation:subject', 'Observation:patient', 'Observation:*', 'Observation:*:Patient']) {
      const { r, scans } = await searched('Patient', { family: 'f3', _count: '10', _revinclude: rev });
      expect(r.entries.filter((e) => e.mode === 'include')).toHaveLength(40);
      expect(scans.map((s) => ({ rev, indexes: s.indexes, seq: s.seq }))).toEqual([{ rev, indexes: target, seq: false }]);
    }
    // Round 1 (its own statement, keys bound as arrays): the Tasks and Observations referring to the page's responses.
    for (const rev of ['Observation:derived-from', 'Task:*', 'Observation:*']) {
      const { r, scans } = await searched('Patient', { _id: patients[11].id!, _revinclude: 'QuestionnaireResponse:subject', '_revinclude:iterate': rev });
      expect(r.entries.filter((e) => e.mode === 'include').length).toBeGreaterThan(1);
      expect(scans.length).toBeGreaterThanOrEqual(2);
      expect(scans.map((s) => ({ rev, indexes: s.indexes, seq: s.seq }))).toEqual(scans.map(() => ({ rev, indexes: target, seq: false })));
    }
  });

  it('Repository.referring reads the target index', async () => {
    const { db, calls } = recordingDb(t.db);
    const repo = new Repository(db, system, { modules: [] });
    expect(await repo.referring<Task>('Task', 'patient', `Patient/${patients[5].id}`, 10)).toHaveLength(1);
    expect(await repo.referring<Observation>('Observation', 'derived-from', `QuestionnaireResponse/${responses[5].id}`, 10)).toHaveLength(4);
    expect(calls).toHaveLength(2);
    for (const c of calls) {
      const s = await referenceScans(t.db, c);
      expect({ indexes: s.indexes, seq: s.seq }).toEqual({ indexes: target, seq: false });
    }
  });
});
