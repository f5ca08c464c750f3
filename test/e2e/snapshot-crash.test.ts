// A region killed -9 at each step of a snapshot, under batch load in three
// real regions: the first object chunk, a middle chunk, the object's meta, the
// stream purge, and shortly after the request. Steady unary debits run at
// east, debits at west and grants at central throughout; a 2,000-item
// DebitBatch goes to east just before each snapshot request. Every unanswered
// request is retried with its own id, and then every request is sent once
// more: the totals in every region must equal exactly what the final answers
// approved, so no commit's changes ever outlive its request records.

import { expect } from "chai";
import { connect, type NatsConnection, type Subscription } from "nats";
import { DebitOutcome, type DebitRequest, type DebitResponse } from "../../src/generated/tally/v1/balances";
import { snapshotBucket } from "../../src/replication/snapshot-store";
import { TestCluster } from "../support/cluster";
import { approved, debitLoad, sum, type Attempt } from "../support/debit-load";
import { unary } from "../support/grpc-clients";
import { natsConnectOptions } from "../support/nats";

const BATCH_ACCOUNTS = 2_000;
const HOT = 8;
const EAST_ACCOUNTS = HOT + BATCH_ACCOUNTS;

type Step = { readonly name: string; readonly subject: string; readonly nth: (chunksBefore: number) => number } | { readonly name: string; readonly afterMs: number };

