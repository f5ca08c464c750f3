// Holds and refunds in the pure core (src/core/hold-path.ts, hold-book.ts,
// refund-tallies.ts), checked against the invariants of spec/holds.qnt:
// Σ rights + Σ held = balance at every replica after any sequence, the held
// slot of a region equals its open holds, a hold resolves once, refunds of a
// debit never exceed it, and the timeout is judged on the holding clock. The
// durable records travel through the delta and snapshot codecs and come back
// whole at recovery.

import { expect } from "chai";
import fc from "fast-check";
import { DebitOutcome } from "../../src/core/answer";
import type { DurableWrite } from "../../src/core/durable-write";
import {
  DebitRecordNotFoundError,
  HoldNotFoundError,
  HoldStateError,
  InvalidArgumentError,
  RefundRefusedError,
  RequestConflictError,
  WrongRegionError,
} from "../../src/core/errors";
import { HoldBook, HoldStatus, parseHoldId, type HoldRecord } from "../../src/core/hold-book";
import { checkEarlierResolution, placeHold, recallHold, refundDebit, resolveHold } from "../../src/core/hold-path";
import { mergeChanges } from "../../src/core/merge-changes";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { debitFingerprint, WritePath } from "../../src/core/write-path";
import { decodeDelta, encodeDelta } from "../../src/replication/delta-codec";
import { inboundContext } from "../../src/replication/inbound";
import { encodeSnapshot } from "../../src/replication/snapshot-encoder";
import { readSnapshot } from "../../src/replication/snapshot-reader";
import { decodeSnapshotChunk } from "../../src/replication/snapshot-decoder";
import { SnapshotChunk } from "../../src/generated/tally/replication/v1/replication";
import { applySnapshotChunk } from "../../src/node/recovery";

const NAMES = ["r0", "r1", "r2"] as const;
const N = NAMES.length;
const ACCOUNT = "acct";
const REPLICAS = new ReplicaSet(NAMES);

function replica(self: string): ReplicaState {
  return new ReplicaState({ replicas: REPLICAS, self, initialAccounts: 4 });
}

function at(ms: number): { stampMs: number; nowMs: number } {
  return { stampMs: ms, nowMs: ms };
}

/** Merges `from`'s whole view into `into` (spec/holds.qnt `follow`: a causally closed view). */
function follow(into: ReplicaState, from: ReplicaState): void {
  const values = from.exportAccount(ACCOUNT);
  if (values.length > 0) into.mergeAccount(ACCOUNT, values);
}

function openHeld(state: ReplicaState): bigint {
  return state.holds.entries().reduce((sum, h) => (h.status === HoldStatus.Pending ? sum + h.amount : sum), 0n);
}

function checkInvariants(states: readonly ReplicaState[], where: string): void {
  for (const state of states) {
    let total = 0n;
    for (let i = 0; i < N; i++) total += state.rights(ACCOUNT, i) + state.held(ACCOUNT, i);
    expect(total, `${where}: Σ rights + Σ held = balance at r${state.self}`).to.equal(state.balance(ACCOUNT));
    expect(state.balance(ACCOUNT) >= 0n, `${where}: balance ≥ 0`).to.equal(true);
    expect(state.held(ACCOUNT) >= 0n, `${where}: held ≥ 0`).to.equal(true);
    expect(state.rights(ACCOUNT) >= 0n, `${where}: own rights ≥ 0 (STRICT)`).to.equal(true);
    expect(state.held(ACCOUNT), `${where}: held slot = open holds at r${state.self}`).to.equal(openHeld(state));
    for (const tally of state.refundTallies.entries()) {
      expect(tally.refunded <= tally.debitAmount, `${where}: refunds of ${tally.debitRequestId} ≤ its amount`).to.equal(true);
    }
  }
}

type Op =
  | { kind: "grant"; r: number; amount: bigint }
  | { kind: "debit"; r: number; amount: bigint; id: number }
  | { kind: "hold"; r: number; amount: bigint; id: number; ttl: number }
  | { kind: "capture"; r: number; id: number; amount: bigint }
  | { kind: "void"; r: number; id: number }
  | { kind: "sweep"; r: number }
  | { kind: "refund"; r: number; id: number; amount: bigint }
  | { kind: "transfer"; r: number; to: number; amount: bigint }
  | { kind: "follow"; r: number; from: number }
  | { kind: "tick"; ms: number };

