// Rights that follow demand, on three real regions: a skewed steady load
// (grants land in east, most spending in west) counting false rejections and
// rights waits, and a low-balance endgame where every region spends until the
// balance is gone — STRICT must reach exactly zero, nothing stranded.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../src/devcluster/local-cluster";
import { BalancesClient, DebitOutcome, type DebitResponse } from "../src/generated/tally/v1/balances";
import { closedLoop } from "./load";
import { histogramBuckets, progress, quantileBetween, summarize, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface AllowanceBenchResult {
  readonly debits: number;
  readonly approved: number;
  readonly falseRejections: number;
  readonly falseRejectionRate: number;
  /** Debits that waited for rights, and the p99 of the wait (histogram upper bound), ms. */
  readonly rightsWaits: number;
  readonly rightsWaitP99Ms: number;
  /** The warm-up: each account's first debits in west and central wait for their first transfer. */
  readonly coldRightsWaits: number;
  readonly coldRightsWaitP99Ms: number;
  readonly rightsTransfers: number;
  readonly latencyByRegion: Record<string, LatencySummary>;
  readonly endgame: { readonly granted: number; readonly spent: number; readonly finalBalance: string; readonly seconds: number };
}

const debit = (client: BalancesClient, accountId: string, amount: bigint, requestId: string, maxWaitMs: number): Promise<DebitResponse> =>
  new Promise((resolve, reject) =>
    client.debit({ accountId, amount, requestId, maxWaitMs }, (e, r) => (e ? reject(e) : resolve(r))),
  );

function counterSum(texts: readonly string[], name: string, labelFilter = ""): number {
  let sum = 0;
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line.startsWith(`${name}{`) && line.includes(labelFilter)) sum += Number(line.split(" ").pop());
    }
  }
  return sum;
}

export async function runAllowanceBench(options: { calls: number; accounts: number }): Promise<AllowanceBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-allow-"));
  const cluster = await LocalCluster.start({ dir });
  const nodes = cluster.nodes;
  const clients: BalancesClient[] = [];
  try {
    for (const n of nodes) clients.push(new BalancesClient(n.grpcAddress, cluster.clientCredentials("all"), tlsNameOptions(n.grpcAddress)));
    const [east, west, central] = clients as [BalancesClient, BalancesClient, BalancesClient];
    progress(`allowances: granting ${options.accounts} accounts at east`);
    await Promise.all(
      Array.from(
        { length: options.accounts },
        (_, k) =>
          new Promise<void>((resolve, reject) =>
            east.grant({ accountId: `skew-${k}`, amount: 10_000_000n, requestId: `skew-g-${k}` }, (e) => (e ? reject(e) : resolve())),
          ),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    // Warm-up: the first debit of each account in a region must wait for its first
    // transfer (the grant landed elsewhere); the steady state is measured after it.
    const scrape = (): Promise<string[]> => Promise.all(nodes.map(async (n) => (await fetch(n.metricsUrl)).text()));
    const cold = await scrape();
    progress("allowances: warm-up, a few debits per account in each region");
    for (const [r, client] of clients.entries()) {
      await closedLoop(options.accounts * 3, 8, (i) => debit(client, `skew-${i % options.accounts}`, 1n, `warm-${r}-${i}`, 1_000));
    }
    const before = await scrape();
    const coldWait = quantileBetween(histogramBuckets(cold, "tally_rights_wait_seconds"), histogramBuckets(before, "tally_rights_wait_seconds"), 0.99);
    progress(`allowances: skewed load, ${options.calls} debits (80% west, 15% central, 5% east), max wait 200 ms`);
    const outcomes: DebitOutcome[] = [];
    const share = [
      { region: "west", client: west, calls: Math.round(options.calls * 0.8), concurrency: 16 },
      { region: "central", client: central, calls: Math.round(options.calls * 0.15), concurrency: 3 },
      { region: "east", client: east, calls: Math.round(options.calls * 0.05), concurrency: 1 },
    ];
    const runs = await Promise.all(
      share.map((s) =>
        closedLoop(s.calls, s.concurrency, async (i) => {
          const answer = await debit(s.client, `skew-${i % options.accounts}`, BigInt(1 + (i % 10)), `skew-${s.region}-${i}`, 200);
          outcomes.push(answer.outcome);
        }),
      ),
    );
    const latencyByRegion: Record<string, LatencySummary> = {};
    share.forEach((s, i) => (latencyByRegion[s.region] = summarize(runs[i]!.latenciesNs, runs[i]!.seconds)));
    const metrics = await scrape();
    const wait = quantileBetween(histogramBuckets(before, "tally_rights_wait_seconds"), histogramBuckets(metrics, "tally_rights_wait_seconds"), 0.99);
    const falseRejections = outcomes.filter((o) => o === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT).length;

    progress("allowances: low-balance endgame, 3,000 credits, every region spending 1 at a time");
    await new Promise<void>((resolve, reject) =>
      east.grant({ accountId: "endgame", amount: 2_000n, requestId: "end-g1" }, (e) => (e ? reject(e) : resolve())),
    );
    await new Promise<void>((resolve, reject) =>
      central.grant({ accountId: "endgame", amount: 1_000n, requestId: "end-g2" }, (e) => (e ? reject(e) : resolve())),
    );
    await new Promise((r) => setTimeout(r, 300));
    const started = process.hrtime.bigint();
    const spentPerRegion = await Promise.all(
      clients.map(async (client, r) => {
        let spent = 0;
        let refusedInARow = 0;
        for (let i = 0; refusedInARow < 5 && i < 10_000; i++) {
          const answer = await debit(client, "endgame", 1n, `end-${r}-${i}`, 300);
          if (answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED) {
            spent++;
            refusedInARow = 0;
          } else refusedInARow++;
        }
        return spent;
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await new Promise((r) => setTimeout(r, 500));
    const finalBalance = await new Promise<bigint>((resolve, reject) =>
      west.getBalance({ accountId: "endgame" }, (e, r) => (e ? reject(e) : resolve(r.balance))),
    );
    return {
      debits: outcomes.length,
      approved: outcomes.filter((o) => o === DebitOutcome.DEBIT_OUTCOME_APPROVED).length,
      falseRejections,
      falseRejectionRate: falseRejections / Math.max(1, outcomes.length),
      rightsWaits: wait.count,
      rightsWaitP99Ms: wait.upperBoundSeconds * 1000,
      coldRightsWaits: coldWait.count,
      coldRightsWaitP99Ms: coldWait.upperBoundSeconds * 1000,
      rightsTransfers: counterSum(metrics, "tally_rights_transfers_total", 'direction="out"') - counterSum(before, "tally_rights_transfers_total", 'direction="out"'),
      latencyByRegion,
      endgame: { granted: 3_000, spent: spentPerRegion.reduce((s, x) => s + x, 0), finalBalance: finalBalance.toString(), seconds },
    };
  } finally {
    for (const c of clients) c.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runAllowanceBench({ calls: Number(process.argv[2] ?? "20000"), accounts: Number(process.argv[3] ?? "100") }).then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (e: unknown) => {
      process.stderr.write(`${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
