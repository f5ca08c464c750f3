// Debit with and without open WatchBalance streams on the debited accounts,
// side by side on the same node and client, interleaved in rounds. The
// watchers live in a separate process (bench/watch-clients.ts); the node's
// event-loop lag and RSS come from its /metrics.
// Standalone: node dist/bench/watch-bench.js [--quick] [--accounts N] (1,000 watchers spread over N accounts, default 100)

import { spawn, type ChildProcess } from "node:child_process";
import type { ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { freePorts } from "../src/devcluster/free-port";
import { NatsProcess } from "../src/devcluster/nats-process";
import { ensureNatsSecurity } from "../src/security/nats-credentials";
import { NodeProcess } from "../src/devcluster/node-process";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { BalancesClient, type DebitRequest } from "../src/generated/tally/v1/balances";
import { closedLoop } from "./load";
import { fmt, progress, summarize, table, type LatencySummary } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

export interface WatchBenchOptions {
  readonly calls: number;
  readonly concurrency: number;
  readonly rounds: number;
  readonly watchers: number;
  /** Debited (and watched) accounts; watchers are spread evenly over them. */
  readonly accounts: number;
}

/** Node-side figures over one phase, from /metrics. */
export interface NodeSide {
  /** Largest event-loop delay seen during the phase, ms. */
  readonly loopLagMaxMs: number;
  /** p99 event-loop delay during the phase, ms (worst round). */
  readonly loopLagP99Ms: number;
  /** Resident set size at the end of the phase, MiB (largest round). */
  readonly rssMiB: number;
}

export interface WatchBenchResult {
  readonly watchers: number;
  readonly accounts: number;
  readonly concurrency: number;
  readonly without: LatencySummary;
  readonly with: LatencySummary;
  readonly nodeWithout: NodeSide;
  readonly nodeWith: NodeSide;
  /** Events the watchers received during the "with" phases (after their first), and the changes those events stood for. */
  readonly events: number;
  readonly changes: number;
  readonly p99Ratio: number;
}

function unary<Req, Res>(fn: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(request, (error, response) => (error ? reject(error) : resolve(response))));
}

async function scrape(metricsUrl: string): Promise<{ lagMaxMs: number; lagP99Ms: number; rssMiB: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? "0");
  return {
    lagMaxMs: value("nodejs_eventloop_lag_max_seconds") * 1000,
    lagP99Ms: value("nodejs_eventloop_lag_p99_seconds") * 1000,
    rssMiB: value("process_resident_memory_bytes") / 1024 / 1024,
  };
}

