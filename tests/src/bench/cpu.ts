// CPU time per request from /proc (Linux): utime + stime of the API process and of PostgreSQL's
// processes over a scenario's measured window, divided by its requests. The rates move with
// whatever else runs on a shared machine; the CPU one request costs moves far less, so this is the
// figure to compare before/after. "other" is the machine's busy CPU outside those processes
// (other engineers' work, the load generator) in cores, to judge the window's noise.
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on Linux everywhere this runs

export interface CpuSample {
  at: number;
  /** Clock ticks of the API process (utime + stime). */
  api: number;
  /** Clock ticks of every postgres process (backends of every database, background processes). */
  postgres: number;
  /** Busy ticks of the whole machine (all cores; /proc/stat). */
  machine: number;
}

export interface CpuPerRequest {
  /** Milliseconds of CPU per request. */
  apiMs: number;
  postgresMs: number;
  /** Cores busy with everything else on average over the window. */
  otherCores: number;
}

function ticksOf(pid: number | string): { comm: string; ticks: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may hold spaces; the fields after it are space-separated.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return { comm, ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return undefined; // gone meanwhile
  }
}

function machineBusy(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
  return cpu.reduce((a, b) => a + b, 0) - cpu[3] - (cpu[4] ?? 0);
}

/** Undefined where /proc is not there (not Linux). */
export function sampleCpu(apiPid: number | undefined): CpuSample | undefined {
  try {
    let postgres = 0;
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const t = ticksOf(name);
      if (t && (t.comm === 'postgres' || t.comm.startsWith('postgres:'))) postgres += t.ticks;
    }
    return { at: performance.now(), api: apiPid ? (ticksOf(apiPid)?.ticks ?? 0) : 0, postgres, machine: machineBusy() };
  } catch {
    return undefined;
  }
}

export function cpuPerRequest(before: CpuSample | undefined, after: CpuSample | undefined, requests: number): CpuPerRequest | undefined {
  if (!before || !after || requests <= 0) return undefined;
  const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_SECOND;
  const api = after.api - before.api;
  const postgres = after.postgres - before.postgres;
  const other = after.machine - before.machine - api - postgres;
  const seconds = (after.at - before.at) / 1000;
  return { apiMs: ms(api) / requests, postgresMs: ms(postgres) / requests, otherCores: seconds > 0 ? Math.max(0, other) / TICKS_PER_SECOND / seconds : 0 };
}

/** CPU seconds (user + system) a process has used so far; 0 once it has gone. */
export function cpuSeconds(pid: number): number {
  return (ticksOf(pid)?.ticks ?? 0) / TICKS_PER_SECOND;
}

/** PostgreSQL's processes and their titles ("15/main: user database host(port) state", "15/main: walwriter", ...). */
function postgresProcesses(): Array<{ pid: number; title: string }> {
  const found: Array<{ pid: number; title: string }> = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      if (cmdline.startsWith('postgres: ')) found.push({ pid: Number(name), title: cmdline.slice('postgres: '.length) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** The database a backend's title names; undefined for the server's own processes. */
const databaseOf = (title: string): string | undefined => /^\S+ \S+ (\S+) /.exec(title)?.[1];
const SERVER_PROCESS = /^\S+: (checkpointer|background writer|walwriter|autovacuum launcher|logical replication launcher|archiver)/;

/** CPU seconds of every PostgreSQL process on the machine (backends of any database and the server's own). */
export function postgresCpuSeconds(): number {
  return postgresProcesses().reduce((total, p) => total + cpuSeconds(p.pid), 0);
}

/**
 * CPU seconds so far of each backend connected to these databases and of the server's own processes
 * (WAL writer, checkpointer, background writer: shared by every database, so another database's
 * work shows there too), by pid; other databases' backends are left out. Subtract two snapshots
 * with cpuSince: a pool may close a backend and open another between them.
 */
export function postgresCpuSnapshot(databases: string[]): Map<number, number> {
  const snapshot = new Map<number, number>();
  for (const p of postgresProcesses()) {
    const database = databaseOf(p.title);
    if (SERVER_PROCESS.test(p.title) || (database !== undefined && databases.includes(database))) snapshot.set(p.pid, cpuSeconds(p.pid));
  }
  return snapshot;
}

/**
 * CPU seconds used between two snapshots: a process in both counts its difference, one started
 * since counts all it used; one that ended between them is missing (its last part is lost).
 */
export function cpuSince(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}

/** Pids of the backends connected to these databases. */
export function postgresBackendsOf(databases: string[]): number[] {
  return postgresProcesses()
    .filter((p) => {
      const database = databaseOf(p.title);
      return database !== undefined && databases.includes(database);
    })
    .map((p) => p.pid);
}

/**
 * CPU seconds so far of each thread of a process, summed by thread name (`node` for the main
 * thread, `V8 DefaultWorke` for the garbage collector's and compiler's helpers, `libuv-worker` for
 * the file system's pool). Threads that ended are missing.
 */
export function threadCpuSeconds(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tids) {
    const t = ticksOf(`${pid}/task/${tid}`);
    if (t) byName.set(t.comm, (byName.get(t.comm) ?? 0) + t.ticks / TICKS_PER_SECOND);
  }
  return byName;
}
