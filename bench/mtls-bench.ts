// Unary Debit over mutual TLS (client certificate, role check in the
// interceptor) against the same over plaintext (`--insecure`), in one run: two
// node processes on one nats-server, measured in interleaved rounds so drift
// hits both alike. Standalone: `node dist/bench/mtls-bench.js [CALLS] [ROUNDS]`.

import type { ServiceError } from "@grpc/grpc-js";
import { credentials } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../src/devcluster/free-port";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { NatsProcess } from "../src/devcluster/nats-process";
import { NodeProcess } from "../src/devcluster/node-process";
import { BalancesClient, type DebitRequest } from "../src/generated/tally/v1/balances";
import { closedLoop } from "./load";
import { fmt, progress, summarize, table, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface MtlsBenchResult {
  readonly mtls: LatencySummary;
  readonly plaintext: LatencySummary;
  /** mTLS throughput / plaintext throughput. */
  readonly throughputRatio: number;
  readonly calls: number;
  readonly rounds: number;
  readonly concurrency: number;
}

function debit(client: BalancesClient, request: DebitRequest): Promise<unknown> {
  return new Promise((resolve, reject) => client.debit(request, (error: ServiceError | null, response) => (error ? reject(error) : resolve(response))));
}

export async function runMtlsBench(options: { calls: number; rounds: number; concurrency: number; accounts: number }): Promise<MtlsBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-mtls-bench-"));
  const pki = LocalGrpcPki.ensure(join(dir, "tls"));
  const [natsPort, monitorPort, ...ports] = await freePorts(6);
  const nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: natsPort!, monitorPort: monitorPort!, dataDir: join(dir, "nats") });
  await nats.start();
  // Two single-region nodes with their own streams on one server: one secure, one --insecure.
  const node = (region: string, i: number, extraArgs: string[]): NodeProcess =>
    new NodeProcess({ region, regions: [region], natsUrl: nats.url, grpcPort: ports[i * 2]!, metricsPort: ports[i * 2 + 1]!, logDir: join(dir, region), extraArgs, env: { TALLY_LOG: "warn" } });
  const secure = node("east", 0, pki.serverArgs());
  const plain = node("west", 1, ["--insecure"]);
  const clients: BalancesClient[] = [];
  try {
    await Promise.all([secure.start(), plain.start()]);
    const sides = {
      mtls: new BalancesClient(secure.grpcAddress, pki.clientCredentials("spender"), tlsNameOptions(secure.grpcAddress)),
      plaintext: new BalancesClient(plain.grpcAddress, credentials.createInsecure()),
    };
    clients.push(sides.mtls, sides.plaintext);
    const granter = new BalancesClient(secure.grpcAddress, pki.clientCredentials("granter"), tlsNameOptions(secure.grpcAddress));
    clients.push(granter);
    progress(`mtls: granting ${options.accounts} accounts on both nodes`);
    const grant = (client: BalancesClient, k: number): Promise<unknown> =>
      new Promise((resolve, reject) => client.grant({ accountId: `acct-${k}`, amount: 1n << 60n, requestId: `grant-${k}` }, (e, r) => (e ? reject(e) : resolve(r))));
    for (let start = 0; start < options.accounts; start += 1000) {
      const batch = Array.from({ length: Math.min(1000, options.accounts - start) }, (_, j) => start + j);
      await Promise.all(batch.flatMap((k) => [grant(granter, k), grant(sides.plaintext, k)]));
    }
    let id = 0;
    const run = (client: BalancesClient, calls: number): Promise<{ latenciesNs: number[]; seconds: number }> =>
      closedLoop(calls, options.concurrency, () => {
        const n = id++;
        return debit(client, { accountId: `acct-${n % options.accounts}`, amount: 1n, requestId: `r-${n}`, maxWaitMs: 0 });
      });
    // Warm-up: JIT, connections and TLS sessions on both sides.
    await run(sides.mtls, 2_000);
    await run(sides.plaintext, 2_000);
    const parts = { mtls: [] as Array<{ latenciesNs: number[]; seconds: number }>, plaintext: [] as Array<{ latenciesNs: number[]; seconds: number }> };
    for (let round = 0; round < options.rounds; round++) {
      progress(`mtls: round ${round + 1}/${options.rounds}: ${options.calls} unary Debits over mTLS, then over plaintext`);
      // Alternate which side goes first, so neither always follows the other's compaction or GC.
      const order: Array<keyof typeof sides> = round % 2 === 0 ? ["mtls", "plaintext"] : ["plaintext", "mtls"];
      for (const side of order) parts[side].push(await run(sides[side], options.calls));
    }
    const merge = (runs: ReadonlyArray<{ latenciesNs: number[]; seconds: number }>): LatencySummary =>
      summarize(
        runs.flatMap((r) => r.latenciesNs),
        runs.reduce((s, r) => s + r.seconds, 0),
        runs.reduce((n, r) => n + r.latenciesNs.length, 0),
      );
    const mtls = merge(parts.mtls);
    const plaintext = merge(parts.plaintext);
    return { mtls, plaintext, throughputRatio: mtls.perSecond / plaintext.perSecond, calls: options.calls, rounds: options.rounds, concurrency: options.concurrency };
  } finally {
    for (const c of clients) c.close();
    await Promise.all([secure.stop(), plain.stop()]);
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function mtlsTable(r: MtlsBenchResult): string {
  const row = (name: string, s: LatencySummary): string[] => [name, fmt(s.perSecond, 0), fmt(s.p50Ms, 3), fmt(s.p99Ms, 3)];
  return (
    table(["unary Debit over", "ops/s", "p50 ms", "p99 ms"], [row("plaintext (--insecure)", r.plaintext), row("mutual TLS, spender certificate, role check", r.mtls)]) +
    `\n\nmTLS / plaintext throughput: ${fmt(r.throughputRatio, 2)}x (${r.rounds} interleaved round(s) of ${r.calls} calls each, concurrency ${r.concurrency}).`
  );
}

if (require.main === module) {
  const calls = Number(process.argv[2] ?? "20000");
  const rounds = Number(process.argv[3] ?? "3");
  runMtlsBench({ calls, rounds, concurrency: 32, accounts: 10_000 })
    .then((r) => process.stdout.write(`${mtlsTable(r)}\n`))
    .catch((error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    });
}
