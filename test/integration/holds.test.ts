// Holds and refunds over real gRPC with a real nats-server (JetStream):
// hold → capture / void / timeout, retries that replay, capture after the
// timeout refused, calls at the wrong region told where to go, refund limits,
// bad input, recovery from a snapshot, and a kill -9 in the middle of
// resolutions and refunds after which nothing is charged or refunded twice.

import { expect } from "chai";
import { rmSync } from "node:fs";
import { status, type ServiceError } from "@grpc/grpc-js";
import { Client } from "pg";
import { DEFAULT_POSTGRES } from "../../src/app/config";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { postgresSsl } from "../../src/security/postgres-tls";
import { freePorts } from "../../src/devcluster/free-port";
import { NodeProcess } from "../../src/devcluster/node-process";
import { DebitOutcome, HoldState, type HoldResolution } from "../../src/generated/tally/v1/balances";
import { HoldStatus } from "../../src/core/hold-book";
import { jsonLogger } from "../../src/node/logger";
import { clients, failure, testGrpcSecurity, testPki, unary, type Clients } from "../support/grpc-clients";
import { natsAccess, startStandaloneNats, tempDir, useStandaloneNats } from "../support/nats";
import { usePostgres } from "../support/postgres";

/** Polls `check` until it holds (never a fixed sleep); throws after `timeoutMs`. */
async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function api(c: Clients) {
  return {
    grant: (accountId: string, amount: bigint, requestId: string) => unary(c.balances, c.balances.grant, { accountId, amount, requestId }),
    debit: (accountId: string, amount: bigint, requestId: string) => unary(c.balances, c.balances.debit, { accountId, amount, requestId, maxWaitMs: 0 }),
    balance: (accountId: string) => unary(c.balances, c.balances.getBalance, { accountId }),
    hold: (accountId: string, amount: bigint, requestId: string, timeoutMs = 60_000n, maxWaitMs = 0) =>
      unary(c.balances, c.balances.hold, { accountId, amount, requestId, timeoutMs, maxWaitMs }),
    capture: async (holdId: string, amount: bigint, requestId: string, accountId = ""): Promise<HoldResolution> =>
      (await unary(c.balances, c.balances.captureHold, { holdId, amount, requestId, accountId })).resolution!,
    void: async (holdId: string, requestId: string, accountId = ""): Promise<HoldResolution> =>
      (await unary(c.balances, c.balances.voidHold, { holdId, requestId, accountId })).resolution!,
    refund: (debitRequestId: string, amount: bigint, requestId: string, accountId = "") =>
      unary(c.balances, c.balances.refund, { debitRequestId, amount, requestId, accountId }),
  };
}

