// Tests of account policies: validation names the offending field, and policy
// writes form a last-writer-wins register that converges whatever the order.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { InvalidArgumentError } from "../../src/core/errors";
import {
  comparePolicyStamps,
  Mode,
  nextPolicyStamp,
  overdraftAllowance,
  policyWriteWins,
  STRICT_DEFAULT,
  validatePolicy,
  type Policy,
  type PolicyWrite,
} from "../../src/core/policy";
import { Prng } from "./support/prng";
import { makeReplicas } from "./support/replicas";
import { policyFromWire, policyToWire } from "../../src/replication/delta-codec";
import { PolicyValue } from "../../src/generated/tally/replication/v1/replication";
import { ReplicaDataRejectedError } from "../../src/core/errors";
import type { ReplicaState } from "../../src/core/replica-state";

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
  return { mode, overdraftLimit: limit, lowWaterMark: 0n, writtenAtMs, logical: 0, replica };
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
    // (writtenAtMs, logical, replica); peers receiving them in different orders must still agree.
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

// ---- hybrid logical clock ----------------------------------------------------

const HOUR = 3_600_000;
const T0 = 1_700_000_000_000;
const STRICT: Policy = { mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: 0n };

function overdraft(limit: bigint): Policy {
  return { mode: Mode.Overdraft, overdraftLimit: limit, lowWaterMark: 0n };
}

function regions(): [ReplicaState, ReplicaState, ReplicaState] {
  const [a, b, c] = makeReplicas();
  if (a === undefined || b === undefined || c === undefined) throw new Error("three replicas expected");
  return [a, b, c];
}

/** Delivers `writes` to every replica in the given order. */
function deliver(replicas: readonly ReplicaState[], writes: readonly PolicyWrite[]): void {
  for (const r of replicas) for (const w of writes) r.applyPolicy("acct", w);
}

