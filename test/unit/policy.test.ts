// Tests of account policies: validation names the offending field, and policy
// writes form a last-writer-wins register that converges whatever the order.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { InvalidArgumentError } from "../../src/core/errors";
import {
  Mode,
  overdraftAllowance,
  policyWriteWins,
  STRICT_DEFAULT,
  validatePolicy,
  type Policy,
  type PolicyWrite,
} from "../../src/core/policy";
import { Prng } from "./support/prng";
import { makeReplicas } from "./support/replicas";

function fieldOf(policy: Policy, prefix?: string): string {
  try {
    validatePolicy(policy, prefix);
  } catch (e) {
    if (e instanceof InvalidArgumentError) return e.field;
    throw e;
  }
  throw new Error("expected an InvalidArgumentError");
}

function write(writtenAtMs: number, replica: string, limit = 0n): PolicyWrite {
  const mode = limit === 0n ? Mode.Strict : Mode.Overdraft;
  return { mode, overdraftLimit: limit, lowWaterMark: 0n, writtenAtMs, replica };
}

describe("policy - validation", () => {
  it("accepts STRICT with no limit and OVERDRAFT with any limit up to int64 max", () => {
    expect(validatePolicy(STRICT_DEFAULT)).to.equal(STRICT_DEFAULT);
    const overdraft = { mode: Mode.Overdraft, overdraftLimit: INT64_MAX, lowWaterMark: INT64_MAX };
    expect(validatePolicy(overdraft)).to.equal(overdraft);
    const noLimit = { mode: Mode.Overdraft, overdraftLimit: 0n, lowWaterMark: 0n };
    expect(validatePolicy(noLimit).mode).to.equal(Mode.Overdraft);
  });

  it("names the field of each violation", () => {
    expect(fieldOf({ mode: 0 as Mode, overdraftLimit: 0n, lowWaterMark: 0n })).to.equal("policy.mode");
    expect(fieldOf({ mode: Mode.Overdraft, overdraftLimit: -1n, lowWaterMark: 0n })).to.equal("policy.overdraft_limit");
    expect(fieldOf({ mode: Mode.Overdraft, overdraftLimit: INT64_MAX + 1n, lowWaterMark: 0n })).to.equal(
      "policy.overdraft_limit",
    );
    expect(fieldOf({ mode: Mode.Strict, overdraftLimit: 5n, lowWaterMark: 0n })).to.equal("policy.overdraft_limit");
    expect(fieldOf({ mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: -1n })).to.equal("policy.low_water_mark");
    expect(fieldOf({ mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: INT64_MAX + 1n })).to.equal(
      "policy.low_water_mark",
    );
    expect(fieldOf({ mode: 7 as Mode, overdraftLimit: 0n, lowWaterMark: 0n }, "request.policy")).to.equal(
      "request.policy.mode",
    );
  });

  it("explains the STRICT limit rule in the message", () => {
    expect(() => validatePolicy({ mode: Mode.Strict, overdraftLimit: 1n, lowWaterMark: 0n })).to.throw(
      InvalidArgumentError,
      "policy.overdraft_limit: must be 0 under POLICY_MODE_STRICT",
    );
  });

  it("allows overdraft only under OVERDRAFT", () => {
    expect(overdraftAllowance(STRICT_DEFAULT)).to.equal(0n);
    const overdraft = { mode: Mode.Overdraft, overdraftLimit: 1n << 62n, lowWaterMark: 0n };
    expect(overdraftAllowance(overdraft)).to.equal(1n << 62n);
  });
});

describe("policy - last-writer-wins ordering", () => {
  it("lets the later write win, then the greater replica name on equal times", () => {
    expect(policyWriteWins(write(1, "r0"), undefined)).to.equal(true);
    expect(policyWriteWins(write(2, "r0"), write(1, "r9"))).to.equal(true);
    expect(policyWriteWins(write(1, "r9"), write(2, "r0"))).to.equal(false);
    expect(policyWriteWins(write(5, "r1"), write(5, "r0"))).to.equal(true);
    expect(policyWriteWins(write(5, "r0"), write(5, "r1"))).to.equal(false);
  });

  it("does not let a write win over itself (re-delivery is a no-op)", () => {
    const w = write(5, "r1", 10n);
    expect(policyWriteWins(w, w)).to.equal(false);
  });

  it("converges on every replica whatever the delivery order of writes with distinct (time, replica)", () => {
    const names = ["r0", "r1", "r2"];
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(fc.nat(20), fc.constantFrom(...names)), {
          selector: ([t, r]) => `${t}/${r}`,
          minLength: 1,
          maxLength: 12,
        }),
        fc.nat(),
        (stamps, seed) => {
          const writes = stamps.map(([t, r], k) => write(t, r, BigInt(k + 1)));
          const prng = new Prng(seed);
          const finals = makeReplicas().map((replica) => {
            for (const w of prng.shuffle([...writes, ...writes])) replica.applyPolicy("a", w);
            return replica.policyWrite("a");
          });
          expect(finals[1]).to.deep.equal(finals[0]);
          expect(finals[2]).to.deep.equal(finals[0]);
        },
      ),
    );
  });

  it("converges when one region writes two different policies in the same millisecond", () => {
    // An admin changing a policy twice within 1 ms produces two writes with equal
    // (writtenAtMs, replica); peers receiving them in different orders must still agree.
    const first = write(1000, "r0", 10n);
    const second = write(1000, "r0", 20n);
    const [a, b] = makeReplicas();
    if (a === undefined || b === undefined) throw new Error("replicas");
    a.applyPolicy("acct", first);
    a.applyPolicy("acct", second);
    b.applyPolicy("acct", second);
    b.applyPolicy("acct", first);
    expect(b.policy("acct").overdraftLimit).to.equal(a.policy("acct").overdraftLimit);
  });
});
