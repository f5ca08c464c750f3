// Tests of the idempotency memory: same id and fingerprint recall the first
// answer, a different fingerprint is a conflict, and memory is bounded by age and count.

import { expect } from "chai";
import fc from "fast-check";
import { RequestConflictError } from "../../src/core/errors";
import { DebitOutcome, type Answer } from "../../src/core/answer";
import { RequestLog } from "../../src/core/request-log";

/** A distinct answer per number. */
function answer(n: number): Answer {
  return { kind: "debit", outcome: DebitOutcome.Approved, balance: BigInt(n), localRights: 0n };
}

describe("request log - recall and conflicts", () => {
  it("returns undefined for an unknown id and the remembered answer for a known one", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    expect(log.lookup("r1", "f")).to.equal(undefined);
    log.remember("r1", "f", answer(1), 0);
    expect(log.lookup("r1", "f")).to.deep.equal(answer(1));
    expect(log.size).to.equal(1);
  });

  it("throws RequestConflictError naming the id when the fingerprint differs", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "debit a 5", answer(1), 0);
    expect(() => log.lookup("r1", "debit a 6"))
      .to.throw(RequestConflictError, 'request_id: "r1" was already used with different parameters')
      .with.property("requestId", "r1");
  });

  it("keeps the first answer when the same id is remembered again", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "f", answer(1), 0);
    log.remember("r1", "g", answer(2), 5);
    expect(log.lookup("r1", "f")).to.deep.equal(answer(1));
    expect(() => log.lookup("r1", "g")).to.throw(RequestConflictError);
  });
});

describe("request log - eviction", () => {
  it("forgets entries older than the retention, keeping one exactly at the edge", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 10 });
    log.remember("a", "f", answer(1), 0);
    log.remember("b", "f", answer(2), 50);
    log.remember("c", "f", answer(3), 150);
    expect(log.lookup("a", "f")).to.equal(undefined);
    expect(log.lookup("b", "f")).to.deep.equal(answer(2));
    expect(log.size).to.equal(2);
    log.remember("d", "f", answer(4), 151);
    expect(log.lookup("b", "f")).to.equal(undefined);
  });

  it("forgets the oldest entries beyond maxEntries", () => {
    const log = new RequestLog({ retentionMs: 1_000_000, maxEntries: 3 });
    for (let k = 0; k < 5; k++) log.remember(`r${k}`, "f", answer(k), k);
    expect(log.size).to.equal(3);
    expect(log.lookup("r0", "f")).to.equal(undefined);
    expect(log.lookup("r1", "f")).to.equal(undefined);
    expect([2, 3, 4].map((k) => log.lookup(`r${k}`, "f"))).to.deep.equal([2, 3, 4].map(answer));
  });

  it("after every remember, holds at most maxEntries ids, none older than the retention", () => {
    // Eviction runs on remember (lookup takes no clock), so that is where the bounds hold.
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(20), fc.nat(30)), { maxLength: 200 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 100 }),
        (events, maxEntries, retentionMs) => {
          const log = new RequestLog({ retentionMs, maxEntries });
          let now = 0;
          const answeredAt = new Map<string, number>();
          for (const [id, step] of events) {
            now += step;
            const key = `r${id}`;
            const known = log.lookup(key, "f");
            if (known !== undefined) {
              expect(known).to.deep.equal(answer(answeredAt.get(key) ?? -1));
              continue;
            }
            log.remember(key, "f", answer(now), now);
            answeredAt.set(key, now);
            expect(log.size).to.be.at.most(maxEntries);
            expect(log.lookup(key, "f")).to.deep.equal(answer(now));
            for (const [other, at] of answeredAt) {
              if (log.lookup(other, "f") !== undefined) expect(at).to.be.at.least(now - retentionMs);
            }
          }
        },
      ),
    );
  });
});

describe("request log - packed answers", () => {
  it("returns every answer exactly: kinds, outcomes, int64 edges and values beyond int64", () => {
    const answers: Answer[] = [
      { kind: "grant", outcome: DebitOutcome.Approved, balance: (1n << 63n) - 1n, localRights: 0n },
      { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance: 0n, localRights: -(1n << 63n) },
      { kind: "debit", outcome: DebitOutcome.ApprovedWithOverdraft, balance: -5n, localRights: -7n },
      { kind: "grant", outcome: DebitOutcome.Approved, balance: 1n << 64n, localRights: 1n },
      { kind: "debit", outcome: DebitOutcome.ApprovedWithOverdraft, balance: -(1n << 70n), localRights: 3n },
    ];
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    answers.forEach((a, k) => log.remember(`r${k}`, `f${k}`, a, k));
    expect(answers.map((_, k) => log.lookup(`r${k}`, `f${k}`))).to.deep.equal(answers);
    expect(log.entries()).to.deep.equal(answers.map((a, k) => [`r${k}`, { fingerprint: `f${k}`, answer: a, answeredAtMs: k }]));
  });

  it("keeps order and content while the ring grows and wraps", () => {
    // 5,000 ids through a log of at most 3,000: the ring grows past its initial
    // size, then wraps; the last 3,000 remain, oldest first.
    const log = new RequestLog({ retentionMs: 1_000_000, maxEntries: 3_000 });
    for (let k = 0; k < 5_000; k++) log.remember(`r${k}`, `f${k % 7}`, answer(k), k);
    expect(log.size).to.equal(3_000);
    expect(log.lookup("r1999", "f4")).to.equal(undefined);
    expect(log.lookup("r2000", `f${2000 % 7}`)).to.deep.equal(answer(2000));
    expect(log.lookup("r4999", `f${4999 % 7}`)).to.deep.equal(answer(4999));
    const ids = log.entries().map(([id]) => id);
    expect(ids).to.deep.equal(Array.from({ length: 3_000 }, (_, k) => `r${2000 + k}`));
  });

  it("refuses a maxEntries below one", () => {
    expect(() => new RequestLog({ retentionMs: 1000, maxEntries: 0 })).to.throw(/maxEntries/);
  });
});
