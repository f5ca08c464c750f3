// Tests of the rebalancing decisions: donor gift sizes, the per-pair rate
// limiter, proactive requests below half the fair share, and demand tracking.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { DemandTracker, DonorRateLimiter, donorGrant, fairShare, fairShareWeight, proactiveNeed } from "../../src/core/rebalance";

const rights = fc.oneof(fc.bigInt(-100n, 1000n), fc.bigInt(-INT64_MAX, INT64_MAX));
const request = fc.oneof(fc.bigInt(-10n, 1000n), fc.bigInt(1n, INT64_MAX));

describe("rebalance - donor grant", () => {
  it("gives its rights above its own fair share, up to the request", () => {
    expect(donorGrant(100n, 30n, 33n, false)).to.equal(30n);
    expect(donorGrant(100n, 80n, 33n, false)).to.equal(67n);
    expect(donorGrant(100n, 80n, 0n, false)).to.equal(80n);
  });

  it("gives nothing ahead of need below its fair share: rights do not ping-pong", () => {
    expect(donorGrant(30n, 10n, 33n, false)).to.equal(0n);
    expect(donorGrant(33n, 10n, 33n, false)).to.equal(0n);
  });

  it("gives at least half (rounded up) to an urgent ask, so the last units stay reachable", () => {
    expect(donorGrant(30n, 100n, 33n, true)).to.equal(15n);
    expect(donorGrant(1n, 1n, 33n, true)).to.equal(1n);
    expect(donorGrant(3n, 5n, 10n, true)).to.equal(2n);
    expect(donorGrant(100n, 80n, 10n, true)).to.equal(80n);
  });

  it("gives nothing without rights or without a positive request", () => {
    expect(donorGrant(0n, 10n, 0n, true)).to.equal(0n);
    expect(donorGrant(-5n, 10n, 0n, true)).to.equal(0n);
    expect(donorGrant(100n, 0n, 0n, true)).to.equal(0n);
    expect(donorGrant(100n, -3n, 0n, false)).to.equal(0n);
  });

  it("stays exact beyond 2^53", () => {
    expect(donorGrant(INT64_MAX, INT64_MAX, 0n, false)).to.equal(INT64_MAX);
    expect(donorGrant(INT64_MAX, INT64_MAX, INT64_MAX, true)).to.equal((INT64_MAX + 1n) / 2n);
    expect(donorGrant(INT64_MAX, (1n << 53n) + 1n, 0n, false)).to.equal((1n << 53n) + 1n);
  });

  it("never gives more than its rights or the request, and ahead of need never dips into its fair share", () => {
    fc.assert(
      fc.property(rights, request, fc.bigInt(0n, INT64_MAX), fc.boolean(), (held, requested, keep, urgent) => {
        const gift = donorGrant(held, requested, keep, urgent);
        expect(gift >= 0n).to.equal(true);
        if (requested <= 0n || held <= 0n) expect(gift).to.equal(0n);
        if (gift > 0n) {
          expect(gift <= held && gift <= requested).to.equal(true);
          if (!urgent) expect(held - gift >= keep).to.equal(true);
          else expect(held - gift >= keep || gift * 2n <= held + 1n).to.equal(true);
        }
      }),
    );
  });

  it("an urgent ask gets at least min(request, half the rights rounded up)", () => {
    fc.assert(
      fc.property(fc.bigInt(1n, INT64_MAX), fc.bigInt(1n, INT64_MAX), fc.bigInt(0n, INT64_MAX), (held, requested, keep) => {
        const gift = donorGrant(held, requested, keep, true);
        const half = (held + 1n) / 2n;
        expect(gift >= (half < requested ? half : requested)).to.equal(true);
      }),
    );
  });
});

describe("rebalance - fair share weights", () => {
  it("blend demand with the equal split, and sum to 1 over the replicas", () => {
    expect(fairShareWeight(undefined, 3)).to.be.closeTo(1 / 3, 1e-12);
    expect(fairShareWeight(1, 3)).to.be.closeTo(2 / 3, 1e-12);
    expect(fairShareWeight(0, 3)).to.be.closeTo(1 / 6, 1e-12);
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 3, maxLength: 3 }), (rates) => {
        const total = rates.reduce((a, b) => a + b, 0);
        if (!(total > 0)) return;
        const sum = rates.reduce((acc, r) => acc + fairShareWeight(r / total, 3), 0);
        expect(sum).to.be.closeTo(1, 1e-9);
      }),
    );
  });

  it("scales exact bigint balances beyond 2^53", () => {
    expect(fairShare(3n << 60n, 1 / 3)).to.equal(((3n << 60n) * 333_333n) / 1_000_000n);
    expect(fairShare(-5n, 0.5)).to.equal(0n);
  });
});

