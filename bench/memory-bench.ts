// Node memory per account: the replica state of a 3-region node holding N
// accounts with every row populated, measured as heap + array-buffer growth
// after forced GC; then the same for N remembered request ids (idempotency),
// with the time of one full GC while they are held. Run with --expose-gc
// (bench/run.ts spawns it so).

import { ReplicaSet } from "../src/core/replica-set";
import { DebitOutcome, ReplicaState } from "../src/core/replica-state";

export interface MemoryBenchResult {
  readonly accounts: number;
  readonly bytesPerAccount: number;
  readonly heapBytesPerAccount: number;
  readonly arrayBufferBytesPerAccount: number;
  readonly seconds: number;
  /** Remembered request ids added after the accounts (as many as accounts). */
  readonly requestIds: number;
  readonly bytesPerRequestId: number;
  /** One forced full GC with the accounts and request ids held, ms. */
  readonly fullGcMs: number;
}

function settle(): NodeJS.MemoryUsage {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("run with node --expose-gc");
  gc();
  gc();
  return process.memoryUsage();
}

export function runMemoryBench(accounts: number): MemoryBenchResult {
  const replicas = new ReplicaSet(["east", "west", "central"]);
  const before = settle();
  const started = process.hrtime.bigint();
  const state = new ReplicaState({ replicas, self: "east" });
  for (let k = 0; k < accounts; k++) {
    const id = `acct-${k.toString(36).padStart(8, "0")}`;
    // Every replica granted, debited and transferred something: all 12 slots set.
    for (let writer = 0; writer < 3; writer++) {
      for (let column = 0; column <= 3; column++) state.merge(id, writer, column, BigInt(1_000 + k + column));
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const after = settle();
  const heap = after.heapUsed - before.heapUsed;
  const buffers = after.arrayBuffers - before.arrayBuffers;
  if (state.accountCount !== accounts) throw new Error("account count mismatch");

  // Request ids and account ids arrive decoded from the wire (flat strings).
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const wire = (text: string): string => decoder.decode(encoder.encode(text));
  const now = Date.now();
  for (let k = 0; k < accounts; k++) {
    const accountId = wire(`acct-${(k % 10_000).toString(36).padStart(8, "0")}`);
    const answer = { kind: "debit", outcome: DebitOutcome.Approved, balance: BigInt(1_000_000 + k), localRights: BigInt(500_000 + k) } as const;
    state.remember(wire(`req-${k.toString(36)}-7f3a9c2e41d0b5e8`), `d|${accountId}|${1 + (k % 5)}`, answer, { stampMs: now, nowMs: 0 });
  }
  const afterRequests = settle();
  if (state.rememberedRequests !== accounts) throw new Error("remembered request count mismatch");
  const gc = (globalThis as { gc?: () => void }).gc;
  const gcStarted = process.hrtime.bigint();
  gc?.();
  const fullGcMs = Number(process.hrtime.bigint() - gcStarted) / 1e6;
  const requestBytes = afterRequests.heapUsed - after.heapUsed + (afterRequests.arrayBuffers - after.arrayBuffers);
  return {
    requestIds: accounts,
    bytesPerRequestId: requestBytes / accounts,
    fullGcMs,
    accounts,
    bytesPerAccount: (heap + buffers) / accounts,
    heapBytesPerAccount: heap / accounts,
    arrayBufferBytesPerAccount: buffers / accounts,
    seconds,
  };
}

if (require.main === module) {
  const accounts = Number(process.argv[2] ?? "1000000");
  process.stdout.write(`${JSON.stringify(runMemoryBench(accounts))}\n`);
}
