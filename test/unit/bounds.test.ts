// Tests of the int64 bounds: each region's grants, transfers and debits per
// account are capped at ⌊(2^63 − 1) / n⌋, so balances, rights and totals fit in
// int64 whatever the regions decide concurrently on their own views; merges
// refuse slot values no legitimate writer could produce.

import { expect } from "chai";
import fc from "fast-check";
import { status } from "@grpc/grpc-js";
import { INT64_MAX, INT64_MIN } from "../../src/core/amounts";
import {
  describeShare,
  maxOverdraftLimit,
  maxRegionDebitTotal,
  maxRegionGrantTotal,
  maxRegionTransferTotal,
  maxSlotValue,
  perReplicaShare,
  SlotKind,
  slotKindOf,
} from "../../src/core/bounds";
import {
  BoundExceededError,
  InvalidArgumentError,
  ReplicaDataRejectedError,
  TransferRefusedError,
} from "../../src/core/errors";
import { Mode, validatePolicy, type PolicyWrite } from "../../src/core/policy";
import { ReplicaSet } from "../../src/core/replica-set";
import { DebitOutcome, ReplicaState } from "../../src/core/replica-state";
import { toStatus } from "../../src/server/status-mapping";
import { applyChanges, makeReplicas, rowChanges } from "./support/replicas";

const CAP3 = 3074457345618258602n;

function pair(names: readonly string[] = ["east", "west"]): ReplicaState[] {
  return makeReplicas(names);
}

function the<T>(items: readonly T[], index: number): T {
  const item = items[index];
  if (item === undefined) throw new Error(`no item ${index}`);
  return item;
}

