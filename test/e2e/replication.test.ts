// Three real regions (nats-server per region joined by gateways, one node
// process per region): convergence, crash recovery, partitions and NATS
// restarts, with nothing acknowledged lost or doubled.

import { expect } from "chai";
import { DebitOutcome } from "../../src/generated/tally/v1/balances";
import { TestCluster } from "../support/cluster";
import { approved, debitLoad, newProgress, sum, until, type Attempt } from "../support/debit-load";
import { unary } from "../support/grpc-clients";

describe("replication - three regions over a NATS supercluster", function () {
  this.timeout(180_000);
  let cluster: TestCluster;

  before(async function () {
    this.timeout(120_000);
    cluster = await TestCluster.start();
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
  });

  const grant = (region: string, accountId: string, amount: bigint, requestId: string) => cluster.grant(region, accountId, amount, requestId);

  /** Debited totals per region for an account, read at `region`. */
  const debitedAt = async (region: string, accountId: string): Promise<Map<string, bigint>> => {
    const view = await cluster.balance(region, accountId);
    return new Map(view.regions.map((r) => [r.region, r.debited]));
  };

  it("replication - changes made in every region converge everywhere", async () => {
    await grant("east", "conv-1", 1_000n, "conv-g-east");
    await grant("west", "conv-1", 500n, "conv-g-west");
    await grant("central", "conv-2", 70n, "conv-g-central");
    const c = cluster.region("west").clients;
    const spent = await unary(c.balances, c.balances.debit, { accountId: "conv-1", amount: 400n, requestId: "conv-d-west", maxWaitMs: 0 });
    expect(spent.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    await cluster.waitConverged(["conv-1", "conv-2"]);
    expect((await cluster.balance("central", "conv-1")).balance).to.equal(1_100n);
    expect((await cluster.balance("east", "conv-2")).balance).to.equal(70n);
  });

  it("replication - a retry that fails over to another region returns the original answer", async () => {
    await grant("east", "failover", 100n, "failover-g");
    const east = cluster.region("east").clients;
    const first = await unary(east.balances, east.balances.debit, { accountId: "failover", amount: 10n, requestId: "failover-d", maxWaitMs: 0 });
    await cluster.waitConverged(["failover"]);
    const west = cluster.region("west").clients;
    const retry = await unary(west.balances, west.balances.debit, { accountId: "failover", amount: 10n, requestId: "failover-d", maxWaitMs: 0 });
    expect(retry.replayed).to.equal(true);
    expect(retry.outcome).to.equal(first.outcome);
    await cluster.waitConverged(["failover"]);
    expect((await cluster.balance("central", "failover")).balance).to.equal(90n);
  });

  it("replication - kill -9 under load loses no acknowledged debit and counts each exactly once", async () => {
    const accounts = Array.from({ length: 20 }, (_, i) => `crash-${i}`);
    for (const a of accounts) await grant("east", a, 1_000_000n, `crash-g-${a}`);
    let stop = false;
    const crashProgress = newProgress();
    const load = debitLoad({
      client: () => cluster.region("east").clients.balances,
      accounts,
      amount: 3n,
      concurrency: 16,
      stop: () => stop,
      maxCalls: 200_000,
      prefix: "crash",
      deadlineMs: 2_000,
      progress: crashProgress,
    });
    await until("200 debits approved at east", () => crashProgress.approved >= 200);
    await cluster.region("east").node.kill();
    // Every worker has seen the crash (a call failed after the kill) before the load stops.
    const failedBefore = crashProgress.failed;
    await until("the load to see east gone", () => crashProgress.failed >= failedBefore + 16);
    stop = true;
    const attempts = await load;
    const acked = approved(attempts);
    expect(acked.length, "some debits were acknowledged before the kill").to.be.greaterThan(100);
    await cluster.restartNode("east");
    // Every acknowledged debit is known after the restart: its retry is a replay.
    const c = cluster.region("east").clients;
    for (const attempt of acked) {
      const retry = await unary(c.balances, c.balances.debit, {
        accountId: attempt.accountId,
        amount: attempt.amount,
        requestId: attempt.requestId,
        maxWaitMs: 0,
      });
      expect(retry.replayed, `acknowledged ${attempt.requestId} was lost`).to.equal(true);
    }
    // Retrying every unacknowledged attempt applies it at most once more; then the
    // debited totals equal exactly the sum of all attempts.
    for (const attempt of attempts.filter((a) => a.answer === undefined)) {
      await unary(c.balances, c.balances.debit, { accountId: attempt.accountId, amount: attempt.amount, requestId: attempt.requestId, maxWaitMs: 0 });
    }
    await cluster.waitConverged(accounts);
    let debited = 0n;
    for (const a of accounts) debited += (await debitedAt("west", a)).get("east") ?? 0n;
    expect(debited).to.equal(sum(attempts));
  });

  it("replication - a partitioned region keeps serving, then everything converges with nothing lost or doubled", async () => {
    const accounts = ["part-1", "part-2", "part-3"];
    for (const a of accounts) {
      await grant("east", a, 10_000n, `part-ge-${a}`);
      await grant("central", a, 10_000n, `part-gc-${a}`);
    }
    await cluster.waitConverged(accounts);
    await cluster.nats.partition("central");
    let stop = false;
    const progress = { east: newProgress(), central: newProgress() };
    const loads = (["east", "central"] as const).map((region) =>
      debitLoad({
        progress: progress[region],
        client: () => cluster.region(region).clients.balances,
        accounts,
        amount: 7n,
        concurrency: 4,
        stop: () => stop,
        maxCalls: 600,
        prefix: `part-${region}`,
      }),
    );
    await until("150 approvals on each side of the partition", () => progress.east.approved >= 150 && progress.central.approved >= 150, 60_000);
    stop = true;
    const [eastAttempts, centralAttempts] = await Promise.all(loads);
    expect(approved(centralAttempts!).length, "the cut-off region kept approving from its own rights").to.be.greaterThan(0);
    await cluster.nats.heal();
    await cluster.waitConverged(accounts, 60_000);
    const approvedAll = [...approved(eastAttempts!), ...approved(centralAttempts!)];
    let total = 0n;
    for (const a of accounts) {
      const view = await cluster.balance("west", a);
      total += view.regions.reduce((s, r) => s + r.debited, 0n);
      expect(view.balance >= 0n, `STRICT balance of ${a} stays >= 0`).to.equal(true);
    }
    expect(total).to.equal(sum(approvedAll));
  });

  it("replication - a restarted nats-server loses nothing and replication resumes", async () => {
    await grant("west", "natsr", 5_000n, "natsr-g");
    await cluster.waitConverged(["natsr"]);
    let stop = false;
    const natsProgress = newProgress();
    const load = debitLoad({
      client: () => cluster.region("west").clients.balances,
      accounts: ["natsr"],
      amount: 1n,
      concurrency: 4,
      stop: () => stop,
      maxCalls: 5_000,
      prefix: "natsr",
      deadlineMs: 10_000,
      progress: natsProgress,
    });
    await until("50 debits approved at west", () => natsProgress.approved >= 50);
    await cluster.nats.region("west").nats.restart();
    // West approves again after its nats-server came back.
    const approvedAtRestart = natsProgress.approved;
    await until("west approving again after the restart", () => natsProgress.approved >= approvedAtRestart + 50, 60_000);
    stop = true;
    const attempts: Attempt[] = await load;
    const acked = approved(attempts);
    await cluster.waitConverged(["natsr"], 60_000);
    const view = await cluster.balance("east", "natsr");
    const westDebited = view.regions.find((r) => r.region === "west")?.debited ?? 0n;
    // Acknowledged debits are all there; unacknowledged ones may or may not be.
    expect(westDebited >= sum(acked)).to.equal(true);
    expect(westDebited <= sum(attempts)).to.equal(true);
    const after = await unary(cluster.region("west").clients.balances, cluster.region("west").clients.balances.debit, {
      accountId: "natsr",
      amount: 1n,
      requestId: "natsr-after",
      maxWaitMs: 0,
    });
    expect(after.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
  });
});
