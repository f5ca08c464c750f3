// Multi-region: Tally's local debit vs a centralized Postgres ledger reached
// across a simulated WAN.
//
// Tally: a 3-region cluster (one nats-server and one node per region, streams
// placed by region) with `delayMs` one-way delay on every gateway link. The
// accounts are granted at east, so east holds the rights, and Debit is measured
// at east: the decision and its durable write stay inside the region. The same
// cluster, node, client and concurrency are measured with the delay and
// without it, in interleaved rounds (the proxies change their delay in place),
// so the ratio of the two p99s shows whether the local debit feels the WAN.
// Centralized ledger: a client in region east reaching a durable Postgres in
// another region — the Postgres ledger bench (spread) through a delay proxy
// with the same one-way delay. The ledger runs first and is torn down before
// Tally starts, so the two do not share the machine. Latency is compared twice:
// at the same concurrency (Tally then serves many times the ledger's rate) and
// at the same offered load (Tally paced, open loop, at the rate the ledger
// reached), since a latency comparison means most at equal load.
// Run: node dist/bench/wan-bench.js [calls] [concurrency] [delayMs] [centralCalls]

import type { ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../src/devcluster/local-cluster";
import {
  BalancesClient,
  DebitOutcome,
  type DebitRequest,
  type DebitResponse,
  type GetBalanceRequest,
  type GetBalanceResponse,
  type GrantRequest,
  type GrantResponse,
} from "../src/generated/tally/v1/balances";
import { closedLoop, pacedLoop } from "./load";
import { noopClientBeside } from "./noop-client";
import { runPostgresLedgerBench } from "./postgres-ledger-bench";
import { fmt, histogramBuckets, progress, quantileBetween, summarize, table, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface WanBenchOptions {
  /** Calls per measured run of the local debit (and the no-op), per condition (with / without the delay). */
  readonly calls: number;
  /** Calls per measured run of the central ledger (each one crosses the WAN; default `calls`). */
  readonly centralCalls?: number;
  readonly concurrency: number;
  /** One-way delay between regions, ms. */
  readonly delayMs: number;
  /** Accounts debited round-robin, on both sides (default 1000). */
  readonly accounts?: number;
  /** Interleaved rounds of (without delay, with delay), the order alternating per round (default 2). */
  readonly rounds?: number;
}

/** The local region's figures under one condition of the gateway links. */
export interface WanLocalRuns {
  /** Debit at east, accounts granted at east. */
  readonly debit: LatencySummary;
  /** The same debits one at a time (concurrency 1). */
  readonly debitSerial: LatencySummary;
  /** The no-op RPC on east's node, same client and concurrency: the gRPC floor under the same load. */
  readonly noop: LatencySummary;
  readonly noopSerial: LatencySummary;
  /** The same debits, open loop at the central ledger's measured rate (latency from each call's due time). */
  readonly debitPaced: LatencySummary;
  /** east's group-commit publish-to-ack time during these runs (p50/p99 upper bucket bounds, ms). */
  readonly commitP50Ms: number;
  readonly commitP99Ms: number;
}

export interface WanBenchResult {
  /** Same cluster, node, client and concurrency; the gateway links carry `delayMs` one way. */
  readonly withDelay: WanLocalRuns;
  /** The same, the gateway links without added delay. */
  readonly withoutDelay: WanLocalRuns;
  /** Durable Postgres UPDATE debit (spread) through `delayMs` one-way delay. */
  readonly centralLedger: LatencySummary;
  readonly delayMs: number;
  readonly rounds: number;
  readonly concurrency: number;
}

const GRANT = 1n << 60n;

function settle<Res>(resolve: (value: Res) => void, reject: (error: ServiceError) => void): (error: ServiceError | null, response: Res) => void {
  return (error, response) => (error ? reject(error) : resolve(response));
}

function grant(client: BalancesClient, request: GrantRequest): Promise<GrantResponse> {
  return new Promise((resolve, reject) => client.grant(request, settle(resolve, reject)));
}

function getBalance(client: BalancesClient, request: GetBalanceRequest): Promise<GetBalanceResponse> {
  return new Promise((resolve, reject) => client.getBalance(request, settle(resolve, reject)));
}

function debitCall(client: BalancesClient, request: DebitRequest): Promise<DebitResponse> {
  return new Promise((resolve, reject) => client.debit(request, settle(resolve, reject)));
}

export async function runWanBench(options: WanBenchOptions): Promise<WanBenchResult> {
  const { calls, concurrency, delayMs } = options;
  const accounts = options.accounts ?? 1000;
  const rounds = Math.max(1, options.rounds ?? 2);
  progress(`wan: centralized Postgres ledger through ${delayMs} ms one way`);
  const central = await runPostgresLedgerBench({ calls: options.centralCalls ?? calls, concurrency, accounts, wanDelayMs: delayMs });
  const local = await measureTallyLocal(calls, concurrency, delayMs, accounts, rounds, central.spread.perSecond);
  return { ...local, centralLedger: central.spread, delayMs, rounds, concurrency };
}

type Run = { latenciesNs: number[]; seconds: number };

/** Runs of one condition, gathered over the rounds. */
class Condition {
  readonly debit: Run[] = [];
  readonly debitSerial: Run[] = [];
  readonly noop: Run[] = [];
  readonly noopSerial: Run[] = [];
  readonly debitPaced: Run[] = [];
  /** Group-commit histogram counts observed during this condition's debit runs. */
  readonly commits = new Map<number, number>();

  addCommits(before: Map<number, number>, after: Map<number, number>): void {
    for (const [le, count] of after) this.commits.set(le, (this.commits.get(le) ?? 0) + count - (before.get(le) ?? 0));
  }

  summary(): WanLocalRuns {
    const none = new Map<number, number>();
    return {
      debit: merge(this.debit),
      debitSerial: merge(this.debitSerial),
      noop: merge(this.noop),
      noopSerial: merge(this.noopSerial),
      debitPaced: merge(this.debitPaced),
      commitP50Ms: quantileBetween(none, this.commits, 0.5).upperBoundSeconds * 1000,
      commitP99Ms: quantileBetween(none, this.commits, 0.99).upperBoundSeconds * 1000,
    };
  }
}

function merge(runs: readonly Run[]): LatencySummary {
  return summarize(
    runs.flatMap((r) => r.latenciesNs),
    runs.reduce((s, r) => s + r.seconds, 0),
  );
}

async function measureTallyLocal(
  calls: number,
  concurrency: number,
  delayMs: number,
  accounts: number,
  rounds: number,
  pacedRate: number,
): Promise<Omit<WanBenchResult, "centralLedger" | "delayMs" | "rounds" | "concurrency">> {
  const dir = mkdtempSync(join(tmpdir(), "tally-wan-bench-"));
  let cluster: LocalCluster | undefined;
  let balances: BalancesClient | undefined;
  try {
    progress("wan: starting a 3-region cluster (gateway links behind delay proxies)");
    cluster = await LocalCluster.start({ dir, wanDelayMs: 0, extraArgs: ["--noop-service"] });
    const nats = cluster.nats;
    const east = cluster.node("east");
    const client = new BalancesClient(east.grpcAddress, cluster.clientCredentials("all"), tlsNameOptions(east.grpcAddress));
    balances = client;
    // Same channel as the debits, so both see the same connection.
    const noopClient = noopClientBeside(east.grpcAddress, client);

    progress(`wan: granting ${accounts} accounts at east`);
    const ids = Array.from({ length: accounts }, (_, k) => `wan-${k}`);
    for (let start = 0; start < ids.length; start += 500) {
      await Promise.all(
        ids.slice(start, start + 500).map((accountId) => grant(client, { accountId, amount: GRANT, requestId: `grant-${accountId}` })),
      );
    }
    // Grant at east = rights at east: wait until east may spend every grant locally.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const views = await Promise.all(ids.map((accountId) => getBalance(client, { accountId })));
      if (views.every((v) => v.localRights >= GRANT)) break;
      if (Date.now() > deadline) throw new Error("east did not get the rights to its grants within 60 s");
      await new Promise((r) => setTimeout(r, 100));
    }

    let id = 0;
    const debit = async (): Promise<void> => {
      const n = id++;
      const request: DebitRequest = { accountId: `wan-${n % accounts}`, amount: 1n, requestId: `wan-debit-${n}`, maxWaitMs: 0 };
      const response = await debitCall(client, request);
      if (response.outcome !== DebitOutcome.DEBIT_OUTCOME_APPROVED) throw new Error(`debit ${n} at east: outcome ${response.outcome}`);
    };
    const noopRequest: DebitRequest = { accountId: "wan-0", amount: 1n, requestId: "noop", maxWaitMs: 0 };
    const noop = (): Promise<void> =>
      new Promise((resolve, reject) => noopClient.debit(noopRequest, (error) => (error ? reject(error) : resolve())));
    const commitBuckets = async (): Promise<Map<number, number>> =>
      histogramBuckets([await (await fetch(east.metricsUrl)).text()], "tally_commit_duration_seconds");
    await closedLoop(Math.min(2000, calls), concurrency, debit); // warm-up
    await closedLoop(Math.min(2000, calls), concurrency, noop);

    const perRound = Math.max(1, Math.ceil(calls / rounds));
    const serialPerRound = Math.max(1, Math.ceil(Math.min(1000, calls) / rounds));
    const without = new Condition();
    const withDelay = new Condition();
    for (let round = 0; round < rounds; round++) {
      // Alternate the order, so drift over the run hits both conditions alike.
      const order = round % 2 === 0 ? [0, delayMs] : [delayMs, 0];
      for (const ms of order) {
        const condition = ms > 0 ? withDelay : without;
        await nats.setWanDelay(ms);
        // Let chunks held back under the previous setting drain, and replication settle.
        await new Promise((r) => setTimeout(r, Math.max(200, 4 * delayMs)));
        const label = ms > 0 ? `${ms} ms one way between regions` : "no added delay between regions";
        progress(`wan: round ${round + 1}/${rounds}, ${label}: no-op and Debit at east, ${perRound} calls each at concurrency ${concurrency}, ${serialPerRound} one at a time`);
        condition.noop.push(await closedLoop(perRound, concurrency, noop));
        const before = await commitBuckets();
        condition.debit.push(await closedLoop(perRound, concurrency, debit));
        condition.noopSerial.push(await closedLoop(serialPerRound, 1, noop));
        condition.debitSerial.push(await closedLoop(serialPerRound, 1, debit));
        condition.debitPaced.push(await pacedLoop(serialPerRound, pacedRate, debit));
        condition.addCommits(before, await commitBuckets());
      }
    }
    return { withDelay: withDelay.summary(), withoutDelay: without.summary() };
  } finally {
    balances?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** How many times Tally's p99 is below the central ledger's (0 when nothing was measured). */
export function ledgerAdvantage(central: LatencySummary, tally: LatencySummary): number {
  return tally.p99Ms > 0 ? central.p99Ms / tally.p99Ms : 0;
}

/** p99 with the delay over p99 without it (0 when nothing was measured). */
export function p99Ratio(withDelay: LatencySummary, without: LatencySummary): number {
  return without.p99Ms > 0 ? withDelay.p99Ms / without.p99Ms : 0;
}

export function wanTable(result: WanBenchResult): string {
  const { withDelay: w, withoutDelay: o, delayMs } = result;
  const row = (name: string, withRun: LatencySummary, withoutRun: LatencySummary): string[] => [
    name,
    fmt(withoutRun.perSecond, 0),
    fmt(withoutRun.p50Ms, 3),
    fmt(withoutRun.p99Ms, 3),
    fmt(withRun.perSecond, 0),
    fmt(withRun.p50Ms, 3),
    fmt(withRun.p99Ms, 3),
    `${fmt(p99Ratio(withRun, withoutRun), 2)}x`,
  ];
  const central = result.centralLedger;
  return [
    table(
      ["at east (local rights), same node and client", "ops/s, no delay", "p50 ms", "p99 ms", `ops/s, ${delayMs} ms`, "p50 ms", "p99 ms", "p99 with / without"],
      [
        row("no-op RPC (the gRPC floor)", w.noop, o.noop),
        row("Tally Debit", w.debit, o.debit),
        row("no-op RPC, one at a time", w.noopSerial, o.noopSerial),
        row("Tally Debit, one at a time", w.debitSerial, o.debitSerial),
        row(`Tally Debit, paced at the ledger's ${fmt(central.perSecond, 0)}/s`, w.debitPaced, o.debitPaced),
      ],
    ),
    "",
    table(
      [
        `central Postgres ledger, ${delayMs} ms one way, concurrency ${result.concurrency}`,
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99 vs Tally Debit, same concurrency",
        "p99 vs Tally Debit, same rate",
      ],
      [
        [
          "UPDATE debit, spread (fsync on)",
          fmt(central.perSecond, 0),
          fmt(central.p50Ms, 3),
          fmt(central.p99Ms, 3),
          `${fmt(ledgerAdvantage(central, w.debit), 1)}x`,
          `${fmt(ledgerAdvantage(central, w.debitPaced), 1)}x`,
        ],
      ],
    ),
  ].join("\n");
}

if (require.main === module) {
  const [calls, concurrency, delayMs, centralCalls] = process.argv.slice(2).map(Number);
  runWanBench({ calls: calls || 2_000, concurrency: concurrency || 8, delayMs: delayMs || 50, centralCalls: centralCalls || calls || 2_000 }).then(
    (result) => console.log(wanTable(result)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