const region = fc.integer({ min: 0, max: N - 1 });
const amount = fc.bigInt(1n, 30n);
const id = fc.integer({ min: 0, max: 2 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("grant" as const), r: region, amount }),
  fc.record({ kind: fc.constant("debit" as const), r: region, amount, id }),
  fc.record({ kind: fc.constant("hold" as const), r: region, amount, id, ttl: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("capture" as const), r: region, id, amount: fc.bigInt(1n, 10n) }),
  fc.record({ kind: fc.constant("void" as const), r: region, id }),
  fc.record({ kind: fc.constant("sweep" as const), r: region }),
  fc.record({ kind: fc.constant("refund" as const), r: region, id, amount }),
  fc.record({ kind: fc.constant("transfer" as const), r: region, to: region, amount }),
  fc.record({ kind: fc.constant("follow" as const), r: region, from: region }),
  fc.record({ kind: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 15 }) }),
);

/** Runs `op`, swallowing the refusals the rules allow; returns the statuses it saw resolve. */
function run(states: ReplicaState[], op: Op, clock: { now: number }, resolutions: Map<string, HoldStatus[]>): void {
  const seen = (record: HoldRecord): void => {
    const list = resolutions.get(record.holdId) ?? [];
    list.push(record.status);
    resolutions.set(record.holdId, list);
  };
  const refusable = (fn: () => void): void => {
    try {
      fn();
    } catch (error) {
      const allowed = [HoldNotFoundError, HoldStateError, InvalidArgumentError, RefundRefusedError, DebitRecordNotFoundError, WrongRegionError, RequestConflictError];
      if (!allowed.some((type) => error instanceof type)) throw error;
    }
  };
  if (op.kind === "tick") {
    clock.now += op.ms;
    return;
  }
  const state = states[op.r]!;
  const time = at(clock.now);
  const name = NAMES[op.r]!;
  switch (op.kind) {
    case "grant":
      state.grant(ACCOUNT, op.amount);
      return;
    case "debit": {
      const requestId = `d${op.r}-${op.id}`;
      if (state.requestRecord(requestId) !== undefined) return;
      const wp = new WritePath(state);
      wp.debit({ item: { accountId: ACCOUNT, amount: op.amount, requestId }, fingerprint: debitFingerprint(ACCOUNT, op.amount), time, final: true });
      return;
    }
    case "hold":
      refusable(() => {
        const requestId = `h${op.id}`;
        if (state.requestRecord(requestId) !== undefined) return;
        if (recallHold(state, { accountId: ACCOUNT, amount: op.amount, requestId, timeoutMs: op.ttl }) !== undefined) return;
        placeHold(state, { accountId: ACCOUNT, amount: op.amount, requestId, timeoutMs: op.ttl, time });
      });
      return;
    case "capture":
    case "void":
      refusable(() => {
        const step = resolveHold(state, { holdId: `${name}:h${op.id}`, kind: op.kind, amount: op.kind === "capture" ? op.amount : 0n, requestId: `${op.kind}-${op.id}-${clock.now}`, time });
        if (step.kind === "already") checkEarlierResolution(step.record, op.kind, op.kind === "capture" ? op.amount : 0n);
        else seen(step.record);
      });
      return;
    case "sweep":
      for (const record of state.holds.due(clock.now)) {
        const step = resolveHold(state, { holdId: record.holdId, kind: "timeout", amount: 0n, requestId: undefined, time });
        if (step.kind !== "already") seen(step.record);
      }
      return;
    case "refund":
      refusable(() => {
        refundDebit(state, { debitRequestId: `d${op.r}-${op.id}`, amount: op.amount, requestId: `rf-${op.r}-${op.id}-${clock.now}`, time }, "test window");
      });
      return;
    case "transfer":
      if (op.to !== op.r && state.rights(ACCOUNT) >= op.amount) state.transfer(ACCOUNT, op.to, op.amount);
      return;
    case "follow":
      if (op.from !== op.r) follow(state, states[op.from]!);
      return;
  }
}

