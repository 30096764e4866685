// `_security` searches in every form the server supports: code, system|code, |code, system|, several
// values, :not, :missing, :text, :of-type, _sort, paging (offset and cursor), totals, chains, _has,
// and the confidentiality rule (R/V need explicit permission) applied to their matches and totals.
// Written against the sp_token rows of `_security` and kept unchanged when the labels moved to the
// resource row (decision 0011): the same results, totals and pages. On PGlite and PostgreSQL.
import type { Coding, Condition, Observation, Patient, Resource } from '@medplum/fhirtypes';
import type { RequestContext } from '@tic/fhir';
import { Repository } from './repository.ts';
import type { SearchResult } from './search.ts';
import { searchResources } from './search.ts';
import type { TestDatabase } from './testing.ts';
import { openTestDatabase, testDatabaseKinds } from './testing.ts';

const system: RequestContext = { system: true };
const orgA: RequestContext = { organization: 'Organization/a', clientId: 'a' };
const orgAAllowed: RequestContext = { ...orgA, canReadRestricted: true };
const CONF = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const ACT = 'http://terminology.hl7.org/CodeSystem/v3-ActCode';
const LOINC = 'http://loinc.org';

type Q = Record<string, string | string[]>;
const norm = (q: Q): Record<string, string[]> => Object.fromEntries(Object.entries(q).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));

