// Composite search parameters (Observation code-value-quantity, component-code-value-quantity,
// combo-…, code-value-concept/date/string): every part must match the SAME element (one group of
// index rows, indexer.ts addComposite; search-sql.ts compositePredicate). Exact match sets on
// PGlite and PostgreSQL. LOINC codes are those of the R4 spec's examples
// (observation-example-bloodpressure: 85354-9, 8480-6, 8462-4; observation-example: 29463-7).
import type { Observation, ValueSet } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { compiledParamsFor, indexResource } from './indexer.ts';
import { Repository } from './repository.ts';
import type { SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, statusOf, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const LOCAL = 'http://example.org/test-codes';

const mmHg = (value: number) => ({ value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' });
const bp = (patient: string, systolic: number, diastolic: number): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  subject: { reference: `Patient/${patient}` },
  code: { coding: [{ system: LOINC, code: '85354-9' }] },
  component: [
    { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: mmHg(systolic) },
    { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: mmHg(diastolic) },
  ],
});
const weight = (patient: string, kg: number): Observation => ({
  resourceType: 'Observation',
  status: 'final',
  subject: { reference: `Patient/${patient}` },
  code: { coding: [{ system: LOINC, code: '29463-7' }] },
  valueQuantity: { value: kg, unit: 'kg', system: UCUM, code: 'kg' },
});

describe('composite parameters in the capability list', () => {
  it('compiledParamsFor lists composites and Location.near', () => {
    const obs = compiledParamsFor('Observation').map((p) => p.code);
    for (const code of ['code-value-quantity', 'code-value-concept', 'code-value-date', 'code-value-string', 'component-code-value-quantity', 'combo-code-value-quantity']) {
      expect(obs).toContain(code);
    }
    expect(compiledParamsFor('Location').map((p) => p.code)).toContain('near');
    expect(compiledParamsFor('ValueSet').map((p) => p.code)).toContain('context-type-value');
  });
});

describe('composite index rows', () => {
  it('a component expression may use %resource (MolecularSequence chromosome-variant-coordinate)', () => {
    const rows = indexResource({
      resourceType: 'MolecularSequence',
      coordinateSystem: 0,
      referenceSeq: { chromosome: { coding: [{ system: LOCAL, code: '1' }] }, strand: 'watson' },
      variant: [{ start: 10, end: 20 }, { start: 30, end: 40 }],
    });
    const code = 'chromosome-variant-coordinate';
    expect(rows.token.filter((r) => r[0] === `${code}$0`).map((r) => [r[2], r[4]])).toEqual([['1', 0], ['1', 1]]);
    expect(rows.number.filter((r) => r[0] === `${code}$1`).map((r) => [r[1], r[2]])).toEqual([['10', 0], ['30', 1]]);
    expect(rows.number.filter((r) => r[0] === `${code}$2`).map((r) => [r[1], r[2]])).toEqual([['20', 0], ['40', 1]]);
  });
});

describe.each(testDatabaseKinds())('composite search on %s', (kind) => {
  let t: TestDatabase;
  const repo = () => new Repository(t.db, system, { modules: [] });
  const page = (type: string, q: Record<string, string>, strict = false): Promise<SearchResult> => {
    const query: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(q)) query[k] = [v];
    return searchResources(t.db, system, [], type, query, strict);
  };
  const ids = async (q: Record<string, string>) => (await page('Observation', q)).entries.map((e) => e.resource.id!).sort();
  const set = (...o: Observation[]) => o.map((x) => x.id!).sort();

  let high: Observation, crossed: Observation, w72: Observation, w60: Observation, concept: Observation, dated: Observation, text: Observation;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    high = await repo().create(bp('p1', 150, 80));
    // Systolic 95, diastolic 130: "systolic > 100" must not match (the 130 is the other component).
    crossed = await repo().create(bp('p2', 95, 130));
    w72 = await repo().create(weight('p1', 72));
    w60 = await repo().create(weight('p2', 60));
    concept = await repo().create<Observation>({
      resourceType: 'Observation',
      status: 'final',
      code: { coding: [{ system: LOCAL, code: 'c' }] },
      valueCodeableConcept: { coding: [{ system: LOCAL, code: 'yes' }] },
    });
    dated = await repo().create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOCAL, code: 'd' }] }, valueDateTime: '2024-05-01' });
    text = await repo().create<Observation>({ resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOCAL, code: 's' }] }, valueString: 'Pos$itive' });
  });
  afterAll(() => t.drop());

  it('component-code-value-quantity: code and value from the same component', async () => {
    expect(await ids({ 'component-code-value-quantity': `${LOINC}|8480-6$gt100` })).toEqual(set(high));
    expect(await ids({ 'component-code-value-quantity': '8480-6$gt100' })).toEqual(set(high));
    expect(await ids({ 'component-code-value-quantity': '8462-4$gt100' })).toEqual(set(crossed));
    expect(await ids({ 'component-code-value-quantity': '8462-4$lt90' })).toEqual(set(high));
    expect(await ids({ 'component-code-value-quantity': '8480-6$95' })).toEqual(set(crossed));
    expect(await ids({ 'component-code-value-quantity': `8480-6$150|${UCUM}|mm[Hg]` })).toEqual(set(high));
    expect(await ids({ 'component-code-value-quantity': `8480-6$150|${UCUM}|kg` })).toEqual([]);
    expect(await ids({ 'component-code-value-quantity': `http://other.example|8480-6$gt100` })).toEqual([]);
    // The panel's own code is not a component code.
    expect(await ids({ 'component-code-value-quantity': '85354-9$gt0' })).toEqual([]);
  });

  it('OR values and AND of two composites', async () => {
    expect(await ids({ 'component-code-value-quantity': '8480-6$gt200,8462-4$ge130' })).toEqual(set(crossed));
    const both = await page('Observation', { 'component-code-value-quantity': '8480-6$gt100' });
    expect(both.entries).toHaveLength(1);
    const and = await searchResources(t.db, system, [], 'Observation', { 'component-code-value-quantity': ['8480-6$gt100', '8462-4$lt90'] });
    expect(and.entries.map((e) => e.resource.id)).toEqual([high.id]);
    const none = await searchResources(t.db, system, [], 'Observation', { 'component-code-value-quantity': ['8480-6$gt100', '8462-4$gt90'] });
    expect(none.entries).toEqual([]);
  });

  it('code-value-quantity and combo-code-value-quantity', async () => {
    expect(await ids({ 'code-value-quantity': `${LOINC}|29463-7$ge70` })).toEqual(set(w72));
    expect(await ids({ 'code-value-quantity': '29463-7$lt70' })).toEqual(set(w60));
    expect(await ids({ 'code-value-quantity': `29463-7$72|${UCUM}|kg` })).toEqual(set(w72));
    expect(await ids({ 'code-value-quantity': '8480-6$gt100' })).toEqual([]); // components are not the Observation's value
    expect(await ids({ 'combo-code-value-quantity': '8480-6$gt100' })).toEqual(set(high));
    expect(await ids({ 'combo-code-value-quantity': '29463-7$gt70' })).toEqual(set(w72));
    expect(await ids({ 'combo-code-value-quantity': '85354-9$gt0' })).toEqual([]); // the panel has no value of its own
  });

  it('code-value-concept, code-value-date, code-value-string', async () => {
    expect(await ids({ 'code-value-concept': `${LOCAL}|c$${LOCAL}|yes` })).toEqual(set(concept));
    expect(await ids({ 'code-value-concept': 'c$yes' })).toEqual(set(concept));
    expect(await ids({ 'code-value-concept': 'c$no' })).toEqual([]);
    expect(await ids({ 'code-value-concept': 'd$yes' })).toEqual([]);
    expect(await ids({ 'code-value-date': 'd$ge2024-01-01' })).toEqual(set(dated));
    expect(await ids({ 'code-value-date': 'd$2024-05' })).toEqual(set(dated));
    expect(await ids({ 'code-value-date': 'd$lt2024-01-01' })).toEqual([]);
    expect(await ids({ 'code-value-string': 's$pos' })).toEqual(set(text));
    expect(await ids({ 'code-value-string': 's$pos\\$it' })).toEqual(set(text)); // escaped $ is part of the value
    expect(await ids({ 'code-value-string': 's$neg' })).toEqual([]);
  });

  it('works as a probe next to a driving filter, with _total and after updates', async () => {
    const r = await page('Observation', { subject: 'Patient/p1', 'component-code-value-quantity': '8480-6$gt100', _total: 'accurate' });
    expect(r.entries.map((e) => e.resource.id)).toEqual([high.id]);
    expect(r.total).toBe(1);
    expect(await ids({ subject: 'Patient/p2', 'component-code-value-quantity': '8480-6$gt100' })).toEqual([]);
    const sorted = await page('Observation', { 'component-code-value-quantity': '8480-6$gt0', _sort: '-_lastUpdated' });
    expect(sorted.entries.map((e) => e.resource.id)).toEqual([crossed.id, high.id]);
    // An update rewrites the groups: the old systolic no longer matches.
    const lowered = await repo().update<Observation>({ ...bp('p1', 90, 80), id: high.id });
    expect(await ids({ 'component-code-value-quantity': '8480-6$gt100' })).toEqual([]);
    expect(await ids({ 'component-code-value-quantity': '8480-6$90' })).toEqual(set(lowered));
    await repo().update<Observation>({ ...bp('p1', 150, 80), id: high.id });
    expect(await ids({ 'component-code-value-quantity': '8480-6$gt100' })).toEqual(set(high));
  });

  it('context-type-value on a conformance resource (useContext)', async () => {
    const vs = await repo().create<ValueSet>({
      resourceType: 'ValueSet',
      status: 'draft',
      useContext: [
        { code: { system: LOCAL, code: 'focus' }, valueCodeableConcept: { coding: [{ system: LOCAL, code: 'a' }] } },
        { code: { system: LOCAL, code: 'venue' }, valueCodeableConcept: { coding: [{ system: LOCAL, code: 'b' }] } },
      ],
    });
    const vsIds = async (v: string) => (await searchResources(t.db, system, [], 'ValueSet', { 'context-type-value': [v] })).entries.map((e) => e.resource.id);
    expect(await vsIds('focus$a')).toEqual([vs.id]);
    expect(await vsIds(`${LOCAL}|venue$${LOCAL}|b`)).toEqual([vs.id]);
    expect(await vsIds('focus$b')).toEqual([]);
  });

  it('malformed composite values: warnings, 400 when strict', async () => {
    const bad: Array<Record<string, string>> = [
      { 'code-value-quantity': '29463-7' },
      { 'code-value-quantity': '29463-7$abc' },
      { 'code-value-quantity': '29463-7$1$2' },
      { 'code-value-date': 'd$yesterday' },
      { 'code-value-quantity:missing': 'true' },
      { 'code-value-quantity:exact': '29463-7$1' },
    ];
    for (const q of bad) {
      expect(await statusOf(page('Observation', q, true))).toBe(400);
      const lenient = await page('Observation', q);
      expect(lenient.warnings).toHaveLength(1);
    }
  });
});
