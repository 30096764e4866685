import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

// When the API has time to spare for deferred work (building AuditEvents from the audit log,
// decision 0005): no request in flight and none started since the tick before, at two ticks in a
// row. A build blocks the event loop for tens of milliseconds, so it must not start in the first
// gap of a burst. Counting the requests started, not only those in flight at the tick, matters
// under a steady load: a tick often falls between one answer and the next request, and a build
// that started there held the requests that arrived meanwhile unread, so the next tick again saw
// none in flight and the builds went on back to back (measured: 12 µs per read of building inside
// the read benchmark's windows).
export interface IdleDetector {
  /** A request has started. */
  begin(): void;
  /** A request has ended (answered or its connection closed). */
  end(): void;
  /** Called once per tick of the background work: whether it may run now. */
  idle(): boolean;
}

export function idleDetector(quietTicksNeeded = 2): IdleDetector {
  let inFlight = 0;
  let started = 0;
  let startedAtTick = 0;
  let quietTicks = 0;
  return {
    begin() {
      inFlight++;
      started++;
    },
    end() {
      inFlight--;
    },
    idle() {
      const quiet = inFlight === 0 && started === startedAtTick;
      startedAtTick = started;
      quietTicks = quiet ? quietTicks + 1 : 0;
      return quietTicks >= quietTicksNeeded;
    },
  };
}

/** CPU seconds used and available so far, read from the kernel (cgroup v2 quota, or the machine). */
export interface CpuClock {
  busy: number;
  capacity: number;
}

type ReadText = (path: string) => string | undefined;

const readText: ReadText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * The CPU clock of the container when its cgroup (v2) has a CPU quota (`cpu.max`, usage from
 * `cpu.stat`), else of the machine (`/proc/stat`); undefined where neither is readable. The
 * capacity advances with wall time × the cores the quota or the machine gives.
 */
export function cpuClock(read: ReadText = readText, wallSeconds = () => performance.now() / 1000): CpuClock | undefined {
  const max = read('/sys/fs/cgroup/cpu.max')?.trim().split(/\s+/);
  if (max && max[0] !== 'max' && Number(max[0]) > 0 && Number(max[1]) > 0) {
    const usage = /^usage_usec (\d+)$/m.exec(read('/sys/fs/cgroup/cpu.stat') ?? '');
    if (usage) return { busy: Number(usage[1]) / 1e6, capacity: (wallSeconds() * Number(max[0])) / Number(max[1]) };
  }
  const line = /^cpu +(.*)$/m.exec(read('/proc/stat') ?? '');
  if (!line) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is counted in user already):
  // idle and iowait are time spare.
  const ticks = line[1].trim().split(/\s+/).slice(0, 8).map(Number);
  if (ticks.length < 5 || ticks.some((t) => !Number.isFinite(t))) return undefined;
  const total = ticks.reduce((a, b) => a + b, 0);
  return { busy: total - ticks[3] - ticks[4], capacity: total };
}

/**
 * The share of wall time deferred work may take now: the CPU left spare since the previous call
 * (the container's quota, or the machine's cores: cpuClock), less `headroom` for requests, never
 * less than `minShare` (a saturating load still leaves the work that much) nor more than 1. Where
 * the kernel's figures cannot be read, the event loop's idle time stands in (it does not see
 * other processes, PostgreSQL's included).
 */
export function spareShare(minShare: number, headroom = 0.1, clock: () => CpuClock | undefined = cpuClock): () => number {
  let last = clock();
  let lastLoop = performance.eventLoopUtilization();
  return () => {
    const now = clock();
    const loop = performance.eventLoopUtilization();
    let spare: number;
    if (last && now && now.capacity > last.capacity) spare = 1 - (now.busy - last.busy) / (now.capacity - last.capacity);
    else spare = 1 - performance.eventLoopUtilization(loop, lastLoop).utilization;
    last = now;
    lastLoop = loop;
    return Math.max(minShare, Math.min(1, spare - headroom));
  };
}