describe("policy - hybrid logical clock stamps", () => {
  it("takes the wall clock when it is ahead, else keeps the physical part and counts", () => {
    expect(nextPolicyStamp(undefined, 500)).to.deep.equal({ writtenAtMs: 500, logical: 0 });
    expect(nextPolicyStamp({ writtenAtMs: 400, logical: 7 }, 500)).to.deep.equal({ writtenAtMs: 500, logical: 0 });
    expect(nextPolicyStamp({ writtenAtMs: 500, logical: 7 }, 500)).to.deep.equal({ writtenAtMs: 500, logical: 8 });
    expect(nextPolicyStamp({ writtenAtMs: 900, logical: 0 }, 500)).to.deep.equal({ writtenAtMs: 900, logical: 1 });
    expect(nextPolicyStamp({ writtenAtMs: 900, logical: Number.MAX_SAFE_INTEGER }, 500)).to.deep.equal({
      writtenAtMs: 901,
      logical: 0,
    });
  });

  it("refuses a wall clock that is not a time", () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) expect(() => nextPolicyStamp(undefined, bad)).to.throw(InvalidArgumentError);
  });

  it("orders writes by physical part, then logical part, then replica name", () => {
    const at = (writtenAtMs: number, logical: number, replica: string): PolicyWrite => ({
      ...write(writtenAtMs, replica),
      logical,
    });
    expect(policyWriteWins(at(5, 1, "r0"), at(5, 0, "r9"))).to.equal(true);
    expect(policyWriteWins(at(5, 0, "r9"), at(5, 1, "r0"))).to.equal(false);
    expect(policyWriteWins(at(6, 0, "r0"), at(5, 99, "r9"))).to.equal(true);
    expect(policyWriteWins(at(5, 1, "r1"), at(5, 1, "r0"))).to.equal(true);
    expect(comparePolicyStamps({ writtenAtMs: 5, logical: 2 }, { writtenAtMs: 5, logical: 2 })).to.equal(0);
  });

  it("lets a later write win everywhere over a write from a peer whose clock is 1 h ahead, in any delivery order", () => {
    const [local, peer, third] = regions();
    // The peer's clock reads T0 + 1 h at real time T0; it sets OVERDRAFT.
    const early = peer.writePolicy("acct", overdraft(1000n), T0 + HOUR);
    local.applyPolicy("acct", early);
    // 1.5 s later (real time) an operator sets STRICT at the local region.
    const later = local.writePolicy("acct", STRICT, T0 + 1500);
    expect(later).to.include({ writtenAtMs: T0 + HOUR, logical: 1, replica: "r0" });
    for (const order of [
      [early, later],
      [later, early],
      [later, early, later, early],
    ]) {
      const replicas = regions();
      deliver(replicas, order);
      for (const r of replicas) expect(r.policy("acct").mode).to.equal(Mode.Strict);
    }
    deliver([peer, third], [later]);
    for (const r of [local, peer, third]) expect(r.policyWrite("acct")).to.deep.equal(later);
  });

  it("lets a later write win everywhere whichever region's clock is 1 h behind", () => {
    // The peer is behind and wrote first: the local write 1.5 s later wins on its own clock.
    {
      const [local, peer] = regions();
      const early = peer.writePolicy("acct", overdraft(1000n), T0 - HOUR);
      local.applyPolicy("acct", early);
      const later = local.writePolicy("acct", STRICT, T0 + 1500);
      expect(later).to.include({ writtenAtMs: T0 + 1500, logical: 0 });
      const replicas = regions();
      deliver(replicas, [later, early]);
      for (const r of replicas) expect(r.policy("acct").mode).to.equal(Mode.Strict);
    }
    // The peer is behind and writes second, after seeing the local write: it still wins.
    {
      const [local, peer] = regions();
      const early = local.writePolicy("acct", overdraft(1000n), T0);
      peer.applyPolicy("acct", early);
      const later = peer.writePolicy("acct", STRICT, T0 + 1500 - HOUR);
      expect(later).to.include({ writtenAtMs: T0, logical: 1, replica: "r1" });
      const replicas = regions();
      deliver(replicas, [later, early]);
      for (const r of replicas) expect(r.policy("acct").mode).to.equal(Mode.Strict);
    }
  });

  it("lets writes made after a clock jumped forward and was corrected keep winning in causal order", () => {
    const [a, b, c] = regions();
    const all = [a, b, c];
    const history: PolicyWrite[] = [];
    // b's clock jumps 1 h ahead and it writes; then its clock is corrected.
    history.push(b.writePolicy("acct", overdraft(10n), T0 + HOUR));
    deliver([a, c], history);
    // Alternating writes, each made after seeing the previous one, on correct clocks.
    const steps: [ReplicaState, number, Policy][] = [
      [b, T0 + 1_000, STRICT],
      [a, T0 + 2_000, overdraft(20n)],
      [c, T0 + 3_000, STRICT],
      [b, T0 + 4_000, overdraft(30n)],
    ];
    for (const [writer, now, policy] of steps) {
      const written = writer.writePolicy("acct", policy, now);
      for (const earlier of history) expect(policyWriteWins(written, earlier)).to.equal(true);
      history.push(written);
      deliver(all, [written]);
      for (const r of all) expect(r.policyWrite("acct")).to.deep.equal(written);
    }
    // Once real time passes the jumped stamp, the wall clock leads again.
    const after = a.writePolicy("acct", STRICT, T0 + HOUR + 5);
    expect(after).to.include({ writtenAtMs: T0 + HOUR + 5, logical: 0 });
  });

  it("makes merging policy writes commutative, associative and idempotent", () => {
    const names = ["r0", "r1", "r2"];
    const anyWrite: fc.Arbitrary<PolicyWrite> = fc.record({
      mode: fc.constantFrom(Mode.Strict, Mode.Overdraft),
      overdraftLimit: fc.bigInt(0n, 3n),
      lowWaterMark: fc.bigInt(0n, 2n),
      writtenAtMs: fc.integer({ min: 0, max: 3 }),
      logical: fc.integer({ min: 0, max: 3 }),
      replica: fc.constantFrom(...names),
    }).map((w) => (w.mode === Mode.Strict ? { ...w, overdraftLimit: 0n } : w));
    const fold = (writes: readonly PolicyWrite[]): PolicyWrite | undefined => {
      const [r] = makeReplicas();
      if (r === undefined) throw new Error("replica");
      for (const w of writes) r.applyPolicy("acct", w);
      return r.policyWrite("acct");
    };
    fc.assert(
      fc.property(fc.array(anyWrite, { minLength: 1, maxLength: 10 }), fc.nat(), fc.nat(), (writes, seed, cut) => {
        const prng = new Prng(seed);
        const reference = fold(writes);
        // Commutative and idempotent: any order, with repeats.
        expect(fold(prng.shuffle([...writes, ...writes.slice(0, cut % (writes.length + 1))]))).to.deep.equal(reference);
        // Associative: merging the winners of two parts equals merging everything.
        const k = cut % (writes.length + 1);
        const parts = [fold(writes.slice(0, k)), fold(writes.slice(k))].filter((w): w is PolicyWrite => w !== undefined);
        expect(fold(parts)).to.deep.equal(reference);
        expect(fold([...parts].reverse())).to.deep.equal(reference);
      }),
      { numRuns: 300 },
    );
  });

  it("lets a write made after observing another always win, whatever the clocks", () => {
    const step = fc.record({
      writer: fc.integer({ min: 0, max: 2 }),
      // Real time advances by 0..2 s; each writer's clock is off by up to ±2 h and may jump.
      advanceMs: fc.integer({ min: 0, max: 2_000 }),
      skewMs: fc.integer({ min: -2 * HOUR, max: 2 * HOUR }),
      limit: fc.bigInt(0n, 1000n),
      // Whether the writer first sees the current winner (causal) or writes concurrently.
      seesWinner: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 25 }), fc.nat(), (steps, seed) => {
        const replicas = regions();
        const history: PolicyWrite[] = [];
        let winner: PolicyWrite | undefined;
        let real = T0;
        for (const s of steps) {
          real += s.advanceMs;
          const writer = replicas[s.writer] as ReplicaState;
          if (s.seesWinner && winner !== undefined) writer.applyPolicy("acct", winner);
          const observed = writer.policyWrite("acct");
          const written = writer.writePolicy("acct", s.limit === 0n ? STRICT : overdraft(s.limit), real + s.skewMs);
          if (observed !== undefined) expect(policyWriteWins(written, observed), "beats what it observed").to.equal(true);
          // A write made after seeing the winner of all earlier writes beats every one of them.
          if (observed !== undefined && observed === winner) {
            for (const earlier of history) expect(policyWriteWins(written, earlier)).to.equal(true);
          }
          history.push(written);
          if (policyWriteWins(written, winner)) winner = written;
        }
        const prng = new Prng(seed);
        const finals = replicas.map((r) => {
          for (const w of prng.shuffle([...history])) r.applyPolicy("acct", w);
          return r.policyWrite("acct");
        });
        for (const final of finals) expect(final).to.deep.equal(winner);
      }),
      { numRuns: 300 },
    );
  });
});

describe("policy - wire format", () => {
  it("carries the logical part of the stamp and reads it as 0 from writers that predate it", () => {
    const sent: PolicyWrite = { ...write(T0, "r2", 40n), logical: 12 };
    const bytes = PolicyValue.encode(policyToWire({ accountId: "acct", write: sent })).finish();
    expect(policyFromWire(PolicyValue.decode(bytes))).to.deep.equal({ accountId: "acct", write: sent });
    const old = PolicyValue.encode({
      accountId: "acct",
      mode: 2,
      overdraftLimit: 40n,
      lowWaterMark: 0n,
      writtenAtMs: BigInt(T0),
      replica: "r2",
      logical: 0n,
    }).finish();
    expect(policyFromWire(PolicyValue.decode(old)).write.logical).to.equal(0);
  });

  it("refuses a logical part beyond 2^53 instead of rounding it", () => {
    const wire = policyToWire({ accountId: "acct", write: write(T0, "r2", 40n) });
    const decoded = policyFromWire({ ...wire, logical: (1n << 53n) + 1n });
    const [r] = makeReplicas();
    if (r === undefined) throw new Error("replica");
    expect(() => r.applyPolicy("acct", decoded.write)).to.throw(ReplicaDataRejectedError, "logical");
  });
});
