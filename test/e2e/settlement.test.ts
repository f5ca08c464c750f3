// Settlement across three real regions into a real Postgres: totals equal
// every acknowledged grant and debit exactly; an OVERDRAFT account overspent
// during a partition is recorded with its true amount; STRICT records none.

import { expect } from "chai";
import { DebitOutcome } from "../../src/generated/tally/v1/balances";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import { TestCluster } from "../support/cluster";
import { approved, debitLoad, newProgress, sleep, sum, until } from "../support/debit-load";
import { unary } from "../support/grpc-clients";
import { startPostgres, type PostgresServer } from "../support/postgres";

const REGIONS = ["east", "west", "central"];

describe("settlement - three regions settled into Postgres", function () {
  this.timeout(180_000);
  let postgres: PostgresServer;
  let cluster: TestCluster;

  before(async function () {
    this.timeout(120_000);
    postgres = await startPostgres();
    cluster = await TestCluster.start({ postgres: await postgres.provisionRoles("tally") });
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
    await postgres?.destroy();
  });

  const admin = (region: string) => cluster.region(region).clients.admin;
  const settle = (region = "east") => unary(admin(region), admin(region).settle, {});

  it("settlement - totals equal every acknowledged grant and debit across regions, exactly", async () => {
    const accounts = ["set-1", "set-2", "set-3"];
    const granted = new Map<string, bigint>();
    for (const [i, region] of REGIONS.entries()) {
      for (const a of accounts) {
        const amount = 1_000n * BigInt(i + 1) + (1n << 53n);
        const c = cluster.region(region).clients;
        await unary(c.balances, c.balances.grant, { accountId: a, amount, requestId: `set-g-${region}-${a}` });
        granted.set(a, (granted.get(a) ?? 0n) + amount);
      }
    }
    let stop = false;
    const progress = REGIONS.map(() => newProgress());
    const loads = REGIONS.map((region, i) =>
      debitLoad({ client: () => cluster.region(region).clients.balances, accounts, amount: 13n, concurrency: 3, stop: () => stop, maxCalls: 300, prefix: `set-${region}`, maxWaitMs: 100, progress: progress[i]! }),
    );
    await until("50 approvals in every region", () => progress.every((p) => p.approved >= 50));
    stop = true;
    const attempts = (await Promise.all(loads)).flat();
    await cluster.waitConverged(accounts);
    const result = await settle("west");
    expect(result.skipped).to.equal(false);
    expect(result.settlement?.id).to.be.a("bigint");
    for (const a of accounts) {
      const expected = (granted.get(a) ?? 0n) - sum(approved(attempts).filter((x) => x.accountId === a));
      // The settled part reaches every region through the settlements' stream, not a database read.
      let view = await cluster.balance("central", a);
      const deadline = Date.now() + 30_000;
      while (view.settlementId !== result.settlement?.id && Date.now() < deadline) {
        await sleep(25);
        view = await cluster.balance("central", a);
      }
      expect(view.settlementId, `settlement of ${a} seen at central`).to.equal(result.settlement?.id);
      expect(view.settledBalance, `settled balance of ${a}`).to.equal(expected);
      expect(view.balance).to.equal(expected);
      const history = await unary(admin("east"), admin("east").getAccountHistory, { accountId: a, pageSize: 0, pageToken: "" });
      const fromLedger = history.entries.reduce((s, e) => s + e.grantedDelta - e.debitedDelta, 0n);
      expect(fromLedger, `ledger of ${a}`).to.equal(expected);
    }
    // The same cut again adds nothing.
    const again = await settle("east");
    expect(again.unchanged || again.settlement?.accountsChanged === 0n).to.equal(true);
    const listed = await unary(admin("central"), admin("central").listSettlements, { pageSize: 10, pageToken: "" });
    expect(listed.settlements.length).to.be.greaterThan(0);
  });

  it("settlement - an OVERDRAFT account overspent in a partition is recorded with its true amount; STRICT records none", async () => {
    const od = "set-od";
    const strict = "set-strict";
    const c = (region: string) => cluster.region(region).clients;
    await unary(admin("east"), admin("east").setAccountPolicy, {
      accountId: od,
      policy: { mode: PolicyMode.POLICY_MODE_OVERDRAFT, overdraftLimit: 50n, lowWaterMark: 0n },
    });
    await unary(c("east").balances, c("east").balances.grant, { accountId: od, amount: 100n, requestId: "set-od-g" });
    await unary(c("east").balances, c("east").balances.grant, { accountId: strict, amount: 100n, requestId: "set-strict-g" });
    await cluster.waitConverged([od, strict]);
    // The proxies cut central's gateway links before this resolves.
    await cluster.nats.partition("central");
    const outcomes: DebitOutcome[] = [];
    for (const region of ["east", "central"]) {
      for (let i = 0; i < 14; i++) {
        for (const account of [od, strict]) {
          const answer = await unary(c(region).balances, c(region).balances.debit, {
            accountId: account,
            amount: 10n,
            requestId: `set-p-${region}-${account}-${i}`,
            maxWaitMs: 20,
          });
          outcomes.push(answer.outcome);
        }
      }
    }
    await cluster.nats.heal();
    await cluster.waitConverged([od, strict], 60_000);
    expect(outcomes).to.include(DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT);
    const odBalance = (await cluster.balance("west", od)).balance;
    expect(odBalance < 0n, `OVERDRAFT balance ${odBalance} went below zero`).to.equal(true);
    expect((await cluster.balance("west", strict)).balance >= 0n).to.equal(true);
    const result = await settle("central");
    const settlementId = result.settlement?.id;
    const overspends = await unary(admin("west"), admin("west").listOverspends, { accountId: "", sinceMs: 0n, untilMs: 0n, pageSize: 100, pageToken: "" });
    const mine = overspends.overspends.filter((o) => o.settlementId === settlementId);
    const odRow = mine.find((o) => o.accountId === od);
    expect(odRow?.amount, "recorded overspend equals the true overspend").to.equal(-odBalance);
    expect(odRow?.mode).to.equal(PolicyMode.POLICY_MODE_OVERDRAFT);
    expect(odRow?.regions.length).to.be.greaterThan(0);
    expect(mine.find((o) => o.accountId === strict), "STRICT account has no overspend").to.equal(undefined);
  });
});