describe("holds - two regions over real gRPC and JetStream", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  const nodes: RunningNode[] = [];
  let eastClients: Clients;
  let westClients: Clients;
  let east: ReturnType<typeof api>;
  let west: ReturnType<typeof api>;
  let counter = 0;
  const rid = (): string => `hr-${Date.now()}-${counter++}`;

  before(async () => {
    for (const region of ["east", "west"]) {
      nodes.push(
        await runNode({
          region,
          regions: ["east", "west"],
          ...natsAccess(nats(), region),
          grpcAddress: "127.0.0.1:0",
          grpcSecurity: testGrpcSecurity(),
          logger: jsonLogger(region, "error"),
          config: { catchUpTimeoutMs: 1_000, holdSweepIntervalMs: 20 },
        }),
      );
    }
    eastClients = clients(`127.0.0.1:${nodes[0]!.grpcPort}`);
    westClients = clients(`127.0.0.1:${nodes[1]!.grpcPort}`);
    east = api(eastClients);
    west = api(westClients);
  });
  after(async () => {
    eastClients.close();
    westClients.close();
    for (const n of nodes) await n.stop();
  });

  it("holds - a hold sets rights aside (balance unchanged, held shown); capture debits part and releases the rest, exactly once", async () => {
    await east.grant("h-cap", 1_000n, rid());
    const held = await east.hold("h-cap", 300n, "hold-cap-1");
    expect(held.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    expect(held.holdId).to.equal("east:hold-cap-1");
    expect(held.state).to.equal(HoldState.HOLD_STATE_PENDING);
    expect(held.balance).to.equal(1_000n);
    expect(held.localRights).to.equal(700n);
    const view = await east.balance("h-cap");
    expect(view).to.include({ balance: 1_000n, localRights: 700n, held: 300n });
    expect(view.regions.find((r) => r.region === "east")?.held).to.equal(300n);
    // West sees the held credit too (it is in no region's rights).
    await waitFor("west sees the hold", async () => (await west.balance("h-cap")).held === 300n);

    const captured = await east.capture(held.holdId, 120n, "cap-1");
    expect(captured).to.include({ state: HoldState.HOLD_STATE_CAPTURED, captured: 120n, released: 180n, balance: 880n, localRights: 880n, replayed: false });
    // The same call again, and the same capture under a new request id: the original resolution, nothing charged.
    expect(await east.capture(held.holdId, 120n, "cap-1")).to.include({ captured: 120n, replayed: true });
    expect(await east.capture(held.holdId, 120n, "cap-1-again")).to.include({ captured: 120n, replayed: true, balance: 880n });
    const otherAmount = await failure(east.capture(held.holdId, 121n, "cap-1-more"));
    expect(otherAmount.code).to.equal(status.FAILED_PRECONDITION);
    expect(otherAmount.details).to.contain("captured with 120");
    const voidAfter = await failure(east.void(held.holdId, "void-after-cap"));
    expect(voidAfter.code).to.equal(status.FAILED_PRECONDITION);
    expect(voidAfter.details).to.contain("is captured");
    expect(await east.balance("h-cap")).to.include({ balance: 880n, localRights: 880n, held: 0n });
    // A reused capture request id with other content is refused as Debit does.
    expect((await failure(east.capture(held.holdId, 5n, "cap-1"))).code).to.equal(status.ALREADY_EXISTS);
  });

  it("holds - void releases everything; a retry of the hold replays it, other content under its id is ALREADY_EXISTS", async () => {
    await east.grant("h-void", 500n, rid());
    const held = await east.hold("h-void", 200n, "hold-void-1");
    const again = await east.hold("h-void", 200n, "hold-void-1");
    expect(again).to.include({ holdId: held.holdId, replayed: true, state: HoldState.HOLD_STATE_PENDING });
    expect((await failure(east.hold("h-void", 201n, "hold-void-1"))).code).to.equal(status.ALREADY_EXISTS);
    const voided = await east.void(held.holdId, "void-1");
    expect(voided).to.include({ state: HoldState.HOLD_STATE_VOIDED, captured: 0n, released: 200n, balance: 500n, localRights: 500n });
    expect(await east.void(held.holdId, "void-1b")).to.include({ state: HoldState.HOLD_STATE_VOIDED, replayed: true });
    expect((await east.hold("h-void", 200n, "hold-void-1")).state).to.equal(HoldState.HOLD_STATE_VOIDED);
    const capture = await failure(east.capture(held.holdId, 1n, "cap-after-void"));
    expect(capture.code).to.equal(status.FAILED_PRECONDITION);
    expect(capture.details).to.contain("voided");
    expect(await east.balance("h-void")).to.include({ balance: 500n, held: 0n });
  });

  it("holds - a hold short of rights here waits for rights from another region, as a debit does", async () => {
    await east.grant("h-remote", 100n, rid());
    await waitFor("west knows the grant", async () => (await west.balance("h-remote")).balance === 100n);
    const held = await west.hold("h-remote", 60n, "hold-remote", 60_000n, 2_000);
    expect(held).to.include({ outcome: DebitOutcome.DEBIT_OUTCOME_APPROVED, holdId: "west:hold-remote" });
    expect((await west.balance("h-remote")).regions.find((r) => r.region === "west")?.held).to.equal(60n);
    await waitFor("east sees west's hold", async () => (await east.balance("h-remote")).held === 60n);
  });

  it("holds - a hold the region cannot cover is INSUFFICIENT_CREDIT with no hold id, and changes nothing", async () => {
    await east.grant("h-poor", 50n, rid());
    const refused = await east.hold("h-poor", 51n, rid());
    expect(refused).to.include({ outcome: DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT, holdId: "", localRights: 50n });
    expect(await east.balance("h-poor")).to.include({ balance: 50n, held: 0n });
  });

  it("holds - timeout: the holding region expires the hold on its clock, everywhere stops counting it, a late capture is refused", async () => {
    await east.grant("h-exp", 400n, rid());
    const held = await east.hold("h-exp", 150n, "hold-exp-1", 300n);
    expect(Number(held.expiresAtMs) - Date.now()).to.be.at.most(300);
    await waitFor("the hold expired at east", async () => (await east.balance("h-exp")).held === 0n);
    expect(await east.balance("h-exp")).to.include({ balance: 400n, localRights: 400n, held: 0n });
    await waitFor("west stops counting it", async () => (await west.balance("h-exp")).held === 0n);
    const late = await failure(east.capture(held.holdId, 10n, "cap-late"));
    expect(late.code).to.equal(status.FAILED_PRECONDITION);
    expect(late.details).to.contain("expired");
    expect((await east.hold("h-exp", 150n, "hold-exp-1", 300n)).state).to.equal(HoldState.HOLD_STATE_EXPIRED);
    expect((await east.balance("h-exp")).balance).to.equal(400n);
  });

  it("holds - a capture sent past the timeout before the sweep ran is refused and records the expiry", async () => {
    const node = nodes[0]!.node;
    await east.grant("h-race", 100n, rid());
    const held = await east.hold("h-race", 60n, "hold-race", 1n);
    const late = await failure(east.capture(held.holdId, 60n, "cap-race"));
    expect(late.code).to.equal(status.FAILED_PRECONDITION);
    expect(late.details).to.contain("expired");
    expect(node.state.holds.get(held.holdId)?.status).to.equal(4);
    expect((await east.balance("h-race")).balance).to.equal(100n);
  });

  it("holds - capture or void at another region, or a refund of another region's debit, is told the deciding region", async () => {
    await east.grant("h-where", 100n, rid());
    const held = await east.hold("h-where", 10n, "hold-where");
    for (const call of [west.capture(held.holdId, 5n, rid()), west.void(held.holdId, rid())]) {
      const error = await failure(call);
      expect(error.code).to.equal(status.FAILED_PRECONDITION);
      expect(error.details).to.contain('region "east"');
      expect(error.metadata.get("tally-region")).to.deep.equal(["east"]);
    }
    await east.debit("h-where", 20n, "debit-where");
    await waitFor("west knows east's debit", () => nodes[1]!.node.state.requestRecord("debit-where") !== undefined);
    const refund = await failure(west.refund("debit-where", 5n, rid()));
    expect(refund.code).to.equal(status.FAILED_PRECONDITION);
    expect(refund.details).to.contain('region "east"');
    expect(refund.metadata.get("tally-region")).to.deep.equal(["east"]);
    expect(await east.balance("h-where")).to.include({ balance: 80n, held: 10n });
  });

  it("refunds - give back up to what one debit took, replay on retry, and name what is left", async () => {
    await east.grant("r-acct", 1_000n, rid());
    await east.debit("r-acct", 100n, "r-debit");
    const first = await east.refund("r-debit", 60n, "r-1");
    expect(first).to.include({ debitRequestId: "r-debit", refundedTotal: 60n, refundable: 40n, balance: 960n, replayed: false });
    expect(await east.refund("r-debit", 60n, "r-1")).to.include({ refundedTotal: 60n, replayed: true });
    const over = await failure(east.refund("r-debit", 50n, "r-2"));
    expect(over.code).to.equal(status.FAILED_PRECONDITION);
    expect(over.details).to.contain("left 40");
    expect(await east.refund("r-debit", 40n, "r-3")).to.include({ refundedTotal: 100n, refundable: 0n, balance: 1_000n });
    expect((await failure(east.refund("r-debit", 1n, "r-4"))).code).to.equal(status.FAILED_PRECONDITION);
    expect((await failure(east.refund("never-debited", 1n, "r-5"))).code).to.equal(status.NOT_FOUND);
    expect((await failure(east.refund("r-debit", 1n, "r-6", "other-acct"))).code).to.equal(status.INVALID_ARGUMENT);
    const refusedDebit = await east.debit("r-acct", 10_000n, "r-refused");
    expect(refusedDebit.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    expect((await failure(east.refund("r-refused", 1n, "r-7"))).details).to.contain("refused");
    expect((await east.balance("r-acct")).balance).to.equal(1_000n);
  });

  it("holds - bad input gets INVALID_ARGUMENT / NOT_FOUND naming the problem and changes nothing", async () => {
    await east.grant("h-bad", 100n, rid());
    const cases: Array<[Promise<unknown>, status, string]> = [
      [east.hold("h-bad", 0n, rid()), status.INVALID_ARGUMENT, "amount"],
      [east.hold("h-bad", -5n, rid()), status.INVALID_ARGUMENT, "amount"],
      [east.hold("h-bad", 5n, rid(), 0n), status.INVALID_ARGUMENT, "timeout_ms"],
      [east.hold("h-bad", 5n, rid(), 2_592_000_001n), status.INVALID_ARGUMENT, "timeout_ms"],
      [east.hold("bad account", 5n, rid()), status.INVALID_ARGUMENT, "account_id"],
      [east.hold("h-bad", 5n, ""), status.INVALID_ARGUMENT, "request_id"],
      [east.capture("no-colon", 5n, rid()), status.INVALID_ARGUMENT, "hold_id"],
      [east.capture("east:unknown-hold", 5n, rid()), status.NOT_FOUND, "unknown-hold"],
      [east.void("east:unknown-hold", rid()), status.NOT_FOUND, "unknown-hold"],
      [east.capture("nowhere:h", 5n, rid()), status.NOT_FOUND, 'no region "nowhere"'],
      [east.capture("east:x", 0n, rid()), status.INVALID_ARGUMENT, "amount"],
      [east.refund("", 5n, rid()), status.INVALID_ARGUMENT, "debit_request_id"],
      [east.refund("x", -1n, rid()), status.INVALID_ARGUMENT, "amount"],
    ];
    for (const [call, code, text] of cases) {
      const error = await failure(call);
      expect(error.code, error.details).to.equal(code);
      expect(error.details).to.contain(text);
    }
    const held = await east.hold("h-bad", 10n, rid());
    const tooMuch = await failure(east.capture(held.holdId, 11n, rid()));
    expect(tooMuch.code).to.equal(status.INVALID_ARGUMENT);
    expect(tooMuch.details).to.contain("held amount 10");
    expect((await failure(east.capture(held.holdId, 5n, rid(), "another"))).code).to.equal(status.INVALID_ARGUMENT);
    expect(await east.balance("h-bad")).to.include({ balance: 100n, held: 10n });
  });
});

describe("holds - recovery: a snapshot and the stream keep holds and refund records", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();

  it("holds - after a snapshot, a purge and a restart, a pending hold is still held and capturable, a resolved one stays resolved", async () => {
    const start = (): Promise<RunningNode> =>
      runNode({
        region: "east",
        regions: ["east"],
        ...natsAccess(nats(), "east"),
        grpcAddress: "127.0.0.1:0",
        grpcSecurity: testGrpcSecurity(),
        logger: jsonLogger("east", "error"),
        config: { holdSweepIntervalMs: 20 },
      });
    let running = await start();
    let c = clients(`127.0.0.1:${running.grpcPort}`);
    let east = api(c);
    await east.grant("snap", 1_000n, "snap-g");
    const pending = await east.hold("snap", 100n, "snap-pending");
    const captured = await east.hold("snap", 200n, "snap-captured");
    await east.capture(captured.holdId, 150n, "snap-cap");
    await east.debit("snap", 50n, "snap-debit");
    await east.refund("snap-debit", 20n, "snap-refund");
    const header = await running.node.takeSnapshot();
    expect(header.holds).to.equal(2);
    expect(header.refunds).to.equal(1);
    // The stream below the snapshot is purged: the records live on in the snapshot only.
    expect((await running.node.transports.log.bounds("east")).first).to.equal(header.replayFrom);
    c.close();
    await running.stop();

    running = await start();
    c = clients(`127.0.0.1:${running.grpcPort}`);
    east = api(c);
    try {
      expect(await east.balance("snap")).to.include({ balance: 1_000n - 150n - 50n + 20n, held: 100n });
      expect(await east.capture(captured.holdId, 150n, "snap-cap-retry")).to.include({ replayed: true, captured: 150n });
      expect(await east.refund("snap-debit", 20n, "snap-refund")).to.include({ replayed: true, refundedTotal: 20n });
      const over = await failure(east.refund("snap-debit", 31n, "snap-refund-2"));
      expect(over.details).to.contain("left 30");
      expect(await east.capture(pending.holdId, 100n, "snap-cap-pending")).to.include({ replayed: false, captured: 100n });
      expect(await east.balance("snap")).to.include({ balance: 1_000n - 150n - 50n + 20n - 100n, held: 0n });
    } finally {
      c.close();
      await running.stop();
    }
  });
});