function caught(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

function snapshotOf(state: ReplicaState, accountId: string): { slots: bigint[]; digests: bigint[]; accounts: number } {
  const digests: bigint[] = [];
  for (let i = 0; i < state.replicas.size; i++) digests.push(state.rowDigest(i));
  return { slots: state.exportAccount(accountId), digests, accounts: state.accountCount };
}

describe("bounds - constants", () => {
  it("caps every slot at int64 max / n, the largest share whose n-fold sum fits in int64", () => {
    expect(maxRegionGrantTotal(3)).to.equal(CAP3);
    expect(describeShare(3)).to.equal("3074457345618258602 (int64 max / 3 regions)");
    expect(describeShare(1)).to.equal("9223372036854775807 (int64 max / 1 region)");
    for (let n = 1; n <= 64; n++) {
      const q = perReplicaShare(n);
      expect(BigInt(n) * q <= INT64_MAX, `n = ${n}`).to.equal(true);
      expect(BigInt(n) * (q + 1n) > INT64_MAX, `n = ${n} is not tight`).to.equal(true);
      for (const kind of [SlotKind.Grant, SlotKind.Transfer, SlotKind.Debit]) expect(maxSlotValue(n, kind)).to.equal(q);
      expect(maxRegionDebitTotal(n)).to.equal(q);
      expect(maxRegionTransferTotal(n)).to.equal(q);
      expect(maxOverdraftLimit(n)).to.equal(q);
    }
  });

  it("names the kind of each slot of the layout", () => {
    expect(slotKindOf(3, 1, 1)).to.equal(SlotKind.Grant);
    expect(slotKindOf(3, 1, 2)).to.equal(SlotKind.Transfer);
    expect(slotKindOf(3, 1, 3)).to.equal(SlotKind.Debit);
  });

  it("refuses a replica count that is not a positive integer", () => {
    expect(() => perReplicaShare(0)).to.throw(InvalidArgumentError);
    expect(() => perReplicaShare(1.5)).to.throw(InvalidArgumentError);
  });
});

describe("bounds - concurrent grants", () => {
  it("refuses Grant(int64 max) in both regions at once, so the merged balance cannot overflow", () => {
    const [east, west] = [the(pair(), 0), the(pair(), 1)];
    for (const region of [east, west]) {
      const error = caught(() => region.grant("A", INT64_MAX));
      expect(error).to.be.instanceOf(BoundExceededError);
      expect((error as BoundExceededError).message).to.contain("would exceed 4611686018427387903 (int64 max / 2 regions)");
      expect((error as BoundExceededError).field).to.equal("amount");
      expect(region.accountCount).to.equal(0);
    }
  });

  it("accepts each region's full share concurrently and the merged totals still fit in int64", () => {
    const [east, west] = pair();
    if (east === undefined || west === undefined) throw new Error("two replicas");
    const share = maxRegionGrantTotal(2);
    east.grant("A", share);
    west.grant("A", share);
    applyChanges(east, rowChanges(west, "A", 1));
    applyChanges(west, rowChanges(east, "A", 0));
    for (const region of [east, west]) {
      expect(region.balance("A")).to.equal(2n * share);
      expect(region.balance("A") <= INT64_MAX).to.equal(true);
    }
    expect(() => east.grant("A", 1n)).to.throw(BoundExceededError);
  });
});

describe("bounds - local writes", () => {
  it("refuses a debit past the region's cumulative debit cap, changing nothing", () => {
    const [a, b] = makeReplicas();
    if (a === undefined || b === undefined) throw new Error("replicas");
    // r0 holds more rights than it may ever debit: its own grants plus r1's.
    a.grant("x", CAP3);
    b.grant("x", CAP3);
    const moved = b.transfer("x", 0, CAP3);
    applyChanges(a, moved);
    expect(a.rights("x")).to.equal(2n * CAP3);
    expect(a.debit("x", CAP3, false).answer.outcome).to.equal(DebitOutcome.Approved);
    const before = snapshotOf(a, "x");
    expect(() => a.debit("x", 1n, false)).to.throw(BoundExceededError, "cumulative debits");
    expect(snapshotOf(a, "x")).to.deep.equal(before);
    // Insufficient credit stays the ordinary answer, not an error.
    expect(a.debit("x", 3n * CAP3, false).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
  });

  it("reports the headroom left below each cap", () => {
    const [a] = makeReplicas();
    if (a === undefined) throw new Error("replica");
    expect([a.grantHeadroom("x"), a.debitHeadroom("x"), a.transferHeadroom("x", 1)]).to.deep.equal([CAP3, CAP3, CAP3]);
    a.grant("x", 100n);
    a.debit("x", 30n, false);
    a.transfer("x", 1, 20n);
    expect([a.grantHeadroom("x"), a.debitHeadroom("x"), a.transferHeadroom("x", 1), a.transferHeadroom("x", 2)]).to.deep.equal([
      CAP3 - 100n,
      CAP3 - 30n,
      CAP3 - 20n,
      CAP3,
    ]);
  });

  it("refuses an overdraft debit on an unknown account past the cap without creating the account", () => {
    const replicas = new ReplicaSet(["r0", "r1"]);
    const a = new ReplicaState({
      replicas,
      self: "r0",
      defaultPolicy: { mode: Mode.Overdraft, overdraftLimit: maxOverdraftLimit(2), lowWaterMark: 0n },
    });
    expect(a.debit("x", maxOverdraftLimit(2), true).answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(a.debit("y", maxOverdraftLimit(2) + 1n, true).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(a.accountCount).to.equal(1);
  });

  it("spreads a grant atomically: when one spread transfer would pass the cap nothing changes", () => {
    const [a, b] = makeReplicas();
    if (a === undefined || b === undefined) throw new Error("replicas");
    a.grant("x", 300n, true);
    expect([a.slot("x", 0, 0), a.slot("x", 0, 1), a.slot("x", 0, 2), a.rights("x")]).to.deep.equal([300n, 100n, 100n, 100n]);
    // Circulate rights r0 -> r1 -> r0 so that P[0][1] gets closer to the cap than P[0][0].
    a.grant("x", CAP3 - 400n);
    applyChanges(b, a.transfer("x", 1, CAP3 - 300n));
    applyChanges(a, b.transfer("x", 0, CAP3 - 200n));
    a.transfer("x", 1, 190n);
    expect(a.slot("x", 0, 0)).to.equal(CAP3 - 100n);
    expect(a.slot("x", 0, 1)).to.equal(CAP3 - 10n);
    const before = snapshotOf(a, "x");
    // The grant itself fits (CAP3 − 1); its share 33 to r1 does not.
    expect(() => a.grant("x", 99n, true)).to.throw(BoundExceededError, "cumulative transfers to one region");
    expect(snapshotOf(a, "x")).to.deep.equal(before);
    expect(a.grant("x", 99n).changes).to.deep.equal([{ accountId: "x", writer: 0, column: 0, value: CAP3 - 1n }]);
  });

  it("caps the overdraft limit of a policy at int64 max / n", () => {
    const limit = maxOverdraftLimit(3);
    expect(validatePolicy({ mode: Mode.Overdraft, overdraftLimit: limit, lowWaterMark: 0n }, "policy", 3).overdraftLimit).to.equal(limit);
    const error = caught(() => validatePolicy({ mode: Mode.Overdraft, overdraftLimit: limit + 1n, lowWaterMark: 0n }, "policy", 3));
    expect(error).to.be.instanceOf(BoundExceededError);
    expect((error as BoundExceededError).field).to.equal("policy.overdraft_limit");
    expect((error as BoundExceededError).message).to.contain("3074457345618258602 (int64 max / 3 regions)");
    const [a] = makeReplicas();
    if (a === undefined) throw new Error("replica");
    expect(() => a.writePolicy("x", { mode: Mode.Overdraft, overdraftLimit: limit + 1n, lowWaterMark: 0n }, 1)).to.throw(
      BoundExceededError,
    );
    expect(a.policyWrite("x")).to.equal(undefined);
    expect(
      () =>
        new ReplicaState({
          replicas: new ReplicaSet(["r0", "r1", "r2"]),
          self: "r0",
          defaultPolicy: { mode: Mode.Overdraft, overdraftLimit: INT64_MAX, lowWaterMark: 0n },
        }),
    ).to.throw(BoundExceededError, "default_policy.overdraft_limit");
  });

  it("maps bound refusals to OUT_OF_RANGE and refused replicated data to DATA_LOSS", () => {
    const [a] = makeReplicas();
    if (a === undefined) throw new Error("replica");
    const bound = caught(() => a.grant("x", INT64_MAX));
    expect(toStatus(bound).code).to.equal(status.OUT_OF_RANGE);
    expect(toStatus(bound).details).to.contain("int64 max / 3 regions");
    const forged = caught(() => a.merge("x", 1, 1, CAP3 + 1n));
    expect(toStatus(forged).code).to.equal(status.DATA_LOSS);
  });
});

describe("bounds - merging refuses forged values", () => {
  it("refuses a slot value above what a legitimate writer can produce, state unchanged", () => {
    const [a, b] = makeReplicas();
    if (a === undefined || b === undefined) throw new Error("replicas");
    a.grant("x", 10n);
    applyChanges(b, rowChanges(a, "x", 0));
    const before = snapshotOf(b, "x");
    for (const [writer, column] of [
      [0, 0],
      [0, 1],
      [0, 3],
      [2, 2],
    ] as const) {
      const error = caught(() => b.merge("x", writer, column, CAP3 + 1n));
      expect(error).to.be.instanceOf(ReplicaDataRejectedError);
      expect((error as ReplicaDataRejectedError).message).to.contain("the most a legitimate writer can produce");
      expect(snapshotOf(b, "x")).to.deep.equal(before);
    }
    expect(() => b.merge("y", 0, 0, CAP3 + 1n)).to.throw(ReplicaDataRejectedError);
    expect(b.accountCount).to.equal(1);
    expect(b.merge("x", 0, 0, CAP3)).to.equal(true);
  });

  it("refuses a whole exported counter when any value is forged, merging none of it", () => {
    const [a, b] = makeReplicas();
    if (a === undefined || b === undefined) throw new Error("replicas");
    // Legacy width (P and D only, as written before holds) reads back with zero hold and refund slots.
    const values = Array.from({ length: 12 }, (_, k) => BigInt(k + 1));
    values[11] = CAP3 + 1n;
    expect(() => b.mergeAccount("x", values)).to.throw(ReplicaDataRejectedError, "D[2]");
    expect(b.accountCount).to.equal(0);
    values[11] = CAP3;
    const wide = [...values, ...new Array<bigint>(9).fill(1n)];
    wide[20] = CAP3 + 1n;
    expect(() => b.mergeAccount("x", wide)).to.throw(ReplicaDataRejectedError, "RF[2]");
    expect(b.accountCount).to.equal(0);
    expect(b.mergeAccount("x", values)).to.equal(true);
    expect(b.exportAccount("x")).to.deep.equal([...values, ...new Array<bigint>(9).fill(0n)]);
    expect(a.accountCount).to.equal(0);
  });

  it("refuses a replicated policy write with a limit above the cap, an invalid stamp or an unknown writer", () => {
    const [a] = makeReplicas();
    if (a === undefined) throw new Error("replica");
    const good: PolicyWrite = {
      mode: Mode.Overdraft,
      overdraftLimit: 5n,
      lowWaterMark: 0n,
      writtenAtMs: 1000,
      logical: 0,
      replica: "r1",
    };
    const forged: PolicyWrite[] = [
      { ...good, overdraftLimit: CAP3 + 1n },
      { ...good, mode: 9 as Mode },
      { ...good, writtenAtMs: -1 },
      { ...good, writtenAtMs: 2 ** 60 },
      { ...good, logical: -1 },
      { ...good, logical: 0.5 },
      { ...good, replica: "zz" },
    ];
    for (const write of forged) {
      expect(() => a.applyPolicy("x", write), JSON.stringify(write, (_, v: unknown) => String(v))).to.throw(
        ReplicaDataRejectedError,
      );
      expect(a.policyWrite("x")).to.equal(undefined);
    }
    expect(a.applyPolicy("x", good)).to.equal(true);
  });
});

// ---- concurrent operations at n = 2..5 with amounts near the caps -----------

type Op =
  | { kind: "grant"; at: number; amount: bigint; spread: boolean }
  | { kind: "debit"; at: number; amount: bigint; fraction: number; overdraft: boolean }
  | { kind: "transfer"; at: number; to: number; amount: bigint; fraction: number }
  | { kind: "policy"; at: number; limit: bigint; strict: boolean }
  /** `to` merges `from`'s own row and policy: the only way views meet before the end. */
  | { kind: "sync"; from: number; to: number };

const ACCOUNT = "acct";

function amountNear(cap: bigint): fc.Arbitrary<bigint> {
  return fc.oneof(
    fc.bigInt(1n, 1000n),
    fc.bigInt(cap - 3n, cap + 1n),
    fc.bigInt(cap / 2n - 2n, cap / 2n + 2n),
    fc.bigInt(1n, cap),
    fc.bigInt(cap, INT64_MAX),
    fc.constant(INT64_MAX),
  );
}

function opsFor(n: number): fc.Arbitrary<Op[]> {
  const cap = maxRegionGrantTotal(n);
  const replica = fc.integer({ min: 0, max: n - 1 });
  const amount = amountNear(cap);
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant("grant" as const), at: replica, amount, spread: fc.boolean() }),
    fc.record({
      kind: fc.constant("debit" as const),
      at: replica,
      amount,
      fraction: fc.integer({ min: 0, max: 3 }),
      overdraft: fc.boolean(),
    }),
    fc.record({
      kind: fc.constant("transfer" as const),
      at: replica,
      to: replica,
      amount,
      fraction: fc.integer({ min: 0, max: 3 }),
    }),
    fc.record({ kind: fc.constant("policy" as const), at: replica, limit: amountNear(cap), strict: fc.boolean() }),
    fc.record({ kind: fc.constant("sync" as const), from: replica, to: replica }),
  );
  return fc.array(op, { maxLength: 40 });
}

function fractionOf(rights: bigint, amount: bigint, fraction: number): bigint {
  if (fraction === 0) return amount;
  return (rights > 0n ? rights / BigInt(fraction) : 0n) + (amount % 3n);
}

function expectWithinInt64(state: ReplicaState, label: string, accountId = ACCOUNT): void {
  const n = state.replicas.size;
  const within = (value: bigint, what: string): void => {
    expect(value >= INT64_MIN && value <= INT64_MAX, `${label}: ${what} = ${value} is outside int64`).to.equal(true);
  };
  within(state.balance(accountId), "balance");
  let granted = 0n;
  let debited = 0n;
  for (const c of state.contributions(accountId)) {
    within(c.rights, `rights(${c.replica})`);
    granted += c.granted;
    debited += c.debited;
  }
  within(granted, "Σ granted");
  within(debited, "Σ debited");
  for (let i = 0; i < n; i++) within(state.rights(accountId, i), `rights(${i})`);
  const share = perReplicaShare(n);
  for (const value of state.exportAccount(accountId)) expect(value <= share, `${label}: slot ${value} above the cap`).to.equal(true);
}

/** The row and policy of replica `from` merged into `to`, as a peer delta would. */
function sync(from: ReplicaState, to: ReplicaState, accountId = ACCOUNT): void {
  applyChanges(to, rowChanges(from, accountId, from.self));
  const write = from.policyWrite(accountId);
  if (write !== undefined) to.applyPolicy(accountId, write);
}

function runConcurrently(n: number, operations: readonly Op[]): ReplicaState[] {
  const names = Array.from({ length: n }, (_, i) => `r${i}`);
  const replicas = makeReplicas(names);
  let clock = 1_000;
  for (const o of operations) {
    clock += 7;
    switch (o.kind) {
      case "grant":
        refusable(() => the(replicas, o.at).grant(ACCOUNT, o.amount, o.spread));
        break;
      case "debit": {
        const r = the(replicas, o.at);
        const value = fractionOf(r.rights(ACCOUNT), o.amount, o.fraction);
        if (value > 0n) refusable(() => r.debit(ACCOUNT, value, o.overdraft));
        break;
      }
      case "transfer": {
        const r = the(replicas, o.at);
        refusable(() => r.transfer(ACCOUNT, o.to, fractionOf(r.rights(ACCOUNT), o.amount, o.fraction)));
        break;
      }
      case "policy": {
        const policy = o.strict
          ? { mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: 0n }
          : { mode: Mode.Overdraft, overdraftLimit: o.limit, lowWaterMark: 0n };
        refusable(() => the(replicas, o.at).writePolicy(ACCOUNT, policy, clock));
        break;
      }
      case "sync":
        if (o.from !== o.to) sync(the(replicas, o.from), the(replicas, o.to));
        break;
    }
    replicas.forEach((r) => expectWithinInt64(r, `r${r.self} view`));
  }
  return replicas;
}

/** Runs a local write; only the refusals a correct writer may see are tolerated. */
function refusable(action: () => unknown): void {
  try {
    action();
  } catch (error) {
    if (error instanceof BoundExceededError || error instanceof TransferRefusedError) return;
    throw error;
  }
}

describe("bounds - concurrent operations near the caps", () => {
  it("keeps balance, every rights(i), Σ granted and Σ debited within int64 at n = 2..5, in every view and after the full merge", () => {
    const scenario = fc.integer({ min: 2, max: 5 }).chain((n) => fc.tuple(fc.constant(n), opsFor(n)));
    fc.assert(
      fc.property(scenario, ([n, operations]) => {
        const replicas = runConcurrently(n, operations);
        // Full merge, in every direction: every replica gets every other's row.
        for (const to of replicas) for (const from of replicas) if (from !== to) sync(from, to);
        for (const r of replicas) {
          expectWithinInt64(r, `r${r.self} merged`);
          expect(r.exportAccount(ACCOUNT)).to.deep.equal(the(replicas, 0).exportAccount(ACCOUNT));
        }
      }),
      { numRuns: 400 },
    );
  });

  it("stays within int64 when every region spends its whole share, or overdraws fully, before any merge", () => {
    for (let n = 2; n <= 5; n++) {
      const names = Array.from({ length: n }, (_, i) => `r${i}`);
      const replicas = makeReplicas(names);
      const cap = maxRegionGrantTotal(n);
      const limit = maxOverdraftLimit(n);
      for (const r of replicas) {
        r.grant("full", cap);
        expect(r.debit("full", cap, false).answer.outcome).to.equal(DebitOutcome.Approved);
        r.writePolicy("overdrawn", { mode: Mode.Overdraft, overdraftLimit: limit, lowWaterMark: 0n }, 1);
        expect(r.debit("overdrawn", limit, true).answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
        expect(r.debit("overdrawn", 1n, true).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
      }
      for (const id of ["full", "overdrawn"]) {
        for (const to of replicas) for (const from of replicas) if (from !== to) sync(from, to, id);
      }
      for (const r of replicas) {
        expectWithinInt64(r, `n = ${n}`, "full");
        expectWithinInt64(r, `n = ${n}`, "overdrawn");
        expect(r.balance("full")).to.equal(0n);
        expect(r.balance("overdrawn")).to.equal(-BigInt(n) * limit);
      }
    }
  });
});
