// GetBalance does not leave the node: a node started with settlement
// configured, its connection to Postgres through a delay proxy (the shared
// GatewayProxy machinery, in its own process) adding `delayMs` one way. On the
// same node, client (one channel) and concurrency, interleaved in rounds:
// GetBalance vs the no-op unary RPC. For contrast, Admin ListSettlements — which
// does reach Postgres — through the same delayed path, and with the delay
// switched off, so the table shows the delay is real.
// Run: node dist/bench/getbalance-bench.js [calls] [concurrency] [delayMs] [listCalls] [rounds]

import type { ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../src/devcluster/free-port";
import { ProxyHost } from "../src/devcluster/gateway-proxy-host";
import { NatsProcess } from "../src/devcluster/nats-process";
import { ensureNatsSecurity } from "../src/security/nats-credentials";
import { NodeProcess } from "../src/devcluster/node-process";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { AdminClient, type ListSettlementsResponse, type SettleResponse } from "../src/generated/tally/v1/admin";
import { BalancesClient, type DebitRequest, type GetBalanceResponse } from "../src/generated/tally/v1/balances";
import { startPostgres, type PostgresServer } from "../test/support/postgres";
import { closedLoop } from "./load";
import { noopClientBeside } from "./noop-client";
import { fmt, progress, summarize, table, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface GetBalanceBenchOptions {
  /** Calls per measured run of GetBalance and of the no-op, in all. */
  readonly calls: number;
  readonly concurrency: number;
  /** One-way delay between the node and Postgres, ms. */
  readonly delayMs: number;
  /** ListSettlements calls (one at a time) with the delay and without it. */
  readonly listCalls: number;
  readonly accounts?: number;
  /** Interleaved rounds of (no-op, GetBalance) (default 2). */
  readonly rounds?: number;
}

export interface GetBalanceBenchResult {
  /** The no-op unary RPC on the node, with the delay in front of Postgres. */
  readonly noop: LatencySummary;
  /** GetBalance of accounts with settled totals, same node, client and concurrency. */
  readonly getBalance: LatencySummary;
  /** Admin ListSettlements (first page), one at a time, through the delayed path. */
  readonly listSettlements: LatencySummary;
  /** The same, the delay switched off (the node's pool connections stay open). */
  readonly listSettlementsNoDelay: LatencySummary;
  /** The settlement whose totals GetBalance answered with. */
  readonly settlementId: string;
  readonly settleSeconds: number;
  readonly delayMs: number;
  readonly concurrency: number;
  readonly rounds: number;
}

type Run = { latenciesNs: number[]; seconds: number };

function unary<Req, Res>(fn: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(request, (error, response) => (error ? reject(error) : resolve(response))));
}

function merge(runs: readonly Run[]): LatencySummary {
  return summarize(
    runs.flatMap((r) => r.latenciesNs),
    runs.reduce((s, r) => s + r.seconds, 0),
  );
}

export async function runGetBalanceBench(options: GetBalanceBenchOptions): Promise<GetBalanceBenchResult> {
  const { calls, concurrency, delayMs, listCalls } = options;
  const accounts = options.accounts ?? 1000;
  const rounds = Math.max(1, options.rounds ?? 2);
  const dir = mkdtempSync(join(tmpdir(), "tally-getbalance-bench-"));
  let postgres: PostgresServer | undefined;
  const proxy = new ProxyHost();
  let nats: NatsProcess | undefined;
  let node: NodeProcess | undefined;
  let balances: BalancesClient | undefined;
  try {
    progress("getbalance: starting Postgres, a delay proxy in front of it, NATS");
    postgres = await startPostgres({ durable: true });
    const [proxyPort, clientPort, monitorPort, grpcPort, metricsPort] = await freePorts(5);
    await proxy.start([{ name: "postgres", listenPort: proxyPort!, targetPort: postgres.port }]);
    await proxy.setDelay(delayMs);
    const roles = await postgres.provisionRoles("tally");
    const throughProxy = (url: string): string => {
      const parsed = new URL(url);
      parsed.port = String(proxyPort!);
      return parsed.toString();
    };
    nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: clientPort!, monitorPort: monitorPort!, dataDir: join(dir, "nats"), security: ensureNatsSecurity(join(dir, "tls")) });
    await nats.start();
    progress(`getbalance: starting a node with settlement, Postgres ${delayMs} ms one way away (migrations run through the delay)`);
    const pki = LocalGrpcPki.ensure(join(dir, "tls"));
    node = new NodeProcess({
      region: "east",
      regions: ["east"],
      natsUrl: nats.url, natsSecurity: nats.clientSecurity("east"),
      grpcPort: grpcPort!,
      metricsPort: metricsPort!,
      logDir: dir,
      // The settlement roles over TLS (a node refuses plaintext Postgres unless --insecure), through the delay proxy.
      postgresUrl: throughProxy(roles.settlerUrl),
      postgresSecurity: { ownerUrl: throughProxy(roles.ownerUrl), readerUrl: throughProxy(roles.readerUrl), caFile: roles.caFile },
      extraArgs: ["--noop-service", ...pki.serverArgs()],
      env: { TALLY_LOG: "warn" },
    });
    await node.start();
    const client = new BalancesClient(node.grpcAddress, pki.clientCredentials("all"), tlsNameOptions(node.grpcAddress));
    balances = client;
    // One channel for all three services, so connection effects are shared.
    const noopClient = noopClientBeside(node.grpcAddress, client);
    const admin = new AdminClient(node.grpcAddress, pki.clientCredentials("all"), { channelOverride: client.getChannel() });

    progress(`getbalance: granting and debiting ${accounts} accounts, then one settlement through the delay`);
    for (let start = 0; start < accounts; start += 500) {
      const batch = Array.from({ length: Math.min(500, accounts - start) }, (_, k) => `gb-${start + k}`);
      await Promise.all(batch.map((accountId) => unary(client.grant.bind(client), { accountId, amount: 1_000_000n, requestId: `grant-${accountId}` })));
      await Promise.all(
        batch.map((accountId) => unary(client.debit.bind(client), { accountId, amount: 1n, requestId: `debit-${accountId}`, maxWaitMs: 0 })),
      );
    }
    const settleStarted = process.hrtime.bigint();
    const settled = await unary<object, SettleResponse>(admin.settle.bind(admin), {});
    const settleSeconds = Number(process.hrtime.bigint() - settleStarted) / 1e9;
    const settlementId = settled.settlement?.id;
    if (settlementId === undefined) throw new Error(`the settlement did not run (skipped ${settled.skipped}, unchanged ${settled.unchanged})`);
    // The settled totals reach the node's memory over TALLY_SETTLED: wait until every account shows them.
    const ids = Array.from({ length: accounts }, (_, k) => `gb-${k}`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const views = await Promise.all(ids.map((accountId) => unary<{ accountId: string }, GetBalanceResponse>(client.getBalance.bind(client), { accountId })));
      if (views.every((v) => v.settlementId === settlementId && v.settledBalance === 999_999n)) break;
      if (Date.now() > deadline) throw new Error(`settlement ${settlementId} did not reach the node's balances within 60 s`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const noopRequest: DebitRequest = { accountId: "gb-0", amount: 1n, requestId: "noop", maxWaitMs: 0 };
    const noop = (): Promise<unknown> => unary(noopClient.debit.bind(noopClient), noopRequest);
    let n = 0;
    const getBalance = async (): Promise<void> => {
      const view = await unary<{ accountId: string }, GetBalanceResponse>(client.getBalance.bind(client), { accountId: `gb-${n++ % accounts}` });
      if (view.settlementId !== settlementId) throw new Error(`GetBalance of ${view.accountId}: settlement ${view.settlementId}, expected ${settlementId}`);
    };
    const list = async (): Promise<void> => {
      const page = await unary<{ pageSize: number; pageToken: string }, ListSettlementsResponse>(admin.listSettlements.bind(admin), { pageSize: 10, pageToken: "" });
      if (page.settlements[0]?.id !== settlementId) throw new Error("ListSettlements did not list the settlement");
    };
    // Warm-up: JIT and connection.
    await closedLoop(Math.min(2000, calls), concurrency, noop);
    await closedLoop(Math.min(2000, calls), concurrency, getBalance);

    const perRound = Math.max(1, Math.ceil(calls / rounds));
    const noopRuns: Run[] = [];
    const getRuns: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      progress(`getbalance: round ${round + 1}/${rounds}: no-op and GetBalance, ${perRound} calls each, concurrency ${concurrency}`);
      if (round % 2 === 0) {
        noopRuns.push(await closedLoop(perRound, concurrency, noop));
        getRuns.push(await closedLoop(perRound, concurrency, getBalance));
      } else {
        getRuns.push(await closedLoop(perRound, concurrency, getBalance));
        noopRuns.push(await closedLoop(perRound, concurrency, noop));
      }
    }
    progress(`getbalance: Admin ListSettlements, ${listCalls} calls one at a time, through the ${delayMs} ms delay and without it`);
    await closedLoop(Math.min(4, listCalls), 1, list); // warm-up: the pool's connections may have idled out
    const listDelayed = await closedLoop(listCalls, 1, list);
    await proxy.setDelay(0);
    await new Promise((r) => setTimeout(r, Math.max(200, 4 * delayMs)));
    const listDirect = await closedLoop(listCalls, 1, list);
    return {
      noop: merge(noopRuns),
      getBalance: merge(getRuns),
      listSettlements: merge([listDelayed]),
      listSettlementsNoDelay: merge([listDirect]),
      settlementId: settlementId.toString(),
      settleSeconds,
      delayMs,
      concurrency,
      rounds,
    };
  } finally {
    balances?.close();
    await node?.stop();
    await nats?.stop();
    await proxy.stop();
    await postgres?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function getBalanceTable(result: GetBalanceBenchResult): string {
  const row = (name: string, s: LatencySummary, vsNoop: string): string[] => [name, String(s.count), fmt(s.perSecond, 0), fmt(s.p50Ms, 3), fmt(s.p99Ms, 3), fmt(s.maxMs, 3), vsNoop];
  const ratio = result.noop.p99Ms > 0 ? result.getBalance.p99Ms / result.noop.p99Ms : 0;
  return table(
    [`node with settlement, Postgres ${result.delayMs} ms one way away`, "calls", "ops/s", "p50 ms", "p99 ms", "max ms", "p99 vs no-op"],
    [
      row(`no-op unary RPC (concurrency ${result.concurrency})`, result.noop, "1.00x"),
      row(`GetBalance, settled totals from memory (concurrency ${result.concurrency})`, result.getBalance, `${fmt(ratio, 2)}x`),
      row(`Admin ListSettlements through the ${result.delayMs} ms delay (one at a time)`, result.listSettlements, "-"),
      row("Admin ListSettlements, delay switched off (one at a time)", result.listSettlementsNoDelay, "-"),
    ],
  );
}

if (require.main === module) {
  const [calls, concurrency, delayMs, listCalls, rounds] = process.argv.slice(2).map(Number);
  runGetBalanceBench({ calls: calls || 20_000, concurrency: concurrency || 32, delayMs: delayMs || 50, listCalls: listCalls || 50, rounds: rounds || 2 }).then(
    (result) => console.log(getBalanceTable(result)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
