// Unit and property tests of credit lots in the replica state: lot row ids
// (clients cannot forge them; replicas accept only canonical ones), the index
// of an account's lots however its rows arrive, and a debit of an account
// with lots, decided as one set of changes under one request id.

import { expect } from "chai";
import fc from "fast-check";
import { BoundExceededError, InvalidArgumentError, LotLimitError, TransferRefusedError } from "../../src/core/errors";
import { INT64_MAX } from "../../src/core/amounts";
import { maxRegionGrantTotal } from "../../src/core/bounds";
import { LotIndex } from "../../src/core/lot-index";
import { BASE_LOT_KEY, LOT_SEPARATOR, lotRowId, parseLotKey, rowOwner, validateRowId } from "../../src/core/lot-rows";
import { publicLotKey } from "../../src/core/lot-writes";
import { BASE_TERMS, lotKey, MAX_LIVE_LOTS, NO_EXPIRY, planDonation, type LotTerms } from "../../src/core/lots";
import type { HoldPart } from "../../src/core/hold-book";
import { ReplicaSet } from "../../src/core/replica-set";
import { DebitOutcome, ReplicaState, type SlotChange } from "../../src/core/replica-state";
import { validateAccountId } from "../../src/core/validation";
import { WritePath } from "../../src/core/write-path";
import { overdraftWrite } from "./support/replicas";

const GUARD = 5_000;
const NAMES = ["r0", "r1", "r2"];

function replica(self = "r0", guard = GUARD): ReplicaState {
  return new ReplicaState({ replicas: new ReplicaSet(NAMES), self, initialAccounts: 4, lotGuardMs: guard });
}

const termsArb: fc.Arbitrary<LotTerms> = fc
  .record({
    priority: fc.integer({ min: 0, max: 1_000_000 }),
    effectiveAtMs: fc.integer({ min: 0, max: 2_000_000_000_000 }),
    lifeMs: fc.option(fc.integer({ min: GUARD + 1, max: 1_000_000_000 }), { nil: undefined }),
  })
  .map(({ priority, effectiveAtMs, lifeMs }) => ({ priority, effectiveAtMs, expiresAtMs: lifeMs === undefined ? NO_EXPIRY : effectiveAtMs + lifeMs }));

function invalid(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return error;
    throw error;
  }
  throw new Error("expected InvalidArgumentError");
}

describe("lot rows - ids", () => {
  it("lot rows - a client account id may not contain the separator (INVALID_ARGUMENT naming account_id)", () => {
    const error = invalid(() => validateAccountId(`acct${LOT_SEPARATOR}p10.enever.s0`));
    expect(error.field).to.equal("account_id");
  });

  it("lot rows - the base terms are the plain account row; other terms a row named by the lot key", () => {
    expect(lotRowId("acct", BASE_TERMS)).to.equal("acct");
    expect(lotRowId("acct", { priority: 10, effectiveAtMs: 0, expiresAtMs: 9_000 })).to.equal("acct#p10.e9000.s0");
  });

  it("lot rows - a row id names its account and terms back, and passes row validation", () => {
    fc.assert(
      fc.property(termsArb, (terms) => {
        const rowId = lotRowId("acme/user-1", terms);
        const owner = rowOwner(rowId);
        expect(owner?.accountId).to.equal("acme/user-1");
        if (rowId === "acme/user-1") expect(owner?.lot).to.equal(undefined);
        else expect(owner?.lot?.terms).to.deep.equal(terms);
        expect(validateRowId(rowId)).to.equal(rowId);
      }),
    );
  });

  it("lot rows - replicas refuse lot keys that are not canonical", () => {
    for (const key of ["p010.enever.s0", "p50.enever.s0", "p1.e5.s0.x", "p1.e-5.s0", "p1000001.enever.s0", "", "base"]) {
      expect(parseLotKey(key), key).to.equal(undefined);
      expect(invalid(() => validateRowId(`acct#${key}`, "slots[0].account_id")).field).to.equal("slots[0].account_id");
    }
    expect(invalid(() => validateRowId("bad id#p1.enever.s0")).field).to.equal("account_id");
  });
});

