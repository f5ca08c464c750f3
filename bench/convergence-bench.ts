// Convergence latency across three real regions on loopback: from the moment
// a debit is sent to east to the moment west and central stream the new
// balance (WatchBalance), for a paced series of debits. Measured from the
// send, not the ack: the peers often see the change before east's client has
// its answer, so an ack-based figure would be negative. The send-based figure
// is an upper bound of commit-to-visible (it includes east's own decision and
// durable commit).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../src/devcluster/local-cluster";
import { BalancesClient, type WatchBalanceResponse } from "../src/generated/tally/v1/balances";
import { progress, summarize, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface ConvergenceBenchResult {
  readonly debits: number;
  readonly toWest: LatencySummary;
  readonly toCentral: LatencySummary;
  readonly toBoth: LatencySummary;
}

export async function runConvergenceBench(options: { debits: number; spacingMs: number }): Promise<ConvergenceBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-conv-"));
  const cluster = await LocalCluster.start({ dir });
  const nodes = cluster.nodes;
  const clients: BalancesClient[] = [];
  try {
    for (const n of nodes) clients.push(new BalancesClient(n.grpcAddress, cluster.clientCredentials("all"), tlsNameOptions(n.grpcAddress)));
    const [east, west, central] = clients as [BalancesClient, BalancesClient, BalancesClient];
    const account = "conv-bench";
    await new Promise<void>((resolve, reject) =>
      east.grant({ accountId: account, amount: 1n << 50n, requestId: "conv-grant" }, (e) => (e ? reject(e) : resolve())),
    );
    // balance -> time first seen, per watcher
    const seen = [new Map<bigint, bigint>(), new Map<bigint, bigint>()];
    const streams = [west, central].map((client, w) => {
      const stream = client.watchBalance({ accountId: account, lowBalanceThreshold: 0n });
      stream.on("data", (event: WatchBalanceResponse) => {
        const map = seen[w]!;
        if (!map.has(event.balance)) map.set(event.balance, process.hrtime.bigint());
      });
      stream.on("error", () => undefined);
      return stream;
    });
    // Both watchers must have seen the grant first: an earlier event (the
    // balance before the grant arrived) would read as "seen" for every debit.
    const granted = 1n << 50n;
    const deadline = Date.now() + 30_000;
    while (!seen.every((m) => m.has(granted))) {
      if (Date.now() > deadline) throw new Error("the grant never reached west and central");
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const m of seen) for (const balance of [...m.keys()]) if (balance !== granted) m.delete(balance);
    progress(`convergence: ${options.debits} debits at east, watched at west and central`);
    const acked: Array<{ balance: bigint; at: bigint }> = [];
    for (let i = 0; i < options.debits; i++) {
      const sentAt = process.hrtime.bigint();
      const answer = await new Promise<{ balance: bigint }>((resolve, reject) =>
        east.debit({ accountId: account, amount: 1n, requestId: `conv-${i}`, maxWaitMs: 0 }, (e, r) => (e ? reject(e) : resolve(r))),
      );
      acked.push({ balance: answer.balance, at: sentAt });
      await new Promise((r) => setTimeout(r, options.spacingMs));
    }
    await new Promise((r) => setTimeout(r, 1_000));
    for (const s of streams) s.cancel();
    const lag = (w: number): number[] =>
      acked.map((a) => {
        // Coalescing may skip a balance; the first later (lower) balance seen counts.
        let first: bigint | undefined;
        for (const [balance, at] of seen[w]!) if (balance <= a.balance && (first === undefined || at < first)) first = at;
        return first === undefined ? Number.POSITIVE_INFINITY : Number(first - a.at);
      });
    const westLag = lag(0);
    const centralLag = lag(1);
    const both = westLag.map((v, i) => Math.max(v, centralLag[i] ?? Number.POSITIVE_INFINITY));
    const seconds = 1;
    return {
      debits: options.debits,
      toWest: summarize(westLag, seconds),
      toCentral: summarize(centralLag, seconds),
      toBoth: summarize(both, seconds),
    };
  } finally {
    for (const c of clients) c.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runConvergenceBench({ debits: Number(process.argv[2] ?? "300"), spacingMs: 5 }).then(
    (r) => process.stdout.write(`${JSON.stringify(r, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}\n`),
    (e: unknown) => {
      process.stderr.write(`${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