describe("rebalance - donor rate limiter", () => {
  it("blocks a repeat to the same requester for the same account inside the window", () => {
    const limiter = new DonorRateLimiter({ windowMs: 100, maxEntries: 10 });
    expect(limiter.tryAcquire("a", 1, 1000)).to.equal(true);
    expect(limiter.tryAcquire("a", 1, 1050)).to.equal(false);
    expect(limiter.allows("a", 1, 1099)).to.equal(false);
    expect(limiter.tryAcquire("a", 1, 1100)).to.equal(true);
  });

  it("keys by (account, requester)", () => {
    const limiter = new DonorRateLimiter({ windowMs: 100, maxEntries: 10 });
    expect(limiter.tryAcquire("a", 1, 0)).to.equal(true);
    expect(limiter.tryAcquire("a", 2, 0)).to.equal(true);
    expect(limiter.tryAcquire("b", 1, 0)).to.equal(true);
    expect(limiter.tryAcquire("a", 1, 1)).to.equal(false);
  });

  it("does not record when it only checks", () => {
    const limiter = new DonorRateLimiter({ windowMs: 100, maxEntries: 10 });
    expect(limiter.allows("a", 1, 0)).to.equal(true);
    expect(limiter.tryAcquire("a", 1, 1)).to.equal(true);
  });

  it("forgets expired pairs and keeps at most maxEntries", () => {
    const limiter = new DonorRateLimiter({ windowMs: 100, maxEntries: 3 });
    for (let k = 0; k < 5; k++) limiter.tryAcquire(`acct${k}`, 0, k);
    expect(limiter.size).to.equal(3);
    limiter.evict(1000);
    expect(limiter.size).to.equal(0);
  });

  it("never allows two gifts to one pair less than a window apart (monotone time)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(3), fc.nat(2), fc.nat(40)), { maxLength: 100 }),
        fc.integer({ min: 1, max: 100 }),
        (events, windowMs) => {
          const limiter = new DonorRateLimiter({ windowMs, maxEntries: 1000 });
          const last = new Map<string, number>();
          let now = 0;
          for (const [account, requester, step] of events) {
            now += step;
            const key = `${account}/${requester}`;
            if (limiter.tryAcquire(`a${account}`, requester, now)) {
              const previous = last.get(key);
              if (previous !== undefined) expect(now - previous).to.be.at.least(windowMs);
              last.set(key, now);
            } else {
              const previous = last.get(key);
              expect(previous !== undefined && now - previous < windowMs).to.equal(true);
            }
          }
        },
      ),
    );
  });
});

