import { candidates, NOW } from './fixtures.ts';
import { haversineKm, rankServices, scoreService, WEIGHTS } from './match.ts';

const reasonsOf = (r: { reasons: Array<{ factor: string; points: number; detail: string }> }) => Object.fromEntries(r.reasons.map((x) => [x.factor, x]));

describe('haversineKm', () => {
  it('gives the known distance Manchester Piccadilly → Leeds city centre (about 56 km)', () => {
    const km = haversineKm({ latitude: 53.4774, longitude: -2.2309 }, { latitude: 53.7997, longitude: -1.5492 });
    expect(km).toBeGreaterThan(54);
    expect(km).toBeLessThan(58);
  });
});

describe('rankServices', () => {
  it('ranks housing services for an Arabic speaker in central Manchester, with reasons', () => {
    const ranked = rankServices({ sector: 'housing', language: 'ar', position: { latitude: 53.4794, longitude: -2.2453 } }, candidates(), NOW);
    expect(ranked.map((r) => r.service.id)).toEqual(['svc-tenancy', 'svc-talking', 'svc-leeds', 'svc-hostel']);
    const top = reasonsOf(ranked[0]);
    expect(top.language).toMatchObject({ points: 30, detail: 'delivers in ar' });
    expect(top['trauma-informed']).toMatchObject({ points: 20, detail: 'trauma-informed (level 4 of 4)' });
    expect(top.capacity.points).toBe(20);
    expect(top.sector).toMatchObject({ points: 10, detail: 'sector housing' });
    expect(top.distance.points).toBeGreaterThan(18);
    // Sum of the reasons is the score.
    for (const r of ranked) expect(r.total).toBeCloseTo(r.reasons.reduce((s, x) => s + x.points, 0), 5);
    // The mental health service speaks a regional Arabic (ar-EG) but is another sector.
    expect(reasonsOf(ranked[1]).sector).toMatchObject({ points: 0, detail: 'sector mental-health, not housing' });
    // Leeds: capacity recorded 151 days ago counts half; beyond the 50 km horizon no distance points.
    const leeds = reasonsOf(ranked[2]);
    expect(leeds.capacity).toMatchObject({ points: 10 });
    expect(leeds.capacity.detail).toMatch(/151 days ago/);
    expect(leeds.distance.points).toBe(0);
  });

  it('leaves out closed, inactive and other-category services', () => {
    const ids = rankServices({}, candidates(), NOW).map((r) => r.service.id);
    expect(ids).not.toContain('svc-closed');
    expect(ids).not.toContain('svc-inactive');
    expect(rankServices({ category: ['mental-health'] }, candidates(), NOW)).toHaveLength(0);
    expect(rankServices({ category: ['housing'] }, candidates(), NOW).map((r) => r.service.id).sort()).toEqual(['svc-hostel', 'svc-leeds', 'svc-tenancy']);
  });

  it('gives a waitlist nothing for an urgent need and some points for a routine one', () => {
    const hostel = candidates().find((c) => c.service.id === 'svc-hostel')!;
    expect(reasonsOf(scoreService({ urgency: 'urgent' }, hostel, NOW)!).capacity.points).toBe(0);
    expect(reasonsOf(scoreService({ urgency: 'routine' }, hostel, NOW)!).capacity.points).toBe(8);
  });

  it('scores postcodes without coordinates: same postcode, district, area', () => {
    const tenancy = candidates().find((c) => c.service.id === 'svc-tenancy')!;
    expect(reasonsOf(scoreService({ postalCode: 'm12ab' }, tenancy, NOW)!).distance.points).toBe(WEIGHTS.distance);
    expect(reasonsOf(scoreService({ postalCode: 'M1 7ED' }, tenancy, NOW)!).distance.points).toBe(12);
    expect(reasonsOf(scoreService({ postalCode: 'M14 5AA' }, tenancy, NOW)!).distance.points).toBe(5);
    expect(reasonsOf(scoreService({ postalCode: 'LS1 4DY' }, tenancy, NOW)!).distance.points).toBe(0);
  });

  it('is deterministic: ties broken by name then id, whatever the input order', () => {
    const a = rankServices({}, candidates(), NOW).map((r) => r.service.id);
    const b = rankServices({}, [...candidates()].reverse(), NOW).map((r) => r.service.id);
    expect(b).toEqual(a);
  });
});
