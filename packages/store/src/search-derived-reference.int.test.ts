// Reference parameters searched from other reference parameters' rows (indexer.ts planDerived,
// referenceIndex): Observation.patient is Observation.subject's rows with target_type Patient,
// AuditEvent.patient is AuditEvent.agent's and AuditEvent.entity's rows with target_type Patient.
// They store no sp_reference rows of their own; every way of reading them answers as when they
// had: filters (Type/id, bare id = Patient/id only, :Type, absolute URL), :missing, :identifier,
// chains, _has, _include/_revinclude (with :iterate), _sort, Repository.referring, and migration
// 13 deleting the rows stored before it. On PGlite and PostgreSQL.
import type { AuditEvent, Observation, Patient, Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { PGliteDb } from './db.ts';
import { migrate, migrations } from './migrations.ts';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const MRN = 'http://example.org/test-mrn';

const observation = (subject: Observation['subject'], text = 'x'): Observation => ({ resourceType: 'Observation', status: 'final', code: { text }, ...(subject ? { subject } : {}) });
const auditEvent = (who: string, whats: string[]): AuditEvent => ({
  resourceType: 'AuditEvent',
  type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
  recorded: '2026-11-26T00:00:00Z',
  agent: [{ who: { reference: who }, requestor: true }],
  source: { observer: { reference: 'Device/server' } },
  entity: whats.map((what) => ({ what: { reference: what } })),
});

describe.each(testDatabaseKinds())('reference parameters from base rows on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, system, { modules: [] });
  const search = async (type: string, q: Record<string, string | string[]>) => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = Array.isArray(v) ? v : [v];
    return searchResources(t.db, system, [], type, query);
  };
  const ids = async (type: string, q: Record<string, string | string[]>) => (await search(type, q)).entries.filter((e) => e.mode !== 'include').map((e) => e.resource.id!).sort();
  const included = async (type: string, q: Record<string, string | string[]>) =>
    (await search(type, q)).entries
      .filter((e) => e.mode === 'include')
      .map((e) => `${e.resource.resourceType}/${e.resource.id}`)
      .sort();
  const set = (...r: Resource[]) => r.map((x) => x.id!).sort();
  let pa: Patient, pb: Patient;
  let oA: Observation, oB: Observation, oSame: Observation, oGroup: Observation, oNone: Observation, oUrl: Observation, oIdent: Observation;
  let ae1: AuditEvent, ae2: AuditEvent, ae3: AuditEvent;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    pa = await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: 'Alpha' }] });
    pb = await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: 'Beta' }] });
    // A Patient and a Group with the same id: a bare id searched as patient means the Patient.
    await repo().create<Patient>({ resourceType: 'Patient', name: [{ family: 'Same' }] }, { id: 'same-1' });
    await repo().create({ resourceType: 'Group', type: 'person', actual: true }, { id: 'same-1' });
    oA = await repo().create(observation({ reference: `Patient/${pa.id}` }, 'a'));
    oB = await repo().create(observation({ reference: `Patient/${pb.id}` }, 'b'));
    oSame = await repo().create(observation({ reference: 'Patient/same-1' }));
    oGroup = await repo().create(observation({ reference: 'Group/same-1' }));
    oNone = await repo().create(observation(undefined));
    oUrl = await repo().create(observation({ reference: `http://other.example/fhir/Patient/${pa.id}` }));
    oIdent = await repo().create(observation({ reference: `Patient/${pb.id}`, identifier: { system: MRN, value: 'mrn-b' } }));
    ae1 = await repo().create(auditEvent('Practitioner/pr1', [`Observation/${oA.id}`, `Patient/${pa.id}`]));
    ae2 = await repo().create(auditEvent(`Patient/${pb.id}`, [`Observation/${oB.id}`]));
    ae3 = await repo().create(auditEvent('Practitioner/pr1', ['Group/same-1']));
  }, 60_000);
  afterAll(() => t.drop());

  it('stores no patient rows: they are the subject, agent and entity rows', async () => {
    const rows = await t.db.query<{ resource_type: string }>(`SELECT resource_type FROM sp_reference WHERE code = 'patient' AND resource_type IN ('Observation', 'AuditEvent')`);
    expect(rows.rows).toEqual([]);
    const audit = await t.db.query<{ code: string }>(`SELECT code FROM sp_reference WHERE resource_type = 'AuditEvent' AND id = $1 ORDER BY code, target_type`, [ae1.id]);
    expect(audit.rows.map((r) => r.code)).toEqual(['agent', 'entity', 'entity', 'source']);
    // The identifier of a Patient reference is still the patient parameter's own token row.
    const tokens = await t.db.query<{ code: string }>(`SELECT code FROM sp_token WHERE resource_type = 'Observation' AND id = $1 AND code LIKE '%:identifier' ORDER BY code`, [oIdent.id]);
    expect(tokens.rows.map((r) => r.code)).toEqual(['patient:identifier', 'subject:identifier']);
  });

  it('Observation.patient: Type/id, bare id (Patient only), :Patient, other types and URLs', async () => {
    expect(await ids('Observation', { patient: `Patient/${pa.id}` })).toEqual(set(oA));
    expect(await ids('Observation', { patient: pb.id! })).toEqual(set(oB, oIdent));
    expect(await ids('Observation', { patient: 'same-1' })).toEqual(set(oSame));
    expect(await ids('Observation', { subject: 'same-1' })).toEqual(set(oSame, oGroup));
    expect(await ids('Observation', { 'patient:Patient': 'same-1' })).toEqual(set(oSame));
    expect(await ids('Observation', { patient: 'Group/same-1' })).toEqual([]);
    expect(await ids('Observation', { patient: `http://other.example/fhir/Patient/${pa.id}` })).toEqual([]);
    expect(await ids('Observation', { subject: `http://other.example/fhir/Patient/${pa.id}` })).toEqual(set(oUrl));
    expect(await ids('Observation', { patient: `Patient/${pa.id},same-1` })).toEqual(set(oA, oSame));
    // Next to another filter, and driving with paging.
    expect(await ids('Observation', { patient: pb.id!, 'code:text': 'b' })).toEqual(set(oB));
    const first = await search('Observation', { patient: pb.id!, _count: '1', _total: 'accurate' });
    expect(first.total).toBe(2);
    const second = await search('Observation', { patient: pb.id!, _count: '1', _cursor: first.nextCursor! });
    expect([...first.entries, ...second.entries].map((e) => e.resource.id!).sort()).toEqual(set(oB, oIdent));
  });

  it('Observation.patient: :missing, :identifier and _sort', async () => {
    expect(await ids('Observation', { 'patient:missing': 'true' })).toEqual(set(oGroup, oNone, oUrl));
    expect(await ids('Observation', { 'patient:missing': 'false' })).toEqual(set(oA, oB, oSame, oIdent));
    expect(await ids('Observation', { 'patient:identifier': `${MRN}|mrn-b` })).toEqual(set(oIdent));
    const sorted = await search('Observation', { 'patient:missing': 'false', _sort: 'patient' });
    const refs = sorted.entries.map((e) => (e.resource as Observation).subject!.reference!);
    expect(refs).toEqual([...refs].sort());
    // Resources without a patient sort last (the Group subject is not a patient).
    const all = await search('Observation', { _sort: 'patient', _count: '20' });
    expect(all.entries.slice(-3).map((e) => e.resource.id!).sort()).toEqual(set(oGroup, oNone, oUrl));
  });

  it('Observation.patient: chains and _has', async () => {
    expect(await ids('Observation', { 'patient.name': 'alpha' })).toEqual(set(oA));
    expect(await ids('Observation', { 'patient:Patient.name': 'same' })).toEqual(set(oSame));
    expect(await ids('Patient', { '_has:Observation:patient:code:text': 'b' })).toEqual(set(pb));
    expect(await ids('Patient', { '_has:Observation:patient:_id': [oA.id!] })).toEqual(set(pa));
    expect(await ids('Group', { '_has:Observation:subject:_id': [oGroup.id!] })).toEqual(['same-1']);
  });

  it('Observation.patient: _include, _revinclude and :iterate', async () => {
    expect(await included('Observation', { _id: [oA.id!, oGroup.id!, oUrl.id!].join(','), _include: 'Observation:patient' })).toEqual([`Patient/${pa.id}`]);
    expect(await included('Observation', { _id: oGroup.id!, _include: 'Observation:subject' })).toEqual(['Group/same-1']);
    expect(await included('Patient', { _id: 'same-1', _revinclude: 'Observation:patient' })).toEqual([`Observation/${oSame.id}`]);
    expect(await included('Group', { _id: 'same-1', _revinclude: 'Observation:patient' })).toEqual([]);
    expect(await included('AuditEvent', { _id: ae2.id!, _include: 'AuditEvent:entity', '_include:iterate': 'Observation:patient' })).toEqual([`Observation/${oB.id}`, `Patient/${pb.id}`].sort());
  });

  it('AuditEvent.patient: the agent and entity rows of target type Patient', async () => {
    expect(await ids('AuditEvent', { patient: `Patient/${pa.id}` })).toEqual(set(ae1));
    expect(await ids('AuditEvent', { patient: pb.id! })).toEqual(set(ae2));
    expect(await ids('AuditEvent', { patient: `${pa.id},${pb.id}` })).toEqual(set(ae1, ae2));
    expect(await ids('AuditEvent', { patient: 'same-1' })).toEqual([]);
    expect(await ids('AuditEvent', { entity: 'same-1' })).toEqual(set(ae3));
    expect(await ids('AuditEvent', { agent: 'Practitioner/pr1' })).toEqual(set(ae1, ae3));
    expect(await ids('AuditEvent', { 'patient:missing': 'true' })).toEqual(set(ae3));
    expect(await ids('AuditEvent', { 'patient.name': 'beta' })).toEqual(set(ae2));
    expect(await ids('Patient', { '_has:AuditEvent:patient:_id': `${ae1.id},${ae2.id}` })).toEqual(set(pa, pb));
    expect(await included('AuditEvent', { _id: ae1.id!, _include: 'AuditEvent:patient' })).toEqual([`Patient/${pa.id}`]);
    expect(await included('Patient', { _id: pb.id!, _revinclude: 'AuditEvent:patient' })).toEqual([`AuditEvent/${ae2.id}`]);
    const sorted = await search('AuditEvent', { patient: `${pa.id},${pb.id}`, _sort: '-patient' });
    expect(sorted.entries.map((e) => e.resource.id)).toEqual(`Patient/${pa.id}` > `Patient/${pb.id}` ? [ae1.id, ae2.id] : [ae2.id, ae1.id]);
  });

  it('Repository.referring reads the base rows of the target type', async () => {
    const ref = async (type: string, code: string, reference: string) => (await repo().referring(type, code, reference, 10)).map((r) => r.id!).sort();
    expect(await ref('Observation', 'patient', `Patient/${pb.id}`)).toEqual(set(oB, oIdent));
    expect(await ref('Observation', 'patient', 'Group/same-1')).toEqual([]);
    expect(await ref('Observation', 'subject', 'Group/same-1')).toEqual(set(oGroup));
    expect(await ref('AuditEvent', 'patient', `Patient/${pa.id}`)).toEqual(set(ae1));
    // From the transaction that created the Patient (journal.ts): no statement, the same answer.
    await repo().transaction(async (tx) => {
      const p = await tx.create<Patient>({ resourceType: 'Patient' });
      const o = await tx.create(observation({ reference: `Patient/${p.id}` }));
      expect((await tx.referring('Observation', 'patient', `Patient/${p.id}`, 10)).map((r) => r.id)).toEqual([o.id]);
      expect(tx.referringInTransaction('Observation', 'patient', `Patient/${p.id}`)?.map((r) => r.id)).toEqual([o.id]);
    });
  });

  it('an update moves the patient with the subject', async () => {
    const o = await repo().create(observation({ reference: `Patient/${pa.id}` }));
    expect(await ids('Observation', { patient: pa.id!, _id: o.id! })).toEqual([o.id]);
    await repo().update<Observation>({ ...observation({ reference: 'Group/same-1' }), id: o.id });
    expect(await ids('Observation', { patient: pa.id!, _id: o.id! })).toEqual([]);
    await repo().delete('Observation', o.id!);
  });
});

