// CPU time of processes, from /proc (Linux): shows which process a benchmark
// is bound by when the machine's cores are shared by client and servers.

import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** [utime, stime, cutime, cstime] of `pid` in ticks, or undefined once it has exited. */
function times(pid: number): { ppid: number; own: number; children: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After "pid (comm) ": [0] state, [1] ppid, ... [11] utime, [12] stime, [13] cutime, [14] cstime.
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ").map(Number);
    return { ppid: f[1] ?? 0, own: (f[11] ?? 0) + (f[12] ?? 0), children: (f[13] ?? 0) + (f[14] ?? 0) };
  } catch {
    return undefined;
  }
}

/** CPU seconds `pid` has used so far (0 if unknown). */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  return (times(pid)?.own ?? 0) / CLOCK_TICKS_PER_SECOND;
}

/**
 * CPU seconds of `pid` and all its live children, plus its exited children's
 * (e.g. a postmaster and its backends).
 */
export function processTreeCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const root = times(pid);
  let ticks = root === undefined ? 0 : root.own + root.children;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const t = times(Number(entry));
    if (t !== undefined && t.ppid === pid) ticks += t.own + t.children;
  }
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds this process has used so far. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Busy share of one core per named process over `run`, in percent. */
export async function cpuShares<T>(
  pids: Readonly<Record<string, number | undefined>>,
  run: () => Promise<T>,
): Promise<{ result: T; percent: Record<string, number>; seconds: number }> {
  const names = Object.keys(pids);
  const before = names.map((name) => processCpuSeconds(pids[name]));
  const clientBefore = ownCpuSeconds();
  const started = process.hrtime.bigint();
  const result = await run();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const percent: Record<string, number> = { client: ((ownCpuSeconds() - clientBefore) / seconds) * 100 };
  names.forEach((name, i) => {
    percent[name] = ((processCpuSeconds(pids[name]) - (before[i] ?? 0)) / seconds) * 100;
  });
  return { result, percent, seconds };
}