describe("holds - invariants of spec/holds.qnt over random sequences", () => {
  it("Σ rights + Σ held = balance, held = open holds, rights ≥ 0, refunds ≤ debit, each hold resolves once", () => {
    const coverage = { resolved: new Set<HoldStatus>(), refunds: 0 };
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 30, maxLength: 120 }), (ops) => {
        const states = NAMES.map(replica);
        const clock = { now: 1_000 };
        const resolutions = new Map<string, HoldStatus[]>();
        ops.forEach((op, k) => {
          run(states, op, clock, resolutions);
          checkInvariants(states, `step ${k} (${op.kind})`);
        });
        for (const [holdId, statuses] of resolutions) expect(statuses.length, `${holdId} resolved ${statuses.join(",")}`).to.equal(1);
        for (const statuses of resolutions.values()) for (const status of statuses) coverage.resolved.add(status);
        for (const state of states) coverage.refunds += state.refundTallies.size;
      }),
      { numRuns: 300 },
    );
    // The sequences reached every resolution and some refunds, not only refusals.
    expect([...coverage.resolved].sort()).to.deep.equal([HoldStatus.Captured, HoldStatus.Voided, HoldStatus.Expired]);
    expect(coverage.refunds).to.be.greaterThan(0);
  });

  it("merge stays commutative, associative and idempotent with held and refunded slots", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
        const states = NAMES.map(replica);
        const clock = { now: 1_000 };
        for (const op of ops) run(states, op, clock, new Map());
        const rows = states.map((s) => s.exportAccount(ACCOUNT));
        const join = (order: readonly number[]): bigint[] => {
          const joined = replica("r0");
          for (const k of order) if (rows[k]!.length > 0) joined.mergeAccount(ACCOUNT, rows[k]!);
          for (const k of order) if (rows[k]!.length > 0) joined.mergeAccount(ACCOUNT, rows[k]!);
          return joined.exportAccount(ACCOUNT);
        };
        expect(join([0, 1, 2])).to.deep.equal(join([2, 0, 1]));
        expect(join([1, 2, 0])).to.deep.equal(join([0, 2, 1]));
      }),
      { numRuns: 100 },
    );
  });
});