describe('migration 13 on existing data', () => {
  it('deletes the patient rows stored before it; searches answer the same', async () => {
    const db = await PGliteDb.open();
    try {
      await db.query(`CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const m of migrations.filter((m) => m.version < 13)) {
        await db.exec(m.sql);
        if (m.run) await m.run(db);
        await db.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      const r = new Repository(db, system, { modules: [] });
      const p = await r.create<Patient>({ resourceType: 'Patient' });
      const o = await r.create(observation({ reference: `Patient/${p.id}` }));
      const g = await r.create(observation({ reference: 'Group/g1' }));
      const a = await r.create(auditEvent('Practitioner/pr1', [`Patient/${p.id}`]));
      // As written before migration 13: the patient rows copy the subject and entity rows of target type Patient.
      await db.query(
        `INSERT INTO sp_reference (resource_type, id, code, target_type, target_id, reference, last_updated)
         SELECT resource_type, id, 'patient', target_type, target_id, reference, last_updated FROM sp_reference
         WHERE target_type = 'Patient' AND ((resource_type = 'Observation' AND code = 'subject') OR (resource_type = 'AuditEvent' AND code = 'entity'))`,
      );
      expect((await db.query(`SELECT 1 FROM sp_reference WHERE code = 'patient'`)).rows).toHaveLength(2);
      expect(await migrate(db)).toEqual(expect.arrayContaining([13]));
      expect((await db.query(`SELECT 1 FROM sp_reference WHERE code = 'patient'`)).rows).toEqual([]);
      const found = async (type: string, q: Record<string, string[]>) => (await searchResources(db, system, [], type, q)).entries.map((e) => e.resource.id);
      expect(await found('Observation', { patient: [p.id!] })).toEqual([o.id]);
      expect(await found('Observation', { 'patient:missing': ['true'] })).toEqual([g.id]);
      expect(await found('AuditEvent', { patient: [`Patient/${p.id}`] })).toEqual([a.id]);
    } finally {
      await db.close();
    }
  });
});
