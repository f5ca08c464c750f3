// Hardening of one region's node against real nats-server processes:
// idempotency inside one event-loop tick, a request log flooded under a small
// cap, a second writer process fencing the first, and a region list whose
// order differs from the one the streams were written with.

import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { expect } from "chai";
import { status, type ServiceError } from "@grpc/grpc-js";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { freePorts } from "../../src/devcluster/free-port";
import { CLI_ENTRY, NodeProcess } from "../../src/devcluster/node-process";
import type { NatsProcess } from "../../src/devcluster/nats-process";
import { DebitOutcome as CoreOutcome } from "../../src/core/replica-state";
import { DebitOutcome, type DebitResponse } from "../../src/generated/tally/v1/balances";
import { jsonLogger } from "../../src/node/logger";
import { clients, failure, unary, type Clients, testGrpcSecurity, testPki } from "../support/grpc-clients";
import { startStandaloneNats, tempDir, useStandaloneNats, natsAccess } from "../support/nats";

const quiet = jsonLogger("east", "error");

/** Waits until `check` is true, polling; fails with `what` after `timeoutMs`. */
async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("hardening - idempotency and request log on one node", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();

  describe("hardening - idempotency inside one tick", () => {
    let running: RunningNode;
    before(async () => {
      running = await runNode({ region: "east", regions: ["east"], ...natsAccess(nats(), "east"), grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(), logger: quiet });
    });
    after(async () => {
      await running.stop();
    });

    it("idempotency - two debits with one request id fired in the same tick charge once, one replayed", async () => {
      const node = running.node;
      await node.grant("tick-1", 100n, "tick-1-g");
      const item = { accountId: "tick-1", amount: 7n, requestId: "tick-1-d" };
      // No await between the calls: both are admitted before either commits.
      const first = node.debit(item, 0);
      const second = node.debit(item, 0);
      const answers = await Promise.all([first, second]);
      expect(answers.map((a) => a.replayed).sort()).to.deep.equal([false, true]);
      expect(answers.every((a) => a.answer.outcome === CoreOutcome.Approved)).to.equal(true);
      expect(answers[0].answer.balance).to.equal(93n);
      expect(answers[1].answer.balance).to.equal(93n);
      expect(node.state.balance("tick-1")).to.equal(93n);
      const retry = await node.debit(item, 0);
      expect(retry.replayed).to.equal(true);
      expect(node.state.balance("tick-1")).to.equal(93n);
    });

    it("idempotency - a DebitBatch with duplicate ids and a unary call with the same id in the same tick charge each id once", async () => {
      const node = running.node;
      await node.grant("tick-2", 1_000n, "tick-2-g");
      const a = { accountId: "tick-2", amount: 10n, requestId: "tick-2-a" };
      const b = { accountId: "tick-2", amount: 20n, requestId: "tick-2-b" };
      const batch = node.debitBatch([a, b, a, a, b]);
      const unaryA = node.debit(a, 0);
      const unaryB = node.debit(b, 0);
      const [results, ua, ub] = await Promise.all([batch, unaryA, unaryB]);
      expect(results.map((r) => r.replayed)).to.deep.equal([false, false, true, true, true]);
      expect(results.every((r) => r.answer.outcome === CoreOutcome.Approved)).to.equal(true);
      expect(ua.replayed).to.equal(true);
      expect(ub.replayed).to.equal(true);
      expect(ua.answer.balance).to.equal(results[0]!.answer.balance);
      expect(node.state.balance("tick-2")).to.equal(970n);
      // The unary first and the batch second, same tick: the batch joins it.
      const c = { accountId: "tick-2", amount: 5n, requestId: "tick-2-c" };
      const unaryC = node.debit(c, 0);
      const batchC = node.debitBatch([c, c]);
      const [uc, bc] = await Promise.all([unaryC, batchC]);
      expect(uc.replayed).to.equal(false);
      expect(bc.map((r) => r.replayed)).to.deep.equal([true, true]);
      expect(node.state.balance("tick-2")).to.equal(965n);
    });
  });

  describe("hardening - a flooded request log with a small cap", () => {
    const CAP = 50;
    let running: RunningNode;
    let c: Clients;
    before(async () => {
      running = await runNode({
        region: "east",
        regions: ["east"],
        ...natsAccess(nats(), "east"),
        grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
        logger: quiet,
        config: { maxRememberedRequests: CAP, snapshotIntervalMs: 0 },
      });
      c = clients(`127.0.0.1:${running.grpcPort}`);
    });
    after(async () => {
      c.close();
      await running.stop();
    });

    const debit = (accountId: string, amount: bigint, requestId: string): Promise<DebitResponse> =>
      unary(c.balances, c.balances.debit, { accountId, amount, requestId, maxWaitMs: 0 });
    const balance = async (accountId: string): Promise<bigint> => (await unary(c.balances, c.balances.getBalance, { accountId })).balance;

    it("request log - a flood of refusals never evicts an approved id; a log full of approvals refuses new ids with RESOURCE_EXHAUSTED and changes nothing", async () => {
      await unary(c.balances, c.balances.grant, { accountId: "flood-x", amount: 1_000n, requestId: "flood-g" });
      const x = await debit("flood-x", 11n, "flood-x-1");
      expect(x.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
      // Refusals (unknown accounts) far beyond the cap, through DebitBatch. A
      // batch reserves room for each of its new ids before deciding, so a batch
      // stays below the free capacity.
      for (let round = 0; round < 30; round++) {
        const debits = Array.from({ length: 40 }, (_, i) => ({ accountId: `flood-none-${i}`, amount: 1n, requestId: `flood-r-${round}-${i}`, maxWaitMs: 0 }));
        const answer = await unary(c.balances, c.balances.debitBatch, { debits });
        expect(answer.results.every((r) => r.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT)).to.equal(true);
      }
      const retry = await debit("flood-x", 11n, "flood-x-1");
      expect(retry.replayed, "the approved id survived the flood").to.equal(true);
      expect(retry.balance).to.equal(x.balance);
      expect(await balance("flood-x")).to.equal(989n);

      // Fill the log with approvals (the grant and X already hold two places).
      let approvedCount = 0;
      let full: ServiceError | undefined;
      for (let i = 0; i < CAP + 5 && full === undefined; i++) {
        try {
          await debit("flood-x", 1n, `flood-fill-${i}`);
          approvedCount++;
        } catch (error) {
          full = error as ServiceError;
        }
      }
      expect(full, "the log never filled").to.not.equal(undefined);
      expect(approvedCount).to.equal(CAP - 2);
      expect(full!.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(full!.details).to.match(/request log full/);
      const before = await balance("flood-x");
      expect(before).to.equal(989n - BigInt(approvedCount));
      const unaryRefused = await failure(debit("flood-x", 1n, "flood-after-1"));
      expect(unaryRefused.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(unaryRefused.details).to.match(/request log full/);
      const batchRefused = await failure(
        unary(c.balances, c.balances.debitBatch, { debits: [{ accountId: "flood-x", amount: 1n, requestId: "flood-after-2", maxWaitMs: 0 }] }),
      );
      expect(batchRefused.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(batchRefused.details).to.match(/request log full/);
      const grantRefused = await failure(unary(c.balances, c.balances.grant, { accountId: "flood-x", amount: 5n, requestId: "flood-after-3" }));
      expect(grantRefused.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(await balance("flood-x")).to.equal(before);
      // Known ids still answer from the log.
      const again = await debit("flood-x", 11n, "flood-x-1");
      expect(again.replayed).to.equal(true);
      expect(await balance("flood-x")).to.equal(before);
    });
  });
});

interface Call {
  readonly requestId: string;
  readonly startedAt: number;
  endedAt?: number;
  answer?: DebitResponse;
  error?: ServiceError;
}

describe("hardening - a second writer process of the same region", function () {
  this.timeout(90_000);
  let dir: string;
  let nats: NatsProcess;
  const nodes: NodeProcess[] = [];

  before(async function () {
    this.timeout(30_000);
    dir = tempDir("fence");
    nats = await startStandaloneNats(dir);
  });
  after(async function () {
    this.timeout(30_000);
    for (const node of nodes) {
      if (node.pid !== undefined) {
        try {
          process.kill(node.pid, "SIGCONT");
        } catch {
          // already gone
        }
      }
      await node.kill();
    }
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const eastNode = async (name: string, args: readonly string[] = []): Promise<NodeProcess> => {
    const [grpcPort, metricsPort] = await freePorts(2);
    const node = new NodeProcess({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats, "east"),
      grpcPort: grpcPort!,
      metricsPort: metricsPort!,
      logDir: `${dir}/${name}`,
      extraArgs: [...testPki().serverArgs(), ...args],
      env: { TALLY_LOG: "warn" },
    });
    nodes.push(node);
    return node;
  };

  it("fence - the first process is fenced when the second appends: in-flight calls end UNAVAILABLE at once, retries there never replay, the live node gives exact totals", async () => {
    // The first process snapshots (and purges) often while it writes.
    const first = await eastNode("first", ["--snapshot-interval-ms", "50"]);
    await first.start();
    const a = clients(first.grpcAddress);
    await unary(a.balances, a.balances.grant, { accountId: "fence-1", amount: 1_000_000n, requestId: "fence-g1" });

    const calls: Call[] = [];
    let stop = false;
    let n = 0;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const call: Call = { requestId: `fence-d-${n++}`, startedAt: Date.now() };
        calls.push(call);
        try {
          call.answer = await unary(
            a.balances,
            a.balances.debit,
            { accountId: "fence-1", amount: 3n, requestId: call.requestId, maxWaitMs: 0 },
            { deadline: Date.now() + 15_000 },
          );
        } catch (error) {
          call.error = error as ServiceError;
        }
        call.endedAt = Date.now();
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, () => worker()));
    await waitFor("debits acknowledged by the first node", () => calls.filter((c) => c.answer !== undefined).length >= 100);

    // Freeze the first process so calls pile up in flight, let the second
    // recover and append, then let the first go on: its next append is fenced.
    process.kill(first.pid!, "SIGSTOP");
    const second = await eastNode("second");
    let b: Clients | undefined;
    try {
      await second.start();
      b = clients(second.grpcAddress);
      const appended = await unary(b.balances, b.balances.grant, { accountId: "fence-2", amount: 5n, requestId: "fence-g2" });
      expect(appended.replayed).to.equal(false);
    } finally {
      process.kill(first.pid!, "SIGCONT");
    }
    const resumedAt = Date.now();
    const inFlight = calls.filter((c) => c.endedAt === undefined);
    expect(inFlight.length, "calls were in flight at the fence").to.be.greaterThan(0);
    await waitFor("every in-flight call at the fenced node ended", () => inFlight.every((c) => c.endedAt !== undefined), 10_000);
    stop = true;
    await load;
    for (const call of inFlight) {
      if (call.answer !== undefined) continue; // durable before the second process recovered
      expect(call.error?.code, `${call.requestId}: ${call.error?.details ?? ""}`).to.equal(status.UNAVAILABLE);
      expect(call.endedAt! - resumedAt, `${call.requestId} ended late`).to.be.lessThan(3_000);
    }
    const unavailable = calls.filter((c) => c.error !== undefined);
    expect(unavailable.length, "the fenced node refused calls").to.be.greaterThan(0);
    expect(unavailable.filter((c) => c.error!.code !== status.UNAVAILABLE).map((c) => `${c.requestId}: ${c.error!.code} ${c.error!.details}`)).to.deep.equal([]);

    // Retries at the fenced node: UNAVAILABLE at once, refused or acknowledged alike.
    const acked = calls.filter((c) => c.answer !== undefined);
    for (const call of [unavailable[0]!, acked[acked.length - 1]!, acked[0]!]) {
      const started = Date.now();
      const retry = await failure(
        unary(a.balances, a.balances.debit, { accountId: "fence-1", amount: 3n, requestId: call.requestId, maxWaitMs: 0 }, { deadline: Date.now() + 5_000 }),
      );
      expect(retry.code, retry.details).to.equal(status.UNAVAILABLE);
      expect(Date.now() - started).to.be.lessThan(1_000);
    }
    a.close();
    await first.stop();

    // At the live node: acknowledged ids replay, the rest apply once; totals exact.
    const live = b;
    for (const call of calls) {
      const retry = await unary(live.balances, live.balances.debit, { accountId: "fence-1", amount: 3n, requestId: call.requestId, maxWaitMs: 0 });
      expect(retry.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
      if (call.answer !== undefined) expect(retry.replayed, `acknowledged ${call.requestId} lost`).to.equal(true);
    }
    const view = await unary(live.balances, live.balances.getBalance, { accountId: "fence-1" });
    expect(view.regions[0]?.debited).to.equal(3n * BigInt(calls.length));
    expect(view.balance).to.equal(1_000_000n - 3n * BigInt(calls.length));
    expect((await unary(live.balances, live.balances.getBalance, { accountId: "fence-2" })).balance).to.equal(5n);
    live.close();

    // Restarted, the live process recovers the same totals from the latest snapshot
    // (the first process's, taken while it wrote) and the stream after it.
    await second.stop();
    const third = await eastNode("third");
    await third.start();
    const c = clients(third.grpcAddress);
    const recovered = await unary(c.balances, c.balances.getBalance, { accountId: "fence-1" });
    expect(recovered.balance, "fence-1 after the live process restarted").to.equal(1_000_000n - 3n * BigInt(calls.length));
    expect((await unary(c.balances, c.balances.getBalance, { accountId: "fence-2" })).balance).to.equal(5n);
    c.close();
  });
});

/** Runs `tally serve` and resolves with its exit code, output and run time, or undefined when still running after `limitMs`. */
function serveExit(args: readonly string[], limitMs: number): Promise<{ code: number | null; output: string; ms: number } | undefined> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI_ENTRY, "serve", ...testPki().serverArgs(), ...args], { env: { ...process.env, TALLY_LOG: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(undefined);
    }, limitMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

describe("hardening - region identity at start", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();

  it("region identity - a node listing the regions in another order than its streams were written with refuses to start, naming both lists", async () => {
    const dir = tempDir("identity");
    const [grpcPort, metricsPort] = await freePorts(2);
    const writer = new NodeProcess({
      region: "east",
      regions: ["east", "west", "central"],
      ...natsAccess(nats(), "east"),
      grpcPort: grpcPort!,
      metricsPort: metricsPort!,
      logDir: dir,
      extraArgs: ["--catch-up-timeout-ms", "0", ...testPki().serverArgs()],
      env: { TALLY_LOG: "warn" },
    });
    try {
      await writer.start();
      const c = clients(writer.grpcAddress);
      await unary(c.balances, c.balances.grant, { accountId: "ident-1", amount: 10n, requestId: "ident-g" });
      c.close();
      await writer.stop();
      const [p1, p2] = await freePorts(2);
      const args = ["--region", "east", ...nats().nodeFlags("east"), ...testPki().serverArgs(), "--grpc", `127.0.0.1:${p1!}`, "--metrics-port", String(p2!), "--catch-up-timeout-ms", "0"];
      const result = await serveExit([...args, "--regions", "west,east,central"], 30_000);
      expect(result, "the reordered node is still running (it started serving)").to.not.equal(undefined);
      expect(result!.code, result!.output).to.not.equal(0);
      expect(result!.output).to.include("east,west,central");
      expect(result!.output).to.include("west,east,central");
      expect(result!.output).to.not.include('"event":"ready"');
    } finally {
      await writer.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("region identity - a region named twice exits non-zero within a second with a message", async () => {
    // The same CLI printing help: what loading the runtime and modules costs on this machine now.
    const help = await serveExit(["--help"], 10_000);
    expect(help?.code).to.equal(0);
    const [p1, p2] = await freePorts(2);
    const result = await serveExit(
      ["--region", "east", "--regions", "east,east,central", ...nats().nodeFlags("east"), "--grpc", `127.0.0.1:${p1!}`, "--metrics-port", String(p2!)],
      5_000,
    );
    expect(result).to.not.equal(undefined);
    expect(result!.code).to.not.equal(0);
    // Within a second of what merely starting the CLI costs: no connection is tried.
    expect(result!.ms, `exit after ${result!.ms} ms, help after ${help!.ms} ms`).to.be.lessThan(help!.ms + 1_000);
    expect(result!.output).to.match(/--regions \(TALLY_REGIONS\) names "east" twice/);
  });

  it("configuration errors - every misconfiguration exits non-zero within a second, naming the flag, before any connection", async () => {
    const help = await serveExit(["--help"], 10_000);
    const [p1, p2] = await freePorts(2);
    // A node that would start but for the one fault of each case (credentials included).
    const base = [...nats().nodeFlags("east"), ...testPki().serverArgs(), "--grpc", `127.0.0.1:${p1!}`, "--metrics-port", String(p2!)];
    const cases: readonly { args: readonly string[]; names: RegExp }[] = [
      { args: ["--region", "mars", "--regions", "east,west,central"], names: /--region \(TALLY_REGION\) mars/ },
      { args: ["--region", "east", "--metrics-port", "70000"], names: /--metrics-port \(TALLY_METRICS_PORT\)/ },
      { args: ["--region", "east", "--default-mode", "sometimes"], names: /--default-mode/ },
      { args: ["--region", "east", "--rights-wait-ms", "-5"], names: /--rights-wait-ms/ },
      { args: ["--region", "east", "--nats", "http://127.0.0.1:1"], names: /--nats/ },
      { args: ["--region", "east", "--grpc-port", "1"], names: /--grpc-port/ },
      { args: ["--regions", "east,west"], names: /--region/ },
    ];
    for (const { args, names } of cases) {
      // Later flags win in parseArgs, so each case's own value overrides the base one.
      const result = await serveExit([...base, ...args], 5_000);
      expect(result, `still running: ${args.join(" ")}`).to.not.equal(undefined);
      expect(result!.code, `${args.join(" ")}: ${result!.output}`).to.not.equal(0);
      expect(result!.ms, `${args.join(" ")}: exit after ${result!.ms} ms, help after ${help!.ms} ms`).to.be.lessThan(help!.ms + 1_000);
      expect(result!.output, args.join(" ")).to.match(names);
      expect(result!.output).to.not.include('"event":"ready"');
    }
  });
});
