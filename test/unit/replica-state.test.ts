// Unit and property tests of one replica's state: local writes on its own row,
// merges of peer rows, digests, idempotency memory — and, across three replicas,
// convergence and the escrow invariants under arbitrary operation orders.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { maxRegionGrantTotal } from "../../src/core/bounds";
import {
  BoundExceededError,
  RequestConflictError,
  RequestLogFullError,
  TransferRefusedError,
  UnknownReplicaError,
} from "../../src/core/errors";
import { STRICT_DEFAULT } from "../../src/core/policy";
import { ReplicaSet } from "../../src/core/replica-set";
import { DebitOutcome, ReplicaState, type SlotChange } from "../../src/core/replica-state";
import { slotHash } from "../../src/core/row-digest";
import { Prng } from "./support/prng";
import {
  applyChanges,
  firstDifference,
  makeReplicas,
  NAMES,
  oracleOf,
  overdraftWrite,
  rowChanges,
  sumOfRights,
} from "./support/replicas";

const TWO_53 = 1n << 53n;
/** ⌊int64 max / 3⌋: the per-slot cap of three replicas. */
const CAP = maxRegionGrantTotal(3);

function three(): [ReplicaState, ReplicaState, ReplicaState] {
  const [a, b, c] = makeReplicas();
  if (a === undefined || b === undefined || c === undefined) throw new Error("three replicas expected");
  return [a, b, c];
}

describe("replica state - construction and reads", () => {
  it("knows its own index and starts empty", () => {
    const [, b] = three();
    expect(b.self).to.equal(1);
    expect(b.accountCount).to.equal(0);
    expect(b.balance("a")).to.equal(0n);
    expect(b.rights("a")).to.equal(0n);
    expect(b.slot("a", 0, 3)).to.equal(0n);
    expect(b.policy("a")).to.deep.equal(STRICT_DEFAULT);
    expect(b.policyWrite("a")).to.equal(undefined);
    expect(b.rowDigest(0)).to.equal(0n);
    expect(b.contributions("a")).to.deep.equal([
      { replica: "r0", granted: 0n, debited: 0n, rights: 0n, held: 0n, refunded: 0n },
      { replica: "r1", granted: 0n, debited: 0n, rights: 0n, held: 0n, refunded: 0n },
      { replica: "r2", granted: 0n, debited: 0n, rights: 0n, held: 0n, refunded: 0n },
    ]);
  });

  it("refuses a self name outside the replica set", () => {
    expect(() => new ReplicaState({ replicas: new ReplicaSet(["r0", "r1"]), self: "r9" })).to.throw(
      UnknownReplicaError,
      "r9",
    );
  });

  it("lists per-replica contributions and iterates accounts in first-seen order", () => {
    const [a, b] = three();
    applyChanges(b, a.grant("x", 10n).changes);
    b.grant("y", 5n);
    b.grant("x", 7n);
    b.debit("x", 3n, false);
    expect(b.contributions("x")).to.deep.equal([
      { replica: "r0", granted: 10n, debited: 0n, rights: 10n, held: 0n, refunded: 0n },
      { replica: "r1", granted: 7n, debited: 3n, rights: 4n, held: 0n, refunded: 0n },
      { replica: "r2", granted: 0n, debited: 0n, rights: 0n, held: 0n, refunded: 0n },
    ]);
    expect([...b.accounts()].map(([id]) => id)).to.deep.equal(["x", "y"]);
    expect(b.accountCount).to.equal(2);
  });

  it("keeps accounts intact when the slot pool grows", () => {
    const replicas = new ReplicaSet(["r0", "r1", "r2"]);
    const r = new ReplicaState({ replicas, self: "r0", initialAccounts: 1 });
    for (let k = 0; k < 3000; k++) r.grant(`acct-${k}`, BigInt(k + 1));
    expect(r.accountCount).to.equal(3000);
    for (const k of [0, 1, 1023, 1024, 2999]) expect(r.balance(`acct-${k}`)).to.equal(BigInt(k + 1));
  });
});

