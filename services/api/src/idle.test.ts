import type { CpuClock } from './idle.ts';
import { cpuClock, idleDetector, spareShare } from './idle.ts';

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

describe('cpuClock', () => {
  const files = (map: Record<string, string>) => (path: string) => map[path];

  it("reads the container's quota and usage when its cgroup has a CPU limit", () => {
    const read = files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n', '/sys/fs/cgroup/cpu.stat': 'usage_usec 2500000\nuser_usec 2000000\n', '/proc/stat': 'cpu  1 0 1 1 0 0 0 0 0 0\n' });
    // 1.5 cores for 10 s of wall time: 15 s of capacity; 2.5 s used.
    expect(cpuClock(read, () => 10)).toEqual({ busy: 2.5, capacity: 15 });
  });

  it("reads the machine's ticks without a quota: idle and iowait are spare, guest time is not counted twice", () => {
    const stat = 'cpu  100 5 20 300 10 1 2 3 50 0\ncpu0 50 2 10 150 5 0 1 1 25 0\n';
    expect(cpuClock(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n', '/proc/stat': stat }))).toEqual({ busy: 131, capacity: 441 });
    expect(cpuClock(files({ '/proc/stat': stat }))).toEqual({ busy: 131, capacity: 441 });
  });

  it('is undefined where the kernel says nothing readable', () => {
    expect(cpuClock(files({}))).toBeUndefined();
    expect(cpuClock(files({ '/proc/stat': 'cpu  a b c d e\n' }))).toBeUndefined();
  });
});

describe('spareShare', () => {
  const clockOf = (samples: CpuClock[]) => {
    let i = 0;
    return () => samples[Math.min(i++, samples.length - 1)];
  };

  it('gives the CPU left spare since the previous call, less the headroom, within [minShare, 1]', () => {
    // Samples: at creation, then one per call.
    const share = spareShare(0.03, 0.1, clockOf([
      { busy: 0, capacity: 0 },
      { busy: 50, capacity: 100 }, // half spare: 0.5 - 0.1
      { busy: 150, capacity: 200 }, // saturated: the floor
      { busy: 150, capacity: 300 }, // all spare: capped at 1 - 0.1
    ]));
    expect(share()).toBeCloseTo(0.4);
    expect(share()).toBe(0.03);
    expect(share()).toBeCloseTo(0.9);
  });

  it("falls back on the event loop's idle time where the kernel's figures cannot be read", () => {
    const share = spareShare(0.03, 0.1, () => undefined);
    const value = share();
    expect(value).toBeGreaterThanOrEqual(0.03);
    expect(value).toBeLessThanOrEqual(0.9);
  });
});