describe("lot rows - index", () => {
  it("lot rows - the index lists each account's lot rows once, not its plain row", () => {
    const index = new LotIndex();
    for (const id of ["a", "a#p1.enever.s0", "a#p1.enever.s0", "a#p2.e9000.s0", "b"]) index.noteRow(id);
    expect(index.lotsOf("a").map((row) => row.rowId)).to.deep.equal(["a#p1.enever.s0", "a#p2.e9000.s0"]);
    expect(index.hasLots("b")).to.equal(false);
    expect(index.accountCount).to.equal(1);
  });

  it("lot rows - a lot row that arrives by merge or a local grant is indexed the same way", () => {
    const [r0, r1] = [replica("r0"), replica("r1")];
    const promo = lotRowId("acct", { priority: 10, effectiveAtMs: 0, expiresAtMs: 100_000 });
    const grant = r0.grant(promo, 30n);
    for (const change of grant.changes) r1.merge(change.accountId, change.writer, change.column, change.value);
    for (const state of [r0, r1]) expect(state.lots.lotsOf("acct").map((row) => row.rowId)).to.deep.equal([promo]);
  });
});

describe("lot rows - debits", () => {
  const early: LotTerms = { priority: 10, effectiveAtMs: 0, expiresAtMs: 100_000 };
  const late: LotTerms = { priority: 20, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY };

  it("lot rows - a debit burns lots in priority order, one D change per lot burnt", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 50n);
    state.grant("acct", 5n);
    const result = state.debit("acct", 40n, false, 1_000);
    expect(result.answer.outcome).to.equal(DebitOutcome.Approved);
    expect(result.changes.map((c) => [c.accountId, c.value])).to.deep.equal([
      ["acct#p10.e100000.s0", 30n],
      ["acct#p20.enever.s0", 10n],
    ]);
    expect(result.answer.balance).to.equal(45n);
    expect(result.answer.localRights).to.equal(45n);
  });

  it("lot rows - each region's contribution adds up the account's lot rows (what GetBalance lists per region)", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 50n);
    state.grant("acct", 5n);
    state.debit("acct", 40n, false, 1_000);
    const own = state.contributions("acct")[0]!;
    expect([own.granted, own.debited, own.rights]).to.deep.equal([85n, 40n, 45n]);
    expect(own.granted - own.debited).to.equal(state.accountBalance("acct", 1_000));
    // An account without lots reads its plain row, as before.
    state.grant("plain", 7n);
    expect(state.contributions("plain")[0]?.granted).to.equal(7n);
  });

  it("lot rows - the per-region grant cap holds for the account across its lots: int64-edge grants into many lots cannot push its sums past int64", () => {
    const cap = maxRegionGrantTotal(NAMES.length);
    const lot = (priority: number): LotTerms => ({ priority, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY });
    // Every region grants the cap once, into different lots; a second lot at any region is refused, naming amount.
    const regions = NAMES.map((name) => replica(name));
    const changes = regions.flatMap((state, i) => state.grant(lotRowId("edge", lot(i + 1)), cap).changes);
    for (const [i, state] of regions.entries()) {
      let refused: unknown;
      try {
        state.grant(lotRowId("edge", lot(10 + i)), 1n);
      } catch (error) {
        refused = error;
      }
      expect(refused, `region ${NAMES[i]} granting past the cap in another lot`).to.be.instanceOf(BoundExceededError);
      expect(() => state.grant("edge", 1n), "nor in the base lot").to.throw(BoundExceededError);
    }
    // Merged everywhere, the account's balance and per-region totals stay within int64.
    const merged = regions[0]!;
    for (const change of changes) merged.merge(change.accountId, change.writer, change.column, change.value);
    expect(merged.accountBalance("edge", 0)).to.equal(cap * 3n);
    expect(merged.accountBalance("edge", 0) <= INT64_MAX).to.equal(true);
    for (const c of merged.contributions("edge")) expect(c.granted <= INT64_MAX && c.granted === cap).to.equal(true);
  });

  it("lot rows - an expired lot (within the guard) is neither spent nor in the balance", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    state.grant("acct", 5n);
    const clock = early.expiresAtMs - GUARD;
    const refused = state.debit("acct", 6n, false, clock);
    expect(refused.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(refused.changes).to.deep.equal([]);
    expect(state.accountBalance("acct", clock)).to.equal(5n);
    expect(state.accountBalance("acct", clock - 1)).to.equal(35n);
    expect(state.accountLots("acct", clock).map((lot) => [publicLotKey(lot), lot.expired, lot.spendable])).to.deep.equal([
      ["p10.e100000.s0", true, false],
      [BASE_LOT_KEY, false, true],
    ]);
  });

  it("lot rows - a lot that has not started is in the balance but not spendable", () => {
    const state = replica();
    const future: LotTerms = { priority: 0, effectiveAtMs: 50_000, expiresAtMs: NO_EXPIRY };
    state.grant(lotRowId("acct", future), 30n);
    expect(state.debit("acct", 1n, false, 49_999).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(state.accountBalance("acct", 49_999)).to.equal(30n);
    expect(state.debit("acct", 1n, false, 50_000).answer.outcome).to.equal(DebitOutcome.Approved);
  });

  it("lot rows - OVERDRAFT burns every spendable lot and charges the rest to the base lot, within the limit", () => {
    const state = replica();
    state.applyPolicy("acct", overdraftWrite(10n));
    state.grant(lotRowId("acct", early), 30n);
    const over = state.debit("acct", 35n, true, 0);
    expect(over.answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(over.changes.map((c) => [c.accountId, c.value])).to.deep.equal([
      ["acct#p10.e100000.s0", 30n],
      ["acct", 5n],
    ]);
    expect(state.rights("acct")).to.equal(-5n);
    expect(state.debit("acct", 6n, true, 0).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(state.debit("acct", 5n, true, 0).answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
  });

  it("lot rows - a retried debit replays its answer and writes nothing; its one record covers every lot it burnt", () => {
    const state = replica();
    const writes = new WritePath(state);
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 50n);
    const item = { accountId: "acct", amount: 40n, requestId: "req-1" };
    const time = { stampMs: 1_000, nowMs: 1 };
    const admission = writes.admit(item.requestId, "d|acct|40", 1);
    if (admission.kind !== "new") throw new Error("a new request expected");
    const step = writes.debit({ item, fingerprint: "d|acct|40", time, final: true });
    if (step.kind !== "decided") throw new Error("decided expected");
    admission.ticket.resolve(step.answer);
    expect(step.write?.slots).to.have.length(2);
    expect(step.write?.requests).to.have.length(1);
    const replay = writes.admit(item.requestId, "d|acct|40", 2);
    expect(replay).to.deep.equal({ kind: "replay", answer: step.answer });
    expect(state.accountBalance("acct", 1_000)).to.equal(40n);
  });

  it("lot rows - STRICT debits never take a lot's rights below zero, never spend a dead lot, and are all or nothing", () => {
    const lotArb = fc.record({ terms: termsArb.map((t) => ({ ...t, effectiveAtMs: t.effectiveAtMs % 100_000 })), amount: fc.bigInt({ min: 1n, max: 500n }) });
    const opArb = fc.record({ amount: fc.bigInt({ min: 1n, max: 400n }), clock: fc.integer({ min: 0, max: 2_000_000 }) });
    fc.assert(
      fc.property(fc.array(lotArb, { maxLength: 6 }), fc.bigInt({ min: 0n, max: 300n }), fc.array(opArb, { maxLength: 12 }), (lots, base, ops) => {
        const state = replica();
        for (const lot of lots) state.grant(lotRowId("acct", lot.terms), lot.amount);
        if (base > 0n) state.grant("acct", base);
        const rows = ["acct", ...state.lots.lotsOf("acct").map((row) => row.rowId)];
        const clocks = [...ops.map((op) => op.clock)].sort((a, b) => a - b);
        ops.forEach((op, k) => {
          const clock = clocks[k]!;
          const before = state.accountLots("acct", clock);
          const spendable = before.reduce((sum, lot) => sum + (lot.spendable && lot.rights > 0n ? lot.rights : 0n), 0n);
          const result = state.debit("acct", op.amount, false, clock);
          if (spendable >= op.amount) expect(result.answer.outcome).to.equal(DebitOutcome.Approved);
          else expect(result.changes).to.deep.equal([]);
          for (const change of result.changes) {
            const lot = before.find((l) => l.rowId === change.accountId)!;
            expect(lot.spendable, `${lot.rowId} spent at ${clock}`).to.equal(true);
          }
          for (const row of rows) expect(state.rights(row) >= 0n, row).to.equal(true);
        });
      }),
    );
  });

  it("lot rows - a hold reserves from the lots in burn order; a capture debits the parts in that order and releases the rest", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 20n);
    state.grant("acct", 5n);
    const timeoutMs = 10_000;
    const refused = state.hold("acct", 56n, 1_000, timeoutMs);
    expect([refused.answer.outcome, refused.changes.length]).to.deep.equal([DebitOutcome.InsufficientCredit, 0]);
    const held = state.hold("acct", 40n, 1_000, timeoutMs);
    expect(held.answer.outcome).to.equal(DebitOutcome.Approved);
    expect(held.parts).to.deep.equal([
      { rowId: lotRowId("acct", early), amount: 30n },
      { rowId: lotRowId("acct", late), amount: 10n },
    ]);
    expect([held.answer.balance, held.answer.localRights]).to.deep.equal([55n, 15n]);
    expect(state.held(lotRowId("acct", early))).to.equal(30n);
    expect(state.totalHeld("acct")).to.equal(40n);
    // Captured 35: all 30 of the early lot, 5 of the late one; the other 5 go back.
    const released = state.release({ accountId: "acct", amount: 40n, parts: held.parts }, 35n, 2_000);
    expect([released.answer.balance, released.answer.localRights]).to.deep.equal([20n, 20n]);
    expect([state.balance(lotRowId("acct", early)), state.balance(lotRowId("acct", late)), state.balance("acct")]).to.deep.equal([0n, 15n, 5n]);
    for (const row of ["acct", lotRowId("acct", early), lotRowId("acct", late)]) expect(state.held(row), row).to.equal(0n);
  });

  it("lot rows - a hold takes only lots still spendable when it times out: a capture never spends a dead lot", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    const clock = 1_000;
    // The early lot stops at 100 000 − guard: a hold timing out after that cannot use it.
    const lastTimeout = early.expiresAtMs - GUARD - clock - 1;
    expect(state.hold("acct", 10n, clock, lastTimeout + 1).answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    const held = state.hold("acct", 10n, clock, lastTimeout);
    expect(held.answer.outcome).to.equal(DebitOutcome.Approved);
    expect(held.parts).to.deep.equal([{ rowId: lotRowId("acct", early), amount: 10n }]);
  });

  it("lot rows - a hold of an account with lots all on its base lot is a plain-row hold (no parts)", () => {
    const state = replica();
    state.grant(lotRowId("acct", early), 30n);
    state.grant("acct", 50n);
    const held = state.hold("acct", 20n, early.expiresAtMs, 1_000);
    expect(held.answer.outcome).to.equal(DebitOutcome.Approved);
    expect(held.parts).to.equal(undefined);
    expect(state.held("acct")).to.equal(20n);
  });

  it("lot rows - a refund goes back to the lots debited here in burn order, never to an expired lot; the base lot takes the rest", () => {
    const state = replica();
    const soon: LotTerms = { priority: 5, effectiveAtMs: 0, expiresAtMs: 20_000 };
    state.grant(lotRowId("acct", soon), 10n);
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 20n);
    expect(state.debit("acct", 50n, false, 1_000).answer.outcome).to.equal(DebitOutcome.Approved);
    // Debited: soon 10, early 30, late 10. At 15 001 the soon lot is past its expiry − guard.
    const clock = soon.expiresAtMs - GUARD + 1;
    const refunded = state.refund("acct", 45n, clock);
    expect(refunded.changes.map((c) => [c.accountId, c.value])).to.deep.equal([
      [lotRowId("acct", early), 30n],
      [lotRowId("acct", late), 10n],
      ["acct", 5n],
    ]);
    expect(state.balance(lotRowId("acct", soon))).to.equal(0n);
    expect(state.accountBalance("acct", clock)).to.equal(55n);
  });

  it("lot rows - a grant that would open one lot more than MAX_LIVE_LOTS is refused and changes nothing; expired lots do not count, existing and base lots still take grants", () => {
    const state = replica();
    const writes = new WritePath(state);
    const grant = (requestId: string, lot: LotTerms | undefined, stampMs = 1_000): unknown =>
      writes.grant({ accountId: "acct", amount: 1n, requestId, time: { stampMs, nowMs: 1 }, spread: false, ...(lot === undefined ? {} : { lot }) });
    const dying: LotTerms = { priority: 1, effectiveAtMs: 0, expiresAtMs: 1_000 + GUARD };
    grant("dying", dying, 0);
    for (let i = 0; i < MAX_LIVE_LOTS; i++) grant(`g-${i}`, { priority: 2, effectiveAtMs: 0, expiresAtMs: 1_000_000 + i });
    const before = state.accountBalance("acct", 1_000);
    const refused = (): unknown => grant("one-more", { priority: 3, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY });
    expect(refused).to.throw(LotLimitError, `already has ${MAX_LIVE_LOTS} live credit lots`);
    expect(state.accountBalance("acct", 1_000)).to.equal(before);
    expect(state.lots.lotsOf("acct")).to.have.length(MAX_LIVE_LOTS + 1);
    // The lot that expired here (within the guard at 1 000) is not counted; existing lots and the base lot still take grants.
    grant("existing", { priority: 2, effectiveAtMs: 0, expiresAtMs: 1_000_000 });
    grant("base", undefined);
    expect(state.accountBalance("acct", 1_000)).to.equal(before + 2n);
  });

  it("lot rows - a grant into a lot already expired by this region's clock (an expiry in seconds, say) is INVALID_ARGUMENT naming lot.expires_at_ms, and changes nothing", () => {
    const state = replica();
    const writes = new WritePath(state);
    const now = 1_767_225_600_000;
    const inSeconds: LotTerms = { priority: 1, effectiveAtMs: 0, expiresAtMs: 1_767_225_600 };
    const error = invalid(() => writes.grant({ accountId: "acct", amount: 5n, requestId: "sec", time: { stampMs: now, nowMs: 1 }, spread: false, lot: inSeconds }));
    expect(error.field).to.equal("lot.expires_at_ms");
    expect(error.message).to.contain("1970-01-21").and.contain("dead on arrival").and.contain("milliseconds");
    expect([state.accountBalance("acct", now), state.lots.hasLots("acct")]).to.deep.equal([0n, false]);
    // Within the guard is dead too; one ms past it is taken.
    const edge = (expiresAtMs: number): unknown =>
      writes.grant({ accountId: "acct", amount: 5n, requestId: `edge-${expiresAtMs}`, time: { stampMs: now, nowMs: 1 }, spread: false, lot: { priority: 1, effectiveAtMs: 0, expiresAtMs } });
    invalid(() => edge(now + GUARD));
    edge(now + GUARD + 1);
    expect(state.accountBalance("acct", now)).to.equal(5n);
  });

  it("lot rows - a transfer of an account with lots gives from its spendable lots in burn order, never a dead one, all or nothing", () => {
    const state = replica();
    const dead: LotTerms = { priority: 0, effectiveAtMs: 0, expiresAtMs: 10_000 };
    state.grant(lotRowId("acct", dead), 100n);
    state.grant(lotRowId("acct", early), 30n);
    state.grant(lotRowId("acct", late), 20n);
    const clock = dead.expiresAtMs - GUARD;
    expect(() => state.transfer("acct", 1, 51n, clock)).to.throw(TransferRefusedError, "needs 51 spare rights in lots spendable now, region has 50");
    expect(state.rights(lotRowId("acct", early))).to.equal(30n);
    const changes = state.transfer("acct", 1, 40n, clock);
    expect(changes.map((c) => [c.accountId, c.column, c.value])).to.deep.equal([
      [lotRowId("acct", early), 1, 30n],
      [lotRowId("acct", late), 1, 10n],
    ]);
    expect([state.rights(lotRowId("acct", dead)), state.spendableRights("acct", clock), state.rights(lotRowId("acct", late), 1)]).to.deep.equal([100n, 10n, 10n]);
  });

  it("lot rows - a refund pays back an overdraft of the base lot first, then the lots in burn order", () => {
    const state = replica();
    state.applyPolicy("acct", overdraftWrite(10n));
    state.grant(lotRowId("acct", early), 30n);
    expect(state.debit("acct", 35n, true, 0).answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(state.rights("acct")).to.equal(-5n);
    const refunded = state.refund("acct", 8n, 0);
    expect(refunded.changes.map((c) => [c.accountId, c.value])).to.deep.equal([
      ["acct", 5n],
      [lotRowId("acct", early), 3n],
    ]);
    expect([state.rights("acct"), state.rights(lotRowId("acct", early))]).to.deep.equal([0n, 3n]);
  });

  it("lot rows - an account without lots is debited exactly as before", () => {
    const state = replica();
    state.grant("acct", 10n);
    const result = state.debit("acct", 4n, false, 123);
    expect(result.changes).to.deep.equal([{ accountId: "acct", writer: 0, column: 3, value: 4n }]);
    expect(state.lots.hasLots("acct")).to.equal(false);
  });

  it("lot rows - the key of a lot with base terms never appears as a row", () => {
    expect(lotKey(BASE_TERMS)).to.equal("p50.enever.s0");
    expect(parseLotKey(lotKey(BASE_TERMS))).to.equal(undefined);
  });
});