describe.each(testDatabaseKinds())('_security search on %s', (kind) => {
  let t: TestDatabase;
  const repo = (ctx: RequestContext = system) => new Repository(t.db, ctx, { modules: [] });
  const page = (type: string, q: Q, ctx: RequestContext = system): Promise<SearchResult> => searchResources(t.db, ctx, [], type, norm(q));
  const matchIds = (r: SearchResult) => r.entries.filter((e) => e.mode === 'match').map((e) => e.resource.id!);
  /** The match ids of every page, following nextCursor from the first. */
  const allPages = async (type: string, q: Q): Promise<string[]> => {
    let r = await page(type, q);
    const got = matchIds(r);
    while (r.nextCursor) {
      r = await page(type, { ...q, _cursor: r.nextCursor });
      got.push(...matchIds(r));
    }
    return got;
  };
  const ids = async (type: string, q: Q, ctx: RequestContext = system): Promise<string[]> => matchIds(await page(type, q, ctx)).sort();
  const set = (...rs: Resource[]) => rs.map((r) => r.id!).sort();

  let patient: Patient, labelledPatient: Patient;
  /** R + BH with displays (as the screening module labels its Observations). */
  let oRBH: Observation;
  /** N. */
  let oN: Observation;
  /** Code R without a system. */
  let oRNoSystem: Observation;
  /** Code R of another system. */
  let oROther: Observation;
  /** A system without a code. */
  let oSystemOnly: Observation;
  /** A label with only a display: no searchable value. */
  let oDisplayOnly: Observation;
  /** No labels. */
  let oNone: Observation;
  /** A code holding "|", an accented display. */
  let oPipe: Observation;
  /** Labelled R, then updated to V: only its current labels count. */
  let oUpdated: Observation;
  /** Labelled R, then deleted. */
  let oDeleted: Observation;
  /** BH without R: not restricted. */
  let oBH: Observation;
  /** Created by org A with R: hidden from A without permission. */
  let aR: Observation, aN: Observation, aNone: Observation;
  let condR: Condition;

  beforeAll(async () => {
    t = await openTestDatabase(kind);
    const r = repo();
    patient = await r.create<Patient>({ resourceType: 'Patient', name: [{ family: 'Plain' }] });
    labelledPatient = await r.create<Patient>({ resourceType: 'Patient', meta: { security: [{ system: CONF, code: 'R' }] }, name: [{ family: 'Labelled' }] });
    const obs = (security: Coding[] | undefined, subject = patient, repository = r) =>
      repository.create<Observation>({
        resourceType: 'Observation',
        status: 'final',
        code: { coding: [{ system: LOINC, code: '9999-9' }] },
        subject: { reference: `Patient/${subject.id}` },
        ...(security ? { meta: { security } } : {}),
      });
    oRBH = await obs(
      [
        { system: CONF, code: 'R', display: 'restricted' },
        { system: ACT, code: 'BH', display: 'behavioral health information sensitivity' },
      ],
      labelledPatient,
    );
    oN = await obs([{ system: CONF, code: 'N', display: 'normal' }]);
    oRNoSystem = await obs([{ code: 'R' }]);
    oROther = await obs([{ system: 'urn:other', code: 'R', display: 'Rot' }]);
    oSystemOnly = await obs([{ system: 'urn:system-only' }]);
    oDisplayOnly = await obs([{ display: 'Only a display' }]);
    oNone = await obs(undefined);
    oPipe = await obs([{ system: 'urn:pipe', code: 'a|b', display: 'Très Sensible' }]);
    oUpdated = await obs([{ system: CONF, code: 'R' }]);
    oUpdated = await r.update<Observation>({ ...oUpdated, meta: { security: [{ system: CONF, code: 'V', display: 'very restricted' }] } });
    oDeleted = await obs([{ system: CONF, code: 'R' }]);
    await r.delete('Observation', oDeleted.id!);
    oBH = await obs([{ system: ACT, code: 'BH' }]);
    const a = repo(orgA);
    aR = await obs([{ system: CONF, code: 'R' }], patient, a);
    aN = await obs([{ system: CONF, code: 'N' }], patient, a);
    aNone = await obs(undefined, patient, a);
    condR = await r.create<Condition>({ resourceType: 'Condition', meta: { security: [{ system: CONF, code: 'R' }] }, subject: { reference: `Patient/${patient.id}` } });
  }, 120_000);
  afterAll(async () => {
    await t?.drop();
  });

  it('code, system|code, |code and system|', async () => {
    expect(await ids('Observation', { _security: 'R' })).toEqual(set(oRBH, oRNoSystem, oROther, aR));
    expect(await ids('Observation', { _security: `${CONF}|R` })).toEqual(set(oRBH, aR));
    expect(await ids('Observation', { _security: '|R' })).toEqual(set(oRNoSystem));
    expect(await ids('Observation', { _security: 'urn:other|R' })).toEqual(set(oROther));
    expect(await ids('Observation', { _security: `${CONF}|` })).toEqual(set(oRBH, oN, oUpdated, aR, aN));
    expect(await ids('Observation', { _security: 'urn:system-only|' })).toEqual(set(oSystemOnly));
    expect(await ids('Observation', { _security: 'BH' })).toEqual(set(oRBH, oBH));
    expect(await ids('Observation', { _security: 'V' })).toEqual(set(oUpdated));
    expect(await ids('Observation', { _security: `${ACT}|R` })).toEqual([]);
    expect(await ids('Observation', { _security: 'nothing' })).toEqual([]);
    expect(await ids('Observation', { _security: 'restricted' })).toEqual([]); // a display is not a code
  });

  it('an escaped "|" is part of the code', async () => {
    expect(await ids('Observation', { _security: 'urn:pipe|a\\|b' })).toEqual(set(oPipe));
    expect(await ids('Observation', { _security: 'a\\|b' })).toEqual(set(oPipe));
    expect(await ids('Observation', { _security: 'a|b' })).toEqual([]);
  });

  it('only the resource type searched, only current versions, never deleted resources', async () => {
    expect(await ids('Patient', { _security: 'R' })).toEqual(set(labelledPatient));
    expect(await ids('Condition', { _security: `${CONF}|R` })).toEqual(set(condR));
    expect(await ids('Observation', { _security: `${CONF}|V` })).toEqual(set(oUpdated));
    expect(await ids('Observation', { _id: oUpdated.id!, _security: 'R' })).toEqual([]);
    expect(await ids('Observation', { _id: oDeleted.id!, _security: 'R' })).toEqual([]);
  });

  it('several values (OR) and several parameters (AND)', async () => {
    expect(await ids('Observation', { _security: 'N,V' })).toEqual(set(oN, oUpdated, aN));
    expect(await ids('Observation', { _security: `${CONF}|R,urn:system-only|` })).toEqual(set(oRBH, aR, oSystemOnly));
    expect(await ids('Observation', { _security: `|R,${ACT}|BH` })).toEqual(set(oRNoSystem, oRBH, oBH));
    expect(await ids('Observation', { _security: ['R', 'BH'] })).toEqual(set(oRBH));
    expect(await ids('Observation', { _security: [`${CONF}|R`, `${ACT}|`] })).toEqual(set(oRBH));
    expect(await ids('Observation', { _security: 'R', code: `${LOINC}|9999-9`, subject: `Patient/${patient.id}` })).toEqual(set(oRNoSystem, oROther, aR));
    expect(await ids('Observation', { _security: 'R', status: 'final' })).toEqual(set(oRBH, oRNoSystem, oROther, aR));
  });

  it(':not matches resources without the value, including those with no label', async () => {
    const all = set(oRBH, oN, oRNoSystem, oROther, oSystemOnly, oDisplayOnly, oNone, oPipe, oUpdated, oBH, aR, aN, aNone);
    const without = (...rs: Resource[]) => all.filter((id) => !rs.some((r) => r.id === id));
    expect(await ids('Observation', { '_security:not': 'R' })).toEqual(without(oRBH, oRNoSystem, oROther, aR));
    expect(await ids('Observation', { '_security:not': `${CONF}|R` })).toEqual(without(oRBH, aR));
    expect(await ids('Observation', { '_security:not': '|R' })).toEqual(without(oRNoSystem));
    expect(await ids('Observation', { '_security:not': `${CONF}|` })).toEqual(without(oRBH, oN, oUpdated, aR, aN));
    expect(await ids('Observation', { '_security:not': 'R,BH' })).toEqual(without(oRBH, oRNoSystem, oROther, aR, oBH));
    expect(await ids('Observation', { '_security:not': 'R', _security: 'BH' })).toEqual(set(oBH));
  });

  it(':missing', async () => {
    expect(await ids('Observation', { '_security:missing': 'true' })).toEqual(set(oDisplayOnly, oNone, aNone));
    expect(await ids('Observation', { '_security:missing': 'false' })).toEqual(set(oRBH, oN, oRNoSystem, oROther, oSystemOnly, oPipe, oUpdated, oBH, aR, aN));
    expect(await ids('Observation', { '_security:missing': 'false', _security: 'BH' })).toEqual(set(oRBH, oBH));
  });

  it(':text searches the displays, accent- and case-insensitively, from the start of a word', async () => {
    expect(await ids('Observation', { '_security:text': 'restricted' })).toEqual(set(oRBH, oUpdated));
    expect(await ids('Observation', { '_security:text': 'HEALTH' })).toEqual(set(oRBH));
    expect(await ids('Observation', { '_security:text': 'tres' })).toEqual(set(oPipe));
    expect(await ids('Observation', { '_security:text': 'estricted' })).toEqual([]);
    expect(await ids('Observation', { '_security:text': 'only' })).toEqual([]); // a label without a value is not indexed
    expect(await ids('Observation', { '_security:text': 'ro,normal' })).toEqual(set(oROther, oN));
  });

  it(':of-type matches nothing (labels are Codings)', async () => {
    expect(await ids('Observation', { '_security:of-type': `${CONF}|R|R` })).toEqual([]);
  });

  it('totals and _summary=count', async () => {
    expect((await page('Observation', { _security: 'R', _total: 'accurate' })).total).toBe(4);
    expect((await page('Observation', { _security: 'R', _summary: 'count' })).total).toBe(4);
    expect((await page('Observation', { '_security:not': 'R', _count: '0', _total: 'accurate' })).total).toBe(9);
    expect((await page('Observation', { _security: 'R', _count: '1', _total: 'estimate' })).total).toBe(4);
    expect((await page('Observation', { '_security:missing': 'true', _summary: 'count' })).total).toBe(3);
  });

  it('pages by offset and by cursor, in _lastUpdated order both ways', async () => {
    const matches = [oRBH, oN, oRNoSystem, oROther, oSystemOnly, oPipe, oUpdated, oBH, aR, aN];
    const byUpdated = [...matches].sort((a, b) => a.meta!.lastUpdated!.localeCompare(b.meta!.lastUpdated!) || (a.id! < b.id! ? -1 : 1)).map((r) => r.id);
    for (const sort of ['_lastUpdated', '-_lastUpdated']) {
      const expected = sort === '_lastUpdated' ? byUpdated : [...byUpdated].reverse();
      const q = { '_security:missing': 'false', _sort: sort, _count: '3' };
      expect(await allPages('Observation', q)).toEqual(expected);
      const back = await page('Observation', { ...q, _offset: '3' });
      expect(matchIds(back)).toEqual(expected.slice(3, 6));
      expect(back.hasMore).toBe(true);
      const last = await page('Observation', { ...q, _offset: '9' });
      expect(matchIds(last)).toEqual(expected.slice(9));
      expect(last.hasMore).toBe(false);
    }
    const rPages = await allPages('Observation', { _security: 'R', _count: '1' });
    expect(rPages).toEqual(byUpdated.filter((id) => [oRBH, oRNoSystem, oROther, aR].some((o) => o.id === id)));
    // A cursor walked back.
    const p1 = await page('Observation', { _security: `${CONF}|`, _count: '2' });
    const p2 = await page('Observation', { _security: `${CONF}|`, _count: '2', _cursor: p1.nextCursor! });
    const p1again = await page('Observation', { _security: `${CONF}|`, _count: '2', _cursor: p2.prevCursor! });
    expect(matchIds(p1again)).toEqual(matchIds(p1));
  });

  it('_sort by _security: the smallest code ascending, the largest descending, resources without a code last', async () => {
    const all = [oRBH, oN, oRNoSystem, oROther, oSystemOnly, oDisplayOnly, oNone, oPipe, oUpdated, oBH, aR, aN, aNone];
    const codes = (o: Observation) => (o.meta?.security ?? []).map((s) => s.code).filter((c): c is string => c !== undefined);
    const key = (o: Observation, desc: boolean) => {
      const cs = codes(o).sort();
      return cs.length === 0 ? null : desc ? cs[cs.length - 1] : cs[0];
    };
    for (const desc of [false, true]) {
      const expected = [...all]
        .sort((a, b) => {
          const ka = key(a, desc);
          const kb = key(b, desc);
          if (ka !== kb) {
            if (ka === null) return 1;
            if (kb === null) return -1;
            return (ka < kb ? -1 : 1) * (desc ? -1 : 1);
          }
          return (a.id! < b.id! ? -1 : 1) * (desc ? -1 : 1);
        })
        .map((o) => o.id);
      const q = { _sort: desc ? '-_security' : '_security', _count: '4' };
      expect(await allPages('Observation', q)).toEqual(expected);
      expect(matchIds(await page('Observation', { ...q, _offset: '4' }))).toEqual(expected.slice(4, 8));
    }
  });

  it('in chains and _has', async () => {
    expect(await ids('Observation', { 'subject:Patient._security': 'R' })).toEqual(set(oRBH));
    expect(await ids('Observation', { 'subject:Patient._security:missing': 'true' })).toEqual(set(oN, oRNoSystem, oROther, oSystemOnly, oDisplayOnly, oNone, oPipe, oUpdated, oBH, aR, aN, aNone));
    expect(await ids('Patient', { '_has:Observation:subject:_security': `${ACT}|BH` })).toEqual(set(labelledPatient, patient));
    expect(await ids('Patient', { '_has:Observation:subject:_security': 'R' })).toEqual(set(labelledPatient, patient));
    expect(await ids('Patient', { '_has:Condition:subject:_security': `${CONF}|R` })).toEqual(set(patient));
    expect(await ids('Patient', { '_has:Observation:subject:_security:not': 'R' })).toEqual(set(patient));
  });

  it('restricted resources stay hidden without permission: matches, totals, :not, :missing, chains and _has', async () => {
    // org A sees its own Observations (aR, aN, aNone) and the server's (owner NULL) unless restricted (R/V of v3-Confidentiality).
    const visibleToA = set(oN, oRNoSystem, oROther, oSystemOnly, oDisplayOnly, oNone, oPipe, oBH, aN, aNone);
    expect(await ids('Observation', { _security: 'R' }, orgA)).toEqual(set(oRNoSystem, oROther));
    expect(await ids('Observation', { _security: 'R' }, orgAAllowed)).toEqual(set(oRBH, oRNoSystem, oROther, aR));
    expect(await ids('Observation', { _security: `${CONF}|` }, orgA)).toEqual(set(oN, aN));
    expect(await ids('Observation', { _security: 'V' }, orgA)).toEqual([]);
    expect(await ids('Observation', { _security: 'V' }, orgAAllowed)).toEqual(set(oUpdated));
    expect(await ids('Observation', { '_security:not': 'BH' }, orgA)).toEqual(visibleToA.filter((id) => id !== oBH.id));
    expect(await ids('Observation', { '_security:missing': 'true' }, orgA)).toEqual(set(oDisplayOnly, oNone, aNone));
    expect(await ids('Observation', { '_security:text': 'restricted' }, orgA)).toEqual([]);
    expect((await page('Observation', { _security: 'R', _total: 'accurate' }, orgA)).total).toBe(2);
    expect((await page('Observation', { _security: `${CONF}|R`, _summary: 'count' }, orgA)).total).toBe(0);
    expect((await page('Observation', { _security: `${CONF}|R`, _summary: 'count' }, orgAAllowed)).total).toBe(2);
    expect(await ids('Observation', { 'subject:Patient._security': 'R' }, orgA)).toEqual([]);
    expect(await ids('Observation', { 'subject:Patient._security': 'R' }, orgAAllowed)).toEqual(set(oRBH));
    expect(await ids('Patient', { '_has:Observation:subject:_security': `${CONF}|R` }, orgA)).toEqual([]);
    expect(await ids('Patient', { '_has:Observation:subject:_security': `${CONF}|R` }, orgAAllowed)).toEqual(set(labelledPatient, patient));
    expect(await ids('Patient', { '_has:Observation:subject:_security': `${CONF}|R` }, { organization: 'Organization/b', clientId: 'b', canReadRestricted: true })).toEqual(set(labelledPatient));
  });
});