describe("holds - decisions", () => {
  it("a hold takes rights but not balance; capture debits part and releases the rest, once", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 100n);
    const placed = placeHold(r0, { accountId: ACCOUNT, amount: 40n, requestId: "h1", timeoutMs: 1_000, time: at(10) });
    expect(placed.answer.outcome).to.equal(DebitOutcome.Approved);
    expect(placed.record?.holdId).to.equal("r0:h1");
    expect(placed.record?.expiresAtMs).to.equal(1_010);
    expect(r0.rights(ACCOUNT)).to.equal(60n);
    expect(r0.balance(ACCOUNT)).to.equal(100n);
    expect(r0.totalHeld(ACCOUNT)).to.equal(40n);
    expect(placed.write?.holds).to.deep.equal([placed.record]);

    const step = resolveHold(r0, { holdId: "r0:h1", kind: "capture", amount: 25n, requestId: "c1", time: at(500) });
    expect(step.kind).to.equal("resolved");
    expect(step.record).to.include({ status: HoldStatus.Captured, captured: 25n, resolvedAtMs: 500 });
    expect(r0.balance(ACCOUNT)).to.equal(75n);
    expect(r0.rights(ACCOUNT)).to.equal(75n);
    expect(r0.totalHeld(ACCOUNT)).to.equal(0n);

    const again = resolveHold(r0, { holdId: "r0:h1", kind: "void", amount: 0n, requestId: "v1", time: at(600) });
    expect(again.kind).to.equal("already");
    expect(() => checkEarlierResolution(again.record, "void", 0n)).to.throw(HoldStateError, "captured");
    expect(checkEarlierResolution(again.record, "capture", 25n).captured).to.equal(25n);
    expect(() => checkEarlierResolution(again.record, "capture", 26n)).to.throw(HoldStateError, "captured with 25");
    expect(r0.balance(ACCOUNT)).to.equal(75n);
  });

  it("a hold never overdraws: insufficient rights refuse it and change nothing", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 10n);
    const refused = placeHold(r0, { accountId: ACCOUNT, amount: 11n, requestId: "h1", timeoutMs: 5, time: at(0) });
    expect(refused.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(refused.write).to.equal(undefined);
    expect(r0.rights(ACCOUNT)).to.equal(10n);
    expect(r0.holds.size).to.equal(0);
  });

  it("the timeout is judged on the holding clock: a capture at or after it expires the hold and is refused", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 50n);
    placeHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h1", timeoutMs: 100, time: at(1_000) });
    expect(() => resolveHold(r0, { holdId: "r0:h1", kind: "timeout", amount: 0n, requestId: undefined, time: at(1_099) })).to.throw(HoldStateError, "not yet");
    expect(r0.holds.due(1_099)).to.deep.equal([]);
    expect(r0.holds.due(1_100).map((h) => h.holdId)).to.deep.equal(["r0:h1"]);
    const late = resolveHold(r0, { holdId: "r0:h1", kind: "capture", amount: 30n, requestId: "c1", time: at(1_100) });
    expect(late.kind).to.equal("expired");
    expect(late.record.status).to.equal(HoldStatus.Expired);
    // The expiry is written (slots and record) but the capture is not remembered.
    expect(late.kind === "expired" ? late.write.requests : undefined).to.deep.equal([]);
    expect(r0.balance(ACCOUNT)).to.equal(50n);
    expect(r0.rights(ACCOUNT)).to.equal(50n);
    expect(r0.totalHeld(ACCOUNT)).to.equal(0n);
    expect(() => checkEarlierResolution(late.record, "capture", 30n)).to.throw(HoldStateError, "expired");
  });

  it("bad capture amounts and unknown holds are refused before anything changes", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 50n);
    placeHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h1", timeoutMs: 100, time: at(0) });
    expect(() => resolveHold(r0, { holdId: "r0:h1", kind: "capture", amount: 31n, requestId: "c", time: at(1) })).to.throw(InvalidArgumentError, "held amount 30");
    expect(() => resolveHold(r0, { holdId: "r0:nope", kind: "void", amount: 0n, requestId: "c", time: at(1) })).to.throw(HoldNotFoundError);
    expect(r0.totalHeld(ACCOUNT)).to.equal(30n);
    expect(() => parseHoldId("nocolon")).to.throw(InvalidArgumentError, "hold_id");
    expect(() => parseHoldId("Bad:x")).to.throw(InvalidArgumentError);
    expect(parseHoldId("us-east:a:b")).to.deep.equal({ region: "us-east", requestId: "a:b" });
  });

  it("a hold id outliving the request log replays to the same hold, and other parameters conflict", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 50n);
    placeHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h1", timeoutMs: 100, time: at(0) });
    expect(recallHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h1", timeoutMs: 100 })?.holdId).to.equal("r0:h1");
    expect(() => recallHold(r0, { accountId: ACCOUNT, amount: 31n, requestId: "h1", timeoutMs: 100 })).to.throw(RequestConflictError);
    expect(recallHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h2", timeoutMs: 100 })).to.equal(undefined);
  });
});

