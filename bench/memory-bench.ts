// Node memory per account: the replica state of a 3-region node holding N
// accounts with every row populated, measured as heap + array-buffer growth
// after forced GC. Run with --expose-gc (bench/run.ts spawns it so).

import { ReplicaSet } from "../src/core/replica-set";
import { ReplicaState } from "../src/core/replica-state";

export interface MemoryBenchResult {
  readonly accounts: number;
  readonly bytesPerAccount: number;
  readonly heapBytesPerAccount: number;
  readonly arrayBufferBytesPerAccount: number;
  readonly seconds: number;
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
  return {
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