describe("lot rows - across regions", () => {
  type Op =
    | { kind: "grant"; at: number; lot: number; amount: bigint }
    | { kind: "debit"; at: number; amount: bigint }
    | { kind: "donate"; from: number; to: number; amount: bigint }
    | { kind: "sync"; from: number; to: number }
    | { kind: "tick"; at: number; ms: number }
    | { kind: "hold"; at: number; amount: bigint; timeoutMs: number }
    | { kind: "resolve"; at: number; pick: number; capture: bigint }
    | { kind: "refund"; at: number; amount: bigint }
    | { kind: "allowance"; from: number; to: number; amount: bigint };

  const LOTS: LotTerms[] = [
    { priority: 0, effectiveAtMs: 0, expiresAtMs: 40_000 },
    { priority: 5, effectiveAtMs: 10_000, expiresAtMs: 90_000 },
    { priority: 9, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY },
  ];
  const at = fc.integer({ min: 0, max: 2 });
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("grant" as const), at, lot: fc.integer({ min: -1, max: 2 }), amount: fc.bigInt({ min: 1n, max: 100n }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("debit" as const), at, amount: fc.bigInt({ min: 1n, max: 80n }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("donate" as const), from: at, to: at, amount: fc.bigInt({ min: 1n, max: 80n }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("sync" as const), from: at, to: at }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("tick" as const), at, ms: fc.integer({ min: 0, max: 20_000 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("hold" as const), at, amount: fc.bigInt({ min: 1n, max: 60n }), timeoutMs: fc.integer({ min: 1, max: 40_000 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("resolve" as const), at, pick: fc.nat(), capture: fc.bigInt({ min: 0n, max: 60n }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("refund" as const), at, amount: fc.bigInt({ min: 1n, max: 60n }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("allowance" as const), from: at, to: at, amount: fc.bigInt({ min: 1n, max: 60n }) }) },
  );
  type OpenHold = { readonly amount: bigint; readonly parts: readonly HoldPart[] | undefined; readonly expiresAtMs: number };

  it("lot rows - with grants, debits, holds, captures, refunds, donations and merges in any order, no lot is overspent and no region spends a lot its clock calls dead", () => {
    let lotSpends = 0;
    let lotHolds = 0;
    let lotRefunds = 0;
    let lotCaptures = 0;
    let lotAllowances = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 15, maxLength: 40 }), (ops) => {
        const regions = NAMES.map((name) => replica(name));
        // Clocks start apart (skew): each region judges expiry by its own.
        const clocks = [5_000, 20_000, 35_000];
        const sync = (from: number, to: number): void => {
          for (const [rowId] of regions[from]!.accounts()) regions[to]!.mergeAccount(rowId, regions[from]!.exportAccount(rowId));
        };
        const open: OpenHold[][] = [[], [], []];
        // What each region debited (debits and captures) and has not refunded: the most a refund may give back.
        const refundable = [0n, 0n, 0n];
        const resolve = (region: number, hold: OpenHold, capture: bigint): void => {
          const state = regions[region]!;
          const clock = clocks[region]!;
          const timedOut = clock >= hold.expiresAtMs;
          const captured = timedOut ? 0n : capture > hold.amount ? hold.amount : capture;
          if (captured > 0n && hold.parts !== undefined) lotCaptures++;
          if (captured > 0n) {
            // A hold on a lot resolves before the lot dies here: every part is still spendable.
            for (const part of hold.parts ?? []) expect(state.accountLots("acct", clock).find((lot) => lot.rowId === part.rowId)?.spendable, part.rowId).to.equal(true);
          }
          state.release({ accountId: "acct", amount: hold.amount, ...(hold.parts === undefined ? {} : { parts: hold.parts }) }, captured, clock);
          refundable[region]! += captured;
        };
        for (const op of ops) {
          if (op.kind === "hold") {
            const state = regions[op.at]!;
            const clock = clocks[op.at]!;
            const result = state.hold("acct", op.amount, clock, op.timeoutMs);
            if (result.answer.outcome !== DebitOutcome.Approved) continue;
            if (result.parts !== undefined) lotHolds++;
            open[op.at]!.push({ amount: op.amount, parts: result.parts, expiresAtMs: clock + op.timeoutMs });
            continue;
          }
          if (op.kind === "resolve") {
            const holds = open[op.at]!;
            if (holds.length > 0) resolve(op.at, holds.splice(op.pick % holds.length, 1)[0]!, op.capture);
            continue;
          }
          if (op.kind === "refund") {
            const amount = op.amount > refundable[op.at]! ? refundable[op.at]! : op.amount;
            if (amount === 0n) continue;
            const state = regions[op.at]!;
            const before = state.accountLots("acct", clocks[op.at]!);
            const result = state.refund("acct", amount, clocks[op.at]);
            refundable[op.at]! -= amount;
            for (const change of result.changes) expect(before.find((lot) => lot.rowId === change.accountId)?.expired, change.accountId).to.equal(false);
            if (result.changes.some((change) => change.accountId.includes("#"))) lotRefunds++;
            continue;
          }
          if (op.kind === "allowance") {
            // An operator's TransferAllowance: from the spendable lots in burn order, all or nothing.
            if (op.from === op.to) continue;
            const donor = regions[op.from]!;
            const clock = clocks[op.from]!;
            const before = donor.accountLots("acct", clock);
            const spendable = donor.spendableRights("acct", clock);
            let changes: SlotChange[] = [];
            try {
              changes = donor.transfer("acct", op.to, op.amount, clock);
            } catch (error) {
              expect(error).to.be.instanceOf(TransferRefusedError);
              expect(op.amount > spendable, `refused ${op.amount} with ${spendable} spendable`).to.equal(true);
              expect(donor.spendableRights("acct", clock)).to.equal(spendable);
              continue;
            }
            expect(spendable >= op.amount).to.equal(true);
            for (const change of changes) {
              const lot = before.find((l) => l.rowId === change.accountId)!;
              expect(lot.spendable, `${lot.rowId} given at ${clock}`).to.equal(true);
            }
            expect(donor.spendableRights("acct", clock)).to.equal(spendable - op.amount);
            for (const change of changes) regions[op.to]!.mergeAccount(change.accountId, donor.exportAccount(change.accountId));
            if (changes.some((c) => c.accountId.includes("#"))) lotAllowances++;
            continue;
          }
          if (op.kind === "grant") regions[op.at]!.grant(op.lot < 0 ? "acct" : lotRowId("acct", LOTS[op.lot]!), op.amount);
          else if (op.kind === "tick") clocks[op.at]! += op.ms;
          else if (op.kind === "sync") sync(op.from, op.to);
          else if (op.kind === "debit") {
            const state = regions[op.at]!;
            const before = state.accountLots("acct", clocks[op.at]!);
            const result = state.debit("acct", op.amount, false, clocks[op.at]);
            if (result.answer.outcome === DebitOutcome.Approved) refundable[op.at]! += op.amount;
            for (const change of result.changes) expect(before.find((lot) => lot.rowId === change.accountId)?.spendable).to.equal(true);
            if (result.changes.some((change) => change.accountId.includes("#"))) lotSpends++;
          } else if (op.from !== op.to) {
            const donor = regions[op.from]!;
            const lots = donor.accountLots("acct", clocks[op.from]!);
            for (const take of planDonation(lots, op.amount, clocks[op.from]!, GUARD)) {
              const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
              const changes = donor.transfer(rowId, op.to, take.amount);
              expect(lots.find((lot) => lot.rowId === rowId)?.spendable).to.equal(true);
              // The gift reaches the asker with the donor's whole counter, as the rights broker sends it.
              regions[op.to]!.mergeAccount(rowId, donor.exportAccount(rowId));
              for (const c of changes) regions[op.to]!.merge(c.accountId, c.writer, c.column, c.value);
            }
          }
        }
        const check = (): void => {
          for (const from of [0, 1, 2]) for (const to of [0, 1, 2]) sync(from, to);
          const merged = regions[0]!;
          for (const lot of merged.accountLots("acct", 0)) {
            // STRICT per lot: the remaining amount never goes below zero, and every region's rights and holds add up to it.
            expect(lot.remaining >= 0n, lot.rowId).to.equal(true);
            const rights = [0, 1, 2].map((i) => merged.rights(lot.rowId, i));
            const held = [0, 1, 2].map((i) => merged.held(lot.rowId, i));
            expect([...rights, ...held].reduce((sum, r) => sum + r, 0n), lot.rowId).to.equal(lot.remaining);
            for (const r of [...rights, ...held]) expect(r >= 0n, lot.rowId).to.equal(true);
          }
        };
        check();
        // Every open hold resolved (captured where still allowed): nothing stays held.
        open.forEach((holds, region) => holds.forEach((hold) => resolve(region, hold, hold.amount)));
        check();
        for (const lot of regions[0]!.accountLots("acct", 0)) for (const i of [0, 1, 2]) expect(regions[0]!.held(lot.rowId, i), lot.rowId).to.equal(0n);
      }),
      { numRuns: 300 },
    );
    // The runs must exercise spending lots (about 700 debits burn one), not only refusals.
    expect(lotSpends).to.be.greaterThan(200);
    expect(lotHolds).to.be.greaterThan(100);
    expect(lotRefunds).to.be.greaterThan(20);
    expect(lotCaptures).to.be.greaterThan(80);
    expect(lotAllowances).to.be.greaterThan(20);
  });
});