describe("holds - the book", () => {
  const record = (holdId: string, expiresAtMs: number, status = HoldStatus.Pending, resolvedAtMs = 0): HoldRecord => ({
    holdId,
    accountId: ACCOUNT,
    amount: 1n,
    expiresAtMs,
    status,
    captured: 0n,
    createdAtMs: 0,
    resolvedAtMs,
  });

  it("due lists pending holds past their deadline, earliest first, and only while they are pending", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1_000 }), { maxLength: 60 }), fc.integer({ min: 0, max: 1_000 }), (deadlines, now) => {
        const book = new HoldBook();
        deadlines.forEach((d, k) => book.put(record(`r0:h${k}`, d)));
        const due = book.due(now, 10_000);
        const expected = deadlines.map((d, k) => [d, k] as const).filter(([d]) => d <= now);
        expect(due.map((h) => h.expiresAtMs)).to.deep.equal(expected.map(([d]) => d).sort((a, b) => a - b));
        // Resolving them empties what is due; the others stay pending.
        for (const h of due) book.put({ ...h, status: HoldStatus.Expired, resolvedAtMs: now });
        expect(book.due(now, 10_000)).to.deep.equal([]);
        expect(book.pending).to.equal(deadlines.length - due.length);
      }),
    );
  });

  it("a resolution is final, and resolved holds are forgotten after the window, pending ones never", () => {
    const book = new HoldBook();
    book.put(record("r0:a", 10));
    book.put(record("r0:b", 10));
    expect(book.put(record("r0:a", 99))).to.equal(false);
    expect(book.put({ ...record("r0:a", 10), status: HoldStatus.Voided, resolvedAtMs: 100 })).to.equal(true);
    expect(book.put({ ...record("r0:a", 10), status: HoldStatus.Expired, resolvedAtMs: 101 })).to.equal(false);
    expect(book.get("r0:a")?.status).to.equal(HoldStatus.Voided);
    expect(book.forgetResolved(150, 100)).to.equal(0);
    expect(book.forgetResolved(201, 100)).to.equal(1);
    expect(book.forgetResolved(1_000_000, 100)).to.equal(0);
    expect(book.get("r0:b")?.status).to.equal(HoldStatus.Pending);
    expect(book.pending).to.equal(1);
  });
});

describe("refunds - decisions", () => {
  function debited(state: ReplicaState, requestId: string, amount: bigint): void {
    const step = new WritePath(state).debit({ item: { accountId: ACCOUNT, amount, requestId }, fingerprint: debitFingerprint(ACCOUNT, amount), time: at(5), final: true });
    expect(step.kind).to.equal("decided");
  }

  it("gives back up to what one debit took, as credit of the debit's region", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 100n);
    debited(r0, "d1", 40n);
    const first = refundDebit(r0, { debitRequestId: "d1", amount: 15n, requestId: "rf1", time: at(10) }, "w");
    expect(first.tally).to.deep.equal({ debitRequestId: "d1", accountId: ACCOUNT, debitAmount: 40n, refunded: 15n });
    expect(r0.balance(ACCOUNT)).to.equal(75n);
    expect(r0.rights(ACCOUNT)).to.equal(75n);
    refundDebit(r0, { debitRequestId: "d1", amount: 25n, requestId: "rf2", time: at(11) }, "w");
    expect(() => refundDebit(r0, { debitRequestId: "d1", amount: 1n, requestId: "rf3", time: at(12) }, "w")).to.throw(RefundRefusedError, "left 0");
    expect(r0.balance(ACCOUNT)).to.equal(100n);
  });

  it("is decided by the debit's region only, names it, and refuses refused or unknown debits", () => {
    const r0 = replica("r0");
    const r1 = replica("r1");
    r0.grant(ACCOUNT, 10n);
    const step = new WritePath(r0).debit({ item: { accountId: ACCOUNT, amount: 4n, requestId: "d1" }, fingerprint: debitFingerprint(ACCOUNT, 4n), time: at(5), final: true });
    if (step.kind !== "decided" || step.write === undefined) throw new Error("debit not decided");
    mergeChanges(r1, { writer: 0, slots: step.write.slots, requests: step.write.requests ?? [], policies: [] }, 5, { refused: () => undefined, changed: () => undefined, peerDebited: () => undefined });
    expect(() => refundDebit(r1, { debitRequestId: "d1", amount: 1n, requestId: "rf", time: at(6) }, "w")).to.throw(WrongRegionError, 'region "r0"');
    expect(() => refundDebit(r0, { debitRequestId: "nope", amount: 1n, requestId: "rf", time: at(6) }, "15 min")).to.throw(DebitRecordNotFoundError, "15 min");
    new WritePath(r0).debit({ item: { accountId: ACCOUNT, amount: 99n, requestId: "d2" }, fingerprint: debitFingerprint(ACCOUNT, 99n), time: at(5), final: true });
    expect(() => refundDebit(r0, { debitRequestId: "d2", amount: 1n, requestId: "rf", time: at(6) }, "w")).to.throw(RefundRefusedError, "refused");
    r0.remember("g1", "g|acct|5", { kind: "grant", outcome: DebitOutcome.Approved, balance: 0n, localRights: 0n }, at(7));
    expect(() => refundDebit(r0, { debitRequestId: "g1", amount: 1n, requestId: "rf", time: at(8) }, "w")).to.throw(InvalidArgumentError, "debited nothing");
  });

  it("a captured hold is refundable by the capture's request id", () => {
    const r0 = replica("r0");
    r0.grant(ACCOUNT, 100n);
    placeHold(r0, { accountId: ACCOUNT, amount: 30n, requestId: "h1", timeoutMs: 100, time: at(0) });
    resolveHold(r0, { holdId: "r0:h1", kind: "capture", amount: 20n, requestId: "c1", time: at(1) });
    expect(r0.balance(ACCOUNT)).to.equal(80n);
    refundDebit(r0, { debitRequestId: "c1", amount: 20n, requestId: "rf", time: at(2) }, "w");
    expect(r0.balance(ACCOUNT)).to.equal(100n);
    expect(() => refundDebit(r0, { debitRequestId: "c1", amount: 1n, requestId: "rf2", time: at(3) }, "w")).to.throw(RefundRefusedError);
  });

  it("a tally goes when its debit's record leaves the request log (the refund window)", () => {
    const r0 = new ReplicaState({ replicas: REPLICAS, self: "r0", requestLog: { retentionMs: 100, maxEntries: 100 } });
    r0.grant(ACCOUNT, 100n);
    new WritePath(r0).debit({ item: { accountId: ACCOUNT, amount: 10n, requestId: "d1" }, fingerprint: debitFingerprint(ACCOUNT, 10n), time: at(0), final: true });
    refundDebit(r0, { debitRequestId: "d1", amount: 3n, requestId: "rf", time: at(50) }, "w");
    expect(r0.expireRefundTallies()).to.equal(0);
    r0.expireRequests(101);
    expect(r0.expireRefundTallies()).to.equal(1);
    expect(() => refundDebit(r0, { debitRequestId: "d1", amount: 1n, requestId: "rf2", time: at(102) }, "w")).to.throw(DebitRecordNotFoundError);
  });
});