describe("replica state - grants and debits", () => {
  it("grants into its own P[i][i] and returns the absolute slot value", () => {
    const [, b] = three();
    expect(b.grant("a", 40n)).to.deep.equal({
      answer: { kind: "grant", outcome: DebitOutcome.Approved, balance: 40n, localRights: 40n },
      changes: [{ accountId: "a", writer: 1, column: 1, value: 40n }],
    });
    expect(b.grant("a", 2n).changes).to.deep.equal([{ accountId: "a", writer: 1, column: 1, value: 42n }]);
  });

  it("approves a debit within its rights and publishes D[i] as an absolute value", () => {
    const [, , c] = three();
    c.grant("a", 100n);
    const first = c.debit("a", 30n, false);
    expect(first.answer).to.deep.equal({
      kind: "debit",
      outcome: DebitOutcome.Approved,
      balance: 70n,
      localRights: 70n,
    });
    expect(first.changes).to.deep.equal([{ accountId: "a", writer: 2, column: 3, value: 30n }]);
    expect(first.globallyCoverable).to.equal(true);
    expect(c.debit("a", 70n, false).changes).to.deep.equal([{ accountId: "a", writer: 2, column: 3, value: 100n }]);
    expect(c.balance("a")).to.equal(0n);
  });

  it("refuses a debit beyond its rights, changes nothing, and says whether the balance could cover it", () => {
    const [a, b] = three();
    applyChanges(b, a.grant("a", 100n).changes);
    const result = b.debit("a", 10n, false);
    expect(result.answer).to.deep.equal({
      kind: "debit",
      outcome: DebitOutcome.InsufficientCredit,
      balance: 100n,
      localRights: 0n,
    });
    expect(result.changes).to.deep.equal([]);
    expect(result.globallyCoverable).to.equal(true);
    expect(b.debit("a", 101n, false).globallyCoverable).to.equal(false);
    expect(b.slot("a", 1, 3)).to.equal(0n);
  });

  it("refuses a debit on an unknown account without creating it", () => {
    const [a] = three();
    const result = a.debit("ghost", 1n, true);
    expect(result.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(result.globallyCoverable).to.equal(false);
    expect(a.accountCount).to.equal(0);
  });

  it("spends down to −limit under OVERDRAFT only when the caller allows it", () => {
    const [a] = three();
    a.applyPolicy("a", overdraftWrite(50n));
    a.grant("a", 10n);
    expect(a.debit("a", 30n, false).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    const over = a.debit("a", 30n, true);
    expect(over.answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(over.answer.localRights).to.equal(-20n);
    expect(over.answer.balance).to.equal(-20n);
    expect(a.debit("a", 30n, true).answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(a.rights("a")).to.equal(-50n);
    expect(a.debit("a", 1n, true).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
  });

  it("ignores allowOverdraft under STRICT", () => {
    const [a] = three();
    a.grant("a", 5n);
    expect(a.debit("a", 6n, true).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(a.debit("a", 5n, true).answer.outcome).to.equal(DebitOutcome.Approved);
  });

  it("keeps amounts above 2^53 exact", () => {
    const [a, b] = three();
    a.grant("a", CAP);
    const debit = a.debit("a", TWO_53 + 1n, false);
    expect(debit.answer.balance).to.equal(CAP - TWO_53 - 1n);
    expect(debit.changes[0]?.value).to.equal(TWO_53 + 1n);
    const moved = a.transfer("a", 1, TWO_53 + 3n);
    applyChanges(b, [...rowChanges(a, "a", 0)]);
    expect(moved[0]?.value).to.equal(TWO_53 + 3n);
    expect(b.rights("a", 1)).to.equal(TWO_53 + 3n);
    expect(b.rights("a", 0)).to.equal(CAP - 2n * TWO_53 - 4n);
    expect(b.balance("a")).to.equal(CAP - TWO_53 - 1n);
    expect(b.debit("a", TWO_53 + 3n, false).answer).to.deep.equal({
      kind: "debit",
      outcome: DebitOutcome.Approved,
      balance: CAP - 2n * TWO_53 - 4n,
      localRights: 0n,
    });
  });

  it("refuses a grant that would take the region's cumulative grants past int64 max / n, changing nothing", () => {
    const [a] = three();
    a.grant("a", CAP - 1n);
    const digest = a.rowDigest(0);
    expect(() => a.grant("a", 2n))
      .to.throw(BoundExceededError, "would exceed 3074457345618258602 (int64 max / 3 regions)")
      .with.property("field", "amount");
    expect(a.balance("a")).to.equal(CAP - 1n);
    expect(a.rowDigest(0)).to.equal(digest);
    expect(a.grant("a", 1n).answer.balance).to.equal(CAP);
  });

  it("refuses a grant once the cumulative grants reached the cap, even after everything was debited", () => {
    const [a] = three();
    a.grant("a", CAP);
    a.debit("a", CAP, false);
    expect(a.balance("a")).to.equal(0n);
    expect(() => a.grant("a", 1n)).to.throw(BoundExceededError, "cumulative grants");
    expect(a.slot("a", 0, 0)).to.equal(CAP);
  });
});

describe("replica state - transfers", () => {
  it("moves rights from the donor to the recipient through P[i][j]", () => {
    const [a, b] = three();
    a.grant("a", 100n);
    const changes = a.transfer("a", 1, 40n);
    expect(changes).to.deep.equal([{ accountId: "a", writer: 0, column: 1, value: 40n }]);
    expect(a.rights("a")).to.equal(60n);
    expect(b.rights("a")).to.equal(0n);
    applyChanges(b, rowChanges(a, "a", 0));
    expect(b.rights("a")).to.equal(40n);
    expect(b.rights("a", 0)).to.equal(60n);
    expect(b.debit("a", 40n, false).answer.outcome).to.equal(DebitOutcome.Approved);
    expect(b.debit("a", 1n, false).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
  });

  it("refuses transfers to itself, beyond its rights, of non-positive amounts, and of unknown accounts", () => {
    const [a] = three();
    a.grant("a", 10n);
    expect(() => a.transfer("a", 0, 1n)).to.throw(TransferRefusedError, "same region");
    expect(() => a.transfer("a", 1, 11n)).to.throw(TransferRefusedError, "needs 11 spare rights, region has 10");
    expect(() => a.transfer("a", 1, 0n)).to.throw(TransferRefusedError);
    expect(() => a.transfer("a", 1, -5n)).to.throw(TransferRefusedError);
    expect(() => a.transfer("ghost", 1, 1n)).to.throw(TransferRefusedError).with.property("accountId", "ghost");
    expect(a.rights("a")).to.equal(10n);
  });

  it("never transfers overdraft headroom", () => {
    const [a] = three();
    a.applyPolicy("a", overdraftWrite(100n));
    a.grant("a", 10n);
    expect(() => a.transfer("a", 1, 11n)).to.throw(TransferRefusedError);
    a.debit("a", 50n, true);
    expect(() => a.transfer("a", 1, 1n)).to.throw(TransferRefusedError);
  });

  it("refuses a transfer once the cumulative transfer counter would pass int64 max / n (circulating rights)", () => {
    // Rights can circulate: r0 -> r1 -> r0 -> r1 ... so P[0][1] accumulates
    // while every single transfer is within the donor's rights.
    const [a, b] = three();
    const half = CAP / 2n;
    a.grant("a", half);
    for (let round = 0; round < 2; round++) {
      a.transfer("a", 1, half);
      applyChanges(b, rowChanges(a, "a", 0));
      b.transfer("a", 0, half);
      applyChanges(a, rowChanges(b, "a", 1));
    }
    expect(a.slot("a", 0, 1)).to.equal(2n * half);
    expect(a.rights("a")).to.equal(half);
    const digest = a.rowDigest(0);
    expect(() => a.transfer("a", 1, half)).to.throw(BoundExceededError, "cumulative transfers to one region");
    expect(a.slot("a", 0, 1)).to.equal(2n * half);
    expect(a.rights("a")).to.equal(half);
    expect(a.rowDigest(0)).to.equal(digest);
  });
});

describe("replica state - merging and digests", () => {
  it("merges absolute values by max: duplicates, stale values and zeros change nothing", () => {
    const [a, b] = three();
    expect(b.merge("a", 0, 0, 0n)).to.equal(false);
    expect(b.accountCount).to.equal(0);
    expect(b.merge("a", 0, 0, 10n)).to.equal(true);
    expect(b.merge("a", 0, 0, 10n)).to.equal(false);
    expect(b.merge("a", 0, 0, 7n)).to.equal(false);
    expect(b.slot("a", 0, 0)).to.equal(10n);
    a.grant("a", 10n);
    expect(b.rowDigest(0)).to.equal(a.rowDigest(0));
  });

  it("keeps each row digest equal to the XOR of its slot hashes, whatever the order", () => {
    const changes: SlotChange[] = [
      { accountId: "a", writer: 2, column: 0, value: 5n },
      { accountId: "a", writer: 2, column: 3, value: 9n },
      { accountId: "b", writer: 2, column: 2, value: 1n << 61n },
      { accountId: "a", writer: 2, column: 0, value: 8n },
    ];
    const expected = slotHash("a", 0, 8n) ^ slotHash("a", 3, 9n) ^ slotHash("b", 2, 1n << 61n);
    const forward = three()[0];
    applyChanges(forward, changes);
    const backward = three()[1];
    applyChanges(backward, [...changes].reverse());
    expect(forward.rowDigest(2)).to.equal(expected);
    expect(backward.rowDigest(2)).to.equal(expected);
    expect(forward.rowDigest(0)).to.equal(0n);
  });

  it("gives the writer and its peers the same digest of the writer's row", () => {
    const [a, b] = three();
    a.grant("x", 5n);
    a.grant("y", 9n);
    a.transfer("x", 2, 2n);
    a.debit("y", 4n, false);
    expect(b.rowDigest(0)).to.not.equal(a.rowDigest(0));
    applyChanges(b, [...rowChanges(a, "y", 0), ...rowChanges(a, "x", 0)]);
    expect(b.rowDigest(0)).to.equal(a.rowDigest(0));
  });

  it("rebuilds its own row from its published changes (recovery from the durable log)", () => {
    const [a] = three();
    const log: SlotChange[] = [];
    log.push(...a.grant("x", 100n).changes);
    log.push(...a.debit("x", 30n, false).changes);
    log.push(...a.transfer("x", 2, 20n));
    const recovered = three()[0];
    applyChanges(recovered, log);
    expect(firstDifference(a, recovered, ["x"])).to.equal(undefined);
    expect(recovered.rights("x")).to.equal(50n);
  });
});

describe("replica state - idempotency memory", () => {
  const WALL = 1_700_000_000_000;

  it("recalls an answer by request id and refuses a different fingerprint", () => {
    const [a] = three();
    const answer = a.grant("x", 5n).answer;
    expect(a.recall("req-1", "grant x 5")).to.equal(undefined);
    a.remember("req-1", "grant x 5", answer, { stampMs: WALL, nowMs: 1000 });
    expect(a.recall("req-1", "grant x 5")).to.deep.equal(answer);
    expect(a.rememberedRequests).to.equal(1);
    expect(() => a.recall("req-1", "grant x 6")).to.throw(RequestConflictError).with.property("requestId", "req-1");
  });

  it("forgets answers past the configured retention on the monotonic clock, whatever the stamps", () => {
    const replicas = new ReplicaSet(["r0"]);
    const a = new ReplicaState({ replicas, self: "r0", requestLog: { retentionMs: 100, maxEntries: 10 } });
    const answer = a.grant("x", 1n).answer;
    a.remember("old", "f", answer, { stampMs: WALL + 3_600_000, nowMs: 0 });
    a.rememberReplicated("peer", "f", answer, { stampMs: WALL - 3_600_000, nowMs: 60 });
    a.remember("new", "f", answer, { stampMs: WALL, nowMs: 150 });
    expect(a.recall("old", "f")).to.equal(undefined);
    expect(a.recall("peer", "f")).to.deep.equal(answer);
    expect(a.recall("new", "f")).to.deep.equal(answer);
    a.expireRequests(161);
    expect(a.recall("peer", "f")).to.equal(undefined);
  });

  it("refuses a new local request when the log is full, before anything changes, and still takes peer records", () => {
    const replicas = new ReplicaSet(["r0", "r1"]);
    const a = new ReplicaState({ replicas, self: "r0", requestLog: { retentionMs: 1000, maxEntries: 2, maxRefusals: 1 } });
    a.remember("g1", "f", a.grant("x", 10n).answer, { stampMs: WALL, nowMs: 0 });
    a.remember("d1", "f", a.debit("x", 1n, false).answer, { stampMs: WALL, nowMs: 1 });
    a.remember("d2", "f", a.debit("x", 100n, false).answer, { stampMs: WALL, nowMs: 2 });
    expect(a.requestLogFill).to.deep.equal({ acknowledged: 2, local: 2, refusals: 1, capacity: 2 });
    const before = { balance: a.balance("x"), digest: a.rowDigest(0), remembered: a.rememberedRequests };
    expect(() => a.assertRequestRoom(1, 3)).to.throw(RequestLogFullError);
    expect({ balance: a.balance("x"), digest: a.rowDigest(0), remembered: a.rememberedRequests }).to.deep.equal(before);
    const peerAnswer = { kind: "debit", outcome: DebitOutcome.Approved, balance: 5n, localRights: 0n } as const;
    a.rememberReplicated("p1", "f", peerAnswer, { stampMs: WALL, nowMs: 3 });
    a.restoreRequest("s1", "f", peerAnswer, { stampMs: WALL - 500, nowMs: 3, wallNowMs: WALL });
    expect([a.recall("p1", "f"), a.recall("s1", "f")]).to.deep.equal([peerAnswer, peerAnswer]);
    expect(a.requestLogFill).to.deep.equal({ acknowledged: 4, local: 2, refusals: 1, capacity: 2 });
    // The window of g1 (received at 0) ends: room for one again.
    a.assertRequestRoom(1, 1001);
    expect(a.recall("g1", "f")).to.equal(undefined);
    // s1 was stamped 500 ms old but follows p1 in the ring, so it is held as long as p1 (the safe side).
    expect(a.recall("s1", "f")).to.deep.equal(peerAnswer);
    expect(a.requestLogFill).to.deep.equal({ acknowledged: 3, local: 1, refusals: 1, capacity: 2 });
  });
});

// ---- three replicas under arbitrary operation orders -------------------------

const ACCOUNTS = ["a0", "a1"] as const;
const N = NAMES.length;

type Op =
  | { kind: "grant"; at: number; account: number; amount: bigint }
  /** `fraction` 0 debits `amount`; k > 0 debits rights/k + `amount` % 3 (so around the rights edge). */
  | { kind: "debit"; at: number; account: number; amount: bigint; fraction: number; overdraft: boolean }
  | { kind: "transfer"; at: number; account: number; to: number; amount: bigint; fraction: number }
  /** Merge the `pick`-th change published by `from` (mod count) into `to`: any order, repeats allowed. */
  | { kind: "deliver"; from: number; to: number; pick: number }
  /** Merge everything `from` published into `to`, newest first. */
  | { kind: "burst"; from: number; to: number };

const replicaIndex = fc.integer({ min: 0, max: N - 1 });
const accountIndex = fc.integer({ min: 0, max: ACCOUNTS.length - 1 });
const amount = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt(1n, 100n) },
  { weight: 1, arbitrary: fc.bigInt(TWO_53 - 2n, TWO_53 + 2n) },
  { weight: 1, arbitrary: fc.bigInt(1n << 60n, INT64_MAX) },
  { weight: 1, arbitrary: fc.bigInt(CAP - 2n, CAP + 1n) },
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("grant" as const), at: replicaIndex, account: accountIndex, amount }),
  fc.record({
    kind: fc.constant("debit" as const),
    at: replicaIndex,
    account: accountIndex,
    amount,
    fraction: fc.integer({ min: 0, max: 3 }),
    overdraft: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("transfer" as const),
    at: replicaIndex,
    account: accountIndex,
    to: replicaIndex,
    amount,
    fraction: fc.integer({ min: 0, max: 3 }),
  }),
  fc.record({ kind: fc.constant("deliver" as const), from: replicaIndex, to: replicaIndex, pick: fc.nat() }),
  fc.record({ kind: fc.constant("burst" as const), from: replicaIndex, to: replicaIndex }),
);
const ops = fc.array(op, { maxLength: 60 });

interface Run {
  readonly replicas: ReplicaState[];
  readonly published: SlotChange[][];
}

function at<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`no item ${index}`);
  return item;
}

function chosenAmount(rights: bigint, amount: bigint, fraction: number): bigint {
  if (fraction === 0) return amount;
  const base = rights > 0n ? rights / BigInt(fraction) : 0n;
  return base + (amount % 3n);
}

/**
 * Runs `ops` on three replicas; after every operation `check` sees the oracle (the
 * join of every replica's own row), which is what a full merge would show.
 */
function run(operations: readonly Op[], limit: bigint | undefined, check: (oracle: ReplicaState) => void): Run {
  const replicas = makeReplicas();
  if (limit !== undefined) {
    for (const r of replicas) for (const id of ACCOUNTS) r.applyPolicy(id, overdraftWrite(limit));
  }
  const published: SlotChange[][] = replicas.map(() => []);
  for (const o of operations) {
    switch (o.kind) {
      case "grant": {
        const r = at(replicas, o.at);
        try {
          at(published, o.at).push(...r.grant(at(ACCOUNTS, o.account), o.amount).changes);
        } catch (e) {
          if (!(e instanceof BoundExceededError)) throw e;
        }
        break;
      }
      case "debit": {
        const r = at(replicas, o.at);
        const id = at(ACCOUNTS, o.account);
        const value = chosenAmount(r.rights(id), o.amount, o.fraction);
        if (value <= 0n) break;
        try {
          at(published, o.at).push(...r.debit(id, value, o.overdraft).changes);
        } catch (e) {
          if (!(e instanceof BoundExceededError)) throw e;
        }
        break;
      }
      case "transfer": {
        const r = at(replicas, o.at);
        const id = at(ACCOUNTS, o.account);
        try {
          at(published, o.at).push(...r.transfer(id, o.to, chosenAmount(r.rights(id), o.amount, o.fraction)));
        } catch (e) {
          if (!(e instanceof TransferRefusedError) && !(e instanceof BoundExceededError)) throw e;
        }
        break;
      }
      case "deliver": {
        const from = at(published, o.from);
        if (from.length > 0) applyChanges(at(replicas, o.to), [at(from, o.pick % from.length)]);
        break;
      }
      case "burst":
        applyChanges(at(replicas, o.to), [...at(published, o.from)].reverse());
        break;
    }
    check(oracleOf(replicas, ACCOUNTS));
  }
  return { replicas, published };
}

/** Delivers every published change to every other replica, shuffled, some twice. */
function deliverAll({ replicas, published }: Run, seed: number): void {
  const prng = new Prng(seed);
  const deliveries: [ReplicaState, SlotChange][] = [];
  published.forEach((changes, from) => {
    for (const change of changes) {
      for (const to of replicas) {
        if (to.self === from) continue;
        deliveries.push([to, change]);
        if (prng.chance(0.3)) deliveries.push([to, change]);
      }
    }
  });
  for (const [to, change] of prng.shuffle(deliveries)) applyChanges(to, [change]);
}

function expectConverged(replicas: readonly ReplicaState[]): void {
  const [first, ...rest] = replicas;
  if (first === undefined) return;
  for (const other of rest) expect(firstDifference(first, other, ACCOUNTS)).to.equal(undefined);
  for (const id of ACCOUNTS) {
    for (const r of replicas) {
      expect(r.balance(id)).to.equal(first.balance(id));
      expect(sumOfRights(r, id)).to.equal(r.balance(id));
      for (let i = 0; i < N; i++) expect(r.rights(id, i)).to.equal(first.rights(id, i));
    }
  }
}

const noCheck = (): void => undefined;

describe("replica state - convergence of three replicas", () => {
  it("converges to equal slots, balances, rights and digests after full delivery in any order", () => {
    fc.assert(
      fc.property(ops, fc.boolean(), fc.nat(), (operations, overdraft, seed) => {
        const result = run(operations, overdraft ? 25n : undefined, noCheck);
        deliverAll(result, seed);
        expectConverged(result.replicas);
        const oracle = oracleOf(result.replicas, ACCOUNTS);
        expect(firstDifference(oracle, at(result.replicas, 0), ACCOUNTS)).to.equal(undefined);
      }),
      { numRuns: 200 },
    );
  });

  it("converges to the same state whatever the delivery order (order-insensitive merges)", () => {
    fc.assert(
      fc.property(ops, fc.nat(), fc.nat(), (operations, seed1, seed2) => {
        const first = run(operations, undefined, noCheck);
        const second = run(operations, undefined, noCheck);
        deliverAll(first, seed1);
        deliverAll(second, seed2);
        expect(firstDifference(at(first.replicas, 1), at(second.replicas, 2), ACCOUNTS)).to.equal(undefined);
      }),
      { numRuns: 100 },
    );
  });
});

describe("replica state - escrow invariants", () => {
  it("never lets the fully merged balance or any replica's rights go below zero under STRICT", () => {
    fc.assert(
      fc.property(ops, fc.nat(), (operations, seed) => {
        const check = (oracle: ReplicaState): void => {
          for (const id of ACCOUNTS) {
            const balance = oracle.balance(id);
            expect(balance >= 0n, `${id} balance ${balance}`).to.equal(true);
            expect(sumOfRights(oracle, id)).to.equal(balance);
            for (let i = 0; i < N; i++) expect(oracle.rights(id, i) >= 0n, `${id} rights(${i})`).to.equal(true);
          }
        };
        const result = run(operations, undefined, check);
        deliverAll(result, seed);
        for (const r of result.replicas) check(r);
      }),
      { numRuns: 300 },
    );
  });

  it("bounds the overspend by n × limit under OVERDRAFT(limit)", () => {
    fc.assert(
      fc.property(ops, fc.bigInt(0n, 1000n), fc.nat(), (operations, limit, seed) => {
        const check = (oracle: ReplicaState): void => {
          for (const id of ACCOUNTS) {
            const balance = oracle.balance(id);
            const overspend = balance < 0n ? -balance : 0n;
            expect(overspend <= BigInt(N) * limit, `${id} overspend ${overspend} > ${N} × ${limit}`).to.equal(true);
            expect(sumOfRights(oracle, id)).to.equal(balance);
            for (let i = 0; i < N; i++) expect(oracle.rights(id, i) >= -limit).to.equal(true);
          }
        };
        const result = run(operations, limit, check);
        deliverAll(result, seed);
        for (const r of result.replicas) check(r);
      }),
      { numRuns: 300 },
    );
  });

  it("reaches the n × limit bound when every replica overdraws while partitioned", () => {
    const replicas = makeReplicas();
    for (const r of replicas) r.applyPolicy("a", overdraftWrite(40n));
    const grant = at(replicas, 0).grant("a", 30n).changes;
    replicas.slice(1).forEach((r) => applyChanges(r, grant));
    const spend = [70n, 40n, 40n];
    replicas.forEach((r, i) => {
      expect(r.debit("a", at(spend, i), true).answer.outcome, `r${i}`).to.equal(DebitOutcome.ApprovedWithOverdraft);
      expect(r.debit("a", 1n, true).answer.outcome, `r${i}`).to.equal(DebitOutcome.InsufficientCredit);
    });
    expect(oracleOf(replicas, ["a"]).balance("a")).to.equal(-120n);
  });

  it("lets a replica overdraw an OVERDRAFT account whose grants have not reached it yet", () => {
    // The case overdraft exists for: no rights arrived in time. Whether the account
    // already has a local row must not matter.
    const [a, b] = three();
    for (const r of [a, b]) r.applyPolicy("a", overdraftWrite(40n));
    a.grant("a", 100n);
    const result = b.debit("a", 10n, true);
    expect(result.answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(b.rights("a")).to.equal(-10n);
  });
});
