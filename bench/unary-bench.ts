// Debit and DebitBatch against the no-op baseline on the same node process and
// the same client, interleaved in rounds so drift hits both alike.

import type { ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../src/devcluster/free-port";
import { NatsProcess } from "../src/devcluster/nats-process";
import { ensureNatsSecurity } from "../src/security/nats-credentials";
import { NodeProcess } from "../src/devcluster/node-process";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { BalancesClient, type DebitBatchRequest, type DebitRequest } from "../src/generated/tally/v1/balances";
import { cpuShares } from "./cpu";
import { closedLoop } from "./load";
import { noopClientBeside } from "./noop-client";
import { progress, summarize, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface UnaryBenchOptions {
  readonly calls: number;
  readonly concurrency: number;
  readonly rounds: number;
  readonly accounts: number;
  readonly batchSize: number;
  readonly batches: number;
}

export interface UnaryBenchResult {
  readonly noop: LatencySummary;
  readonly debit: LatencySummary;
  readonly debitHot: LatencySummary;
  readonly noopBatch: LatencySummary;
  readonly debitBatch: LatencySummary;
  readonly batchSize: number;
  /** Busy share of one core (%) of the client (this process), the node and nats-server, per unary call kind. */
  readonly cpu: Readonly<Record<"noop" | "debit" | "hot", Readonly<Record<string, number>>>>;
  /** Group commits during the unary Debit runs: publishes, debits they carried, mean publish-to-ack. */
  readonly commits: { readonly publishes: number; readonly debits: number; readonly meanAckMs: number };
}


function unary<Req, Res>(fn: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(request, (error, response) => (error ? reject(error) : resolve(response))));
}

function merge(parts: Array<{ latenciesNs: number[]; seconds: number }>, opsPerCall = 1): LatencySummary {
  const all = parts.flatMap((p) => p.latenciesNs);
  const seconds = parts.reduce((s, p) => s + p.seconds, 0);
  return summarize(all, seconds, all.length * opsPerCall);
}

export async function runUnaryBench(options: UnaryBenchOptions): Promise<UnaryBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-bench-"));
  const [client, monitor, grpcPort, metricsPort] = await freePorts(4);
  const nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: client!, monitorPort: monitor!, dataDir: join(dir, "nats"), security: ensureNatsSecurity(join(dir, "tls")) });
  await nats.start();
  const pki = LocalGrpcPki.ensure(join(dir, "tls"));
  const node = new NodeProcess({
    region: "east",
    regions: ["east"],
    natsUrl: nats.url, natsSecurity: nats.clientSecurity("east"),
    grpcPort: grpcPort!,
    metricsPort: metricsPort!,
    logDir: dir,
    extraArgs: ["--noop-service", ...pki.serverArgs()],
  });
  await node.start();
  const balances = new BalancesClient(node.grpcAddress, pki.clientCredentials("all"), tlsNameOptions(node.grpcAddress));
  // Same channel for both, so connection effects are shared.
  const noop = noopClientBeside(node.grpcAddress, balances);
  try {
    progress(`granting ${options.accounts} accounts`);
    for (let start = 0; start < options.accounts; start += 1000) {
      await Promise.all(
        Array.from({ length: Math.min(1000, options.accounts - start) }, (_, k) =>
          unary(balances.grant.bind(balances), { accountId: `acct-${start + k}`, amount: 1n << 60n, requestId: `grant-${start + k}` }),
        ),
      );
    }
    await unary(balances.grant.bind(balances), { accountId: "hot", amount: 1n << 60n, requestId: "grant-hot" });
    const request = (i: number, account: string): DebitRequest => ({ accountId: account, amount: 1n, requestId: `r-${i}`, maxWaitMs: 0 });
    const parts = { noop: [] as Array<{ latenciesNs: number[]; seconds: number }>, debit: [] as Array<{ latenciesNs: number[]; seconds: number }>, hot: [] as Array<{ latenciesNs: number[]; seconds: number }>, noopBatch: [] as Array<{ latenciesNs: number[]; seconds: number }>, debitBatch: [] as Array<{ latenciesNs: number[]; seconds: number }> };
    let id = 0;
    const pids = { node: node.pid, "nats-server": nats.pid };
    const cpu = { noop: new CpuAverage(), debit: new CpuAverage(), hot: new CpuAverage() };
    const commits = { publishes: 0, debits: 0, ackSeconds: 0 };
    const measure = async (
      kind: keyof typeof cpu,
      run: () => Promise<{ latenciesNs: number[]; seconds: number }>,
    ): Promise<{ latenciesNs: number[]; seconds: number }> => {
      const before = kind === "noop" ? undefined : await commitTotals(node.metricsUrl);
      const { result, percent, seconds } = await cpuShares(pids, run);
      cpu[kind].add(percent, seconds);
      if (before !== undefined) {
        const after = await commitTotals(node.metricsUrl);
        commits.publishes += after.count - before.count;
        commits.ackSeconds += after.sumSeconds - before.sumSeconds;
        commits.debits += result.latenciesNs.length;
      }
      return result;
    };
    // Warm-up: JIT and connection.
    await closedLoop(2000, options.concurrency, (i) => unary(noop.debit.bind(noop), request(i, "warm")));
    await closedLoop(2000, options.concurrency, () => unary(balances.debit.bind(balances), request(id++, "hot")));
    for (let round = 0; round < options.rounds; round++) {
      progress(`round ${round + 1}/${options.rounds}: unary no-op / Debit (spread) / Debit (hot), ${options.calls} calls each`);
      parts.noop.push(await measure("noop", () => closedLoop(options.calls, options.concurrency, (i) => unary(noop.debit.bind(noop), request(i, "noop")))));
      parts.debit.push(
        await measure("debit", () =>
          closedLoop(options.calls, options.concurrency, () => {
            const n = id++;
            return unary(balances.debit.bind(balances), request(n, `acct-${n % options.accounts}`));
          }),
        ),
      );
      parts.hot.push(await measure("hot", () => closedLoop(options.calls, options.concurrency, () => unary(balances.debit.bind(balances), request(id++, "hot")))));
      progress(`round ${round + 1}/${options.rounds}: batch no-op / DebitBatch, ${options.batches} batches of ${options.batchSize}`);
      const batch = (): DebitBatchRequest => ({
        debits: Array.from({ length: options.batchSize }, () => {
          const n = id++;
          return request(n, `acct-${n % options.accounts}`);
        }),
      });
      parts.noopBatch.push(await closedLoop(options.batches, 4, () => unary(noop.debitBatch.bind(noop), batch())));
      parts.debitBatch.push(await closedLoop(options.batches, 4, () => unary(balances.debitBatch.bind(balances), batch())));
    }
    return {
      noop: merge(parts.noop),
      debit: merge(parts.debit),
      debitHot: merge(parts.hot),
      noopBatch: merge(parts.noopBatch, options.batchSize),
      debitBatch: merge(parts.debitBatch, options.batchSize),
      batchSize: options.batchSize,
      cpu: { noop: cpu.noop.percent(), debit: cpu.debit.percent(), hot: cpu.hot.percent() },
      commits: {
        publishes: commits.publishes,
        debits: commits.debits,
        meanAckMs: commits.publishes > 0 ? (commits.ackSeconds / commits.publishes) * 1000 : 0,
      },
    };
  } finally {
    balances.close();
    await node.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Time-weighted mean of per-run CPU shares. */
class CpuAverage {
  private readonly weighted = new Map<string, number>();
  private seconds = 0;

  add(percent: Readonly<Record<string, number>>, seconds: number): void {
    for (const [name, value] of Object.entries(percent)) this.weighted.set(name, (this.weighted.get(name) ?? 0) + value * seconds);
    this.seconds += seconds;
  }

  percent(): Record<string, number> {
    return Object.fromEntries([...this.weighted].map(([name, total]) => [name, this.seconds > 0 ? total / this.seconds : 0]));
  }
}

/** The node's group-commit histogram totals (count of publishes, sum of publish-to-ack seconds). */
async function commitTotals(metricsUrl: string): Promise<{ count: number; sumSeconds: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? "0");
  return { count: value("tally_commit_duration_seconds_count"), sumSeconds: value("tally_commit_duration_seconds_sum") };
}