describe("holds - durable records survive the stream and the snapshot", () => {
  /** A state with a pending, a captured and an expired hold, a refunded debit; and every write it made. */
  function busy(): { state: ReplicaState; writes: DurableWrite[] } {
    const state = replica("r0");
    const writes: DurableWrite[] = [];
    const keep = (w: DurableWrite | undefined): void => {
      if (w !== undefined) writes.push(w);
    };
    const g = state.grant(ACCOUNT, 500n);
    writes.push({ slots: g.changes });
    keep(placeHold(state, { accountId: ACCOUNT, amount: 50n, requestId: "p", timeoutMs: 1_000_000, time: at(1_000) }).write);
    keep(placeHold(state, { accountId: ACCOUNT, amount: 60n, requestId: "c", timeoutMs: 1_000_000, time: at(1_000) }).write);
    keep(placeHold(state, { accountId: ACCOUNT, amount: 70n, requestId: "e", timeoutMs: 10, time: at(1_000) }).write);
    const captured = resolveHold(state, { holdId: "r0:c", kind: "capture", amount: 40n, requestId: "cap", time: at(1_001) });
    if (captured.kind !== "already") keep(captured.write);
    const expired = resolveHold(state, { holdId: "r0:e", kind: "timeout", amount: 0n, requestId: undefined, time: at(1_020) });
    if (expired.kind !== "already") keep(expired.write);
    const step = new WritePath(state).debit({ item: { accountId: ACCOUNT, amount: 30n, requestId: "d" }, fingerprint: debitFingerprint(ACCOUNT, 30n), time: at(1_030), final: true });
    if (step.kind === "decided") keep(step.write);
    keep(refundDebit(state, { debitRequestId: "d", amount: 12n, requestId: "rf", time: at(1_040) }, "w").write);
    return { state, writes };
  }

  function same(recovered: ReplicaState, original: ReplicaState): void {
    expect(recovered.exportAccount(ACCOUNT)).to.deep.equal(original.exportAccount(ACCOUNT));
    const byId = (s: ReplicaState): HoldRecord[] => s.holds.entries().sort((a, b) => a.holdId.localeCompare(b.holdId));
    expect(byId(recovered)).to.deep.equal(byId(original));
    expect(recovered.holds.pending).to.equal(1);
    expect(recovered.refundTallies.entries()).to.deep.equal(original.refundTallies.entries());
    expect(recovered.requestRecord("d")?.origin).to.equal(0);
    expect(recovered.balance(ACCOUNT)).to.equal(500n - 40n - 30n + 12n);
    expect(recovered.totalHeld(ACCOUNT)).to.equal(50n);
  }

  it("replaying the own stream (each write as a delta) rebuilds holds, tallies and request origins", () => {
    const { state, writes } = busy();
    const recovered = replica("r0");
    const ctx = { ...inboundContext(REPLICAS), expectedWriter: "r0" };
    writes.forEach((write, k) => {
      const bytes = encodeDelta(REPLICAS, 0, { slots: [...write.slots], requests: [...(write.requests ?? [])], policies: [], holds: [...(write.holds ?? [])], refunds: [...(write.refunds ?? [])] }, 1_000 + k, "");
      const decoded = decodeDelta(bytes, ctx);
      if (!decoded.ok) throw new Error(decoded.reason);
      mergeChanges(recovered, decoded.value, 5, { refused: (e) => expect.fail(String(e)), changed: () => undefined, peerDebited: () => undefined });
    });
    same(recovered, state);
    // A peer merges the slots but keeps no holds of another region.
    const peer = replica("r1");
    const bytes = encodeDelta(REPLICAS, 0, { slots: [...writes[1]!.slots], requests: [], policies: [], holds: [...(writes[1]!.holds ?? [])] }, 1, "");
    const decoded = decodeDelta(bytes, ctx);
    if (!decoded.ok) throw new Error(decoded.reason);
    mergeChanges(peer, decoded.value, 5, { refused: () => undefined, changed: () => undefined, peerDebited: () => undefined });
    expect(peer.holds.size).to.equal(0);
    expect(peer.held(ACCOUNT, 0)).to.equal(50n);
  });

  it("a snapshot carries holds and tallies and restores them whole", async () => {
    const { state } = busy();
    const frozen = state.freeze();
    const header = {
      replica: "r0",
      replicas: [...NAMES],
      replayFrom: 1n,
      durableSequence: 0n,
      applied: {},
      takenAtMs: 2_000n,
      accounts: 0n,
      cluster: undefined,
      requests: 0n,
      policies: 0n,
      format: 0,
      holds: 0n,
      refunds: 0n,
    };
    const pieces: Uint8Array[] = [];
    for await (const piece of encodeSnapshot(frozen, header, { sliceMs: 1_000, duty: 1 })) pieces.push(piece);
    async function* bytes(): AsyncGenerator<Uint8Array> {
      for (const p of pieces) {
        await Promise.resolve();
        yield p;
      }
    }
    const recovered = replica("r0");
    const clock = { now: () => 2_000, monotonic: () => 2_000 };
    for await (const chunk of readSnapshot(bytes(), { ...inboundContext(REPLICAS), expectedReplica: "r0" })) applySnapshotChunk(recovered, chunk, clock, "own");
    same(recovered, state);
  });

  it("a snapshot chunk written before holds (P and D only, no records) still reads, with zero hold and refund slots", () => {
    const legacy = SnapshotChunk.encode({
      header: undefined,
      accounts: [{ accountId: ACCOUNT, values: [10n, 0n, 0n, 0n, 5n, 0n, 0n, 0n, 0n, 3n, 1n, 0n] }],
      requests: [{ requestId: "old", fingerprint: "d|acct|3", answeredAtMs: 1n, outcome: 1, balance: 12n, localRights: 7n, origin: 0 }],
      policies: [],
      trailer: undefined,
      seal: Buffer.alloc(0),
      holds: [],
      refunds: [],
    }).finish();
    const decoded = decodeSnapshotChunk(legacy, { ...inboundContext(REPLICAS), expectedReplica: "r0" }, false);
    if (!decoded.ok) throw new Error(decoded.reason);
    const state = replica("r0");
    applySnapshotChunk(state, decoded.value, { now: () => 2, monotonic: () => 2 }, "own");
    expect(state.balance(ACCOUNT)).to.equal(15n - 4n);
    expect(state.totalHeld(ACCOUNT)).to.equal(0n);
    expect(state.exportAccount(ACCOUNT).slice(12)).to.deep.equal(new Array<bigint>(9).fill(0n));
    // Its answers carry no region: a refund of such a debit is refused, saying why.
    expect(() => refundDebit(state, { debitRequestId: "old", amount: 1n, requestId: "rf", time: at(3) }, "w")).to.throw(RefundRefusedError, "not known here");
  });

  it("refuses hold records that name another region, or captured above the amount", () => {
    const state = replica("r0");
    state.grant(ACCOUNT, 100n);
    const placed = placeHold(state, { accountId: ACCOUNT, amount: 10n, requestId: "h", timeoutMs: 10, time: at(1_000) });
    const ctx = { ...inboundContext(REPLICAS), expectedWriter: "r0" };
    const record = placed.record!;
    const forged = (h: HoldRecord): boolean =>
      decodeDelta(encodeDelta(REPLICAS, 0, { slots: [], requests: [], policies: [], holds: [h] }, 1, ""), ctx).ok;
    expect(forged(record)).to.equal(true);
    expect(forged({ ...record, holdId: "r1:h" })).to.equal(false);
    expect(forged({ ...record, status: HoldStatus.Captured, captured: 11n, resolvedAtMs: 1 })).to.equal(false);
    expect(forged({ ...record, status: 9 as HoldStatus })).to.equal(false);
  });

  it("a hold's lot parts round-trip; parts on another account's rows, repeated, zero or not adding up to the amount are refused", () => {
    const ctx = { ...inboundContext(REPLICAS), expectedWriter: "r0" };
    const lotRow = `${ACCOUNT}#p10.enever.s0`;
    const record: HoldRecord = {
      holdId: "r0:h",
      accountId: ACCOUNT,
      amount: 10n,
      parts: [
        { rowId: lotRow, amount: 7n },
        { rowId: ACCOUNT, amount: 3n },
      ],
      expiresAtMs: 2_000,
      status: HoldStatus.Pending,
      captured: 0n,
      createdAtMs: 1_000,
      resolvedAtMs: 0,
    };
    const decoded = (h: HoldRecord): HoldRecord | undefined => {
      const result = decodeDelta(encodeDelta(REPLICAS, 0, { slots: [], requests: [], policies: [], holds: [h] }, 1, ""), ctx);
      return result.ok ? result.value.holds[0] : undefined;
    };
    expect(decoded(record)).to.deep.equal(record);
    const plain: HoldRecord = { ...record, parts: undefined };
    delete (plain as { parts?: unknown }).parts;
    expect(decoded(plain)).to.deep.equal(plain);
    expect(decoded({ ...record, parts: [{ rowId: "other#p10.enever.s0", amount: 7n }, { rowId: ACCOUNT, amount: 3n }] })).to.equal(undefined);
    expect(decoded({ ...record, parts: [{ rowId: lotRow, amount: 5n }, { rowId: lotRow, amount: 5n }] })).to.equal(undefined);
    expect(decoded({ ...record, parts: [{ rowId: lotRow, amount: 10n }, { rowId: ACCOUNT, amount: 0n }] })).to.equal(undefined);
    expect(decoded({ ...record, parts: [{ rowId: lotRow, amount: 7n }, { rowId: ACCOUNT, amount: 4n }] })).to.equal(undefined);
  });
});
