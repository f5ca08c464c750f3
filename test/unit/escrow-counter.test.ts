// Unit and property tests of the flat-slot escrow counter: layout, balance and
// rights arithmetic (exact beyond 2^53), and the merge laws that make it a CRDT.

import { expect } from "chai";
import fc from "fast-check";
import {
  balanceOf,
  debitColumn,
  debited,
  granted,
  heldColumn,
  heldOf,
  lastColumn,
  legacySlotCount,
  mergeInto,
  netTransfersIn,
  refundColumn,
  refunded,
  releasedColumn,
  rightsOf,
  slotCount,
  totalHeldOf,
  slotOffset,
  type SlotView,
} from "../../src/core/escrow-counter";
import { UINT64_MAX } from "../../src/core/amounts";

const N = 3;
const WIDTH = slotCount(N);

/** A view over a copy of `values` placed at `base` in a larger pool, so base handling is exercised. */
function viewOf(values: readonly bigint[], base = 0): SlotView {
  const slots = new BigUint64Array(base + WIDTH + 5);
  values.forEach((v, k) => {
    slots[base + k] = v;
  });
  return { slots, base, n: N };
}

function valuesOf(view: SlotView): bigint[] {
  return Array.from(view.slots.subarray(view.base, view.base + slotCount(view.n)));
}

/** P[i][j] and D[i] by name, for readable examples. */
function build(p: readonly (readonly bigint[])[], d: readonly bigint[]): SlotView {
  const values: bigint[] = new Array<bigint>(WIDTH).fill(0n);
  p.forEach((row, i) =>
    row.forEach((v, j) => {
      values[slotOffset(N, i, j)] = v;
    }),
  );
  d.forEach((v, i) => {
    values[slotOffset(N, i, debitColumn(N))] = v;
  });
  return viewOf(values);
}

const slotValue = fc.oneof(
  fc.bigInt(0n, 1000n),
  fc.bigInt(0n, UINT64_MAX),
  fc.bigInt(UINT64_MAX - 1000n, UINT64_MAX),
  fc.constant(0n),
);
const slotVector = fc.array(slotValue, { minLength: WIDTH, maxLength: WIDTH });
const base = fc.nat(40);

function merged(a: readonly bigint[], b: readonly bigint[]): bigint[] {
  const into = viewOf(a);
  mergeInto(into, viewOf(b));
  return valuesOf(into);
}

describe("escrow counter - layout", () => {
  it("places P[i][j] at i*n + j, then the D, HA, HR and RF blocks of n", () => {
    expect(slotCount(3)).to.equal(21);
    expect(legacySlotCount(3)).to.equal(12);
    expect(slotOffset(3, 0, 0)).to.equal(0);
    expect(slotOffset(3, 1, 2)).to.equal(5);
    expect(slotOffset(3, 2, 2)).to.equal(8);
    expect(debitColumn(3)).to.equal(3);
    expect(slotOffset(3, 0, debitColumn(3))).to.equal(9);
    expect(slotOffset(3, 2, debitColumn(3))).to.equal(11);
    // The legacy layout (P and D) is a prefix of the new one.
    expect(slotOffset(3, 0, heldColumn(3))).to.equal(12);
    expect(slotOffset(3, 1, releasedColumn(3))).to.equal(16);
    expect(slotOffset(3, 2, refundColumn(3))).to.equal(20);
    expect(lastColumn(3)).to.equal(6);
  });

  it("gives every (writer, column) pair its own slot", () => {
    for (const n of [1, 2, 3, 5]) {
      const seen = new Set<number>();
      for (let w = 0; w < n; w++) for (let c = 0; c <= lastColumn(n); c++) seen.add(slotOffset(n, w, c));
      expect(seen.size).to.equal(slotCount(n));
      expect(Math.min(...seen)).to.equal(0);
      expect(Math.max(...seen)).to.equal(slotCount(n) - 1);
    }
  });
});