/**
 * Where a unary call's time goes: CPU per call of each process (busy share
 * over the run divided by the rate), and the group commits behind the Debits.
 * At a fixed concurrency every Debit cohort also waits for one JetStream
 * round trip, which the no-op never does: compare it with the cohort's extra
 * time (concurrency x (1/Debit rate - 1/no-op rate)).
 */
function cpuLines(r: UnaryBenchResult): string[] {
  const perCall = (kind: "noop" | "debit" | "hot", s: LatencySummary): string => {
    const shares = r.cpu[kind];
    const us = (name: string): string => (((shares[name] ?? 0) / 100 / s.perSecond) * 1e6).toFixed(0);
    return `| ${kind === "noop" ? "no-op" : kind === "debit" ? "Debit (spread)" : "Debit (hot)"} | ${us("client")} | ${us("node")} | ${us("nats-server")} |`;
  };
  const c = r.commits;
  const perPublish = c.publishes > 0 ? c.debits / c.publishes : 0;
  const cohortExtraMs = perPublish * (1000 / r.debit.perSecond - 1000 / r.noop.perSecond);
  return [
    "| unary call | client CPU us/call | node CPU us/call | nats-server CPU us/call |",
    "|---|---|---|---|",
    perCall("noop", r.noop),
    perCall("debit", r.debit),
    perCall("hot", r.debitHot),
    "",
    `Unary Debit runs: ${c.publishes} group commits carried ${c.debits} debits (${perPublish.toFixed(1)} per publish); ` +
      `mean publish-to-ack as the node saw it ${c.meanAckMs.toFixed(2)} ms; ` +
      `a cohort of ${perPublish.toFixed(1)} spread Debits took ${cohortExtraMs.toFixed(2)} ms longer than as many no-op calls.`,
  ];
}

