// Traffic shifts: a cold burst of many accounts debited at one region while
// their funds sit in another. Rights move in batches (one request per donor
// per window, one durable commit per batch); every refusal is a false
// rejection (each account holds 10x the debit) and must be counted as one.

import { expect } from "chai";
import type { ServiceError } from "@grpc/grpc-js";
import { DebitOutcome, type DebitResponse } from "../../src/generated/tally/v1/balances";
import { TestCluster } from "../support/cluster";
import { unary } from "../support/grpc-clients";
import type { ShiftRightsResponse } from "../../src/generated/tally/v1/admin";

const ACCOUNTS = 1_000;
const FUNDS = 100n;
const DEBIT = 10n;
const REGIONS = ["east", "west", "central"];

async function counter(metricsUrl: string, name: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  let total = 0;
  for (const line of text.split("\n")) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(" ") + 1));
  return total;
}

describe("traffic shift - a cold burst at one region with the funds in another", function () {
  this.timeout(300_000);
  let cluster: TestCluster;

  before(async function () {
    this.timeout(120_000);
    cluster = await TestCluster.start();
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
  });

  it("traffic shift - 1,000 cold accounts at west, funded at east: exact balances, refusals counted as false rejections", async () => {
    const accounts = Array.from({ length: ACCOUNTS }, (_, k) => `shift-${k}`);
    for (let start = 0; start < ACCOUNTS; start += 250) {
      await Promise.all(accounts.slice(start, start + 250).map((a) => cluster.grant("east", a, FUNDS, `fund-${a}`)));
    }
    await cluster.waitConverged([]);
    const west = cluster.region("west");
    const falseBefore = await counter(west.node.metricsUrl, "tally_false_rejections_total");
    const batchesBefore = await counter(west.node.metricsUrl, "tally_rights_batch_size_count");

    // Every request id is recorded; an unknown answer (an error) is retried with the same id.
    const answers = new Map<string, DebitResponse>();
    const debitOnce = async (accountId: string): Promise<void> => {
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          const c = west.clients.balances;
          answers.set(accountId, await unary(c, c.debit, { accountId, amount: DEBIT, requestId: `burst-${accountId}`, maxWaitMs: 200 }));
          return;
        } catch (error) {
          if (attempt === 19) throw new Error(`debit of ${accountId} never answered: ${(error as ServiceError).message}`);
        }
      }
    };
    await Promise.all(accounts.map(debitOnce));
    expect(answers.size).to.equal(ACCOUNTS);

    const approved = accounts.filter((a) => answers.get(a)?.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED);
    const refused = accounts.filter((a) => answers.get(a)?.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    expect(approved.length + refused.length, "every answer is approved or refused").to.equal(ACCOUNTS);
    // Each account held 10x the debit: every refusal is false, and counted.
    const falseRejections = (await counter(west.node.metricsUrl, "tally_false_rejections_total")) - falseBefore;
    // The < 1% bar depends on the machine's speed: bench/traffic-shift-bench.ts measures it.
    expect(falseRejections).to.equal(refused.length);
    // Batched: far fewer batches than accounts (two donors are asked per batch).
    const batches = (await counter(west.node.metricsUrl, "tally_rights_batch_size_count")) - batchesBefore;
    expect(batches, "rights batches sent and answered").to.be.greaterThan(0);
    expect(batches, "rights batches").to.be.below(ACCOUNTS);

    // Exact balances everywhere once converged; STRICT never below zero.
    await cluster.waitConverged([]);
    const refusedSet = new Set(refused);
    for (const region of REGIONS) {
      const views = await Promise.all(accounts.map((a) => cluster.balance(region, a)));
      views.forEach((view, k) => {
        const a = accounts[k]!;
        expect(view.balance, `${a} at ${region}`).to.equal(refusedSet.has(a) ? FUNDS : FUNDS - DEBIT);
      });
    }
    const spentRights = await Promise.all(accounts.slice(0, 50).map((a) => cluster.balance("west", a)));
    for (const view of spentRights) expect(view.localRights >= 0n, "west's rights never below zero (STRICT)").to.equal(true);
  });

  /** Runs Admin.ShiftRights on `region`'s node; resolves with every progress message, or rejects with the stream's status. */
  const shift = (region: string, shiftId: string, toRegion: string, fraction: number): Promise<ShiftRightsResponse[]> =>
    new Promise((resolve, reject) => {
      const seen: ShiftRightsResponse[] = [];
      const stream = cluster.region(region).clients.admin.shiftRights({ shiftId, toRegion, fraction });
      stream.on("data", (p: ShiftRightsResponse) => seen.push(p));
      stream.on("error", reject);
      stream.on("end", () => resolve(seen));
    });

  it("traffic shift - a planned shift moves rights in bulk, durable; re-running it moves nothing; its opposite returns them", async () => {
    const accounts = Array.from({ length: 1_500 }, (_, k) => `planned-${k}`);
    for (let start = 0; start < accounts.length; start += 250) {
      await Promise.all(accounts.slice(start, start + 250).map((a) => cluster.grant("central", a, FUNDS, `fund-${a}`)));
    }
    const progress = await shift("central", "move-1", "west", 1);
    const last = progress.at(-1)!;
    expect(last.complete).to.equal(true);
    expect(progress.length, "progress reported per chunk, then complete").to.be.greaterThan(1);
    expect(Number(last.accountsMoved)).to.equal(accounts.length);
    expect(last.amountMoved).to.equal(FUNDS * BigInt(accounts.length));
    await cluster.waitConverged([]);
    for (const view of await Promise.all(accounts.map((a) => cluster.balance("west", a)))) {
      expect(view.localRights).to.equal(FUNDS);
      expect(view.balance).to.equal(FUNDS);
    }

    // Same id again: the goal is met, nothing moves. Same id, other parameters: refused.
    const again = (await shift("central", "move-1", "west", 1)).at(-1)!;
    expect(again.complete).to.equal(true);
    expect(again.amountMoved).to.equal(0n);
    const conflict = await shift("central", "move-1", "east", 1).then(() => undefined, (e: ServiceError) => e);
    expect(conflict?.code).to.equal(9); // FAILED_PRECONDITION
    const bad = await shift("central", "move-2", "west", 1.5).then(() => undefined, (e: ServiceError) => e);
    expect(bad?.code).to.equal(3); // INVALID_ARGUMENT
    expect(bad?.details).to.contain("fraction");

    // The opposite: half of west's rights return to central.
    const back = (await shift("west", "return-1", "central", 0.5)).at(-1)!;
    expect(back.complete).to.equal(true);
    await cluster.waitConverged([]);
    for (const view of await Promise.all(accounts.slice(0, 100).map((a) => cluster.balance("central", a)))) {
      expect(view.localRights).to.equal(FUNDS / 2n);
      expect(view.balance).to.equal(FUNDS);
    }
  });
});
