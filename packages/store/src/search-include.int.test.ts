// Round 0 of _include/_revinclude is read in the page's own statement (search.ts,
// search-include.ts firstIncludeRoundSql): one round trip for a page and what it includes. These
// tests pin that it includes exactly what the page's matches refer to (not the extra row read to
// see whether there is a next page), on every paging path, never repeats a match, and leaves
// :iterate rounds to further queries. On PGlite and PostgreSQL.
import type { Observation, Organization, Patient } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import type { SearchOptions, SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, recordingDb, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };

describe.each(testDatabaseKinds())('_include in the page statement on %s', (kind) => {
  let t: TestDatabase;
  const patients: Patient[] = [];
  const observations: Observation[] = [];
  let panel: Observation;
  const search = async (type: string, q: Record<string, string>, options: SearchOptions = {}) => {
    const c = recordingDb(t.db);
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = [v];
    const r = await searchResources(c.db, system, [], type, query, options);
    return { r, statements: c.calls.length };
  };
  const of = (r: SearchResult, mode: 'match' | 'include') => r.entries.filter((e) => e.mode === mode).map((e) => e.resource.id!);

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const repo = new Repository(t.db, system, { modules: [] });
    const org = await repo.create<Organization>({ resourceType: 'Organization', name: 'o' });
    for (let i = 0; i < 5; i++) {
      patients.push(await repo.create<Patient>({ resourceType: 'Patient', name: [{ family: `p${i}` }], managingOrganization: { reference: `Organization/${org.id}` } }));
      await new Promise((r) => setTimeout(r, 2));
      observations.push(
        await repo.create<Observation>({
          resourceType: 'Observation',
          status: 'final',
          code: { text: 'inc' },
          effectiveDateTime: `2024-03-0${i + 1}`,
          subject: { reference: `Patient/${patients[i].id}` },
        }),
      );
      await new Promise((r) => setTimeout(r, 2));
    }
    // A match that refers to other matches: they are not included a second time.
    panel = await repo.create<Observation>({
      resourceType: 'Observation',
      status: 'final',
      code: { text: 'inc' },
      effectiveDateTime: '2024-03-06',
      hasMember: observations.slice(3).map((o) => ({ reference: `Observation/${o.id}` })),
    });
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('reads a page and what it includes in one statement', async () => {
    const { r, statements } = await search('Observation', { subject: `Patient/${patients[2].id}`, _include: 'Observation:subject' });
    expect(statements).toBe(1);
    expect(r.entries.map((e) => [e.mode, e.resource.id])).toEqual([
      ['match', observations[2].id],
      ['include', patients[2].id],
    ]);
    const rev = await search('Patient', { _id: patients[1].id!, _revinclude: 'Observation:subject' });
    expect(rev.statements).toBe(1);
    expect(of(rev.r, 'include')).toEqual([observations[1].id]);
  });

  it('includes for the page only, forward, backward and by offset, gathered or walked', async () => {
    const q = { 'code:text': 'inc', _include: 'Observation:subject', _count: '2' };
    const subjects = (r: SearchResult) => of(r, 'match').map((id) => observations.find((o) => o.id === id)?.subject?.reference?.split('/')[1]).filter(Boolean);
    const first = (await search('Observation', q)).r;
    expect(of(first, 'match')).toEqual([observations[0].id, observations[1].id]);
    expect(of(first, 'include').sort()).toEqual((subjects(first) as string[]).sort()); // not the third's subject, read to see that there is a next page
    const second = (await search('Observation', { ...q, _cursor: first.nextCursor! })).r;
    expect(of(second, 'match')).toEqual([observations[2].id, observations[3].id]);
    expect(of(second, 'include').sort()).toEqual([patients[2].id, patients[3].id].sort());
    const back = (await search('Observation', { ...q, _cursor: second.prevCursor! })).r;
    expect(of(back, 'include').sort()).toEqual([patients[0].id, patients[1].id].sort());
    const offset = (await search('Observation', { ...q, _offset: '2', _sort: '_id' })).r;
    expect(of(offset, 'include').sort()).toEqual((subjects(offset) as string[]).sort());
    for (const cap of [undefined, 1]) {
      const ranged = (await search('Observation', { date: 'ge2024-03-02', _include: 'Observation:subject', _count: '2' }, { candidateCap: cap })).r;
      expect(of(ranged, 'include').sort()).toEqual((subjects(ranged) as string[]).sort());
    }
  });

  it('in a date window gathered or walked past the cap', async () => {
    for (const cap of [undefined, 1]) {
      const query: Record<string, string[]> = { date: ['ge2024-03-02', 'lt2024-03-05'], _include: ['Observation:subject'] };
      const r = await searchResources(t.db, system, [], 'Observation', query, { candidateCap: cap });
      expect(of(r, 'match')).toEqual([observations[1].id, observations[2].id, observations[3].id]);
      expect(of(r, 'include').sort()).toEqual([patients[1].id, patients[2].id, patients[3].id].sort());
    }
  });

  it('never includes a match again, and :iterate rounds follow in further statements', async () => {
    const { r } = await search('Observation', { 'code:text': 'inc', _include: 'Observation:has-member', _count: '20' });
    expect(of(r, 'match')).toHaveLength(6);
    expect(of(r, 'include')).toEqual([]);
    const only = await search('Observation', { _id: panel.id!, _include: 'Observation:has-member' });
    expect(of(only.r, 'include').sort()).toEqual([observations[3].id, observations[4].id].sort());
    const it2 = await search('Observation', { _id: observations[0].id!, _include: 'Observation:subject', '_include:iterate': 'Patient:organization' });
    expect(it2.statements).toBe(2);
    expect(of(it2.r, 'include')).toHaveLength(2);
    // A _revinclude whose target type is not the searched type includes nothing.
    const other = await search('Patient', { _id: patients[0].id!, _revinclude: 'Observation:subject:Group' });
    expect(of(other.r, 'include')).toEqual([]);
  });

  it('_revinclude=Type:* reads every code Type stores references under, in the page statement and in :iterate rounds', async () => {
    // Observation/3 and Observation/4 are referred to by the panel's has-member, Patient/i by Observation/i's subject.
    const page = await search('Patient', { _id: patients[3].id!, _revinclude: 'Observation:*' });
    expect(page.statements).toBe(1);
    expect(of(page.r, 'include')).toEqual([observations[3].id]);
    const members = await search('Observation', { _id: observations[4].id!, _revinclude: 'Observation:*' });
    expect(of(members.r, 'include')).toEqual([panel.id]);
    // With a target type: only references to it.
    expect(of((await search('Patient', { _id: patients[3].id!, _revinclude: 'Observation:*:Patient' })).r, 'include')).toEqual([observations[3].id]);
    expect(of((await search('Patient', { _id: patients[3].id!, _revinclude: 'Observation:*:Group' })).r, 'include')).toEqual([]);
    // :iterate (further statements, search-include.ts specSql): the panel, from the Observation the
    // page's Patient is referred to by; a third round finds nothing referring to the panel.
    const it2 = await search('Patient', { _id: patients[4].id!, _revinclude: 'Observation:subject', '_revinclude:iterate': 'Observation:*' });
    expect(it2.statements).toBe(3);
    expect(of(it2.r, 'include')).toEqual([observations[4].id, panel.id]);
    // A type that stores no reference rows (Practitioner has no reference parameter) includes nothing.
    const none = await search('Patient', { _id: patients[3].id!, _revinclude: 'Practitioner:*', '_revinclude:iterate': 'Practitioner:*' });
    expect(of(none.r, 'include')).toEqual([]);
    expect(of(none.r, 'match')).toEqual([patients[3].id]);
  });
});