describe("escrow counter - balance and rights", () => {
  it("computes balance and rights by the escrow formulas", () => {
    // r0 granted 100 and gave 30 to r1 and 10 to r2; r1 granted 50 and gave 5 to r0.
    const view = build(
      [
        [100n, 30n, 10n],
        [5n, 50n, 0n],
        [0n, 0n, 0n],
      ],
      [20n, 40n, 7n],
    );
    expect(granted(view, 0)).to.equal(100n);
    expect(debited(view, 1)).to.equal(40n);
    expect(balanceOf(view)).to.equal(150n - 67n);
    expect(rightsOf(view, 0)).to.equal(100n + 5n - 40n - 20n);
    expect(rightsOf(view, 1)).to.equal(50n + 30n - 5n - 40n);
    expect(rightsOf(view, 2)).to.equal(10n - 7n);
    expect(netTransfersIn(view, 0)).to.equal(5n - 40n);
    expect(netTransfersIn(view, 2)).to.equal(10n);
  });

  it("reports negative rights after an overdraft instead of wrapping", () => {
    const view = build([[10n, 0n, 0n], [0n, 0n, 0n], [0n, 0n, 0n]], [0n, 0n, 25n]);
    expect(rightsOf(view, 2)).to.equal(-25n);
    expect(balanceOf(view)).to.equal(-15n);
  });

  it("stays exact for counters near 2^64", () => {
    const big = UINT64_MAX - 1n;
    const view = build([[big, 0n, 0n], [0n, (1n << 53n) + 1n, 0n], [0n, 0n, 0n]], [big - 3n, 0n, 1n]);
    expect(balanceOf(view)).to.equal(3n + (1n << 53n));
    expect(rightsOf(view, 0)).to.equal(3n);
    expect(rightsOf(view, 1)).to.equal((1n << 53n) + 1n);
  });

  it("keeps Σ rights(i) + Σ held(i) equal to the balance for any slot vector", () => {
    fc.assert(
      fc.property(slotVector, base, (values, at) => {
        const view = viewOf(values, at);
        let sum = 0n;
        for (let i = 0; i < N; i++) sum += rightsOf(view, i);
        expect(sum + totalHeldOf(view)).to.equal(balanceOf(view));
      }),
    );
  });

  it("takes held credit out of rights but not out of the balance, and counts refunds as credit", () => {
    const view = build([[100n, 0n, 0n], [0n, 0n, 0n], [0n, 0n, 0n]], [10n, 0n, 0n]);
    const at = (column: number, writer: number): number => view.base + slotOffset(N, writer, column);
    view.slots[at(heldColumn(N), 0)] = 30n;
    view.slots[at(releasedColumn(N), 0)] = 12n;
    view.slots[at(refundColumn(N), 0)] = 4n;
    expect(heldOf(view, 0)).to.equal(18n);
    expect(refunded(view, 0)).to.equal(4n);
    expect(balanceOf(view)).to.equal(100n + 4n - 10n);
    expect(rightsOf(view, 0)).to.equal(100n + 4n - 10n - 18n);
  });

  it("reads the account at its base and nothing around it", () => {
    fc.assert(
      fc.property(slotVector, base, (values, at) => {
        const view = viewOf(values, at);
        view.slots.fill(UINT64_MAX, 0, at);
        view.slots.fill(UINT64_MAX, at + WIDTH);
        const clean = viewOf(values);
        expect(balanceOf(view)).to.equal(balanceOf(clean));
        for (let i = 0; i < N; i++) expect(rightsOf(view, i)).to.equal(rightsOf(clean, i));
      }),
    );
  });
});

describe("escrow counter - merge laws", () => {
  it("merges by pointwise max", () => {
    const tail = (v: bigint): bigint[] => new Array<bigint>(WIDTH - 12).fill(v);
    const a = viewOf([1n, 9n, 0n, 4n, 5n, 6n, 7n, 8n, 9n, 10n, 11n, UINT64_MAX, ...tail(3n)]);
    const b = viewOf([2n, 3n, 0n, 4n, 1n, 1n, 1n, 1n, 1n, 1n, 1n, 1n, ...tail(5n)]);
    expect(mergeInto(a, b)).to.equal(true);
    expect(valuesOf(a)).to.deep.equal([2n, 9n, 0n, 4n, 5n, 6n, 7n, 8n, 9n, 10n, 11n, UINT64_MAX, ...tail(5n)]);
    expect(mergeInto(a, b)).to.equal(false);
  });

  it("is commutative", () => {
    fc.assert(
      fc.property(slotVector, slotVector, (a, b) => {
        expect(merged(a, b)).to.deep.equal(merged(b, a));
      }),
    );
  });

  it("is associative", () => {
    fc.assert(
      fc.property(slotVector, slotVector, slotVector, (a, b, c) => {
        expect(merged(merged(a, b), c)).to.deep.equal(merged(a, merged(b, c)));
      }),
    );
  });

  it("is idempotent", () => {
    fc.assert(
      fc.property(slotVector, (a) => {
        const into = viewOf(a);
        expect(mergeInto(into, viewOf(a))).to.equal(false);
        expect(valuesOf(into)).to.deep.equal(a);
      }),
    );
  });

  it("yields the least upper bound and reports growth exactly", () => {
    fc.assert(
      fc.property(slotVector, slotVector, base, base, (a, b, atA, atB) => {
        const into = viewOf(a, atA);
        const grew = mergeInto(into, viewOf(b, atB));
        const result = valuesOf(into);
        result.forEach((v, k) => {
          const x = a[k] ?? 0n;
          const y = b[k] ?? 0n;
          expect(v).to.equal(x > y ? x : y);
        });
        expect(grew).to.equal(b.some((v, k) => v > (a[k] ?? 0n)));
        // Slots outside the account are untouched.
        expect(Array.from(into.slots.subarray(0, atA)).every((v) => v === 0n)).to.equal(true);
        expect(Array.from(into.slots.subarray(atA + WIDTH)).every((v) => v === 0n)).to.equal(true);
      }),
    );
  });

  it("never lowers the balance contribution of a row it already has", () => {
    // Merging only adds information: every slot is monotone, hence granted and debited are too.
    fc.assert(
      fc.property(slotVector, slotVector, (a, b) => {
        const before = viewOf(a);
        const after = viewOf(merged(a, b));
        for (let i = 0; i < N; i++) {
          expect(granted(after, i) >= granted(before, i)).to.equal(true);
          expect(debited(after, i) >= debited(before, i)).to.equal(true);
          expect(refunded(after, i) >= refunded(before, i)).to.equal(true);
        }
      }),
    );
  });
});
