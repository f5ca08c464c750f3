// Unit and property tests of credit lots (src/core/lots.ts, DESIGN §9): burn
// order, the spendable window judged by the holding clock with a guard,
// donations in the asker's burn order, breakage only once every cut is past
// expiry + guard. Then the laws that matter across regions, with one escrow
// counter per lot (src/core/escrow-counter.ts): Σ_i rights_i(lot) =
// remaining(lot), no lot overspent in STRICT, no lot spent past its real
// expiry whatever the skew within the guard.

import { expect } from "chai";
import fc from "fast-check";
import { InvalidArgumentError } from "../../src/core/errors";
import { mergeInto, rightsOf, slotCount, slotOffset, debitColumn, balanceOf, type SlotView } from "../../src/core/escrow-counter";
import {
  BASE_TERMS,
  NO_EXPIRY,
  breakageDue,
  burnsBefore,
  isSpendable,
  lotKey,
  planBurn,
  planDonation,
  spendableRights,
  validateLotTerms,
  type LotRights,
  type LotTerms,
} from "../../src/core/lots";

const GUARD = 5_000;

const termsArb: fc.Arbitrary<LotTerms> = fc
  .record({
    priority: fc.integer({ min: 0, max: 3 }),
    effectiveAtMs: fc.integer({ min: 0, max: 50_000 }),
    lifeMs: fc.option(fc.integer({ min: GUARD + 1, max: 100_000 }), { nil: undefined }),
  })
  .map(({ priority, effectiveAtMs, lifeMs }) => ({ priority, effectiveAtMs, expiresAtMs: lifeMs === undefined ? NO_EXPIRY : effectiveAtMs + lifeMs }));

const lotsArb: fc.Arbitrary<LotRights[]> = fc
  .array(fc.record({ terms: termsArb, rights: fc.bigInt({ min: -20n, max: 1_000n }) }), { maxLength: 8 })
  .map((lots) => {
    // One entry per key: equal terms are one bucket.
    const byKey = new Map<string, LotRights>();
    for (const lot of lots) byKey.set(lotKey(lot.terms), { key: lotKey(lot.terms), terms: lot.terms, rights: lot.rights });
    return [...byKey.values()];
  });

const clockArb = fc.integer({ min: 0, max: 200_000 });

function taken(takes: ReadonlyArray<{ key: string; amount: bigint }>, key: string): bigint {
  return takes.filter((t) => t.key === key).reduce((s, t) => s + t.amount, 0n);
}

/** Every take is positive, within the lot's rights, from a spendable lot, and no lot is used before an earlier one is exhausted. */
function expectInOrder(lots: readonly LotRights[], takes: ReadonlyArray<{ key: string; amount: bigint }>, clockMs: number): void {
  const byKey = new Map(lots.map((l) => [l.key, l]));
  for (const take of takes) {
    const lot = byKey.get(take.key)!;
    expect(take.amount > 0n, "a take is positive").to.equal(true);
    expect(take.amount <= lot.rights, "a take fits the lot's rights").to.equal(true);
    expect(isSpendable(lot.terms, clockMs, GUARD), "only spendable lots").to.equal(true);
    for (const earlier of lots) {
      if (earlier.key === lot.key || earlier.rights <= 0n || !isSpendable(earlier.terms, clockMs, GUARD)) continue;
      if (burnsBefore(earlier, lot) < 0) expect(taken(takes, earlier.key), `${earlier.key} burns before ${lot.key}`).to.equal(earlier.rights);
    }
  }
  expect(new Set(takes.map((t) => t.key)).size, "each lot at most once").to.equal(takes.length);
}