describe("holds - kill -9 in the middle of resolutions and refunds charges nothing twice", function () {
  this.timeout(120_000);

  it("holds - every request id retried until answered after a crash; totals exact", async () => {
    const dir = tempDir("holds-kill");
    const nats = await startStandaloneNats(dir);
    const [grpcPort, metricsPort] = await freePorts(2);
    const node = new NodeProcess({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats, "east"),
      grpcPort: grpcPort!,
      metricsPort: metricsPort!,
      logDir: dir,
      extraArgs: [...testPki().serverArgs(), "--hold-sweep-ms", "20"],
    });
    let c = clients(node.grpcAddress);
    try {
      await node.start();
      const GRANT = 1_000_000n;
      const HOLDS = 40;
      await api(c).grant("kill-acct", GRANT, "kill-g");
      // Holds 0..39 of 100 + k; even ones captured at half, every 4th+1 voided, every 4th+3 left to time out (short timeout).
      const amountOf = (k: number): bigint => 100n + BigInt(k);
      const holdIds: string[] = [];
      for (let k = 0; k < HOLDS; k++) {
        const held = await api(c).hold("kill-acct", amountOf(k), `kill-h-${k}`, k % 4 === 3 ? 400n : 600_000n);
        holdIds.push(held.holdId);
      }
      for (let k = 0; k < 10; k++) await api(c).debit("kill-acct", 1_000n, `kill-d-${k}`);

      type Call = { readonly id: string; run: (c: Clients) => Promise<unknown>; answered: boolean };
      const calls: Call[] = [];
      for (let k = 0; k < HOLDS; k++) {
        if (k % 2 === 0) calls.push({ id: `kill-c-${k}`, run: (cl) => api(cl).capture(holdIds[k]!, amountOf(k) / 2n, `kill-c-${k}`), answered: false });
        else if (k % 4 === 1) calls.push({ id: `kill-v-${k}`, run: (cl) => api(cl).void(holdIds[k]!, `kill-v-${k}`), answered: false });
      }
      for (let k = 0; k < 10; k++) calls.push({ id: `kill-r-${k}`, run: (cl) => api(cl).refund(`kill-d-${k}`, 300n, `kill-r-${k}`), answered: false });
      // New holds in flight too: each is placed once, whatever the crash did to its answer.
      const NEW_HOLDS = 10;
      for (let k = 0; k < NEW_HOLDS; k++) calls.push({ id: `kill-n-${k}`, run: (cl) => api(cl).hold("kill-acct", 7n, `kill-n-${k}`), answered: false });
      // Interleave the kinds, so the crash falls among all of them.
      calls.sort((a, b) => (a.id.split("-")[2]! < b.id.split("-")[2]! ? -1 : 1));

      // Four workers send the calls in turn; kill -9 once a few are answered: some answered, some in flight, some never sent.
      const queue = [...calls];
      // The kill is sent from inside the stream of calls (not after a poll), so it always lands mid-way.
      let killed: Promise<void> | undefined;
      const worker = async (): Promise<void> => {
        for (let call = queue.shift(); call !== undefined; call = queue.shift()) {
          try {
            await call.run(c);
            call.answered = true;
            if (killed === undefined && calls.filter((x) => x.answered).length >= 8) killed = node.kill();
          } catch (error) {
            const code = (error as ServiceError).code;
            if (code !== status.UNAVAILABLE && code !== status.CANCELLED && code !== status.DEADLINE_EXCEEDED && code !== status.INTERNAL) throw error;
            return;
          }
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      await killed;
      const answeredBeforeCrash = calls.filter((x) => x.answered).length;
      expect(answeredBeforeCrash, "the crash came in the middle").to.be.lessThan(calls.length);
      c.close();
      await node.start();
      c = clients(node.grpcAddress);

      // Retry every call until it is answered: answered ones must replay, unknown ones apply at most once.
      for (const call of calls) {
        for (;;) {
          try {
            await call.run(c);
            break;
          } catch (error) {
            if ((error as ServiceError).code !== status.UNAVAILABLE) throw error;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
      const newHeld = 7n * BigInt(NEW_HOLDS);
      await waitFor("the short holds timed out", async () => (await api(c).balance("kill-acct")).held === newHeld, 20_000);
      let captured = 0n;
      for (let k = 0; k < HOLDS; k += 2) captured += amountOf(k) / 2n;
      const expected = GRANT - captured - 10n * 1_000n + 10n * 300n;
      const view = await api(c).balance("kill-acct");
      expect(view).to.include({ balance: expected, localRights: expected - newHeld, held: newHeld });
      // After the crash every hold is resolved exactly once, as asked (or expired when left alone).
      for (let k = 0; k < HOLDS; k++) {
        const resolution = await failure(api(c).capture(holdIds[k]!, 1n, `kill-probe-${k}`)).catch(() => undefined);
        if (k % 2 === 0) expect(resolution?.details, `hold ${k}`).to.contain("captured with");
        else if (k % 4 === 1) expect(resolution?.details, `hold ${k}`).to.contain("voided");
        else expect(resolution?.details, `hold ${k}`).to.contain("expired");
      }
      expect((await api(c).balance("kill-acct")).balance).to.equal(expected);
    } finally {
      c.close();
      await node.stop();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("holds - settlement records holds outstanding at the cut, resolutions and refunds (node → Postgres)", function () {
  this.timeout(120_000);
  const postgres = usePostgres();
  const nats = useStandaloneNats();

  it("holds - Settle writes the outstanding hold, the capture, the void and the refund once; a later Settle adds only what changed", async () => {
    const roles = await postgres().provisionRoles("tally");
    const running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      postgres: { url: roles.settlerUrl, ownerUrl: roles.ownerUrl, readerUrl: roles.readerUrl, caFile: roles.caFile, ...DEFAULT_POSTGRES },
      config: { snapshotIntervalMs: 0 },
    });
    const c = clients(`127.0.0.1:${running.grpcPort}`);
    const reader = new Client({ connectionString: roles.readerUrl, ssl: postgresSsl(roles.caFile) });
    reader.on("error", () => undefined);
    await reader.connect();
    try {
      const east = api(c);
      await east.grant("pg-h", 1_000n, "pg-h-g");
      const open = await east.hold("pg-h", 100n, "pg-h-open");
      const cap = await east.hold("pg-h", 200n, "pg-h-cap");
      const vd = await east.hold("pg-h", 50n, "pg-h-void");
      await east.capture(cap.holdId, 150n, "pg-h-capture");
      await east.void(vd.holdId, "pg-h-voiding");
      await east.debit("pg-h", 30n, "pg-h-debit");
      await east.refund("pg-h-debit", 10n, "pg-h-refund");
      const first = await unary(c.admin, c.admin.settle, {});
      await east.capture(open.holdId, 100n, "pg-h-capture-open");
      const second = await unary(c.admin, c.admin.settle, {});
      const holds = await reader.query<{ s: string; hold_id: string; state: string; captured: string }>(
        "SELECT settlement_id::text AS s, hold_id, state, captured::text FROM hold_ledger WHERE account_id = 'pg-h' ORDER BY settlement_id, hold_id",
      );
      const [s1, s2] = [String(first.settlement?.id), String(second.settlement?.id)];
      expect(holds.rows).to.deep.equal([
        { s: s1, hold_id: "east:pg-h-cap", state: "CAPTURED", captured: "150" },
        { s: s1, hold_id: "east:pg-h-open", state: "PENDING", captured: "0" },
        { s: s1, hold_id: "east:pg-h-void", state: "VOIDED", captured: "0" },
        { s: s2, hold_id: "east:pg-h-open", state: "CAPTURED", captured: "100" },
      ]);
      const refunds = await reader.query<{ refund_request_id: string; debit_request_id: string; amount: string; account_id: string }>(
        "SELECT refund_request_id, debit_request_id, amount::text, account_id FROM refund_ledger",
      );
      expect(refunds.rows).to.deep.equal([{ refund_request_id: "pg-h-refund", debit_request_id: "pg-h-debit", amount: "10", account_id: "pg-h" }]);
      // The settled totals count the refund as credit: granted 1,010, debited 150 + 30 + 100.
      const totals = await reader.query<{ granted: string; debited: string }>("SELECT granted::text, debited::text FROM account_totals WHERE account_id = 'pg-h'");
      expect(totals.rows).to.deep.equal([{ granted: "1010", debited: "280" }]);
    } finally {
      await reader.end();
      c.close();
      await running.stop();
    }
  });
});

describe("holds - a writer takeover in the region (standby) keeps holds and their timeouts", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();

  it("holds - the standby that takes over captures a pending hold, expires a due one, and replays a resolution the old writer answered", async () => {
    const options = (name: string) => ({
      region: "east",
      regions: ["east", "west"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger(`east-${name}`, "error"),
      config: {
        catchUpTimeoutMs: 500,
        snapshotIntervalMs: 0,
        writerLease: { ttlMs: 1_500, renewAfterMs: 300, marginMs: 300 },
        standbyPollMs: 20,
        holdSweepIntervalMs: 20,
      },
    });
    const running: RunningNode[] = [];
    try {
      const a = await runNode(options("a"));
      running.push(a);
      await waitFor("node a writes", () => a.node.writing);
      const b = await runNode(options("b"));
      running.push(b);
      await a.node.grant("ha-h", 1_000n, "ha-g");
      const long = await a.node.holds.hold("ha-h", 300n, "ha-long", 600_000);
      const short = await a.node.holds.hold("ha-h", 200n, "ha-short", 4_000);
      const voided = await a.node.holds.hold("ha-h", 100n, "ha-void", 600_000);
      await a.node.holds.void(voided.record!.holdId, "ha-void-1", undefined);
      // The standby follows the own stream: it holds the same records, and does not expire anything itself.
      await waitFor("standby b has the holds", () => b.node.state.holds.size === 3 && b.node.state.totalHeld("ha-h") === 500n);
      expect(b.node.writing).to.equal(false);

      await a.stop();
      running.shift();
      await waitFor("b took over", () => b.node.writing, 20_000);
      // Still pending at the takeover: its timeout is judged by the new writer's clock and sweep.
      expect(b.node.state.holds.get(short.record!.holdId)?.status).to.equal(HoldStatus.Pending);
      const captured = await b.node.holds.capture(long.record!.holdId, 250n, "ha-cap", "ha-h");
      expect(captured).to.include({ replayed: false });
      expect(captured.record).to.include({ status: HoldStatus.Captured, captured: 250n });
      expect((await b.node.holds.void(voided.record!.holdId, "ha-void-1", undefined)).replayed).to.equal(true);
      await waitFor("the short hold expired at the new writer", () => b.node.state.holds.get(short.record!.holdId)?.status === HoldStatus.Expired, 20_000);
      expect(b.node.state.totalHeld("ha-h")).to.equal(0n);
      expect(b.node.state.balance("ha-h")).to.equal(750n);
    } finally {
      for (const r of running) await r.stop();
    }
  });
});
