// The writer lease's clock (src/core/lease-clock.ts): when the holder renews
// and when it must stop believing, judged by its own monotonic clock.

import { expect } from "chai";
import { confirmed, leaseStatus, LeaseTimingError, NO_LEASE, validateLeaseTiming, type LeaseTiming } from "../../src/core/lease-clock";

const TIMING: LeaseTiming = { ttlMs: 1_000, renewAfterMs: 300, marginMs: 200 };

describe("lease clock - status", () => {
  it("lease clock - no lease is 'none' at any time", () => {
    expect(leaseStatus(NO_LEASE, 0, TIMING)).to.equal("none");
    expect(leaseStatus(NO_LEASE, 1e12, TIMING)).to.equal("none");
  });

  it("lease clock - counted from when the write was sent: valid, then renew-due, then expired at ttl − margin", () => {
    const held = confirmed(5, 10_000);
    expect(leaseStatus(held, 10_000, TIMING)).to.equal("valid");
    expect(leaseStatus(held, 10_299, TIMING)).to.equal("valid");
    expect(leaseStatus(held, 10_300, TIMING)).to.equal("renew-due");
    expect(leaseStatus(held, 10_799, TIMING)).to.equal("renew-due");
    expect(leaseStatus(held, 10_800, TIMING)).to.equal("expired");
  });

  it("lease clock - a clock that stood still (GC pause) still says valid: the lease only decides who tries, the fence keeps safety", () => {
    const held = confirmed(5, 10_000);
    // Real time is far past the TTL, but the holder's clock read 10_100.
    expect(leaseStatus(held, 10_100, TIMING)).to.equal("valid");
  });
});

describe("lease clock - timing validation", () => {
  it("lease clock - renewals must come before the holder stops believing; the margin must be below the TTL", () => {
    expect(validateLeaseTiming(TIMING)).to.equal(TIMING);
    expect(() => validateLeaseTiming({ ...TIMING, renewAfterMs: 800 })).to.throw(LeaseTimingError, /renewAfterMs/);
    expect(() => validateLeaseTiming({ ...TIMING, renewAfterMs: 0 })).to.throw(LeaseTimingError, /renewAfterMs/);
    expect(() => validateLeaseTiming({ ...TIMING, marginMs: 1_000 })).to.throw(LeaseTimingError, /marginMs/);
    expect(() => validateLeaseTiming({ ...TIMING, ttlMs: 50 })).to.throw(LeaseTimingError, /ttlMs/);
    expect(() => validateLeaseTiming({ ...TIMING, ttlMs: 1.5 })).to.throw(LeaseTimingError, /integer/);
  });
});
