// Settlement against a real Postgres (test/support/postgres.ts): exact totals,
// append-only ledger deltas, overspend records, idempotence, one settler at a
// time, crash safety (Postgres and the settler killed mid-settlement), paging.

import { expect } from "chai";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { Pool } from "pg";
import { InvalidArgumentError } from "../../src/core/errors";
import {
  AppendOnlyViolationError,
  migrate,
  MODE_OVERDRAFT,
  MODE_STRICT,
  RegressedTotalsError,
  SettlementUnavailableError,
  Settler,
  StaleCutError,
  toSettlementError,
  type SettleOutcome,
  type SettlementAccount,
  type SettlementInput,
  type SettlementMetrics,
} from "../../src/settlement";
import { usePostgres } from "../support/postgres";
import type { SettlementHold, SettlementRefund } from "../../src/settlement/settlement-input";

const REPLICAS = ["ap", "eu", "us"];
const BIG = 1n << 60n; // well beyond 2^53

function acct(
  accountId: string,
  granted: bigint[],
  debited: bigint[],
  options: { mode?: typeof MODE_STRICT | typeof MODE_OVERDRAFT; below?: boolean[] } = {},
): SettlementAccount {
  return {
    accountId,
    granted,
    debited,
    mode: options.mode ?? MODE_STRICT,
    rightsBelowZero: options.below ?? granted.map(() => false),
  };
}

function cut(seq: bigint, replicas: readonly string[] = REPLICAS): Record<string, bigint> {
  return Object.fromEntries(replicas.map((r) => [r, seq]));
}

function input(seq: bigint, accounts: Iterable<SettlementAccount> | AsyncIterable<SettlementAccount>): SettlementInput {
  return { replicas: REPLICAS, cut: cut(seq), accounts };
}

/** Deterministic bulk accounts; `bump` adds debits to every 10th account. */
function* many(count: number, bump = 0n): Generator<SettlementAccount> {
  for (let i = 0; i < count; i++) {
    const seed = BigInt(i);
    yield acct(
      `bulk:${i.toString().padStart(7, "0")}`,
      [BIG + seed, seed * 3n, 1000n],
      [seed, seed * 2n + (i % 10 === 0 ? bump : 0n), 0n],
    );
  }
}

interface Counts {
  settlements: number;
  ledger: number;
  accounts: number;
  overspends: number;
  replicas: number;
}

