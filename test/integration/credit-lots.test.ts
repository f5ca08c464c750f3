// Credit lots (DESIGN §9) over real gRPC with a real nats-server: grants with
// terms, debits that burn lots in order, expiry judged by the node's clock
// with its guard, idempotent retries (also across a restart), GetBalance's
// lot list, bad terms refused by field, and rights given from lots between
// two regions.

import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import { runNode, type RunNodeOptions, type RunningNode } from "../../src/app/run-node";
import type { NatsProcess } from "../../src/devcluster/nats-process";
import { DebitOutcome, type DebitRequest, type GrantRequest } from "../../src/generated/tally/v1/balances";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { clients, failure, unary, type Clients, testGrpcSecurity } from "../support/grpc-clients";
import { until } from "../support/debit-load";
import { Client } from "pg";
import { DEFAULT_POSTGRES } from "../../src/app/config";
import { postgresSsl } from "../../src/security/postgres-tls";
import { usePostgres } from "../support/postgres";
import { MAX_LIVE_LOTS } from "../../src/core/lots";

const GUARD_MS = 200;

/** A grant's lot terms on the wire (0 = unset: priority 0, effective at once, no expiry). */
function lot(terms: { priority?: number; effectiveAtMs?: bigint; expiresAtMs?: bigint }): Pick<GrantRequest, "lot"> {
  return { lot: { priority: terms.priority ?? 0, effectiveAtMs: terms.effectiveAtMs ?? 0n, expiresAtMs: terms.expiresAtMs ?? 0n } };
}

/** A node of a two-region cluster (east, west) with this file's expiry guard. */
function twoRegionNode(nats: NatsProcess, region: string, extra: Partial<RunNodeOptions> = {}, config: RunNodeOptions["config"] = {}): Promise<RunningNode> {
  return runNode({
    region,
    regions: ["east", "west"],
    ...natsAccess(nats, region),
    grpcAddress: "127.0.0.1:0",
    grpcSecurity: testGrpcSecurity(),
    logger: jsonLogger(region, "error"),
    ...extra,
    config: { catchUpTimeoutMs: 1_000, lotGuardMs: GUARD_MS, ...config },
  });
}

