// Debit and DebitBatch against the no-op baseline on the same node process and
// the same client, interleaved in rounds so drift hits both alike.

import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../src/devcluster/free-port";
import { NatsProcess } from "../src/devcluster/nats-process";
import { NodeProcess } from "../src/devcluster/node-process";
import { BalancesClient, type DebitBatchRequest, type DebitBatchResponse, type DebitRequest, type DebitResponse } from "../src/generated/tally/v1/balances";
import { NoopService } from "../src/server/noop-service";
import { closedLoop } from "./load";
import { progress, summarize, type LatencySummary } from "./stats";

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
}

type NoopClient = Client & {
  debit(request: DebitRequest, callback: (error: ServiceError | null, response: DebitResponse) => void): void;
  debitBatch(request: DebitBatchRequest, callback: (error: ServiceError | null, response: DebitBatchResponse) => void): void;
};

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
  const nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: client!, monitorPort: monitor!, dataDir: join(dir, "nats") });
  await nats.start();
  const node = new NodeProcess({
    region: "east",
    regions: ["east"],
    natsUrl: nats.url,
    grpcPort: grpcPort!,
    metricsPort: metricsPort!,
    logDir: dir,
    extraArgs: ["--noop-service"],
  });
  await node.start();
  const balances = new BalancesClient(node.grpcAddress, credentials.createInsecure());
  const Noop = makeGenericClientConstructor(NoopService, "Noop");
  // Same channel for both, so connection effects are shared.
  const noop = new Noop(node.grpcAddress, credentials.createInsecure(), { channelOverride: balances.getChannel() }) as unknown as NoopClient;
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
    // Warm-up: JIT and connection.
    await closedLoop(2000, options.concurrency, (i) => unary(noop.debit.bind(noop), request(i, "warm")));
    await closedLoop(2000, options.concurrency, () => unary(balances.debit.bind(balances), request(id++, "hot")));
    for (let round = 0; round < options.rounds; round++) {
      progress(`round ${round + 1}/${options.rounds}: unary no-op / Debit (spread) / Debit (hot), ${options.calls} calls each`);
      parts.noop.push(await closedLoop(options.calls, options.concurrency, (i) => unary(noop.debit.bind(noop), request(i, "noop"))));
      parts.debit.push(
        await closedLoop(options.calls, options.concurrency, () => {
          const n = id++;
          return unary(balances.debit.bind(balances), request(n, `acct-${n % options.accounts}`));
        }),
      );
      parts.hot.push(await closedLoop(options.calls, options.concurrency, () => unary(balances.debit.bind(balances), request(id++, "hot"))));
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
    };
  } finally {
    balances.close();
    await node.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
