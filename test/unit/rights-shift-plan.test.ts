// Planned shifts (src/core/shift-plan.ts): the goal per account, exact in
// bigint, and idempotent: applying a shift's move and planning again moves nothing.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { InvalidArgumentError } from "../../src/core/errors";
import { shiftAmount, shiftFractionPpm } from "../../src/core/shift-plan";

describe("rights shift plan", () => {
  it("rights shift plan - moves enough that the receiver holds the fraction of the pair's rights", () => {
    expect(shiftAmount(100n, 0n, shiftFractionPpm(1))).to.equal(100n);
    expect(shiftAmount(100n, 0n, shiftFractionPpm(0.5))).to.equal(50n);
    expect(shiftAmount(60n, 40n, shiftFractionPpm(0.5))).to.equal(10n);
    expect(shiftAmount(3n, 0n, shiftFractionPpm(0.5)), "rounded up: the receiver gets the odd unit").to.equal(2n);
  });

  it("rights shift plan - moves nothing without rights, or when the receiver already holds its share", () => {
    expect(shiftAmount(0n, 10n, shiftFractionPpm(1))).to.equal(0n);
    expect(shiftAmount(-5n, 10n, shiftFractionPpm(1))).to.equal(0n);
    expect(shiftAmount(40n, 60n, shiftFractionPpm(0.5))).to.equal(0n);
  });

  it("rights shift plan - 0 means the whole; fractions outside (0, 1] are refused naming the field", () => {
    expect(shiftFractionPpm(0)).to.equal(1_000_000n);
    for (const bad of [-0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => shiftFractionPpm(bad)).to.throw(InvalidArgumentError, "fraction");
    }
  });

  it("rights shift plan - never moves more than held; a second run moves nothing (idempotent); exact beyond 2^53", () => {
    fc.assert(
      fc.property(fc.bigInt(-1000n, INT64_MAX / 2n), fc.bigInt(-1000n, INT64_MAX / 2n), fc.integer({ min: 1, max: 1_000_000 }), (from, to, ppm) => {
        const fraction = BigInt(ppm);
        const move = shiftAmount(from, to, fraction);
        expect(move >= 0n).to.equal(true);
        if (from <= 0n) expect(move).to.equal(0n);
        else expect(move <= from).to.equal(true);
        expect(shiftAmount(from - move, to + move, fraction), "nothing left after one run").to.equal(0n);
      }),
    );
  });
});