describe("credit lots - one node over real gRPC and JetStream", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  let running: RunningNode;
  let c: Clients;
  let counter = 0;
  const rid = (): string => `lot-${Date.now()}-${counter++}`;

  const start = async (): Promise<void> => {
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      config: { lotGuardMs: GUARD_MS },
    });
    c = clients(`127.0.0.1:${running.grpcPort}`);
  };

  before(start);
  after(async () => {
    c.close();
    await running.stop();
  });

  const grant = (req: Partial<GrantRequest> & { accountId: string; amount: bigint }) => unary(c.balances, c.balances.grant, { requestId: rid(), ...req });
  const debit = (req: Partial<DebitRequest> & { accountId: string; amount: bigint }) =>
    unary(c.balances, c.balances.debit, { requestId: rid(), maxWaitMs: 0, ...req });
  const balance = (accountId: string) => unary(c.balances, c.balances.getBalance, { accountId });

  it("credit lots - debits burn lots by priority then expiry, and GetBalance lists them in that order", async () => {
    const far = BigInt(Date.now() + 3_600_000);
    await grant({ accountId: "lots-order", amount: 50n, ...lot({ priority: 20 }) });
    await grant({ accountId: "lots-order", amount: 30n, ...lot({ priority: 10, expiresAtMs: far }) });
    await grant({ accountId: "lots-order", amount: 5n });
    const spent = await debit({ accountId: "lots-order", amount: 40n });
    expect(spent.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    expect(spent.balance).to.equal(45n);
    const read = await balance("lots-order");
    expect(read.balance).to.equal(45n);
    expect(read.localRights).to.equal(45n);
    expect(read.lots.map((lot) => [lot.key, lot.remaining, lot.spendableHere, lot.expired])).to.deep.equal([
      [`p10.e${far}.s0`, 0n, 0n, false],
      ["p20.enever.s0", 40n, 40n, false],
      ["base", 5n, 5n, false],
    ]);
    expect(read.lots[0]?.terms).to.deep.equal({ priority: 10, effectiveAtMs: 0n, expiresAtMs: far });
  });

  it("credit lots - a lot past its expiry minus the guard cannot be spent and leaves the balance", async () => {
    const expiresAt = Date.now() + GUARD_MS + 1_000;
    await grant({ accountId: "lots-expiry", amount: 100n, ...lot({ priority: 0, expiresAtMs: BigInt(expiresAt) }) });
    await grant({ accountId: "lots-expiry", amount: 10n });
    expect((await debit({ accountId: "lots-expiry", amount: 20n })).outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    // The node judges by its own clock (this process's): wait until that clock is within the guard.
    await until("the lot's guard to begin", () => Date.now() >= expiresAt - GUARD_MS, 10_000);
    const refused = await debit({ accountId: "lots-expiry", amount: 11n });
    expect(refused.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    const read = await balance("lots-expiry");
    expect(read.balance).to.equal(10n);
    expect(read.lots.map((lot) => [lot.key, lot.remaining, lot.expired])).to.deep.equal([
      [`p0.e${expiresAt}.s0`, 80n, true],
      ["base", 10n, false],
    ]);
    expect((await debit({ accountId: "lots-expiry", amount: 10n })).outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
  });

  it("credit lots - a lot that has not started is in the balance but cannot be spent", async () => {
    await grant({ accountId: "lots-future", amount: 70n, ...lot({ effectiveAtMs: BigInt(Date.now() + 3_600_000) }) });
    const refused = await debit({ accountId: "lots-future", amount: 1n });
    expect(refused.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    const read = await balance("lots-future");
    expect(read.balance).to.equal(70n);
    expect(read.localRights).to.equal(0n);
  });

  it("credit lots - a retried debit that burnt several lots charges once, also after a restart", async () => {
    await grant({ accountId: "lots-retry", amount: 30n, ...lot({ priority: 1 }) });
    await grant({ accountId: "lots-retry", amount: 30n, ...lot({ priority: 2 }) });
    const requestId = rid();
    const first = await debit({ accountId: "lots-retry", amount: 45n, requestId });
    const retry = await debit({ accountId: "lots-retry", amount: 45n, requestId });
    expect(first.replayed).to.equal(false);
    expect(retry).to.deep.equal({ ...first, replayed: true });
    expect((await balance("lots-retry")).balance).to.equal(15n);
    c.close();
    await running.stop();
    await start();
    const afterRestart = await debit({ accountId: "lots-retry", amount: 45n, requestId });
    expect(afterRestart.replayed).to.equal(true);
    const read = await balance("lots-retry");
    expect(read.balance).to.equal(15n);
    expect(read.lots.map((lot) => [lot.key, lot.remaining])).to.deep.equal([
      ["p1.enever.s0", 0n],
      ["p2.enever.s0", 15n],
      ["base", 0n],
    ]);
  });

  it("credit lots - a hold reserves from the lots in burn order; after a restart its capture debits those lots, and a refund goes back to them", async () => {
    const soon = BigInt(Date.now() + 60_000);
    await grant({ accountId: "lots-hold", amount: 30n, ...lot({ priority: 1, expiresAtMs: soon }) });
    await grant({ accountId: "lots-hold", amount: 50n, ...lot({ priority: 2 }) });
    // A hold timing out after the first lot's expiry cannot use it: 50 is all it can reserve.
    const tooLong = await unary(c.balances, c.balances.hold, { accountId: "lots-hold", amount: 51n, requestId: rid(), timeoutMs: 120_000n, maxWaitMs: 0 });
    expect(tooLong.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    const held = await unary(c.balances, c.balances.hold, { accountId: "lots-hold", amount: 60n, requestId: rid(), timeoutMs: 30_000n, maxWaitMs: 0 });
    expect(held.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    expect([held.balance, held.localRights]).to.deep.equal([80n, 20n]);
    expect((await balance("lots-hold")).held).to.equal(60n);
    expect((await balance("lots-hold")).lots.map((l) => [l.key, l.remaining, l.spendableHere])).to.deep.equal([
      [`p1.e${soon}.s0`, 30n, 0n],
      ["p2.enever.s0", 50n, 20n],
      ["base", 0n, 0n],
    ]);
    // The hold's parts are read back from the stream by the restarted node.
    c.close();
    await running.stop();
    await start();
    const captureId = rid();
    const captured = await unary(c.balances, c.balances.captureHold, { holdId: held.holdId, amount: 40n, requestId: captureId, accountId: "lots-hold" });
    expect([captured.resolution?.captured, captured.resolution?.released, captured.resolution?.balance]).to.deep.equal([40n, 20n, 40n]);
    expect((await balance("lots-hold")).lots.map((l) => [l.key, l.remaining, l.spendableHere])).to.deep.equal([
      [`p1.e${soon}.s0`, 0n, 0n],
      ["p2.enever.s0", 40n, 40n],
      ["base", 0n, 0n],
    ]);
    // The capture took 30 from the first lot and 10 from the second; a refund of 35 goes back in that order.
    const refunded = await unary(c.balances, c.balances.refund, { debitRequestId: captureId, amount: 35n, requestId: rid(), accountId: "lots-hold" });
    expect([refunded.refundedTotal, refunded.refundable, refunded.balance]).to.deep.equal([35n, 5n, 75n]);
    expect((await balance("lots-hold")).lots.map((l) => [l.key, l.remaining])).to.deep.equal([
      [`p1.e${soon}.s0`, 30n],
      ["p2.enever.s0", 45n],
      ["base", 0n],
    ]);
  });

  it("credit lots - a grant opening a lot beyond the per-account limit is FAILED_PRECONDITION naming it, and changes nothing", async () => {
    const far = Date.now() + 3_600_000;
    for (let i = 0; i < MAX_LIVE_LOTS; i++) await grant({ accountId: "lots-many", amount: 1n, ...lot({ priority: i, expiresAtMs: BigInt(far) }) });
    const requestId = rid();
    const error = await failure(grant({ accountId: "lots-many", amount: 5n, ...lot({ priority: MAX_LIVE_LOTS }), requestId }));
    expect(error.code).to.equal(status.FAILED_PRECONDITION);
    expect(error.details).to.contain(`account "lots-many" already has ${MAX_LIVE_LOTS} live credit lots`);
    const read = await balance("lots-many");
    expect([read.balance, read.lots.length]).to.deep.equal([BigInt(MAX_LIVE_LOTS), MAX_LIVE_LOTS + 1]);
    // Nothing was remembered: the same id into an existing lot is a new grant.
    expect((await grant({ accountId: "lots-many", amount: 5n, ...lot({ priority: 0, expiresAtMs: BigInt(far) }), requestId })).replayed).to.equal(false);
  });

  it("credit lots - a grant retried with other terms is ALREADY_EXISTS and changes nothing", async () => {
    const requestId = rid();
    await grant({ accountId: "lots-conflict", amount: 10n, ...lot({ priority: 3 }), requestId });
    const error = await failure(grant({ accountId: "lots-conflict", amount: 10n, ...lot({ priority: 4 }), requestId }));
    expect(error.code).to.equal(status.ALREADY_EXISTS);
    expect((await balance("lots-conflict")).lots.map((lot) => lot.key)).to.deep.equal(["p3.enever.s0", "base"]);
  });

  describe("credit lots - bad terms are INVALID_ARGUMENT naming the field and change nothing", () => {
    const now = Date.now();
    const cases: Array<[string, Partial<GrantRequest>, RegExp]> = [
      ["a negative priority", lot({ priority: -1 }), /^lot\.priority: /],
      ["a priority above 1000000", lot({ priority: 1_000_001 }), /^lot\.priority: /],
      ["a negative start", lot({ effectiveAtMs: -5n }), /^lot\.effective_at_ms: /],
      ["a negative expiry", lot({ expiresAtMs: -5n }), /^lot\.expires_at_ms: /],
      ["an expiry within the guard of its start", lot({ effectiveAtMs: BigInt(now), expiresAtMs: BigInt(now + GUARD_MS) }), /^lot\.expires_at_ms: .*guard/],
      ["an expiry beyond exact integers", lot({ expiresAtMs: 1n << 60n }), /^lot\.expires_at_ms: /],
      ["an expiry in seconds (a 1970 time: dead on arrival)", lot({ expiresAtMs: BigInt(Math.floor(now / 1000) + 86_400) }), /^lot\.expires_at_ms: .*dead on arrival.*milliseconds/],
      ["an expiry already within the guard", lot({ expiresAtMs: BigInt(now + 10) }), /^lot\.expires_at_ms: .*dead on arrival/],
    ];
    for (const [name, terms, message] of cases) {
      it(`credit lots - ${name} is refused`, async () => {
        const error = await failure(grant({ accountId: "lots-bad", amount: 10n, ...terms }));
        expect(error.code).to.equal(status.INVALID_ARGUMENT);
        expect(error.details).to.match(message);
        const read = await balance("lots-bad");
        expect(read.balance).to.equal(0n);
        expect(read.lots).to.deep.equal([]);
      });
    }

    it("credit lots - an account id naming a lot row is refused", async () => {
      const error = await failure(debit({ accountId: "lots-order#p20.enever.s0", amount: 1n }));
      expect(error.code).to.equal(status.INVALID_ARGUMENT);
      expect(error.details).to.match(/^account_id: /);
    });
  });
});

describe("credit lots - rights given from lots between two regions", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  const nodes: RunningNode[] = [];
  after(async () => {
    for (const n of nodes) await n.stop();
  });

  it("credit lots - a short region receives rights from the donor's lots in burn order, never from a dead lot", async () => {
    for (const region of ["east", "west"]) nodes.push(await twoRegionNode(nats(), region));
    const [east, west] = nodes as [RunningNode, RunningNode];
    const expiresAt = Date.now() + 3_600_000;
    const soonDead = Date.now() + GUARD_MS + 300;
    await east.node.grant("shared", 25n, "shared-g0", { priority: 0, effectiveAtMs: 0, expiresAtMs: soonDead });
    await east.node.grant("shared", 40n, "shared-g1", { priority: 5, effectiveAtMs: 0, expiresAtMs: expiresAt });
    await east.node.grant("shared", 40n, "shared-g2", { priority: 9, effectiveAtMs: 0, expiresAtMs: Number.MAX_SAFE_INTEGER });
    await until("the priority-0 lot to die", () => Date.now() >= soonDead - GUARD_MS, 10_000);
    await until("west to see the grants", () => west.node.state.accountBalance("shared", Date.now()) === 80n, 10_000);
    const decision = await west.node.debit({ accountId: "shared", amount: 10n, requestId: "shared-d1" }, 2_000);
    expect(decision.answer.outcome).to.equal(1);
    // West was given rights of the priority-5 lot first (the asker's burn order) and burnt them.
    const westLots = west.node.state.accountLots("shared", Date.now());
    const first = westLots.find((lot) => lot.key === `p5.e${expiresAt}.s0`);
    expect(first?.remaining).to.equal(30n);
    expect(westLots.find((lot) => lot.key === "p9.enever.s0")?.rights).to.equal(0n);
    // The dead lot (first in burn order) gave nothing: its 25 stay at east, unspendable.
    const dead = westLots.find((lot) => lot.key === `p0.e${soonDead}.s0`);
    expect([dead?.rights, dead?.remaining, dead?.expired]).to.deep.equal([0n, 25n, true]);
    await until("east to see west's debit", () => east.node.state.accountBalance("shared", Date.now()) === 70n, 10_000);

    // An operator's TransferAllowance gives from east's spendable lots in burn order, never the dead one.
    const before = east.node.state.accountLots("shared", Date.now());
    const spendable = east.node.state.spendableRights("shared", Date.now());
    const left = await east.node.transfer("shared", "west", spendable - 5n);
    expect(left).to.equal(5n);
    const after = east.node.state.accountLots("shared", Date.now());
    const rightsOf = (lots: typeof before, key: string): bigint | undefined => lots.find((lot) => lot.key === key)?.rights;
    expect(rightsOf(after, `p0.e${soonDead}.s0`)).to.equal(25n);
    expect(rightsOf(after, `p5.e${expiresAt}.s0`)).to.equal(0n);
    expect(rightsOf(after, "p9.enever.s0")).to.equal(5n);
    expect(rightsOf(before, "p9.enever.s0")).to.equal(40n);
    await until("west to hold the given rights", () => west.node.state.spendableRights("shared", Date.now()) >= spendable - 5n, 10_000);
  });
});

describe("credit lots - settlement records breakage", function () {
  this.timeout(120_000);
  const postgres = usePostgres();
  const nats = useStandaloneNats();

  it("credit lots - Settle records a dead lot's unspent part once, also when nothing changed since the last cut, and every lot row under its account", async () => {
    const roles = await postgres().provisionRoles("tally");
    const running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      postgres: { url: roles.settlerUrl, ownerUrl: roles.ownerUrl, readerUrl: roles.readerUrl, caFile: roles.caFile, ...DEFAULT_POSTGRES },
      config: { snapshotIntervalMs: 0, lotGuardMs: GUARD_MS },
    });
    const c = clients(`127.0.0.1:${running.grpcPort}`);
    const reader = new Client({ connectionString: roles.readerUrl, ssl: postgresSsl(roles.caFile) });
    reader.on("error", () => undefined);
    await reader.connect();
    try {
      const expiresAt = Date.now() + GUARD_MS + 800;
      await unary(c.balances, c.balances.grant, { accountId: "brk", amount: 100n, requestId: "brk-g1", ...lot({ priority: 1, expiresAtMs: BigInt(expiresAt) }) });
      await unary(c.balances, c.balances.grant, { accountId: "brk", amount: 10n, requestId: "brk-g2" });
      await unary(c.balances, c.balances.debit, { accountId: "brk", amount: 35n, requestId: "brk-d1", maxWaitMs: 0 });
      // Not yet past expiry + guard at the cut: no breakage.
      await unary(c.admin, c.admin.settle, {});
      await until("the region's clock to pass expiry + guard", () => Date.now() >= expiresAt + GUARD_MS, 10_000);
      // Nothing new since the last cut: the region's unchanged snapshot is its state as of now, so the breakage is due.
      const due = await unary(c.admin, c.admin.settle, {});
      await unary(c.balances, c.balances.grant, { accountId: "other", amount: 1n, requestId: "brk-g4" });
      await unary(c.admin, c.admin.settle, {});
      const breakage = await reader.query<{ s: string; account_id: string; lot_key: string; amount: string }>(
        "SELECT settlement_id::text AS s, account_id, lot_key, amount::text FROM lot_breakage",
      );
      expect(breakage.rows).to.deep.equal([{ s: String(due.settlement?.id), account_id: "brk", lot_key: `p1.e${expiresAt}.s0`, amount: "65" }]);
      const lots = await reader.query<{ lot_key: string; remaining: string }>("SELECT lot_key, remaining::text FROM account_lots WHERE account_id = 'brk' ORDER BY lot_key");
      expect(lots.rows).to.deep.equal([
        { lot_key: "base", remaining: "10" },
        { lot_key: `p1.e${expiresAt}.s0`, remaining: "65" },
      ]);
    } finally {
      await reader.end();
      c.close();
      await running.stop();
    }
  });
});

describe("credit lots - breakage with idle regions", function () {
  this.timeout(120_000);
  const postgres = usePostgres();
  const nats = useStandaloneNats();

  it("credit lots - two idle regions answer the cut as current now: the breakage is recorded without another write", async () => {
    const roles = await postgres().provisionRoles("tally_idle");
    const nodes: RunningNode[] = [];
    const postgresAccess = { url: roles.settlerUrl, ownerUrl: roles.ownerUrl, readerUrl: roles.readerUrl, caFile: roles.caFile, ...DEFAULT_POSTGRES };
    for (const region of ["east", "west"]) nodes.push(await twoRegionNode(nats(), region, { postgres: postgresAccess }, { snapshotIntervalMs: 0 }));
    const [east, west] = nodes as [RunningNode, RunningNode];
    const c = clients(`127.0.0.1:${east.grpcPort}`);
    const reader = new Client({ connectionString: roles.readerUrl, ssl: postgresSsl(roles.caFile) });
    reader.on("error", () => undefined);
    await reader.connect();
    try {
      const expiresAt = Date.now() + GUARD_MS + 800;
      await east.node.grant("idle", 40n, "idle-g1", { priority: 1, effectiveAtMs: 0, expiresAtMs: expiresAt });
      await until("west to see the grant", () => west.node.state.accountBalance("idle", Date.now()) === 40n, 10_000);
      // Both regions snapshot for this cut, before the expiry.
      const before = await unary(c.admin, c.admin.settle, {});
      await until("every region's clock to pass expiry + guard", () => Date.now() >= expiresAt + GUARD_MS, 10_000);
      // Neither region writes anything more; the cut's sequences stay the same.
      const due = await unary(c.admin, c.admin.settle, {});
      expect(due.settlement?.id).to.not.equal(before.settlement?.id);
      const breakage = await reader.query<{ s: string; amount: string }>("SELECT settlement_id::text AS s, amount::text FROM lot_breakage WHERE account_id = 'idle'");
      expect(breakage.rows).to.deep.equal([{ s: String(due.settlement?.id), amount: "40" }]);
      const again = await unary(c.admin, c.admin.settle, {});
      expect(again.settlement?.id).to.equal(due.settlement?.id);
    } finally {
      await reader.end();
      c.close();
      for (const n of nodes) await n.stop();
    }
  });
});
