// Node memory per account: the replica state of a 3-region node holding N
// accounts with every row populated, measured as heap + array-buffer growth
// after forced GC. Then remembered request ids (idempotency) on top of them:
// M ids received over one retention window (the cap a node may hold), then a
// second window of M more while the first ones expire (the steady state of a
// soak: the log stays at M ids while they churn), each measured as heap +
// array buffers after forced GC and as resident set size (RSS, what the host
// sees), with the time of one full GC while they are held. Run with
// --expose-gc (bench/run.ts spawns it so).

import { ReplicaSet } from "../src/core/replica-set";
import { DebitOutcome, ReplicaState } from "../src/core/replica-state";

export interface MemoryBenchResult {
  readonly accounts: number;
  readonly bytesPerAccount: number;
  readonly heapBytesPerAccount: number;
  readonly arrayBufferBytesPerAccount: number;
  readonly rssBytesPerAccount: number;
  readonly seconds: number;
  /** Remembered request ids held after each window (the cap). */
  readonly requestIds: number;
  /** Heap + array buffers after GC per id, after the first window (ids only added). */
  readonly bytesPerRequestId: number;
  /** RSS growth per id after the first window (after GC). */
  readonly rssBytesPerRequestId: number;
  /** Heap + array buffers after GC per id held, after a second window of churn at the cap. */
  readonly steadyBytesPerRequestId: number;
  /** RSS growth per id held, after a second window of churn at the cap (after GC). */
  readonly steadyRssBytesPerRequestId: number;
  /** Seconds to remember the ids of both windows. */
  readonly requestSeconds: number;
  /** One forced full GC with the accounts and request ids held, ms. */
  readonly fullGcMs: number;
}

interface Sample {
  readonly heap: number;
  readonly rss: number;
}

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("run with node --expose-gc");
  gc();
}

function settle(): Sample {
  gcNow();
  gcNow();
  const m = process.memoryUsage();
  return { heap: m.heapUsed + m.arrayBuffers, rss: m.rss };
}

const RETENTION_MS = 15 * 60_000;

export function runMemoryBench(accounts: number, requestIds: number = 2_000_000): MemoryBenchResult {
  const replicas = new ReplicaSet(["east", "west", "central"]);
  const before = settle();
  const beforeUsage = process.memoryUsage();
  const started = process.hrtime.bigint();
  const state = new ReplicaState({ replicas, self: "east", requestLog: { retentionMs: RETENTION_MS, maxEntries: requestIds } });
  for (let k = 0; k < accounts; k++) {
    const id = `acct-${k.toString(36).padStart(8, "0")}`;
    // Every replica granted, debited and transferred something: all 12 slots set.
    for (let writer = 0; writer < 3; writer++) {
      for (let column = 0; column <= 3; column++) state.merge(id, writer, column, BigInt(1_000 + k + column));
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = settle();
  const afterUsage = process.memoryUsage();
  const heap = afterUsage.heapUsed - beforeUsage.heapUsed;
  const buffers = afterUsage.arrayBuffers - beforeUsage.arrayBuffers;
  if (state.accountCount !== accounts) throw new Error("account count mismatch");

  // Request ids and account ids arrive decoded from the wire (flat strings).
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const wire = (text: string): string => decoder.decode(encoder.encode(text));
  const now = Date.now();
  const remember = (k: number): void => {
    const accountId = wire(`acct-${(k % Math.max(1, accounts)).toString(36).padStart(8, "0")}`);
    const answer = { kind: "debit", outcome: DebitOutcome.Approved, balance: BigInt(1_000_000 + k), localRights: BigInt(500_000 + k) } as const;
    // Spread evenly over the window on the monotonic clock, so that during the
    // second window the oldest expire as new ones arrive.
    const nowMs = (k * RETENTION_MS) / requestIds;
    state.remember(wire(`req-${k.toString(36)}-7f3a9c2e41d0b5e8`), `d|${accountId}|${1 + (k % 5) * 1_250}`, answer, { stampMs: now + nowMs, nowMs });
  };
  const requestsStarted = process.hrtime.bigint();
  for (let k = 0; k < requestIds; k++) remember(k);
  const filled = settle();
  if (state.rememberedRequests !== requestIds) throw new Error(`remembered ${state.rememberedRequests} ids, expected ${requestIds}`);
  // A second window: each new id arrives as one of the first window expires.
  for (let k = requestIds; k < 2 * requestIds; k++) remember(k);
  const requestSeconds = Number(process.hrtime.bigint() - requestsStarted) / 1e9;
  const steady = settle();
  const held = state.rememberedRequests;
  if (Math.abs(held - requestIds) > 1) throw new Error(`holding ${held} ids after the second window, expected ${requestIds}`);
  const gcStarted = process.hrtime.bigint();
  gcNow();
  const fullGcMs = Number(process.hrtime.bigint() - gcStarted) / 1e6;
  return {
    accounts,
    bytesPerAccount: (heap + buffers) / accounts,
    heapBytesPerAccount: heap / accounts,
    arrayBufferBytesPerAccount: buffers / accounts,
    rssBytesPerAccount: (after.rss - before.rss) / accounts,
    seconds,
    requestIds,
    bytesPerRequestId: (filled.heap - after.heap) / requestIds,
    rssBytesPerRequestId: (filled.rss - after.rss) / requestIds,
    steadyBytesPerRequestId: (steady.heap - after.heap) / held,
    steadyRssBytesPerRequestId: (steady.rss - after.rss) / held,
    requestSeconds,
    fullGcMs,
  };
}

if (require.main === module) {
  const accounts = Number(process.argv[2] ?? "1000000");
  const requestIds = Number(process.argv[3] ?? "2000000");
  process.stdout.write(`${JSON.stringify(runMemoryBench(accounts, requestIds))}\n`);
}
