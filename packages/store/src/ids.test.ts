import { newResourceId } from './ids.ts';

describe('newResourceId', () => {
  it('is a version 7 UUID, unique, in creation order across milliseconds', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => newResourceId(1_790_000_000_000 + Math.floor(i / 10)));
    for (const id of ids.slice(0, 50)) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Set(ids).size).toBe(ids.length);
    // Sorted by text, ids of later milliseconds come after those of earlier ones.
    const ms = (id: string) => parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    const sorted = [...ids].sort();
    for (let i = 1; i < sorted.length; i++) expect(ms(sorted[i])).toBeGreaterThanOrEqual(ms(sorted[i - 1]));
    expect(ms(ids[0])).toBe(1_790_000_000_000);
    expect(ms(newResourceId())).toBeGreaterThan(1_790_000_000_000);
  });
});