describe("lots - burn order, spendable window, donations, breakage", () => {
  it("lots - burn order is priority, then sooner expiry (never-expiring last), then key", () => {
    const lot = (key: string, priority: number, expiresAtMs: number): LotRights => ({ key, terms: { priority, effectiveAtMs: 0, expiresAtMs }, rights: 1n });
    const sorted = [lot("d", 1, 10_000), lot("a", 0, NO_EXPIRY), lot("c", 0, 20_000), lot("b", 0, 20_000), lot("e", 0, 15_000)].sort(burnsBefore);
    expect(sorted.map((l) => l.key)).to.deep.equal(["e", "b", "c", "a", "d"]);
  });

  it("lots - a debit burns the earliest lots first and spans lots when it must", () => {
    const lots: LotRights[] = [
      { key: "late", terms: { priority: 0, effectiveAtMs: 0, expiresAtMs: 90_000 }, rights: 50n },
      { key: "soon", terms: { priority: 0, effectiveAtMs: 0, expiresAtMs: 30_000 }, rights: 10n },
      { key: "base", terms: BASE_TERMS, rights: 100n },
    ];
    expect(planBurn(lots, 25n, 1_000, GUARD)).to.deep.equal({ kind: "burn", takes: [{ key: "soon", amount: 10n }, { key: "late", amount: 15n }] });
    // Past soon's expiry − guard its rights are not spendable: they stay, and the debit burns later lots.
    expect(planBurn(lots, 25n, 25_000, GUARD)).to.deep.equal({ kind: "burn", takes: [{ key: "late", amount: 25n }] });
    expect(planBurn(lots, 161n, 1_000, GUARD)).to.deep.equal({ kind: "insufficient", spendable: 160n });
    expect(planBurn(lots, 151n, 25_000, GUARD)).to.deep.equal({ kind: "insufficient", spendable: 150n });
  });

  it("lots - a lot is spendable from effective_at until expires_at − guard, by the holding clock", () => {
    const terms: LotTerms = { priority: 0, effectiveAtMs: 10_000, expiresAtMs: 60_000 };
    expect(isSpendable(terms, 9_999, GUARD)).to.equal(false);
    expect(isSpendable(terms, 10_000, GUARD)).to.equal(true);
    expect(isSpendable(terms, 54_999, GUARD)).to.equal(true);
    expect(isSpendable(terms, 55_000, GUARD)).to.equal(false);
    expect(isSpendable(BASE_TERMS, Number.MAX_SAFE_INTEGER - 1, GUARD)).to.equal(true);
  });

  it("lots - terms are checked and refused with the field named", () => {
    const refused = (terms: LotTerms): string => {
      try {
        validateLotTerms(terms, GUARD);
      } catch (error) {
        expect(error).to.be.instanceOf(InvalidArgumentError);
        return (error as InvalidArgumentError).field;
      }
      return "accepted";
    };
    expect(refused({ priority: -1, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY })).to.equal("priority");
    expect(refused({ priority: 0.5, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY })).to.equal("priority");
    expect(refused({ priority: 0, effectiveAtMs: -1, expiresAtMs: NO_EXPIRY })).to.equal("effective_at");
    expect(refused({ priority: 0, effectiveAtMs: 1_000, expiresAtMs: 1_000 + GUARD })).to.equal("expires_at");
    expect(refused({ priority: 0, effectiveAtMs: 0, expiresAtMs: 2 ** 60 })).to.equal("expires_at");
    expect(refused({ priority: 0, effectiveAtMs: 1_000, expiresAtMs: 1_001 + GUARD })).to.equal("accepted");
    expect(() => planBurn([], 0n, 0, GUARD)).to.throw(InvalidArgumentError, "amount");
    expect(() => planBurn([], 1n << 63n, 0, GUARD)).to.throw(InvalidArgumentError, "amount");
  });

  it("lots - equal terms share one key (one bucket); different terms never do", () => {
    fc.assert(
      fc.property(termsArb, termsArb, (a, b) => {
        const same = a.priority === b.priority && a.effectiveAtMs === b.effectiveAtMs && a.expiresAtMs === b.expiresAtMs;
        expect(lotKey(a) === lotKey(b)).to.equal(same);
      }),
    );
  });

  it("lots - property: a burn takes exactly the amount, in burn order, from spendable rights only, or is refused whole", () => {
    fc.assert(
      fc.property(lotsArb, fc.bigInt({ min: 1n, max: 3_000n }), clockArb, (lots, amount, clock) => {
        const plan = planBurn(lots, amount, clock, GUARD);
        const spendable = spendableRights(lots, clock, GUARD);
        if (plan.kind === "insufficient") {
          expect(plan.spendable).to.equal(spendable);
          expect(spendable < amount).to.equal(true);
          return;
        }
        expect(plan.takes.reduce((s, t) => s + t.amount, 0n)).to.equal(amount);
        expectInOrder(lots, plan.takes, clock);
      }),
    );
  });

  it("lots - property: a donation gives min(give, spendable), in the asker's burn order, never from a dead lot", () => {
    fc.assert(
      fc.property(lotsArb, fc.bigInt({ min: 0n, max: 3_000n }), clockArb, (lots, give, clock) => {
        const takes = planDonation(lots, give, clock, GUARD);
        const spendable = spendableRights(lots, clock, GUARD);
        expect(takes.reduce((s, t) => s + t.amount, 0n)).to.equal(give < spendable ? give : spendable);
        expectInOrder(lots, takes, clock);
      }),
    );
  });

  it("lots - property: with skew within the guard, a spendable lot is never past its real expiry", () => {
    fc.assert(
      // Real times near the expiry, where skew matters.
      fc.property(termsArb, fc.integer({ min: -3 * GUARD, max: 3 * GUARD }), fc.integer({ min: -GUARD, max: GUARD }), (terms, offsetMs, skewMs) => {
        if (terms.expiresAtMs === NO_EXPIRY) return;
        const realMs = terms.expiresAtMs + offsetMs;
        if (isSpendable(terms, realMs + skewMs, GUARD)) expect(realMs < terms.expiresAtMs, `spendable at real ${realMs}, clock ${realMs + skewMs}`).to.equal(true);
      }),
    );
  });

  it("lots - property: once breakage is due, no region's clock at or after its cut can spend the lot", () => {
    fc.assert(
      fc.property(termsArb, fc.array(clockArb, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 100_000 }), (terms, cuts, later) => {
        if (!breakageDue(terms, cuts, GUARD)) return;
        for (const cut of cuts) expect(isSpendable(terms, cut + later, GUARD)).to.equal(false);
      }),
    );
    expect(breakageDue(BASE_TERMS, [Number.MAX_SAFE_INTEGER], GUARD)).to.equal(false);
    expect(breakageDue({ priority: 0, effectiveAtMs: 0, expiresAtMs: 10_000 }, [], GUARD)).to.equal(false);
    expect(breakageDue({ priority: 0, effectiveAtMs: 0, expiresAtMs: 10_000 }, [15_000, 14_999], GUARD)).to.equal(false);
    expect(breakageDue({ priority: 0, effectiveAtMs: 0, expiresAtMs: 10_000 }, [15_000, 15_000], GUARD)).to.equal(true);
  });
});