/** The watchers' process, once every stream has had its first event. */
async function startWatchers(address: string, tlsDir: string, options: WatchBenchOptions): Promise<{ child: ChildProcess; stop: () => Promise<{ events: number; changes: number }> }> {
  const child = spawn(process.execPath, [resolve(__dirname, "watch-clients.js"), address, String(options.watchers), String(options.accounts), "10", tlsDir], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const next = (): Promise<string> =>
    new Promise((resolveLine, reject) => {
      const onExit = (): void => reject(new Error("watch clients exited early"));
      child.once("exit", onExit);
      lines.once("line", (line) => {
        child.off("exit", onExit);
        resolveLine(line);
      });
    });
  const ready = JSON.parse(await next()) as { ready: number };
  if (ready.ready !== options.watchers) throw new Error(`only ${ready.ready} watchers started`);
  return {
    child,
    stop: async () => {
      const report = next();
      child.stdin.write("stop\n");
      const parsed = JSON.parse(await report) as { events: number; changes: number };
      if (child.exitCode === null) await new Promise((r) => child.once("exit", r));
      return parsed;
    },
  };
}

export async function runWatchBench(options: WatchBenchOptions): Promise<WatchBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-watch-bench-"));
  const [client, monitor, grpcPort, metricsPort] = await freePorts(4);
  const nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: client!, monitorPort: monitor!, dataDir: join(dir, "nats"), security: ensureNatsSecurity(join(dir, "tls")) });
  await nats.start();
  const pki = LocalGrpcPki.ensure(join(dir, "tls"));
  const node = new NodeProcess({ region: "east", regions: ["east"], natsUrl: nats.url, natsSecurity: nats.clientSecurity("east"), grpcPort: grpcPort!, metricsPort: metricsPort!, logDir: dir, extraArgs: pki.serverArgs() });
  await node.start();
  const balances = new BalancesClient(node.grpcAddress, pki.clientCredentials("all"), tlsNameOptions(node.grpcAddress));
  try {
    for (let k = 0; k < options.accounts; k++) {
      await unary(balances.grant.bind(balances), { accountId: `watched-${k}`, amount: 1n << 60n, requestId: `grant-${k}` });
    }
    let id = 0;
    const request = (): DebitRequest => {
      const n = id++;
      return { accountId: `watched-${n % options.accounts}`, amount: 1n, requestId: `r-${n}`, maxWaitMs: 0 };
    };
    const debits = (): Promise<{ latenciesNs: number[]; seconds: number }> => closedLoop(options.calls, options.concurrency, () => unary(balances.debit.bind(balances), request()));
    const phases = { without: [] as Array<{ latenciesNs: number[]; seconds: number }>, with: [] as Array<{ latenciesNs: number[]; seconds: number }> };
    const side = { without: { loopLagMaxMs: 0, loopLagP99Ms: 0, rssMiB: 0 }, with: { loopLagMaxMs: 0, loopLagP99Ms: 0, rssMiB: 0 } };
    const measured = async (kind: "without" | "with"): Promise<void> => {
      await scrape(node.metricsUrl); // resets the node's event-loop delay histogram
      phases[kind].push(await debits());
      const after = await scrape(node.metricsUrl);
      const s = side[kind];
      s.loopLagMaxMs = Math.max(s.loopLagMaxMs, after.lagMaxMs);
      s.loopLagP99Ms = Math.max(s.loopLagP99Ms, after.lagP99Ms);
      s.rssMiB = Math.max(s.rssMiB, after.rssMiB);
    };
    let events = 0;
    let changes = 0;
    // Warm-up: JIT, connection, and the watch path once.
    await closedLoop(2_000, options.concurrency, () => unary(balances.debit.bind(balances), request()));
    const warm = await startWatchers(node.grpcAddress, pki.dir, options);
    await closedLoop(2_000, options.concurrency, () => unary(balances.debit.bind(balances), request()));
    await warm.stop();
    for (let round = 0; round < options.rounds; round++) {
      progress(`round ${round + 1}/${options.rounds}: Debit without watchers, ${options.calls} calls`);
      await measured("without");
      progress(`round ${round + 1}/${options.rounds}: Debit with ${options.watchers} watchers on the ${options.accounts} debited accounts, ${options.calls} calls`);
      const watchers = await startWatchers(node.grpcAddress, pki.dir, options);
      await measured("with");
      const report = await watchers.stop();
      events += report.events;
      changes += report.changes;
    }
    const merge = (parts: Array<{ latenciesNs: number[]; seconds: number }>): LatencySummary =>
      summarize(
        parts.flatMap((p) => p.latenciesNs),
        parts.reduce((s, p) => s + p.seconds, 0),
      );
    const without = merge(phases.without);
    const withWatchers = merge(phases.with);
    return {
      watchers: options.watchers,
      accounts: options.accounts,
      concurrency: options.concurrency,
      without,
      with: withWatchers,
      nodeWithout: side.without,
      nodeWith: side.with,
      events,
      changes,
      p99Ratio: withWatchers.p99Ms / without.p99Ms,
    };
  } finally {
    balances.close();
    await node.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The bench's table and notes, as printed by bench/run.ts and the standalone run. */
export function watchBenchReport(r: WatchBenchResult, calls: number): string {
  const row = (name: string, s: LatencySummary, n: NodeSide, ratio: string): string[] => [
    name,
    fmt(s.perSecond, 0),
    fmt(s.p50Ms, 3),
    fmt(s.p99Ms, 3),
    ratio,
    fmt(n.loopLagMaxMs, 1),
    fmt(n.loopLagP99Ms, 1),
    fmt(n.rssMiB, 0),
  ];
  const debits = r.with.count;
  return (
    table(
      ["Debit", "ops/s", "p50 ms", "p99 ms", "p99 vs without", "node loop lag max ms", "node loop lag p99 ms", "node RSS MiB"],
      [
        row("without watchers", r.without, r.nodeWithout, "1.00"),
        row(`with ${r.watchers} watchers (${r.watchers / r.accounts} on each debited account)`, r.with, r.nodeWith, fmt(r.p99Ratio, 2)),
      ],
    ) +
    `\n\n${debits.toLocaleString("en-US")} debits (${calls.toLocaleString("en-US")} per round) over ${r.accounts} accounts at concurrency ${r.concurrency} while watched; ` +
    `the watchers received ${r.events.toLocaleString("en-US")} events standing for ${r.changes.toLocaleString("en-US")} changes ` +
    `(${fmt(r.events > 0 ? r.changes / r.events : 0, 2)} changes per event: changes to an account within one tick reach each watcher as one event). ` +
    "The watchers run in a separate process on the same 2 cores, so their decoding competes with the node and the debit client for CPU. " +
    "Event-loop lag and RSS are the node's own (prom-client default metrics), the lag histogram reset at the start of each phase."
  );
}

if (require.main === module) {
  const quick = process.argv.includes("--quick");
  const calls = quick ? 3_000 : 20_000;
  const accountsAt = process.argv.indexOf("--accounts");
  const accounts = accountsAt > 0 ? Number(process.argv[accountsAt + 1]) : 100;
  runWatchBench({ calls, concurrency: 32, rounds: quick ? 1 : 3, watchers: 1_000, accounts }).then(
    (r) => process.stdout.write(`${watchBenchReport(r, calls)}\n`),
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
