// Multi-region: Tally's local debit vs a centralized Postgres ledger reached
// across a simulated WAN.
//
// Tally: a 3-region cluster (one nats-server and one node per region, streams
// placed by region) with `delayMs` one-way delay on every gateway link. The
// accounts are granted at east, so east holds the rights, and Debit is measured
// at east: the decision and its durable write stay inside the region.
// Centralized ledger: a client in region east reaching a durable Postgres in
// another region — the Postgres ledger bench (spread) through a delay proxy
// with the same one-way delay. Tally is torn down first so the two runs do not
// share the machine.
// Run: node dist/bench/wan-bench.js [calls] [concurrency] [delayMs]

import { credentials, type ServiceError } from "@grpc/grpc-js";
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
import { closedLoop } from "./load";
import { noopClientBeside } from "./noop-client";
import { runPostgresLedgerBench } from "./postgres-ledger-bench";
import { fmt, histogramBuckets, progress, quantileBetween, summarize, table, type LatencySummary } from "./stats";

export interface WanBenchOptions {
  readonly calls: number;
  readonly concurrency: number;
  /** One-way delay between regions, ms. */
  readonly delayMs: number;
  /** Accounts debited round-robin, on both sides (default 1000). */
  readonly accounts?: number;
}

export interface WanBenchResult {
  /** Debit at east, accounts granted at east, WAN delay between regions. */
  readonly tallyLocal: LatencySummary;
  /** The same debits one at a time (concurrency 1). */
  readonly tallyLocalSerial: LatencySummary;
  /** The no-op RPC on east's node, same client and concurrency: the gRPC floor under the same load. */
  readonly noopLocal: LatencySummary;
  readonly noopLocalSerial: LatencySummary;
  /** east's group-commit publish-to-ack time during the run (p50/p99 upper bucket bounds, ms). */
  readonly commitP50Ms: number;
  readonly commitP99Ms: number;
  /** Durable Postgres UPDATE debit (spread) through `delayMs` one-way delay. */
  readonly centralLedger: LatencySummary;
  readonly delayMs: number;
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
  const local = await measureTallyLocal(calls, concurrency, delayMs, accounts);
  progress(`wan: centralized Postgres ledger through ${delayMs} ms one way`);
  const central = await runPostgresLedgerBench({ calls, concurrency, accounts, wanDelayMs: delayMs });
  return { ...local, centralLedger: central.spread, delayMs };
}

type TallyLocal = Omit<WanBenchResult, "centralLedger" | "delayMs">;


async function measureTallyLocal(calls: number, concurrency: number, delayMs: number, accounts: number): Promise<TallyLocal> {
  const dir = mkdtempSync(join(tmpdir(), "tally-wan-bench-"));
  let cluster: LocalCluster | undefined;
  let balances: BalancesClient | undefined;
  try {
    progress(`wan: starting a 3-region cluster, ${delayMs} ms one way between regions`);
    cluster = await LocalCluster.start({ dir, wanDelayMs: delayMs, extraArgs: ["--noop-service"] });
    const east = cluster.node("east");
    const client = new BalancesClient(east.grpcAddress, credentials.createInsecure());
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
    await closedLoop(Math.min(2000, calls), concurrency, debit); // warm-up
    await closedLoop(Math.min(2000, calls), concurrency, noop);
    progress(`wan: no-op RPC and Tally Debit at east, ${calls} calls each, concurrency ${concurrency}`);
    const noopRun = await closedLoop(calls, concurrency, noop);
    const run = await closedLoop(calls, concurrency, debit);
    const serialCalls = Math.min(1000, calls);
    progress(`wan: no-op RPC and Tally Debit at east, ${serialCalls} calls each, one at a time`);
    const noopSerial = await closedLoop(serialCalls, 1, noop);
    const serial = await closedLoop(serialCalls, 1, debit);
    const commits = histogramBuckets([await (await fetch(east.metricsUrl)).text()], "tally_commit_duration_seconds");
    const none = new Map<number, number>();
    const commitP50Ms = quantileBetween(none, commits, 0.5).upperBoundSeconds * 1000;
    const commitP99Ms = quantileBetween(none, commits, 0.99).upperBoundSeconds * 1000;
    return {
      tallyLocal: summarize(run.latenciesNs, run.seconds),
      tallyLocalSerial: summarize(serial.latenciesNs, serial.seconds),
      noopLocal: summarize(noopRun.latenciesNs, noopRun.seconds),
      noopLocalSerial: summarize(noopSerial.latenciesNs, noopSerial.seconds),
      commitP50Ms,
      commitP99Ms,
    };
  } finally {
    balances?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function wanTable(result: WanBenchResult): string {
  const row = (name: string, s: LatencySummary): string[] => [name, String(s.count), fmt(s.perSecond), fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.maxMs)];
  const ratio = result.tallyLocal.p99Ms > 0 ? result.centralLedger.p99Ms / result.tallyLocal.p99Ms : 0;
  return [
    table(
      [`debit, ${result.delayMs} ms one way between regions`, "calls", "ops/s", "p50 ms", "p99 ms", "max ms"],
      [
        row("no-op RPC at east (the gRPC floor)", result.noopLocal),
        row("Tally Debit at east (local rights)", result.tallyLocal),
        row("no-op RPC at east, one at a time", result.noopLocalSerial),
        row("Tally Debit at east, one at a time", result.tallyLocalSerial),
        row("central Postgres ledger (spread) over WAN", result.centralLedger),
      ],
    ),
    `p99 ratio (central / Tally): ${fmt(ratio, 1)}x`,
  ].join("\n");
}

if (require.main === module) {
  const [calls, concurrency, delayMs] = process.argv.slice(2).map(Number);
  runWanBench({ calls: calls || 2_000, concurrency: concurrency || 32, delayMs: delayMs || 50 }).then(
    (result) => console.log(wanTable(result)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