if (require.main === module) {
  // node dist/bench/unary-bench.js [calls] [rounds]: the single-node section of `npm run bench` alone.
  const calls = Number(process.argv[2] ?? "20000");
  const rounds = Number(process.argv[3] ?? "3");
  runUnaryBench({ calls, concurrency: 32, rounds, accounts: 10_000, batchSize: 1_000, batches: 100 })
    .then((r) => {
      const line = (name: string, s: LatencySummary, base: LatencySummary): string =>
        `| ${name} | ${s.perSecond.toFixed(0)} | ${s.p50Ms.toFixed(3)} | ${s.p99Ms.toFixed(3)} | ${(s.perSecond / base.perSecond).toFixed(2)} | ${(s.p99Ms / base.p99Ms).toFixed(2)} |`;
      process.stdout.write(
        [
          "| call | ops/s | p50 ms | p99 ms | throughput vs no-op | p99 vs no-op |",
          "|---|---|---|---|---|---|",
          line("no-op unary RPC", r.noop, r.noop),
          line("Debit, 10000 accounts", r.debit, r.noop),
          line("Debit, one hot account", r.debitHot, r.noop),
          line(`no-op batch RPC (${r.batchSize}/call; ops = items)`, r.noopBatch, r.noopBatch),
          line(`DebitBatch (${r.batchSize}/call; ops = debits)`, r.debitBatch, r.noopBatch),
          "",
          ...cpuLines(r),
        ].join("\n") + "\n",
      );
    })
    .catch((error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    });
}