describe("rebalance - proactive need", () => {
  it("asks for half the gap when below half of the fair share", () => {
    // Fair share of 900 over 3 replicas with equal demand = 300; half = 150.
    expect(proactiveNeed(149n, 900n, 3, undefined)).to.equal((300n - 149n) / 2n);
    expect(proactiveNeed(0n, 900n, 3, undefined)).to.equal(150n);
    expect(proactiveNeed(150n, 900n, 3, undefined)).to.equal(0n);
  });

  it("weights the fair share by observed demand", () => {
    expect(proactiveNeed(100n, 1000n, 3, 0.8)).to.equal((566n - 100n) / 2n);
    expect(proactiveNeed(0n, 1000n, 3, 0)).to.equal(83n);
    expect(proactiveNeed(0n, 1000n, 3, 1)).to.equal(333n);
  });

  it("asks for nothing when the balance is not positive", () => {
    expect(proactiveNeed(0n, 0n, 3, 1)).to.equal(0n);
    expect(proactiveNeed(-10n, -5n, 3, 1)).to.equal(0n);
  });

  it("counts overdraft debt as part of the gap", () => {
    expect(proactiveNeed(-100n, 300n, 3, undefined)).to.equal(100n);
  });

  it("clamps nonsense shares and stays exact near 2^63", () => {
    // Clamped to 1 and 0, then blended with the equal split: 2/3 and 1/6 of the balance.
    expect(proactiveNeed(0n, 1000n, 3, 5)).to.equal(333n);
    expect(proactiveNeed(0n, 1000n, 3, -1)).to.equal(83n);
    expect(proactiveNeed(0n, 900n, 3, Number.NaN)).to.equal(150n);
    expect(proactiveNeed(0n, INT64_MAX, 1, 1)).to.equal(INT64_MAX / 2n);
  });

  it("never asks for more than half of the balance, nor when at half the fair share or above", () => {
    fc.assert(
      fc.property(
        rights,
        fc.bigInt(0n, INT64_MAX),
        fc.integer({ min: 1, max: 5 }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
        (local, balance, n, share) => {
          const need = proactiveNeed(local, balance, n, share);
          expect(need >= 0n).to.equal(true);
          if (local >= 0n) expect(need * 2n <= balance).to.equal(true);
          if (local * 2n >= balance) expect(need).to.equal(0n);
        },
      ),
    );
  });
});

describe("rebalance - demand tracker", () => {
  const options = { replicaCount: 3, halfLifeMs: 1000, maxAccounts: 100, idleMs: 10_000 };

  it("decays rates with the half-life", () => {
    const tracker = new DemandTracker(options);
    tracker.record("a", 0, 80n, 0);
    expect(tracker.rate("a", 0, 0)).to.equal(80);
    expect(tracker.rate("a", 0, 1000)).to.be.closeTo(40, 1e-9);
    expect(tracker.rate("a", 0, 3000)).to.be.closeTo(10, 1e-9);
    tracker.record("a", 0, 10n, 1000);
    expect(tracker.rate("a", 0, 1000)).to.be.closeTo(50, 1e-9);
  });

  it("reports demand shares across replicas, undefined without demand", () => {
    const tracker = new DemandTracker(options);
    expect(tracker.share("a", 0)).to.equal(undefined);
    tracker.record("a", 0, 30n, 0);
    tracker.record("a", 2, 10n, 0);
    expect(tracker.share("a", 0)).to.equal(0.75);
    expect(tracker.share("a", 1)).to.equal(0);
    expect(tracker.share("a", 2)).to.equal(0.25);
  });

  it("follows a shift of demand to another replica", () => {
    const tracker = new DemandTracker(options);
    tracker.record("a", 0, 100n, 0);
    tracker.record("a", 1, 100n, 5000);
    expect(tracker.share("a", 1) ?? 0).to.be.greaterThan(0.95);
  });

  it("says a replica is idle once its rate decays under the threshold", () => {
    const tracker = new DemandTracker(options);
    expect(tracker.isIdle("a", 0, 0)).to.equal(true);
    tracker.record("a", 0, 8n, 0);
    expect(tracker.isIdle("a", 0, 0)).to.equal(false);
    expect(tracker.isIdle("a", 0, 3500)).to.equal(true);
    expect(tracker.isIdle("a", 1, 0)).to.equal(true);
  });

  it("ignores non-positive amounts and out-of-range replicas", () => {
    const tracker = new DemandTracker(options);
    tracker.record("a", 0, 0n, 0);
    tracker.record("a", 3, 5n, 0);
    tracker.record("a", -1, 5n, 0);
    expect(tracker.size).to.equal(0);
  });

  it("does not inflate rates when the clock steps back", () => {
    const tracker = new DemandTracker(options);
    tracker.record("a", 0, 10n, 5000);
    expect(tracker.rate("a", 0, 1000)).to.equal(10);
    tracker.record("a", 0, 10n, 1000);
    expect(tracker.rate("a", 0, 5000)).to.equal(20);
  });

  it("bounds memory: evicts idle accounts and the least recently active beyond maxAccounts", () => {
    const tracker = new DemandTracker({ ...options, maxAccounts: 3 });
    for (let k = 0; k < 5; k++) tracker.record(`a${k}`, 0, 1n, k * 100);
    expect(tracker.size).to.equal(3);
    expect(tracker.rate("a0", 0, 500)).to.equal(0);
    tracker.record("a2", 1, 1n, 20_000);
    expect(tracker.evictIdle(20_000)).to.equal(2);
    expect(tracker.size).to.equal(1);
    expect(tracker.share("a2", 1)).to.be.greaterThan(0.9);
  });

  it("keeps shares in [0, 1] summing to 1 and never exceeds maxAccounts", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(9), fc.nat(2), fc.bigInt(1n, INT64_MAX), fc.nat(2000)), { maxLength: 100 }),
        (events) => {
          const tracker = new DemandTracker({ ...options, maxAccounts: 5 });
          let now = 0;
          for (const [account, replica, amount, step] of events) {
            now += step;
            tracker.record(`a${account}`, replica, amount, now);
            expect(tracker.size).to.be.at.most(5);
            let total = 0;
            for (let r = 0; r < 3; r++) {
              const share = tracker.share(`a${account}`, r) ?? Number.NaN;
              expect(share).to.be.within(0, 1);
              total += share;
            }
            expect(total).to.be.closeTo(1, 1e-9);
          }
        },
      ),
    );
  });
});
