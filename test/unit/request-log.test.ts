// Tests of the idempotency memory: same id and fingerprint recall the first
// answer, a different fingerprint is a conflict, and memory is bounded by age and count.

import { expect } from "chai";
import fc from "fast-check";
import { RequestConflictError } from "../../src/core/errors";
import { RequestLog } from "../../src/core/request-log";

describe("request log - recall and conflicts", () => {
  it("returns undefined for an unknown id and the remembered answer for a known one", () => {
    const log = new RequestLog<string>({ retentionMs: 1000, maxEntries: 10 });
    expect(log.lookup("r1", "f")).to.equal(undefined);
    log.remember("r1", "f", "first", 0);
    expect(log.lookup("r1", "f")).to.equal("first");
    expect(log.size).to.equal(1);
  });

  it("throws RequestConflictError naming the id when the fingerprint differs", () => {
    const log = new RequestLog<string>({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "debit a 5", "ok", 0);
    expect(() => log.lookup("r1", "debit a 6"))
      .to.throw(RequestConflictError, 'request_id: "r1" was already used with different parameters')
      .with.property("requestId", "r1");
  });

  it("keeps the first answer when the same id is remembered again", () => {
    const log = new RequestLog<string>({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "f", "first", 0);
    log.remember("r1", "g", "second", 5);
    expect(log.lookup("r1", "f")).to.equal("first");
    expect(() => log.lookup("r1", "g")).to.throw(RequestConflictError);
  });
});

describe("request log - eviction", () => {
  it("forgets entries older than the retention, keeping one exactly at the edge", () => {
    const log = new RequestLog<number>({ retentionMs: 100, maxEntries: 10 });
    log.remember("a", "f", 1, 0);
    log.remember("b", "f", 2, 50);
    log.remember("c", "f", 3, 150);
    expect(log.lookup("a", "f")).to.equal(undefined);
    expect(log.lookup("b", "f")).to.equal(2);
    expect(log.size).to.equal(2);
    log.remember("d", "f", 4, 151);
    expect(log.lookup("b", "f")).to.equal(undefined);
  });

  it("forgets the oldest entries beyond maxEntries", () => {
    const log = new RequestLog<number>({ retentionMs: 1_000_000, maxEntries: 3 });
    for (let k = 0; k < 5; k++) log.remember(`r${k}`, "f", k, k);
    expect(log.size).to.equal(3);
    expect(log.lookup("r0", "f")).to.equal(undefined);
    expect(log.lookup("r1", "f")).to.equal(undefined);
    expect([2, 3, 4].map((k) => log.lookup(`r${k}`, "f"))).to.deep.equal([2, 3, 4]);
  });

  it("after every remember, holds at most maxEntries ids, none older than the retention", () => {
    // Eviction runs on remember (lookup takes no clock), so that is where the bounds hold.
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(20), fc.nat(30)), { maxLength: 200 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 100 }),
        (events, maxEntries, retentionMs) => {
          const log = new RequestLog<number>({ retentionMs, maxEntries });
          let now = 0;
          const answeredAt = new Map<string, number>();
          for (const [id, step] of events) {
            now += step;
            const key = `r${id}`;
            const known = log.lookup(key, "f");
            if (known !== undefined) {
              expect(known).to.equal(answeredAt.get(key));
              continue;
            }
            log.remember(key, "f", now, now);
            answeredAt.set(key, now);
            expect(log.size).to.be.at.most(maxEntries);
            expect(log.lookup(key, "f")).to.equal(now);
            for (const [other, at] of answeredAt) {
              if (log.lookup(other, "f") !== undefined) expect(at).to.be.at.least(now - retentionMs);
            }
          }
        },
      ),
    );
  });
});
