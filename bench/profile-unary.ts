// Where a node spends its CPU on one kind of unary call: starts nats-server and
// a node with --cpu-prof (the same setup as unary-bench), runs a closed loop of
// one call kind, and reads the node's V8 profile back, keeping only the
// samples taken while the measured loop ran. Prints CPU per call by area and
// the functions with the most self time, so the no-op and Debit (or
// GetBalance) can be set side by side from two runs.
// Run: node dist/bench/profile-unary.js <noop|debit|hot|getbalance> [calls] [concurrency]

import type { ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../src/devcluster/free-port";
import { NatsProcess } from "../src/devcluster/nats-process";
import { ensureNatsSecurity } from "../src/security/nats-credentials";
import { NodeProcess } from "../src/devcluster/node-process";
import { LocalGrpcPki } from "../src/devcluster/local-grpc-pki";
import { BalancesClient, type DebitRequest } from "../src/generated/tally/v1/balances";
import { tlsNameOptions } from "../src/cli/node-clients";
import { closedLoop } from "./load";
import { noopClientBeside } from "./noop-client";
import { progress } from "./stats";

const KINDS = ["noop", "debit", "hot", "getbalance"] as const;
type Kind = (typeof KINDS)[number];
const ACCOUNTS = 10_000;

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Areas, first match wins, looked for anywhere on a sample's stack (the commit's parts before the libraries they call). */
const STACK_AREAS: ReadonlyArray<readonly [string, RegExp]> = [
  ["snapshots (periodic, background)", /snapshot|objectstore/],
  ["group commit: encodeDelta", /\bencodeDelta\b/],
  ["group commit: JetStream publish", /jetstream-log\.js|jsclient\.js/],
  ["group commit: batching, writer", /replica-writer\.js|node-parts\.js/],
  ["metrics (prom-client)", /prom-client|metrics-server/],
];
/** Areas of the innermost frame that names one (a library's frames before Tally's that call them). */
const LEAF_AREAS: ReadonlyArray<readonly [string, RegExp]> = [
  ["protobuf encode/decode", /generated\/tally|binary-encoding/],
  ["NATS client (acks, TLS socket)", /node_modules\/nats\//],
  ["authorization interceptor", /authorization-interceptor|principal\.js/],
  ["Tally core (decide, request log)", /dist\/src\/core\//],
  ["Tally node", /dist\/src\/node\//],
  ["Tally gRPC handlers, validation, wire", /dist\/src\/server\//],
  ["grpc-js", /@grpc\/grpc-js/],
  ["Node http2", /internal\/http2/],
];

function frameText(frame: CallFrame): string {
  return `${frame.url} ${frame.functionName}`;
}

function frameName(frame: CallFrame): string {
  const url = frame.url.replace(/.*\/(node_modules|dist)\//, "");
  return `${frame.functionName === "" ? "(anonymous)" : frame.functionName} ${url}:${frame.lineNumber}`;
}

/** CPU microseconds per area and per self-time function, over samples inside [fromUs, toUs]. */
function breakdown(profile: CpuProfile, fromUs: number, toUs: number): { areas: Map<string, number>; functions: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  let time = profile.startTime;
  profile.samples.forEach((id, i) => {
    time += profile.timeDeltas[i] ?? 0;
    if (time < fromUs || time > toUs) return;
    const spent = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byId.get(id);
    if (leaf === undefined) return;
    const stack: CallFrame[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at);
      if (node !== undefined) stack.push(node.callFrame);
    }
    let area: string | undefined;
    const special = leaf.callFrame.functionName;
    if (special === "(idle)" || special === "(garbage collector)" || special === "(program)") area = special;
    area ??= STACK_AREAS.find(([, pattern]) => stack.some((f) => pattern.test(frameText(f))))?.[0];
    if (area === undefined) {
      for (const frame of stack) {
        area = LEAF_AREAS.find(([, pattern]) => pattern.test(frameText(frame)))?.[0];
        if (area !== undefined) break;
      }
    }
    area ??= "other (Node internals, timers, streams)";
    areas.set(area, (areas.get(area) ?? 0) + spent);
    if (special !== "(idle)") functions.set(frameName(leaf.callFrame), (functions.get(frameName(leaf.callFrame)) ?? 0) + spent);
  });
  return { areas, functions };
}

function unary<Req, Res>(fn: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => fn(request, (error, response) => (error ? reject(error) : resolve(response))));
}

export async function profileUnary(kind: Kind, calls: number, concurrency: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "tally-profile-"));
  const profileDir = join(dir, "profile");
  const [client, monitor, grpcPort, metricsPort] = await freePorts(4);
  const nats = new NatsProcess({ config: "standalone.conf", serverName: "bench", clientPort: client!, monitorPort: monitor!, dataDir: join(dir, "nats"), security: ensureNatsSecurity(join(dir, "tls")) });
  await nats.start();
  const pki = LocalGrpcPki.ensure(join(dir, "tls"));
  const node = new NodeProcess({
    region: "east",
    regions: ["east"],
    natsUrl: nats.url,
    natsSecurity: nats.clientSecurity("east"),
    grpcPort: grpcPort!,
    metricsPort: metricsPort!,
    logDir: dir,
    extraArgs: ["--noop-service", ...pki.serverArgs()],
    nodeFlags: ["--cpu-prof", "--cpu-prof-dir", profileDir],
  });
  try {
    await node.start();
    const balances = new BalancesClient(node.grpcAddress, pki.clientCredentials("all"), tlsNameOptions(node.grpcAddress));
    const noop = noopClientBeside(node.grpcAddress, balances);
    let window: { fromUs: number; toUs: number; seconds: number };
    try {
      progress(`profile: granting ${ACCOUNTS} accounts`);
      for (let start = 0; start < ACCOUNTS; start += 1000) {
        await Promise.all(
          Array.from({ length: 1000 }, (_, k) => unary(balances.grant.bind(balances), { accountId: `acct-${start + k}`, amount: 1n << 60n, requestId: `grant-${start + k}` })),
        );
      }
      await unary(balances.grant.bind(balances), { accountId: "hot", amount: 1n << 60n, requestId: "grant-hot" });
      let id = 0;
      const request = (account: string): DebitRequest => ({ accountId: account, amount: 1n, requestId: `r-${id++}`, maxWaitMs: 0 });
      const call = (): Promise<unknown> => {
        switch (kind) {
          case "noop":
            return unary(noop.debit.bind(noop), request("noop"));
          case "debit":
            return unary(balances.debit.bind(balances), request(`acct-${id % ACCOUNTS}`));
          case "hot":
            return unary(balances.debit.bind(balances), request("hot"));
          case "getbalance":
            return unary(balances.getBalance.bind(balances), { accountId: `acct-${id++ % ACCOUNTS}` });
        }
      };
      await closedLoop(2000, concurrency, call);
      progress(`profile: ${calls} ${kind} calls, concurrency ${concurrency}`);
      // process.hrtime and the profile's timestamps are the same monotonic clock (microseconds there).
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const run = await closedLoop(calls, concurrency, call);
      window = { fromUs, toUs: Number(process.hrtime.bigint() / 1000n), seconds: run.seconds };
    } finally {
      balances.close();
    }
    await node.stop(); // the profile is written as the node exits
    const file = readdirSync(profileDir).find((f) => f.endsWith(".cpuprofile"));
    if (file === undefined) throw new Error(`the node wrote no profile in ${profileDir}`);
    const profile = JSON.parse(readFileSync(join(profileDir, file), "utf8")) as CpuProfile;
    const { areas, functions } = breakdown(profile, window.fromUs, window.toUs);
    const perCall = (us: number): string => (us / calls).toFixed(1);
    const busy = [...areas].filter(([name]) => name !== "(idle)").reduce((sum, [, us]) => sum + us, 0);
    const lines = [
      `${kind}: ${calls} calls at concurrency ${concurrency}, ${(calls / window.seconds).toFixed(0)} calls/s; node CPU while they ran, per call:`,
      "",
      "| area | node CPU us/call | share of busy |",
      "|---|---|---|",
      ...[...areas]
        .filter(([name]) => name !== "(idle)")
        .sort((a, b) => b[1] - a[1])
        .map(([name, us]) => `| ${name} | ${perCall(us)} | ${((100 * us) / busy).toFixed(1)}% |`),
      `| busy in all | ${perCall(busy)} | 100% |`,
      "",
      "| function (self time) | node CPU us/call |",
      "|---|---|",
      ...[...functions]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 25)
        .map(([name, us]) => `| ${name} | ${perCall(us)} |`),
    ];
    return lines.join("\n");
  } finally {
    await node.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const kind = process.argv[2] ?? "debit";
  const calls = Number(process.argv[3] ?? "20000");
  const concurrency = Number(process.argv[4] ?? "32");
  if (!(KINDS as readonly string[]).includes(kind)) {
    process.stderr.write(`usage: node dist/bench/profile-unary.js <${KINDS.join("|")}> [calls] [concurrency]\n`);
    process.exitCode = 2;
  } else {
    profileUnary(kind as Kind, calls, concurrency).then(
      (text) => process.stdout.write(`${text}\n`),
      (error: unknown) => {
        process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
        process.exitCode = 1;
      },
    );
  }
}
