// What users would pick instead (2): Redis with an atomic check-and-decrement
// Lua script. A real redis-server on loopback, `concurrency` callers issuing
// EVALSHA pipelined over a small connection pool.
//
// The main runs use AOF with `appendfsync everysec`: the usual production
// setting, but an acknowledged debit can be lost on a crash (up to ~1 s of
// writes). `appendfsync always` is the durable comparison with Tally's durable
// Debit, so the hot run is repeated after `CONFIG SET appendfsync always`.
// Run: node dist/bench/redis-bench.js [calls] [concurrency] [accounts]

import { closedLoop } from "./load";
import { fmt, progress, summarize, table, type LatencySummary } from "./stats";
import { RedisPool, RedisServer } from "./support/redis-server";

export interface RedisBenchOptions {
  readonly calls: number;
  readonly concurrency: number;
  readonly accounts: number;
  /** Connections shared by the callers (default min(4, concurrency)). */
  readonly connections?: number;
}

export interface RedisBenchResult {
  /** appendfsync everysec, every call on one key. */
  readonly hot: LatencySummary;
  /** appendfsync everysec, round-robin over `accounts` keys. */
  readonly spread: LatencySummary;
  /** appendfsync always (durable), every call on one key. */
  readonly hotFsyncAlways: LatencySummary;
}

export const DEBIT_SCRIPT =
  "local b = tonumber(redis.call('GET', KEYS[1]) or '0'); " +
  "if b >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return 1 end return 0";

const HUGE = "1000000000000000000";

export async function runRedisBench(options: RedisBenchOptions): Promise<RedisBenchResult> {
  const { calls, concurrency, accounts } = options;
  const server = await RedisServer.start({ settings: { save: "", appendonly: "yes", appendfsync: "everysec" } });
  let pool: RedisPool | undefined;
  try {
    pool = await RedisPool.connect(server.port, options.connections ?? Math.min(4, concurrency));
    const redis = pool;
    const sha = await redis.command("SCRIPT", "LOAD", DEBIT_SCRIPT);
    if (typeof sha !== "string") throw new Error(`SCRIPT LOAD answered ${JSON.stringify(sha)}`);
    progress(`redis: seeding ${accounts} accounts`);
    const seeds: Array<Promise<unknown>> = [redis.command("SET", "hot", HUGE)];
    for (let i = 0; i < accounts; i++) seeds.push(redis.command("SET", `acct-${i}`, HUGE));
    await Promise.all(seeds);
    const debit = async (key: string): Promise<void> => {
      const approved = await redis.command("EVALSHA", sha, 1, key, 1);
      if (approved !== 1) throw new Error(`redis debit of ${key} not approved: ${JSON.stringify(approved)}`);
    };
    // Warm-up: JIT and connections.
    await closedLoop(Math.min(2000, calls), concurrency, () => debit("hot"));

    progress(`redis: hot (appendfsync everysec), ${calls} calls, concurrency ${concurrency}`);
    const hotRun = await closedLoop(calls, concurrency, () => debit("hot"));
    progress(`redis: spread over ${accounts} accounts (appendfsync everysec), ${calls} calls`);
    let n = 0;
    const spreadRun = await closedLoop(calls, concurrency, () => debit(`acct-${n++ % accounts}`));
    await redis.command("CONFIG", "SET", "appendfsync", "always");
    progress(`redis: hot (appendfsync always), ${calls} calls`);
    const alwaysRun = await closedLoop(calls, concurrency, () => debit("hot"));
    return {
      hot: summarize(hotRun.latenciesNs, hotRun.seconds),
      spread: summarize(spreadRun.latenciesNs, spreadRun.seconds),
      hotFsyncAlways: summarize(alwaysRun.latenciesNs, alwaysRun.seconds),
    };
  } finally {
    pool?.close();
    await server.destroy();
  }
}

export function redisTable(result: RedisBenchResult): string {
  const row = (name: string, s: LatencySummary): string[] => [name, String(s.count), fmt(s.perSecond), fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.maxMs)];
  return table(
    ["redis EVALSHA debit", "calls", "ops/s", "p50 ms", "p99 ms", "max ms"],
    [
      row("hot, appendfsync everysec", result.hot),
      row("spread, appendfsync everysec", result.spread),
      row("hot, appendfsync always", result.hotFsyncAlways),
    ],
  );
}

if (require.main === module) {
  const [calls, concurrency, accounts] = process.argv.slice(2).map(Number);
  runRedisBench({ calls: calls || 100_000, concurrency: concurrency || 32, accounts: accounts || 10_000 }).then(
    (result) => console.log(redisTable(result)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
