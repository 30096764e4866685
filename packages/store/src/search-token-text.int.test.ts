// :text on CodeableConcepts whose text has no row of its own (indexer.ts addToken: a coding's display
// already says the same), next to rows written before that (a text row beside the coding), and the
// resource storage of migrations 27-28 (no owner index; content compressed with lz4 where the server
// has it). On PGlite and PostgreSQL.
import type { Observation } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import type { Db } from './db.ts';
import { Repository } from './repository.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };

function answer(code: string, display: string, text: string): Observation {
  return {
    resourceType: 'Observation',
    status: 'final',
    code: { coding: [{ system: 'http://loinc.org', code: '101703-7', display: 'Repeated memories [PCL-5]' }], text: 'Repeated, disturbing memories?' },
    valueCodeableConcept: { coding: [{ system: 'urn:answers', code, display }], text },
  };
}

describe.each(testDatabaseKinds())('token :text on %s', (kind) => {
  let t: TestDatabase;
  const ids: Record<string, string> = {};
  const search = async (db: Db, q: Record<string, string>) => {
    const r = await searchResources(db, system, [], 'Observation', Object.fromEntries(Object.entries(q).map(([k, v]) => [k, [v]])));
    return r.entries.map((e) => e.resource.id!).sort();
  };
  const names = (...n: string[]) => n.map((x) => ids[x]).sort();

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const repo = new Repository(t.db, system, { modules: [] });
    ids.same = (await repo.create(answer('moderately', 'Moderately', 'MODERATELY'))).id!;
    ids.more = (await repo.create(answer('a-little', 'A little bit', 'A little bit, at times'))).id!;
    ids.before = (await repo.create(answer('extremely', 'Extremely', 'Extremely'))).id!;
    // As written before the indexer left such text rows out: the text row beside the coding.
    await t.db.query(
      `INSERT INTO sp_token (resource_type, id, code, system, value, display, last_updated)
       SELECT resource_type, id, code, NULL, NULL, display, last_updated FROM sp_token WHERE id = $1 AND code = 'value-concept'`,
      [ids.before],
    );
  });
  afterAll(() => t.drop());

  it('stores no text row that repeats a display, and one that says more', async () => {
    const rows = await t.db.query<{ id: string; n: number }>(`SELECT id, count(*)::int AS n FROM sp_token WHERE code = 'value-concept' AND value IS NULL GROUP BY id ORDER BY id`);
    expect(rows.rows).toEqual([{ id: ids.more, n: 1 }, { id: ids.before, n: 1 }].sort((a, b) => a.id.localeCompare(b.id)));
  });

  it('finds the same resources by :text either way', async () => {
    expect(await search(t.db, { 'value-concept:text': 'moderately' })).toEqual(names('same'));
    expect(await search(t.db, { 'value-concept:text': 'Moder' })).toEqual(names('same'));
    expect(await search(t.db, { 'value-concept:text': 'at times' })).toEqual(names('more'));
    expect(await search(t.db, { 'value-concept:text': 'little' })).toEqual(names('more'));
    expect(await search(t.db, { 'value-concept:text': 'extremely' })).toEqual(names('before'));
    expect(await search(t.db, { 'value-concept:text': 'bit, at' })).toEqual(names('more'));
    expect(await search(t.db, { 'code:text': 'disturbing' })).toEqual(names('same', 'more', 'before'));
    expect(await search(t.db, { 'value-concept': 'urn:answers|moderately', 'value-concept:missing': 'false' })).toEqual(names('same'));
    expect(await search(t.db, { 'combo-value-concept:text': 'moderately' })).toEqual(names('same'));
  });

  it('stores resources without the owner index, content compressed with lz4 on PostgreSQL', async () => {
    const owner = await t.db.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'resource_owner_idx'`);
    expect(owner.rows).toEqual([]);
    if (kind !== 'postgres') return;
    const c = await t.db.query<{ t: string; c: string }>(
      `SELECT c.relname AS t, a.attcompression AS c FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       WHERE c.relname IN ('resource', 'resource_version') AND a.attname = 'content' ORDER BY 1`,
    );
    expect(c.rows).toEqual([
      { t: 'resource', c: 'l' },
      { t: 'resource_version', c: 'l' },
    ]);
  });
});
