// Snapshot cost at a large state: one node (region east of east,west,central)
// over a real standalone nats-server, holding A accounts and R remembered
// request ids, serves a closed loop of durable debits (C in flight) while
// snapshots are taken back to back with equal quiet gaps between them. Each
// debit is classed by whether it overlapped a snapshot window; the bench prints
// Debit p50/p99 inside and outside the windows and their ratio, the snapshot
// size and time, the time of the synchronous copy (freeze), and what copying
// the remembered ids as objects (the former freeze) costs at the same size.
//
// node dist/bench/snapshot-bench.js [accounts=500000] [requestIds=1000000] [seconds=40] [concurrency=32]

import { rmSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { runNode } from "../src/app/run-node";
import { DebitOutcome } from "../src/core/answer";
import { RequestLog } from "../src/core/request-log";
import { jsonLogger } from "../src/node/logger";
import { natsAccess, startStandaloneNats, tempDir } from "../test/support/nats";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { fmt, table } from "./stats";

export interface SnapshotBenchResult {
  readonly accounts: number;
  readonly requestIds: number;
  readonly concurrency: number;
  readonly snapshots: number;
  readonly snapshotBytes: number;
  readonly snapshotMsMedian: number;
  readonly freezeMs: number;
  readonly oldRequestCopyMsPer1M: number;
  readonly columnCopyMsPer1M: number;
  readonly during: Phase;
  readonly outside: Phase;
  readonly p99Ratio: number;
}

interface Phase {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function phase(latencies: number[]): Phase {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { count: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted.at(-1) ?? 0 };
}

async function main(): Promise<void> {
  const accounts = Number(process.argv[2] ?? "500000");
  const requestIds = Number(process.argv[3] ?? "1000000");
  const seconds = Number(process.argv[4] ?? "40");
  const concurrency = Number(process.argv[5] ?? "32");
  const dir = tempDir("snapbench");
  const nats = await startStandaloneNats(dir);
  const lines: string[] = [];
  const running = await runNode({
    region: "east",
    regions: ["east", "west", "central"],
    ...natsAccess(nats, "east"),
    grpcAddress: "127.0.0.1:0",
    grpcSecurity: LocalGrpcPki.ensure(join(dir, "tls")).serverSecurity(),
    logger: jsonLogger("east", "info", (line) => lines.push(line)),
    config: { snapshotIntervalMs: 0, catchUpTimeoutMs: 200, maxRememberedRequests: requestIds * 2 + 10_000_000, requestRetentionMs: 3_600_000 },
  });
  const { node } = running;
  const state = node.state;
  process.stderr.write(`[snapshot-bench] filling ${accounts} accounts and ${requestIds} request ids\n`);
  for (let k = 0; k < accounts; k++) state.grant(`acct-${k.toString(36).padStart(8, "0")}`, 1_000_000_000n);
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const nowMs = performance.now();
  for (let k = 0; k < requestIds; k++) {
    // Ids arrive decoded from the wire as flat strings.
    const id = decoder.decode(encoder.encode(`req-${k.toString(36).padStart(10, "0")}`));
    state.rememberReplicated(id, `d|acct-${(k % accounts).toString(36).padStart(8, "0")}|1`, {
      kind: "debit",
      outcome: DebitOutcome.Approved,
      balance: BigInt(k),
      localRights: BigInt(k),
    }, { stampMs: Date.now(), nowMs });
  }

  // The former freeze copied every remembered answer into objects; measure that copy at the same size.
  const oldCopy = new RequestLog({ retentionMs: 3_600_000, maxEntries: requestIds * 2 });
  for (let k = 0; k < Math.min(requestIds, 1_000_000); k++) {
    oldCopy.rememberReplicated(`req-${k}`, "d|a|1", { kind: "debit", outcome: DebitOutcome.Approved, balance: 1n, localRights: 1n }, { stampMs: 1, nowMs });
  }
  let t = performance.now();
  oldCopy.entries();
  const entriesMs = performance.now() - t;
  t = performance.now();
  oldCopy.freeze();
  const columnsMs = performance.now() - t;
  t = performance.now();
  state.freeze();
  const freezeMs = performance.now() - t;

  // One warm-up snapshot (JIT, object store bucket).
  await node.takeSnapshot();

  process.stderr.write(`[snapshot-bench] load for ${seconds}s, ${concurrency} in flight\n`);
  const samples: Array<{ start: number; end: number }> = [];
  const windows: Array<{ start: number; end: number; bytes: number }> = [];
  const deadline = performance.now() + seconds * 1000;
  let next = 0;
  const worker = async (w: number): Promise<void> => {
    while (performance.now() < deadline) {
      const k = next++;
      const start = performance.now();
      await node.debit({ accountId: `acct-${((k * 7919 + w) % accounts).toString(36).padStart(8, "0")}`, amount: 1n, requestId: `load-${k}` }, 0);
      samples.push({ start, end: performance.now() });
    }
  };
  const snapshots = (async () => {
    // Quiet, snapshot, quiet, snapshot... until the load ends.
    let quietMs = 3_000;
    await new Promise((r) => setTimeout(r, quietMs));
    while (performance.now() < deadline - 1_000) {
      const before = lines.length;
      const start = performance.now();
      // A change since the last snapshot, so it is written.
      await node.grant("acct-00000000", 1n, `snap-${windows.length}`);
      await node.takeSnapshot();
      const end = performance.now();
      const written = lines.slice(before).find((l) => l.includes("snapshot written"));
      const bytes = written === undefined ? 0 : Number((JSON.parse(written) as { bytes?: number }).bytes ?? 0);
      windows.push({ start, end, bytes });
      quietMs = end - start;
      await new Promise((r) => setTimeout(r, quietMs));
    }
  })();
  await Promise.all([...Array.from({ length: concurrency }, (_, w) => worker(w)), snapshots]);

  const inside: number[] = [];
  const outside: number[] = [];
  // Skip the first second (warm-up).
  const from = (samples[0]?.start ?? 0) + 1_000;
  for (const s of samples) {
    if (s.start < from) continue;
    const overlaps = windows.some((w) => s.start < w.end && s.end > w.start);
    (overlaps ? inside : outside).push(s.end - s.start);
  }
  const during = phase(inside);
  const quiet = phase(outside);
  const snapMs = windows.map((w) => w.end - w.start).sort((a, b) => a - b);
  const result: SnapshotBenchResult = {
    accounts,
    requestIds: state.rememberedRequests,
    concurrency,
    snapshots: windows.length,
    snapshotBytes: windows.at(-1)?.bytes ?? 0,
    snapshotMsMedian: snapMs[Math.floor(snapMs.length / 2)] ?? 0,
    freezeMs,
    oldRequestCopyMsPer1M: entriesMs,
    columnCopyMsPer1M: columnsMs,
    during,
    outside: quiet,
    p99Ratio: during.p99Ms / quiet.p99Ms,
  };
  process.stdout.write(
    `${table(
      ["debits", "count", "p50 ms", "p99 ms", "max ms"],
      [
        ["during snapshot windows", String(during.count), fmt(during.p50Ms, 3), fmt(during.p99Ms, 3), fmt(during.maxMs, 1)],
        ["outside snapshot windows", String(quiet.count), fmt(quiet.p50Ms, 3), fmt(quiet.p99Ms, 3), fmt(quiet.maxMs, 1)],
      ],
    )}\n`,
  );
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await running.stop();
  await nats.stop();
  rmSync(dir, { recursive: true, force: true });
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    // Exit even though the node and NATS connection are still open: a failed bench must not hang its caller.
    process.exit(1);
  });
}
