import { idleDetector } from './idle.ts';

describe('idleDetector', () => {
  it('is idle only after two ticks with nothing in flight and nothing started', () => {
    const d = idleDetector();
    expect(d.idle()).toBe(false);
    expect(d.idle()).toBe(true);
    expect(d.idle()).toBe(true);
  });

  it('a request that started and ended between two ticks keeps it busy (a steady load seen between answers)', () => {
    const d = idleDetector();
    d.idle();
    d.idle();
    d.begin();
    d.end();
    // Nothing is in flight at this tick, but a request came: not idle.
    expect(d.idle()).toBe(false);
    expect(d.idle()).toBe(false);
    expect(d.idle()).toBe(true);
  });

  it('a request in flight at a tick keeps it busy until two quiet ticks after it ends', () => {
    const d = idleDetector();
    d.begin();
    expect(d.idle()).toBe(false);
    expect(d.idle()).toBe(false);
    d.end();
    expect(d.idle()).toBe(false);
    expect(d.idle()).toBe(true);
  });

  it('under a stream of short requests between every tick it is never idle', () => {
    const d = idleDetector();
    for (let tick = 0; tick < 50; tick++) {
      d.begin();
      d.end();
      expect(d.idle()).toBe(false);
    }
  });
});