// ---- across regions: one escrow counter per lot -----------------------------

const N = 3;
const WIDTH = slotCount(N);

/** One region's copy of every lot's counter. */
type Copy = Map<string, SlotView>;

function counter(copy: Copy, key: string): SlotView {
  let view = copy.get(key);
  if (view === undefined) {
    view = { slots: new BigUint64Array(WIDTH), base: 0, n: N };
    copy.set(key, view);
  }
  return view;
}

function add(view: SlotView, writer: number, column: number, amount: bigint): void {
  const k = view.base + slotOffset(N, writer, column);
  view.slots[k] = (view.slots[k] ?? 0n) + amount;
}

type Op =
  | { kind: "grant"; region: number; lot: number; amount: bigint }
  | { kind: "debit"; region: number; amount: bigint }
  | { kind: "donate"; donor: number; asker: number; amount: bigint }
  | { kind: "follow"; region: number; from: number }
  | { kind: "tick"; ms: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("grant" as const), region: fc.nat(N - 1), lot: fc.nat(3), amount: fc.bigInt({ min: 1n, max: 50n }) }),
  fc.record({ kind: fc.constant("debit" as const), region: fc.nat(N - 1), amount: fc.bigInt({ min: 1n, max: 60n }) }),
  fc.record({ kind: fc.constant("donate" as const), donor: fc.nat(N - 1), asker: fc.nat(N - 1), amount: fc.bigInt({ min: 1n, max: 60n }) }),
  fc.record({ kind: fc.constant("follow" as const), region: fc.nat(N - 1), from: fc.nat(N - 1) }),
  fc.record({ kind: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 20_000 }) }),
);

