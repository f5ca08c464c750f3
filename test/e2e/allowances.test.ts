// Escrow allowances across three real regions: STRICT never overspends, even
// with a region cut off; OVERDRAFT stays within the sum of limits; rights
// follow skewed demand; and the last credits are spendable, not stranded.

import { expect } from "chai";
import { DebitOutcome } from "../../src/generated/tally/v1/balances";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import { TestCluster } from "../support/cluster";
import { approved, debitLoad, sleep, sum } from "../support/debit-load";
import { unary } from "../support/grpc-clients";

const REGIONS = ["east", "west", "central"];

describe("allowances - escrow rights across three regions", function () {
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
  const setPolicy = (region: string, accountId: string, mode: PolicyMode, overdraftLimit: bigint) => {
    const c = cluster.region(region).clients;
    return unary(c.admin, c.admin.setAccountPolicy, { accountId, policy: { mode, overdraftLimit, lowWaterMark: 0n } });
  };
  const load = (region: string, accounts: string[], prefix: string, stop: () => boolean, maxWaitMs = 200) =>
    debitLoad({
      client: () => cluster.region(region).clients.balances,
      accounts,
      amount: 3n,
      concurrency: 4,
      stop,
      maxCalls: 3_000,
      prefix,
      maxWaitMs,
    });

  it("allowances - STRICT never overspends with all regions spending and one partitioned part of the time", async () => {
    const accounts = ["strict-1", "strict-2"];
    for (const a of accounts) {
      await grant("east", a, 600n, `sg-e-${a}`);
      await grant("west", a, 300n, `sg-w-${a}`);
    }
    await cluster.waitConverged(accounts);
    let stop = false;
    const loads = REGIONS.map((r) => load(r, accounts, `strict-${r}`, () => stop));
    await sleep(400);
    await cluster.nats.partition("central");
    await sleep(1_200);
    await cluster.nats.heal();
    // Spend on until the credit is gone (so refusals happen whatever the machine's speed), bounded.
    for (let waited = 0; waited < 20_000; waited += 100) {
      const left = await Promise.all(accounts.map((a) => cluster.balance("west", a)));
      if (left.every((v) => v.balance === 0n)) break;
      await sleep(100);
    }
    await sleep(200);
    stop = true;
    const attempts = (await Promise.all(loads)).flat();
    await cluster.waitConverged(accounts, 60_000);
    for (const a of accounts) {
      for (const region of REGIONS) {
        const view = await cluster.balance(region, a);
        expect(view.balance >= 0n, `${a} at ${region}: ${view.balance}`).to.equal(true);
      }
      const spent = sum(approved(attempts).filter((x) => x.accountId === a));
      expect(spent <= 900n, `${a}: approved ${spent} of 900`).to.equal(true);
      const view = await cluster.balance("west", a);
      expect(view.balance).to.equal(900n - spent);
    }
    expect(attempts.some((x) => x.answer?.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT)).to.equal(true);
  });

  it("allowances - OVERDRAFT overspend stays within the sum of limits and is visible after healing", async () => {
    const account = "od-1";
    const limit = 20n;
    await setPolicy("east", account, PolicyMode.POLICY_MODE_OVERDRAFT, limit);
    await grant("east", account, 90n, "od-g");
    await cluster.waitConverged([account]);
    for (const region of REGIONS) {
      const policy = await unary(cluster.region(region).clients.admin, cluster.region(region).clients.admin.getAccountPolicy, { accountId: account });
      expect(policy.policy?.mode, `policy replicated to ${region}`).to.equal(PolicyMode.POLICY_MODE_OVERDRAFT);
    }
    await cluster.nats.partition("central");
    await sleep(300);
    let stop = false;
    const loads = REGIONS.map((r) => load(r, [account], `od-${r}`, () => stop, 50));
    await sleep(1_500);
    stop = true;
    const attempts = (await Promise.all(loads)).flat();
    await cluster.nats.heal();
    await cluster.waitConverged([account], 60_000);
    const view = await cluster.balance("east", account);
    const spent = sum(approved(attempts));
    expect(view.balance).to.equal(90n - spent);
    const overspend = view.balance < 0n ? -view.balance : 0n;
    expect(overspend <= 3n * limit, `overspend ${overspend} <= ${3n * limit}`).to.equal(true);
    expect(attempts.some((a) => a.answer?.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT)).to.equal(true);
  });

  it("allowances - rights follow skewed demand: grants land in east, spending happens in west", async () => {
    const accounts = Array.from({ length: 5 }, (_, i) => `skew-${i}`);
    for (const a of accounts) await grant("east", a, 1_000_000n, `skew-g-${a}`);
    await cluster.waitConverged(accounts);
    let stop = false;
    const west = load("west", accounts, "skew-west", () => stop, 1_000);
    const east = debitLoad({
      client: () => cluster.region("east").clients.balances,
      accounts,
      amount: 3n,
      concurrency: 1,
      stop: () => stop,
      maxCalls: 200,
      prefix: "skew-east",
      maxWaitMs: 1_000,
    });
    await sleep(2_000);
    stop = true;
    const attempts = [...(await west), ...(await east)];
    // Every debit had ample global balance: any refusal would be a false rejection.
    const refused = attempts.filter((a) => a.answer?.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    expect(refused, "false rejections").to.have.length(0);
    for (const a of accounts) {
      const view = await cluster.balance("west", a);
      expect(view.localRights > 0n, `west holds rights for ${a}`).to.equal(true);
    }
  });

  it("allowances - the low-balance endgame spends every last credit under STRICT", async () => {
    const account = "endgame";
    await grant("east", account, 40n, "end-g1");
    await grant("central", account, 35n, "end-g2");
    await cluster.waitConverged([account]);
    const spend = async (region: string): Promise<bigint> => {
      const c = cluster.region(region).clients;
      let spent = 0n;
      let refusedInARow = 0;
      for (let i = 0; refusedInARow < 3 && i < 500; i++) {
        const answer = await unary(c.balances, c.balances.debit, { accountId: account, amount: 1n, requestId: `end-${region}-${i}`, maxWaitMs: 300 });
        if (answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED) {
          spent += 1n;
          refusedInARow = 0;
        } else {
          refusedInARow++;
        }
      }
      return spent;
    };
    const spent = await Promise.all(REGIONS.map(spend));
    await cluster.waitConverged([account]);
    expect(spent.reduce((s, x) => s + x, 0n)).to.equal(75n);
    expect((await cluster.balance("west", account)).balance).to.equal(0n);
  });
});