const isApproval = (answer: DebitResponse | undefined): boolean =>
  answer !== undefined &&
  (answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED || answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT);

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("snapshot crash - kill -9 at each snapshot step under batch load", function () {
  this.timeout(300_000);
  let cluster: TestCluster;
  let raw: NatsConnection;

  before(async function () {
    this.timeout(120_000);
    cluster = await TestCluster.start({ extraArgs: ["--max-retained-messages", "0"] });
    raw = await connect(natsConnectOptions(cluster.nats.region("east").nats));
  });
  after(async function () {
    this.timeout(60_000);
    await raw?.close();
    await cluster?.stop();
  });

  const balances = (region: string) => cluster.region(region).clients.balances;

  it("snapshot crash - retries after kills at chunk, middle chunk, meta, purge and +20 ms charge nothing twice: exact totals in every region", async () => {
    const eastAccounts = Array.from({ length: EAST_ACCOUNTS }, (_, i) => `sc-e-${i}`);
    const hot = eastAccounts.slice(0, HOT);
    const westAccounts = Array.from({ length: 20 }, (_, i) => `sc-w-${i}`);
    const centralAccounts = Array.from({ length: 20 }, (_, i) => `sc-c-${i}`);
    // Seed: hot accounts hold plenty, batch accounts a little; west's accounts funded at west.
    const seed = async (region: string, accounts: readonly string[], amount: (a: string) => bigint): Promise<void> => {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < accounts.length) {
          const account = accounts[next++]!;
          await cluster.grant(region, account, amount(account), `sc-seed-${account}`);
        }
      };
      await Promise.all(Array.from({ length: 16 }, () => worker()));
    };
    await seed("east", eastAccounts, (a) => (hot.includes(a) ? 1_000_000n : 50n));
    await seed("west", westAccounts, () => 1_000_000n);

    let stopLoad = false;
    let eastCalls = 0;
    const eastLoad = debitLoad({
      client: () => {
        eastCalls++;
        return balances("east");
      },
      accounts: hot,
      amount: 3n,
      concurrency: 8,
      stop: () => stopLoad,
      maxCalls: 200_000,
      prefix: "sc-ue",
    });
    const westLoad = debitLoad({
      client: () => balances("west"),
      accounts: westAccounts,
      amount: 2n,
      concurrency: 2,
      stop: () => stopLoad,
      maxCalls: 200_000,
      prefix: "sc-uw",
    });
    const grants: { accountId: string; requestId: string; acknowledged: boolean }[] = [];
    const centralGrants = (async () => {
      for (let i = 0; !stopLoad && i < 100_000; i++) {
        const grant = { accountId: centralAccounts[i % centralAccounts.length]!, requestId: `sc-gc-${i}`, acknowledged: false };
        grants.push(grant);
        await cluster.grant("central", grant.accountId, 5n, grant.requestId).then(
          () => (grant.acknowledged = true),
          () => new Promise((r) => setTimeout(r, 20)),
        );
      }
    })();

    const bucket = snapshotBucket("east");
    const steps: Step[] = [
      { name: "first object chunk", subject: `$O.${bucket}.C.>`, nth: () => 1 },
      { name: "middle object chunk", subject: `$O.${bucket}.C.>`, nth: (before) => Math.max(2, Math.ceil(before / 2)) },
      { name: "object meta", subject: `$O.${bucket}.M.>`, nth: () => 1 },
      { name: "stream purge", subject: "$JS.API.STREAM.PURGE.TALLY_EAST", nth: () => 1 },
      { name: "20 ms after the request", afterMs: 20 },
    ];
    const batches: { items: DebitRequest[]; answers: (DebitResponse | undefined)[] }[] = [];
    const killedAt: string[] = [];
    let chunksOfLastSnapshot = 0;
    const chunksPerRound: number[] = [];
    // A first, complete snapshot (with the ids of a few batches in it) sets the
    // object's size, so the middle-chunk kill can land inside a later one.
    for (let i = 0; i < 3; i++) {
      const items = eastAccounts.slice(HOT).map((accountId) => ({ accountId, amount: 1n, requestId: `sc-p${i}-${accountId}`, maxWaitMs: 0 }));
      const c = balances("east");
      const answers = (await unary(c, c.debitBatch, { debits: items }, { deadline: Date.now() + 30_000 })).results;
      batches.push({ items, answers });
    }
    await raw.request("tally.snapshot.east", new Uint8Array(0), { timeout: 30_000 });
    chunksOfLastSnapshot = (await (await raw.jetstream().views.os(bucket)).info("state"))?.chunks ?? 0;
    expect(chunksOfLastSnapshot, "object chunks of the first snapshot").to.be.greaterThan(2);
    try {
      for (const [round, step] of steps.entries()) {
        // Some steady load first, so the snapshot has unary commits to cut through.
        const seen = eastCalls;
        await waitFor("unary debits at east", () => eastCalls > seen + 50);
        const items = eastAccounts.slice(HOT, HOT + BATCH_ACCOUNTS).map((accountId) => ({ accountId, amount: 1n, requestId: `sc-b${round}-${accountId}`, maxWaitMs: 0 }));
        const batch = { items, answers: items.map((): DebitResponse | undefined => undefined) };
        batches.push(batch);
        const node = cluster.region("east").node;
        let killed: Promise<void> | undefined;
        let subscription: Subscription | undefined;
        if ("subject" in step) {
          const target = step.nth(chunksOfLastSnapshot);
          let count = 0;
          subscription = raw.subscribe(step.subject, {
            callback: () => {
              if (++count === target && killed === undefined) killed = node.kill();
            },
          });
          await raw.flush();
        }
        const client = balances("east");
        const answered = unary(client, client.debitBatch, { debits: items }, { deadline: Date.now() + 30_000 }).then(
          (response) => response.results.forEach((r, i) => (batch.answers[i] = r)),
          () => undefined,
        );
        raw.request("tally.snapshot.east", new Uint8Array(0), { timeout: 30_000 }).catch(() => undefined);
        if ("afterMs" in step) {
          await new Promise((r) => setTimeout(r, step.afterMs));
          killed = node.kill();
        }
        await waitFor(`the kill at the ${step.name}`, () => killed !== undefined, 60_000);
        await killed;
        subscription?.unsubscribe();
        killedAt.push(step.name);
        await answered;
        await cluster.restartNode("east");
        const info = await (await raw.jetstream().views.os(bucket)).info("state");
        // A snapshot cut short leaves the last complete one in place.
        chunksOfLastSnapshot = info?.chunks ?? 0;
        chunksPerRound.push(chunksOfLastSnapshot);
      }
    } finally {
      stopLoad = true;
    }
    const [eastAttempts, westAttempts] = await Promise.all([eastLoad, westLoad]);
    await centralGrants;
    expect(killedAt).to.deep.equal(steps.map((s) => s.name));
    expect(chunksPerRound.every((n) => n > 2), `object chunks after each round: ${chunksPerRound.join(",")}`).to.equal(true);

    // Every unanswered request retried with its own id until answered.
    const resolve = async (region: string, attempts: readonly Attempt[]): Promise<void> => {
      for (const attempt of attempts.filter((a) => a.answer === undefined)) {
        const c = balances(region);
        attempt.answer = await unary(c, c.debit, { accountId: attempt.accountId, amount: attempt.amount, requestId: attempt.requestId, maxWaitMs: 0 });
      }
    };
    await resolve("east", eastAttempts);
    await resolve("west", westAttempts);
    for (const batch of batches) {
      // The whole batch again: answered items must replay, unanswered ones are decided now.
      const c = balances("east");
      const again = await unary(c, c.debitBatch, { debits: batch.items }, { deadline: Date.now() + 30_000 });
      again.results.forEach((result, i) => {
        const first = batch.answers[i];
        if (first !== undefined) {
          expect(result.replayed, `${batch.items[i]!.requestId} answered before the crash`).to.equal(true);
          expect(result.outcome).to.equal(first.outcome);
        }
        batch.answers[i] = result;
      });
    }
    for (const grant of grants.filter((g) => !g.acknowledged)) {
      await cluster.grant("central", grant.accountId, 5n, grant.requestId);
      grant.acknowledged = true;
    }
    // Every approved unary debit once more: a replay, never a second charge.
    for (const attempt of approved(eastAttempts)) {
      const c = balances("east");
      const again = await unary(c, c.debit, { accountId: attempt.accountId, amount: attempt.amount, requestId: attempt.requestId, maxWaitMs: 0 });
      expect(again.replayed, attempt.requestId).to.equal(true);
    }

    const all = [...eastAccounts.slice(0, HOT + BATCH_ACCOUNTS), ...westAccounts, ...centralAccounts];
    await cluster.waitConverged(hot, 60_000);
    const debitedAt = async (region: string, accounts: readonly string[], at: string): Promise<bigint> => {
      let total = 0n;
      for (const account of accounts) total += (await cluster.balance(at, account)).regions.find((r) => r.region === region)?.debited ?? 0n;
      return total;
    };
    const batchApproved = batches.reduce((total, b) => total + BigInt(b.answers.filter(isApproval).length), 0n);
    expect(batchApproved > 0n, "some batch items were approved").to.equal(true);
    for (const at of ["east", "west", "central"]) {
      expect(await debitedAt("east", hot, at), `east's unary debits as ${at} sees them`).to.equal(sum(approved(eastAttempts)));
      expect(await debitedAt("east", eastAccounts.slice(HOT, HOT + BATCH_ACCOUNTS), at), `east's batch debits as ${at} sees them`).to.equal(batchApproved);
      expect(await debitedAt("west", westAccounts, at), `west's debits as ${at} sees them`).to.equal(sum(approved(westAttempts)));
      let granted = 0n;
      for (const account of centralAccounts) granted += (await cluster.balance(at, account)).regions.find((r) => r.region === "central")?.granted ?? 0n;
      expect(granted, `central's grants as ${at} sees them`).to.equal(5n * BigInt(grants.length));
    }
    for (const account of all.slice(0, 50)) {
      const views = await Promise.all(["east", "west", "central"].map((r) => cluster.balance(r, account)));
      expect(new Set(views.map((v) => v.balance)).size, account).to.equal(1);
    }
  });
});