describe("lots - across three regions with an escrow counter per lot", () => {
  it("lots - property: Σ rights = remaining per lot in every copy, no lot overspent, nothing spent after its real expiry", () => {
    fc.assert(
      fc.property(
        fc.array(termsArb, { minLength: 4, maxLength: 4 }),
        fc.array(fc.integer({ min: -GUARD, max: GUARD }), { minLength: N, maxLength: N }),
        fc.array(opArb, { maxLength: 60 }),
        (lotTerms, skews, ops) => {
          const terms = new Map(lotTerms.map((t) => [lotKey(t), t]));
          const copies: Copy[] = Array.from({ length: N }, (): Copy => new Map<string, SlotView>());
          const granted = new Map<string, bigint>();
          let now = 0;
          const clock = (r: number): number => Math.max(0, now + skews[r]!);
          const rightsAt = (r: number): LotRights[] => [...terms].map(([key, t]) => ({ key, terms: t, rights: rightsOf(counter(copies[r]!, key), r) }));
          for (const op of ops) {
            switch (op.kind) {
              case "grant": {
                const t = lotTerms[op.lot]!;
                const key = lotKey(t);
                add(counter(copies[op.region]!, key), op.region, op.region, op.amount);
                granted.set(key, (granted.get(key) ?? 0n) + op.amount);
                break;
              }
              case "debit": {
                const plan = planBurn(rightsAt(op.region), op.amount, clock(op.region), GUARD);
                if (plan.kind === "insufficient") break;
                for (const take of plan.takes) {
                  // The burn happens at real time `now`: it must be before the lot's real expiry.
                  expect(now < terms.get(take.key)!.expiresAtMs, `burnt ${take.key} at ${now}`).to.equal(true);
                  add(counter(copies[op.region]!, take.key), op.region, debitColumn(N), take.amount);
                }
                break;
              }
              case "donate": {
                if (op.donor === op.asker) break;
                for (const take of planDonation(rightsAt(op.donor), op.amount, clock(op.donor), GUARD)) {
                  add(counter(copies[op.donor]!, take.key), op.donor, op.asker, take.amount);
                }
                // The reply carries the donor's counters: the asker merges them.
                for (const [key, view] of copies[op.donor]!) mergeInto(counter(copies[op.asker]!, key), view);
                break;
              }
              case "follow":
                for (const [key, view] of copies[op.from]!) mergeInto(counter(copies[op.region]!, key), view);
                break;
              case "tick":
                now += op.ms;
                break;
            }
            for (const copy of copies) {
              for (const [key, view] of copy) {
                let sum = 0n;
                for (let i = 0; i < N; i++) sum += rightsOf(view, i);
                expect(sum, `Σ rights of ${key}`).to.equal(balanceOf(view));
                expect(balanceOf(view) >= 0n, `${key} not overspent`).to.equal(true);
                expect(balanceOf(view) <= (granted.get(key) ?? 0n)).to.equal(true);
              }
            }
            for (let r = 0; r < N; r++) for (const [key, view] of copies[r]!) expect(rightsOf(view, r) >= 0n, `r${r} rights in ${key}`).to.equal(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
