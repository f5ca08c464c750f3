// Snapshot timers of the regions of a cluster are staggered: region k of n
// snapshots at wall times ≡ k·interval/n (mod interval), whenever it started.

import { expect } from "chai";
import fc from "fast-check";
import { snapshotDelay } from "../../src/node/snapshotter";

describe("snapshotter - staggered schedule", () => {
  it("fires each region at its own phase of the interval, evenly spread", () => {
    const interval = 60_000;
    const fireAt = (now: number, index: number): number => (now + snapshotDelay(now, interval, index, 3)) % interval;
    expect([0, 1, 2].map((k) => fireAt(1_700_000_000_123, k))).to.deep.equal([0, 20_000, 40_000]);
  });

  it("always waits between 1 ms and one interval, and lands on the region's phase", () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 45 }), fc.integer({ min: 1, max: 3_600_000 }), fc.nat({ max: 9 }), fc.integer({ min: 1, max: 10 }), (now, interval, index, n) => {
        const delay = snapshotDelay(now, interval, index % n, n);
        expect(delay).to.be.within(1, interval);
        const phase = Math.floor(((index % n) * interval) / n);
        expect((((now + delay - phase) % interval) + interval) % interval).to.equal(0);
      }),
    );
  });
});
