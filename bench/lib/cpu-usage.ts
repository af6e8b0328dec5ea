import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc times (USER_HZ; 100 on every mainstream Linux build). */
const TICKS_PER_SECOND = 100;

export interface CpuSnapshot {
  /** CPU time the process has used so far, in milliseconds (user + system). */
  readonly processMs: number;
  /** Machine-wide jiffies: all, idle (+iowait) and steal (taken by the hypervisor). */
  readonly total: number;
  readonly idle: number;
  readonly steal: number;
  /** CPU time of this process (the load generator), in milliseconds. */
  readonly selfMs: number;
}

export interface CpuUsage {
  /** Milliseconds of CPU the process used in the interval. */
  readonly processMs: number;
  /** Shares of the machine's CPU time in the interval, 0..1. */
  readonly idleShare: number;
  readonly stealShare: number;
  /** Milliseconds of CPU the load generator (this process) used. */
  readonly loadGeneratorMs: number;
  /** Milliseconds of CPU everything else on the machine used: PostgreSQL, other servers, other users. */
  readonly othersMs: number;
  /** Milliseconds of CPU the whole machine used (all cores). */
  readonly busyMs: number;
}

function selfCpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** Reads /proc; undefined where there is none (not Linux), so the figures are just left out. */
export function cpuSnapshot(pid: number): CpuSnapshot | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = cpu;
    return {
      processMs: (ticks * 1000) / TICKS_PER_SECOND,
      total: user + nice + system + idle + iowait + irq + softirq + steal,
      idle: idle + iowait,
      steal,
      selfMs: selfCpuMs(),
    };
  } catch {
    return undefined;
  }
}

export function cpuUsage(
  before: CpuSnapshot | undefined,
  after: CpuSnapshot | undefined,
): CpuUsage | undefined {
  if (!before || !after) return undefined;
  const total = after.total - before.total || 1;
  const idle = after.idle - before.idle;
  const steal = after.steal - before.steal;
  const busyMs = ((total - idle - steal) * 1000) / TICKS_PER_SECOND;
  const processMs = after.processMs - before.processMs;
  const loadGeneratorMs = after.selfMs - before.selfMs;
  return {
    processMs,
    loadGeneratorMs,
    busyMs,
    othersMs: Math.max(0, busyMs - processMs - loadGeneratorMs),
    idleShare: idle / total,
    stealShare: steal / total,
  };
}

/** Cores' worth of CPU the whole machine used over `ms`; undefined without /proc. */
export async function machineBusyCores(ms: number): Promise<number | undefined> {
  const before = cpuSnapshot(process.pid);
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = cpuSnapshot(process.pid);
  if (!before || !after) return undefined;
  const total = after.total - before.total;
  const busy = total - (after.idle - before.idle) - (after.steal - before.steal);
  return (busy * 1000) / TICKS_PER_SECOND / ms;
}

/**
 * Speed of this CPU right now, in arbitrary units (higher is faster): the best of three short
 * integer loops. On a shared virtual machine the hypervisor can slow the vCPUs down without
 * reporting steal time; a drop of this figure against the best seen shows it.
 */
export function cpuSpeed(): number {
  let best = 0;
  for (let probe = 0; probe < 3; probe += 1) {
    const start = process.hrtime.bigint();
    let x = 0;
    for (let i = 0; i < 2_000_000; i += 1) x = (Math.imul(x, 31) + i) | 0;
    const ns = Number(process.hrtime.bigint() - start);
    if (x === 42) best += 0; // keeps the loop observable
    best = Math.max(best, 2e9 / ns);
  }
  return best;
}

/**
 * Waits (up to five minutes) until the machine has been quiet for two seconds in a row. Call it
 * while the measured processes are idle: whatever is busy then is someone else.
 */
export async function waitForQuiet(maxCores: number, log: (line: string) => void): Promise<void> {
  let quiet = 0;
  for (let second = 0; second < 300 && quiet < 2; second += 1) {
    const busy = await machineBusyCores(1000);
    if (busy === undefined) return;
    quiet = busy <= maxCores ? quiet + 1 : 0;
    if (quiet === 0 && second % 15 === 0)
      log(`  waiting for the machine to calm down (${busy.toFixed(2)} cores busy)`);
  }
}

/** CPU time used so far by each process of one command name (pid -> milliseconds). */
export type CommandCpu = ReadonlyMap<number, number>;

/**
 * CPU time used so far by every process whose command name is `command` (such as `postgres`:
 * the server's backends, one per connection, and its background workers), by pid; undefined
 * without /proc.
 */
export function commandCpu(command: string): CommandCpu | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  const byPid = new Map<number, number>();
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (name !== command) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byPid.set(Number(entry), ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND);
    } catch {
      // The process ended while we looked.
    }
  }
  return byPid;
}

/**
 * Milliseconds of CPU the command's processes used between two readings: the growth of those in
 * both, and all of those that started in between. A process that ended in between is lost with
 * what it used since `before` (a pool closing an idle connection, say).
 */
export function commandCpuMs(before: CommandCpu, after: CommandCpu): number {
  let ms = 0;
  for (const [pid, used] of after) ms += used - (before.get(pid) ?? 0);
  return ms;
}

/** Resident memory of process `pid` in MB (VmRSS of /proc/<pid>/status). */
export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) / 1024;
}