async function counts(pool: Pool): Promise<Counts> {
  const { rows } = await pool.query<Record<keyof Counts, string>>(`
    SELECT (SELECT count(*) FROM settlements) AS settlements, (SELECT count(*) FROM ledger) AS ledger,
           (SELECT count(*) FROM settled_accounts) AS accounts, (SELECT count(*) FROM overspends) AS overspends,
           (SELECT count(*) FROM settled_replicas) AS replicas`);
  const row = rows[0];
  if (row === undefined) throw new Error("no counts");
  return {
    settlements: Number(row.settlements),
    ledger: Number(row.ledger),
    accounts: Number(row.accounts),
    overspends: Number(row.overspends),
    replicas: Number(row.replicas),
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

class RecordingMetrics implements SettlementMetrics {
  readonly durations: SettleOutcome[] = [];
  lastSuccess = 0;
  accounts = 0;
  overspend = 0n;
  violations = 0;
  durationSeconds(_seconds: number, outcome: SettleOutcome): void {
    this.durations.push(outcome);
  }
  lastSuccessTime(unixSeconds: number): void {
    this.lastSuccess = unixSeconds;
  }
  accountsSettled(count: number): void {
    this.accounts += count;
  }
  overspendAmount(amount: bigint): void {
    this.overspend += amount;
  }
  strictViolations(count: number): void {
    this.violations += count;
  }
}

describe("settlement", function () {
  this.timeout(180_000);
  const server = usePostgres();
  let pools: Pool[] = [];
  let databases = 0;

  /** A fresh, migrated database per test, so tests cannot see each other's rows. */
  async function freshDatabase(): Promise<{ pool: Pool; url: string }> {
    const url = await server().createDatabase(`settle_${++databases}`);
    const pool = newPool(url);
    await migrate(pool);
    return { pool, url };
  }

  function newPool(url: string): Pool {
    const pool = new Pool({ connectionString: url, max: 4 });
    pool.on("error", () => undefined); // idle clients die with the server in the crash tests
    pools.push(pool);
    return pool;
  }

  afterEach(async () => {
    await Promise.all(pools.map((pool) => pool.end().catch(() => undefined)));
    pools = [];
  });

  it("settlement - totals equal the inputs exactly, including values above 2^53", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const result = await settler.settle(
      input(1n, [
        acct("alice", [BIG + 1n, 7n, (1n << 64n) - 1n], [3n, BIG, 0n]),
        acct("bob", [10n, 0n, 0n], [0n, 0n, 4n]),
      ]),
    );
    expect(result.skipped).to.equal(false);
    expect(result.unchanged).to.equal(false);
    expect(result.settlement?.accountsChanged).to.equal(2n);
    expect(result.settlement?.ledgerEntries).to.equal(5n);
    expect(result.settlement?.cut).to.deep.equal(cut(1n));

    const { rows } = await pool.query<{ account_id: string; replica: string; granted: string; debited: string }>(
      "SELECT account_id, replica, granted::text, debited::text FROM account_totals ORDER BY account_id, replica",
    );
    expect(rows).to.deep.equal([
      { account_id: "alice", replica: "ap", granted: (BIG + 1n).toString(), debited: "3" },
      { account_id: "alice", replica: "eu", granted: "7", debited: BIG.toString() },
      { account_id: "alice", replica: "us", granted: ((1n << 64n) - 1n).toString(), debited: "0" },
      { account_id: "bob", replica: "ap", granted: "10", debited: "0" },
      { account_id: "bob", replica: "eu", granted: "0", debited: "0" },
      { account_id: "bob", replica: "us", granted: "0", debited: "4" },
    ]);
    const aliceBalance = BIG + 1n + 7n + ((1n << 64n) - 1n) - 3n - BIG;
    expect(await settler.settledBalance("alice")).to.deep.equal({ balance: aliceBalance, settlementId: 1n });
    expect(await settler.settledBalance("bob")).to.deep.equal({ balance: 6n, settlementId: 1n });
    expect(await settler.settledBalance("nobody")).to.deep.equal({ balance: 0n, settlementId: 1n });

    const history = await settler.accountHistory("alice");
    expect(history.entries.map((e) => [e.replica, e.grantedDelta, e.debitedDelta, e.balanceAfter])).to.deep.equal([
      ["us", (1n << 64n) - 1n, 0n, aliceBalance],
      ["eu", 7n, BIG, aliceBalance],
      ["ap", BIG + 1n, 3n, aliceBalance],
    ]);
  });

  it("settlement - a second settlement writes only the deltas to the ledger", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    await settler.settle(input(1n, [acct("a", [100n, 0n, 0n], [10n, 0n, 0n]), acct("b", [5n, 5n, 5n], [0n, 0n, 0n])]));
    const second = await settler.settle(
      input(2n, [acct("a", [100n, 0n, 0n], [10n, 25n, 0n]), acct("b", [5n, 5n, 5n], [0n, 0n, 0n])]),
    );
    expect(second.settlement?.id).to.equal(2n);
    expect(second.settlement?.accountsChanged).to.equal(1n);
    expect(second.settlement?.ledgerEntries).to.equal(1n);
    const { rows } = await pool.query<{ account_id: string; replica: string; g: string; d: string; b: string }>(
      "SELECT account_id, replica, granted_delta::text AS g, debited_delta::text AS d, balance_after::text AS b FROM ledger WHERE settlement_id = 2",
    );
    expect(rows).to.deep.equal([{ account_id: "a", replica: "eu", g: "0", d: "25", b: "65" }]);
    expect(await settler.settledBalance("a")).to.deep.equal({ balance: 65n, settlementId: 2n });
    expect((await counts(pool)).ledger).to.equal(4 + 1); // a: ap; b: ap, eu, us; then a: eu
  });

  it("settlement - re-running the same cut adds nothing", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const accounts = [acct("a", [100n, 0n, 0n], [150n, 0n, 0n], { mode: MODE_OVERDRAFT })];
    const first = await settler.settle(input(7n, accounts));
    const before = await counts(pool);
    const again = await settler.settle(input(7n, accounts));
    expect(again).to.deep.include({ skipped: false, unchanged: true });
    expect(again.settlement?.id).to.equal(first.settlement?.id);
    expect(await counts(pool)).to.deep.equal(before);
    // A newer cut with the same state writes a settlement row but no ledger or overspend rows.
    const later = await settler.settle(input(8n, accounts));
    expect(later.settlement?.accountsChanged).to.equal(0n);
    expect(await counts(pool)).to.deep.equal({ ...before, settlements: before.settlements + 1 });
  });

  it("settlement - OVERDRAFT overspend is recorded with its exact amount and replicas", async () => {
    const { pool } = await freshDatabase();
    const metrics = new RecordingMetrics();
    const settler = new Settler({ pool, metrics });
    const result = await settler.settle(
      input(1n, [
        // eu ran below zero; total debits exceed credits by BIG + 5
        acct("flagged", [BIG, 0n, 0n], [0n, BIG + BIG + 5n, 0n], { mode: MODE_OVERDRAFT, below: [false, true, false] }),
        // nobody flagged: blame falls on the replicas with debits
        acct("unflagged", [10n, 0n, 0n], [7n, 0n, 8n], { mode: MODE_OVERDRAFT }),
        acct("fine", [10n, 0n, 0n], [10n, 0n, 0n], { mode: MODE_OVERDRAFT }),
      ]),
    );
    expect(result.settlement?.overspendTotal).to.equal(BIG + 5n + 5n);
    expect(result.settlement?.strictViolations).to.equal(0n);
    const page = await settler.listOverspends();
    expect(page.overspends.map((o) => [o.accountId, o.amount, o.replicas, o.mode, o.settlementId])).to.deep.equal([
      ["unflagged", 5n, ["ap", "us"], MODE_OVERDRAFT, 1n],
      ["flagged", BIG + 5n, ["eu"], MODE_OVERDRAFT, 1n],
    ]);
    expect(metrics.overspend).to.equal(BIG + 10n);
    expect(metrics.violations).to.equal(0);
    expect(metrics.accounts).to.equal(3);
    expect(metrics.durations).to.deep.equal(["settled"]);
    expect(metrics.lastSuccess).to.be.greaterThan(0);
  });

  it("settlement - STRICT without overspend records none", async () => {
    const { pool } = await freshDatabase();
    const metrics = new RecordingMetrics();
    const settler = new Settler({ pool, metrics });
    const result = await settler.settle(
      input(1n, [acct("s", [50n, 50n, 0n], [0n, 60n, 40n]), acct("t", [1n, 0n, 0n], [0n, 0n, 0n])]),
    );
    expect(result.settlement?.overspendTotal).to.equal(0n);
    expect((await counts(pool)).overspends).to.equal(0);
    expect(metrics.violations).to.equal(0);
  });

  it("settlement - STRICT overspend is recorded and counted as an invariant violation", async () => {
    const { pool } = await freshDatabase();
    const metrics = new RecordingMetrics();
    const settler = new Settler({ pool, metrics });
    const result = await settler.settle(input(1n, [acct("s", [50n, 0n, 0n], [30n, 0n, 21n])]));
    expect(result.settlement?.strictViolations).to.equal(1n);
    expect(result.settlement?.overspendTotal).to.equal(1n);
    const { overspends } = await settler.listOverspends({ accountId: "s" });
    expect(overspends.map((o) => [o.amount, o.mode, o.replicas])).to.deep.equal([[1n, MODE_STRICT, ["ap", "us"]]]);
    expect(metrics.violations).to.equal(1);
  });

  it("settlement - holds outstanding at each cut, every resolution once and every refund once go to the append-only ledger", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const hold = (holdId: string, state: SettlementHold["state"], captured = 0n): SettlementHold => ({
      holdId,
      region: "ap",
      accountId: "h-acct",
      amount: 100n,
      state,
      captured,
      expiresAtMs: 1_700_000_060_000,
      resolvedAtMs: state === "PENDING" ? 0 : 1_700_000_030_000,
    });
    const refund: SettlementRefund = {
      region: "ap",
      refundRequestId: "rf-1",
      debitRequestId: "d-1",
      accountId: "h-acct",
      amount: 7n,
      refundedAtMs: 1_700_000_040_000,
    };
    const first = await settler.settle({
      ...input(1n, [acct("h-acct", [1_000n, 0n, 0n], [40n, 0n, 0n])]),
      holds: [hold("ap:h1", "PENDING"), hold("ap:h2", "CAPTURED", 40n)],
      refunds: [refund],
    });
    const second = await settler.settle({
      ...input(2n, [acct("h-acct", [1_007n, 0n, 0n], [40n, 0n, 0n])]),
      holds: [hold("ap:h1", "VOIDED"), hold("ap:h2", "CAPTURED", 40n), hold("ap:h3", "PENDING")],
      refunds: [refund, { ...refund, refundRequestId: "rf-2", amount: 3n, accountId: undefined }],
    });
    const ids = [first.settlement?.id, second.settlement?.id];
    const holds = await pool.query<{ settlement_id: string; hold_id: string; state: string; captured: string; resolved: boolean }>(
      "SELECT settlement_id::text, hold_id, state, captured::text, resolved_at IS NOT NULL AS resolved FROM hold_ledger ORDER BY settlement_id, hold_id",
    );
    expect(holds.rows).to.deep.equal([
      { settlement_id: String(ids[0]), hold_id: "ap:h1", state: "PENDING", captured: "0", resolved: false },
      { settlement_id: String(ids[0]), hold_id: "ap:h2", state: "CAPTURED", captured: "40", resolved: true },
      { settlement_id: String(ids[1]), hold_id: "ap:h1", state: "VOIDED", captured: "0", resolved: true },
      { settlement_id: String(ids[1]), hold_id: "ap:h3", state: "PENDING", captured: "0", resolved: false },
    ]);
    const refunds = await pool.query<{ settlement_id: string; refund_request_id: string; amount: string; account_id: string | null }>(
      "SELECT settlement_id::text, refund_request_id, amount::text, account_id FROM refund_ledger ORDER BY refund_request_id",
    );
    expect(refunds.rows).to.deep.equal([
      { settlement_id: String(ids[0]), refund_request_id: "rf-1", amount: "7", account_id: "h-acct" },
      { settlement_id: String(ids[1]), refund_request_id: "rf-2", amount: "3", account_id: null },
    ]);
    for (const statement of ["UPDATE hold_ledger SET amount = 1", "DELETE FROM hold_ledger", "TRUNCATE refund_ledger", "UPDATE refund_ledger SET amount = 1"]) {
      const err = await rejection(pool.query(statement));
      expect((err as { code?: string }).code, statement).to.equal("23001");
    }
  });

  it("settlement - credit lots settle as rows grouped under their account; breakage is recorded once, append-only", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const promo = "l-acct#p10.e1700000000000.s0";
    const first = await settler.settle({
      ...input(1n, [acct("l-acct", [100n, 0n, 0n], [10n, 0n, 0n]), acct(promo, [50n, 0n, 0n], [20n, 0n, 0n])]),
      breakage: [{ accountId: "l-acct", lotKey: "p10.e1700000000000.s0", amount: 30n, expiresAtMs: 1_700_000_000_000 }],
    });
    await settler.settle({
      ...input(2n, [acct("l-acct", [100n, 0n, 0n], [15n, 0n, 0n]), acct(promo, [50n, 0n, 0n], [20n, 0n, 0n])]),
      breakage: [{ accountId: "l-acct", lotKey: "p10.e1700000000000.s0", amount: 30n, expiresAtMs: 1_700_000_000_000 }],
    });
    const lots = await pool.query<{ lot_key: string; remaining: string }>(
      "SELECT lot_key, remaining::text FROM account_lots WHERE account_id = 'l-acct' ORDER BY lot_key",
    );
    expect(lots.rows).to.deep.equal([
      { lot_key: "base", remaining: "85" },
      { lot_key: "p10.e1700000000000.s0", remaining: "30" },
    ]);
    const breakage = await pool.query<{ settlement_id: string; account_id: string; lot_key: string; amount: string; expires_ms: string }>(
      "SELECT settlement_id::text, account_id, lot_key, amount::text, (extract(epoch FROM expires_at) * 1000)::int8::text AS expires_ms FROM lot_breakage",
    );
    expect(breakage.rows).to.deep.equal([
      { settlement_id: String(first.settlement?.id), account_id: "l-acct", lot_key: "p10.e1700000000000.s0", amount: "30", expires_ms: "1700000000000" },
    ]);
    for (const statement of ["UPDATE lot_breakage SET amount = 1", "DELETE FROM lot_breakage", "TRUNCATE lot_breakage"]) {
      const err = await rejection(pool.query(statement));
      expect((err as { code?: string }).code, statement).to.equal("23001");
    }
  });

  it("settlement - the same cut settles again only for breakage that fell due since; then it is unchanged again", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const promo = "q-acct#p10.e1700000000000.s0";
    const accounts = () => [acct("q-acct", [100n, 0n, 0n], [10n, 0n, 0n]), acct(promo, [50n, 0n, 0n], [20n, 0n, 0n])];
    const first = await settler.settle(input(1n, accounts()));
    const again = await settler.settle(input(1n, accounts()));
    expect([again.unchanged, again.settlement?.id]).to.deep.equal([true, first.settlement?.id]);
    const breakage = [{ accountId: "q-acct", lotKey: "p10.e1700000000000.s0", amount: 30n, expiresAtMs: 1_700_000_000_000 }];
    const due = await settler.settle({ ...input(1n, accounts()), breakage });
    expect(due.unchanged).to.equal(false);
    expect(due.settlement?.id).to.not.equal(first.settlement?.id);
    expect([due.settlement?.accountsChanged, due.settlement?.ledgerEntries]).to.deep.equal([0n, 0n]);
    const later = await settler.settle({ ...input(1n, accounts()), breakage });
    expect([later.unchanged, later.settlement?.id]).to.deep.equal([true, due.settlement?.id]);
    const rows = await pool.query<{ settlement_id: string; amount: string }>("SELECT settlement_id::text, amount::text FROM lot_breakage");
    expect(rows.rows).to.deep.equal([{ settlement_id: String(due.settlement?.id), amount: "30" }]);
  });

  it("settlement - ledger, overspends and settlements cannot be updated, deleted or truncated", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    await settler.settle(input(1n, [acct("a", [1n, 0n, 0n], [2n, 0n, 0n])]));
    const attempts = [
      "UPDATE ledger SET granted_delta = 0",
      "DELETE FROM ledger",
      "UPDATE account_ledger SET balance_after = 0",
      "DELETE FROM account_ledger",
      "TRUNCATE account_ledger",
      "UPDATE overspends SET amount = 1000",
      "DELETE FROM overspends",
      "DELETE FROM settlements",
      "UPDATE settlements SET overspend_total = 0",
    ];
    for (const statement of attempts) {
      const err = await rejection(pool.query(statement));
      expect((err as { code?: string }).code, statement).to.equal("23001");
      expect((err as Error).message).to.match(/is append-only/);
      expect(toSettlementError(err, statement)).to.be.instanceOf(AppendOnlyViolationError);
    }
    expect(await counts(pool)).to.deep.include({ settlements: 1, ledger: 1, overspends: 1 });
  });

  it("settlement - two concurrent settlers produce exactly one settlement", async () => {
    const { url } = await freshDatabase();
    const a = new Settler({ pool: newPool(url), batchAccounts: 2_000 });
    const b = new Settler({ pool: newPool(url), batchAccounts: 2_000 });
    const results = await Promise.all([a.settle(input(1n, many(20_000))), b.settle(input(1n, many(20_000)))]);
    const written = results.filter((r) => !r.skipped && !r.unchanged);
    expect(written).to.have.length(1);
    const other = results.find((r) => r !== written[0]);
    expect(other?.skipped === true || other?.unchanged === true).to.equal(true);
    const check = newPool(url);
    expect(await counts(check)).to.deep.include({ settlements: 1, accounts: 20_000, ledger: 20_000 * 3 - 1 });
  });

  it("settlement - killing Postgres mid-settlement leaves no partial rows and the next run completes", async () => {
    const { pool, url } = await freshDatabase();
    const settler = new Settler({ pool, batchAccounts: 1_000 });
    await settler.settle(input(1n, many(5_000)));
    const before = await counts(pool);

    // The source crashes the server after 20 batches went through, inside the transaction.
    async function* crashing(): AsyncGenerator<SettlementAccount> {
      let i = 0;
      for (const account of many(60_000, 9n)) {
        if (i++ === 20_000) await server().kill9();
        yield account;
      }
    }
    const err = await rejection(settler.settle(input(2n, crashing())));
    expect(err).to.be.instanceOf(SettlementUnavailableError);
    expect((err as SettlementUnavailableError).retryable).to.equal(true);

    await server().restart();
    const after = newPool(url);
    expect(await counts(after)).to.deep.equal(before);
    const retry = await new Settler({ pool: after }).settle(input(2n, many(60_000, 9n)));
    expect(retry.settlement?.id).to.be.a("bigint");
    expect(retry.settlement?.accountsChanged).to.equal(60_000n - 5_000n + 500n);
    const balance = await new Settler({ pool: after }).settledBalance("bulk:0000010");
    expect(balance.balance).to.equal(BIG + 10n + 30n + 1000n - 10n - 20n - 9n);
  });

  it("settlement - a Postgres restart mid-settlement leaves no partial rows and the next run completes", async () => {
    const { pool, url } = await freshDatabase();
    const settler = new Settler({ pool, batchAccounts: 1_000 });
    async function* restarting(): AsyncGenerator<SettlementAccount> {
      let i = 0;
      for (const account of many(30_000)) {
        if (i++ === 10_000) await server().restart(); // fast shutdown: 57P01 to every session
        yield account;
      }
    }
    const err = await rejection(settler.settle(input(1n, restarting())));
    expect(err).to.be.instanceOf(SettlementUnavailableError);
    const after = newPool(url);
    expect(await counts(after)).to.deep.equal({ settlements: 0, ledger: 0, accounts: 0, overspends: 0, replicas: 0 });
    const retry = await new Settler({ pool: after }).settle(input(1n, many(30_000)));
    expect(retry.settlement?.accountsChanged).to.equal(30_000n);
  });

  it("settlement - a settler killed mid-write leaves no partial rows and the next run completes", async () => {
    const { pool, url } = await freshDatabase();
    const settlement = path.resolve(__dirname, "../../src/settlement/index.js");
    // A settler in a child process that stops (holding its open transaction)
    // after 10 batches and announces it; we then SIGKILL it.
    const script = `
      const { Pool } = require("pg");
      const { Settler } = require(${JSON.stringify(settlement)});
      const pool = new Pool({ connectionString: process.env.SETTLE_URL });
      pool.on("error", () => {});
      async function* accounts() {
        for (let i = 0; i < 50000; i++) {
          if (i === 10000) { process.stdout.write("halfway\\n"); await new Promise(() => {}); }
          yield { accountId: "k:" + i, granted: [10n, 0n, 0n], debited: [1n, 0n, 0n], mode: 1, rightsBelowZero: [false, false, false] };
        }
      }
      new Settler({ pool, batchAccounts: 1000 })
        .settle({ replicas: ["ap", "eu", "us"], cut: { ap: 1n, eu: 1n, us: 1n }, accounts: accounts() })
        .then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;
    const child = spawn(process.execPath, ["-e", script], {
      cwd: path.resolve(__dirname, "../../.."),
      env: { ...process.env, SETTLE_URL: url },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => {
        if (chunk.toString().includes("halfway")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`settler child exited early with ${code}`)));
    });
    // Its batches are inside its open transaction, invisible to everyone else.
    let waiting = 0;
    for (const deadline = Date.now() + 30_000; waiting === 0 && Date.now() < deadline; ) {
      const { rows } = await pool.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'idle in transaction'",
      );
      waiting = Number(rows[0]?.n);
      if (waiting === 0) await sleep(25);
    }
    expect(waiting).to.equal(1);
    expect(await counts(pool)).to.deep.equal({ settlements: 0, ledger: 0, accounts: 0, overspends: 0, replicas: 0 });
    child.kill("SIGKILL");
    await exited;

    expect(await counts(pool)).to.deep.equal({ settlements: 0, ledger: 0, accounts: 0, overspends: 0, replicas: 0 });
    // The server notices the dead client, rolls back and drops its lock; until then a settler is skipped.
    const settler = new Settler({ pool });
    let result = await settler.settle(input(1n, many(1_000)));
    for (const deadline = Date.now() + 30_000; result.skipped && Date.now() < deadline; ) {
      await sleep(50);
      result = await settler.settle(input(1n, many(1_000)));
    }
    expect(result.skipped).to.equal(false);
    expect(result.settlement?.accountsChanged).to.equal(1_000n);
  });

  it("settlement - input errors and stale sources are refused without writing anything", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    await settler.settle(input(5n, [acct("a", [10n, 10n, 10n], [1n, 1n, 1n])]));
    const before = await counts(pool);

    const cases: [SettlementInput, string][] = [
      [input(6n, [acct("bad id!", [1n, 0n, 0n], [0n, 0n, 0n])]), "accounts[0].account_id"],
      [input(6n, [acct("a", [1n, 0n], [0n, 0n, 0n])]), "accounts[0].granted"],
      [input(6n, [acct("a", [-1n, 0n, 0n], [0n, 0n, 0n])]), "accounts[0].granted[0]"],
      [input(6n, [acct("a", [1n << 64n, 0n, 0n], [0n, 0n, 0n])]), "accounts[0].granted[0]"],
      [input(6n, [acct("x", [1n, 0n, 0n], [0n, 0n, 0n]), acct("x", [2n, 0n, 0n], [0n, 0n, 0n])]), "accounts"],
      [{ replicas: REPLICAS, cut: { ap: 6n, eu: 6n }, accounts: [] }, "cut.us"],
      [{ replicas: ["ap", "ap"], cut: { ap: 6n }, accounts: [] }, "replicas"],
    ];
    for (const [bad, field] of cases) {
      const err = await rejection(settler.settle(bad));
      expect(err, field).to.be.instanceOf(InvalidArgumentError);
      expect((err as InvalidArgumentError).field).to.equal(field);
    }
    // A cut behind the last settlement: a stale source.
    const stale = await rejection(settler.settle({ ...input(6n, []), cut: { ap: 6n, eu: 4n, us: 6n } }));
    expect(stale).to.be.instanceOf(StaleCutError);
    expect(stale).to.deep.include({ replica: "eu", settled: 5n, offered: 4n });
    // A counter lower than already settled: the source lost state.
    const regressed = await rejection(settler.settle(input(6n, [acct("a", [10n, 9n, 10n], [1n, 1n, 1n])])));
    expect(regressed).to.be.instanceOf(RegressedTotalsError);
    expect(regressed).to.deep.include({ accountId: "a", replica: "eu" });

    // The source's own failure comes back as it was thrown, with nothing written.
    const broken = new Error("source broke");
    function* failing(): Generator<SettlementAccount> {
      yield* many(3_000);
      throw broken;
    }
    expect(await rejection(settler.settle(input(6n, failing())))).to.equal(broken);

    expect(await counts(pool)).to.deep.equal(before);
  });

  it("settlement - a replica absent from a later input keeps counting", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    await settler.settle(input(1n, [acct("a", [10n, 20n, 30n], [0n, 0n, 5n])]));
    const later = await settler.settle({
      replicas: ["eu", "ap"],
      cut: { eu: 2n, ap: 2n },
      accounts: [{ accountId: "a", granted: [20n, 10n], debited: [70n, 0n], mode: MODE_STRICT, rightsBelowZero: [false, false] }],
    });
    expect(later.settlement?.ledgerEntries).to.equal(1n);
    // 10 + 20 + 30 granted, 70 + 5 debited: us (absent) still counts.
    expect(await settler.settledBalance("a")).to.deep.equal({ balance: -15n, settlementId: 2n });
    const { overspends } = await settler.listOverspends();
    expect(overspends.map((o) => [o.amount, o.replicas])).to.deep.equal([[15n, ["eu", "us"]]]);
    // A new replica joins: it gets the next position; older accounts read 0 for it.
    await settler.settle({
      replicas: ["ap", "eu", "us", "za"],
      cut: { ap: 3n, eu: 3n, us: 3n, za: 1n },
      accounts: [acct("b", [0n, 0n, 0n, 4n], [0n, 0n, 0n, 1n])],
    });
    expect(await settler.settledBalance("b")).to.deep.equal({ balance: 3n, settlementId: 3n });
    expect(await settler.settledBalance("a")).to.deep.equal({ balance: -15n, settlementId: 3n });
  });

  it("settlement - lists page through settlements, overspends and history with filters", async () => {
    const { pool } = await freshDatabase();
    const settler = new Settler({ pool });
    const finished: number[] = [];
    for (let s = 1; s <= 5; s++) {
      const result = await settler.settle(
        input(BigInt(s), [
          acct("x", [100n, 0n, 0n], [100n + BigInt(s), 0n, 0n], { mode: MODE_OVERDRAFT }),
          acct("y", [100n, 0n, 0n], [0n, 100n + BigInt(2 * s), 0n], { mode: MODE_OVERDRAFT }),
          acct("z", [BigInt(s), 0n, 0n], [0n, 0n, 0n]),
        ]),
      );
      finished.push(result.settlement?.finishedAtMs ?? 0);
      await sleep(5); // distinct commit milliseconds for the time filters
    }

    // Settlements, newest first, 2 per page.
    const ids: bigint[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await settler.listSettlements({ pageSize: 2, pageToken: token });
      ids.push(...page.settlements.map((s) => s.id));
      token = page.nextPageToken;
      pages++;
    } while (token !== "");
    expect(ids).to.deep.equal([5n, 4n, 3n, 2n, 1n]);
    expect(pages).to.equal(3);
    const window = await settler.listSettlements({ sinceMs: finished[1], untilMs: finished[3] });
    expect(window.settlements.map((s) => s.id)).to.deep.equal([3n, 2n]);
    expect((await settler.lastSettlement())?.id).to.equal(5n);

    // Overspends: every settlement recorded x and y (their deficits changed each time).
    const all: string[] = [];
    token = "";
    do {
      const page = await settler.listOverspends({ pageSize: 3, pageToken: token });
      all.push(...page.overspends.map((o) => `${o.settlementId}:${o.accountId}:${o.amount}`));
      token = page.nextPageToken;
    } while (token !== "");
    expect(all).to.deep.equal(["5:y:10", "5:x:5", "4:y:8", "4:x:4", "3:y:6", "3:x:3", "2:y:4", "2:x:2", "1:y:2", "1:x:1"]);
    const onlyY = await settler.listOverspends({ accountId: "y", sinceMs: finished[3] });
    expect(onlyY.overspends.map((o) => o.settlementId)).to.deep.equal([5n, 4n]);
    expect(onlyY.nextPageToken).to.equal("");

    // History of z: one entry per settlement (its grant grew each time), newest first.
    const first = await settler.accountHistory("z", { pageSize: 2 });
    expect(first.entries.map((e) => [e.settlementId, e.grantedDelta, e.balanceAfter])).to.deep.equal([
      [5n, 1n, 5n],
      [4n, 1n, 4n],
    ]);
    const second = await settler.accountHistory("z", { pageSize: 2, pageToken: first.nextPageToken });
    expect(second.entries.map((e) => e.settlementId)).to.deep.equal([3n, 2n]);
    const windowed = await settler.accountHistory("z", { untilMs: finished[2] });
    expect(windowed.entries.map((e) => e.settlementId)).to.deep.equal([2n, 1n]);

    // Tokens are opaque and bound to their query.
    const misuse = await rejection(settler.accountHistory("x", { pageToken: first.nextPageToken }));
    expect(misuse).to.be.instanceOf(InvalidArgumentError);
    expect((misuse as InvalidArgumentError).field).to.equal("page_token");
    const garbage = await rejection(settler.listSettlements({ pageToken: "not-a-token" }));
    expect(garbage).to.be.instanceOf(InvalidArgumentError);
    const tooBig = await rejection(settler.listSettlements({ pageSize: 1001 }));
    expect((tooBig as InvalidArgumentError).field).to.equal("page_size");
  });

  it("settlement - the periodic job settles each new cut and reports errors to its callback", async () => {
    const { pool } = await freshDatabase();
    const errors: Error[] = [];
    const settler = new Settler({ pool, onError: (err) => errors.push(err) });
    let seq = 0n;
    const stop = settler.startPeriodic(20, () => {
      seq++;
      if (seq === 2n) return Promise.reject(new Error("source unavailable"));
      return Promise.resolve(input(seq, [acct("p", [seq, 0n, 0n], [0n, 0n, 0n])]));
    });
    for (const deadline = Date.now() + 30_000; (await counts(pool)).settlements < 3 && Date.now() < deadline; ) await sleep(20);
    await stop();
    const settled = (await counts(pool)).settlements;
    expect(settled).to.be.at.least(3);
    expect(errors.map((e) => e.message)).to.deep.equal(["source unavailable"]);
    await sleep(80);
    expect((await counts(pool)).settlements).to.equal(settled); // stopped means stopped
  });
});
