// Tests of the idempotency memory: same id and fingerprint recall the first
// answer, a different fingerprint is a conflict; acknowledged ids are never
// forgotten inside their window (a full log refuses new local requests
// instead), refusals are bounded apart, and retention runs on the local
// monotonic clock whatever the wall-clock stamps say.

import { status } from "@grpc/grpc-js";
import { expect } from "chai";
import fc from "fast-check";
import { InvalidArgumentError, RequestConflictError, RequestLogFullError } from "../../src/core/errors";
import { DebitOutcome, type Answer } from "../../src/core/answer";
import { RequestLog, type RequestTime } from "../../src/core/request-log";
import { toStatus } from "../../src/server/status-mapping";

const HOUR = 3_600_000;
const WALL = 1_700_000_000_000;

/** A distinct approved answer per number. */
function answer(n: number): Answer {
  return { kind: "debit", outcome: DebitOutcome.Approved, balance: BigInt(n), localRights: 0n };
}

/** A distinct refusal per number. */
function refusal(n: number): Answer {
  return { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance: BigInt(n), localRights: 0n };
}

/** Recorded at monotonic `nowMs`, stamped with a sane wall clock unless told otherwise. */
function at(nowMs: number, stampMs = WALL + nowMs): RequestTime {
  return { stampMs, nowMs };
}

describe("request log - recall and conflicts", () => {
  it("returns undefined for an unknown id and the remembered answer for a known one", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    expect(log.lookup("r1", "f")).to.equal(undefined);
    log.remember("r1", "f", answer(1), at(0));
    expect(log.lookup("r1", "f")).to.deep.equal(answer(1));
    expect(log.size).to.equal(1);
  });

  it("throws RequestConflictError naming the id when the fingerprint differs", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "debit a 5", answer(1), at(0));
    log.remember("r2", "debit a 5", refusal(2), at(0));
    expect(() => log.lookup("r1", "debit a 6"))
      .to.throw(RequestConflictError, 'request_id: "r1" was already used with different parameters')
      .with.property("requestId", "r1");
    expect(() => log.lookup("r2", "debit a 6")).to.throw(RequestConflictError).with.property("requestId", "r2");
  });

  it("keeps the first answer when the same id is remembered again", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "f", answer(1), at(0));
    log.remember("r1", "g", answer(2), at(5));
    log.rememberReplicated("r1", "g", answer(3), at(6));
    expect(log.lookup("r1", "f")).to.deep.equal(answer(1));
    expect(() => log.lookup("r1", "g")).to.throw(RequestConflictError);
    expect(log.fill).to.deep.equal({ acknowledged: 1, local: 1, refusals: 0, capacity: 10 });
  });

  it("answers with a replicated approval over a local refusal of the same id", () => {
    // The retry was approved in another region: that answer changed a balance
    // and must outlive the refusal, which may be evicted.
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10 });
    log.remember("r1", "f", refusal(1), at(0));
    log.rememberReplicated("r1", "f", answer(2), at(1));
    expect(log.lookup("r1", "f")).to.deep.equal(answer(2));
    log.remember("r1", "f", refusal(3), at(2));
    expect(log.fill).to.deep.equal({ acknowledged: 1, local: 0, refusals: 1, capacity: 10 });
  });
});

describe("request log - flood of refusals", () => {
  it("never evicts an approval, however many refusals arrive", () => {
    // The incident: 2.1M refused debits pushed out an approved id whose retry was charged again.
    const log = new RequestLog({ retentionMs: 15 * 60_000, maxEntries: 3, maxRefusals: 5 });
    log.remember("approved", "f", answer(1), at(0));
    for (let k = 0; k < 10_000; k++) log.remember(`refused-${k}`, "f", refusal(k), at(k / 100));
    expect(log.lookup("approved", "f")).to.deep.equal(answer(1));
    expect(log.fill).to.deep.equal({ acknowledged: 1, local: 1, refusals: 5, capacity: 3 });
    // Refusals do not take the room of approvals.
    expect(log.hasRoom(2)).to.equal(true);
  });

  it("keeps the newest refusals when their ring is full, oldest going first", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 10, maxRefusals: 3 });
    for (let k = 0; k < 5; k++) log.remember(`r${k}`, "f", refusal(k), at(k));
    expect(log.lookup("r0", "f")).to.equal(undefined);
    expect(log.lookup("r1", "f")).to.equal(undefined);
    expect([2, 3, 4].map((k) => log.lookup(`r${k}`, "f"))).to.deep.equal([2, 3, 4].map(refusal));
  });
});

describe("request log - admission when full", () => {
  it("refuses a new local request with RequestLogFullError and changes nothing", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 2 });
    log.remember("a", "f", answer(1), at(0));
    log.remember("b", "f", answer(2), at(1));
    const before = log.entries();
    expect(log.hasRoom(1)).to.equal(false);
    expect(() => log.assertRoom(1, 2))
      .to.throw(RequestLogFullError, "request log full: 2 of 2 acknowledged request ids")
      .that.includes({ requested: 1, remembered: 2, capacity: 2 });
    expect(log.entries()).to.deep.equal(before);
    expect(log.lookup("a", "f")).to.deep.equal(answer(1));
  });

  it("refuses a whole batch that does not fit, and admits one that does", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 5 });
    for (let k = 0; k < 3; k++) log.remember(`r${k}`, "f", answer(k), at(k));
    expect(() => log.assertRoom(3, 3)).to.throw(RequestLogFullError).with.property("requested", 3);
    expect(log.fill.local).to.equal(3);
    expect(() => log.assertRoom(2, 3)).not.to.throw();
    expect(() => log.assertRoom(0, 3)).not.to.throw();
  });

  it("still accepts records replicated from peers and restored from snapshots when full", () => {
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 1 });
    log.remember("local", "f", answer(1), at(0));
    expect(() => log.assertRoom(1, 0)).to.throw(RequestLogFullError);
    log.rememberReplicated("peer", "f", answer(2), at(1));
    log.restore("snap", "f", answer(3), { stampMs: WALL, nowMs: 2, wallNowMs: WALL + 10 });
    expect(["local", "peer", "snap"].map((id) => log.lookup(id, "f"))).to.deep.equal([1, 2, 3].map(answer));
    // The cap counts local admissions only: peers neither fill it nor free it.
    expect(log.fill).to.deep.equal({ acknowledged: 3, local: 1, refusals: 0, capacity: 1 });
  });

  it("remembers an answer decided after the log filled, never evicting another", () => {
    // Requests admitted before the log filled must still be remembered.
    const log = new RequestLog({ retentionMs: 1000, maxEntries: 2 });
    for (let k = 0; k < 4; k++) log.remember(`r${k}`, "f", answer(k), at(k));
    expect([0, 1, 2, 3].map((k) => log.lookup(`r${k}`, "f"))).to.deep.equal([0, 1, 2, 3].map(answer));
    expect(log.fill.local).to.equal(4);
  });

  it("gives room back once the window passed on the monotonic clock", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 2 });
    log.remember("a", "f", answer(1), at(0));
    log.remember("b", "f", answer(2), at(50));
    expect(() => log.assertRoom(1, 100)).to.throw(RequestLogFullError);
    log.assertRoom(1, 101);
    expect(log.lookup("a", "f")).to.equal(undefined);
    expect(log.lookup("b", "f")).to.deep.equal(answer(2));
    expect(() => log.assertRoom(2, 150)).to.throw(RequestLogFullError);
    log.assertRoom(2, 151);
    expect(log.fill).to.deep.equal({ acknowledged: 0, local: 0, refusals: 0, capacity: 2 });
  });

  it("rejects a negative or fractional count", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 2 });
    expect(() => log.assertRoom(-1, 0)).to.throw(InvalidArgumentError, /count/);
    expect(() => log.assertRoom(1.5, 0)).to.throw(InvalidArgumentError, /count/);
  });

  it("maps RequestLogFullError to RESOURCE_EXHAUSTED saying nothing changed", () => {
    const mapped = toStatus(new RequestLogFullError(3, 2_000_000, 2_000_000));
    expect(mapped.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(mapped.details).to.equal(
      "request log full: 2000000 of 2000000 acknowledged request ids are within their retention window and 3 more cannot be remembered; " +
        "nothing changed, retry later with backoff",
    );
  });
});

describe("request log - retention on the local monotonic clock", () => {
  it("forgets entries recorded before the retention, keeping one exactly at the edge", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 10 });
    log.remember("a", "f", answer(1), at(0));
    log.remember("b", "f", refusal(2), at(50));
    log.remember("c", "f", answer(3), at(150));
    expect(log.lookup("a", "f")).to.equal(undefined);
    expect(log.lookup("b", "f")).to.deep.equal(refusal(2));
    expect(log.size).to.equal(2);
    log.expire(151);
    expect(log.lookup("b", "f")).to.equal(undefined);
    expect(log.lookup("c", "f")).to.deep.equal(answer(3));
  });

  it("does not let a peer record stamped an hour ahead or behind change any retention", () => {
    const log = new RequestLog({ retentionMs: 15 * 60_000, maxEntries: 10 });
    log.remember("old", "f", answer(1), at(0));
    log.rememberReplicated("ahead", "f", answer(2), at(1_000, WALL + HOUR));
    log.rememberReplicated("behind", "f", answer(3), at(2_000, WALL - HOUR));
    // Just inside the window of "old": everything is kept.
    log.expire(15 * 60_000);
    expect(["old", "ahead", "behind"].map((id) => log.lookup(id, "f"))).to.deep.equal([1, 2, 3].map(answer));
    // Each goes exactly a window after it arrived here, whatever its stamp.
    log.expire(15 * 60_000 + 1_000);
    expect(["old", "ahead", "behind"].map((id) => log.lookup(id, "f"))).to.deep.equal([undefined, answer(2), answer(3)]);
    log.expire(15 * 60_000 + 2_000);
    expect(["ahead", "behind"].map((id) => log.lookup(id, "f"))).to.deep.equal([undefined, answer(3)]);
    log.expire(15 * 60_000 + 2_001);
    expect(log.size).to.equal(0);
  });

  it("keeps every id when the wall clock jumps forward", () => {
    const log = new RequestLog({ retentionMs: 15 * 60_000, maxEntries: 10 });
    for (let k = 0; k < 5; k++) log.remember(`r${k}`, "f", answer(k), at(k));
    // The wall clock jumps a day ahead; the monotonic clock moves 1 ms.
    log.remember("after-jump", "f", answer(9), at(5, WALL + 24 * HOUR));
    expect([0, 1, 2, 3, 4].map((k) => log.lookup(`r${k}`, "f"))).to.deep.equal([0, 1, 2, 3, 4].map(answer));
    expect(log.entries().map(([, r]) => r.answeredAtMs)).to.deep.equal([...[0, 1, 2, 3, 4].map((k) => WALL + k), WALL + 24 * HOUR]);
  });

  it("evicts past out-of-order stamps instead of stopping at the first one not yet due", () => {
    // Stamps run backwards and jump about; receive times increase.
    const log = new RequestLog({ retentionMs: 100, maxEntries: 100 });
    const stamps = [WALL + HOUR, WALL - HOUR, WALL + 5 * HOUR, WALL, WALL - 24 * HOUR];
    stamps.forEach((stamp, k) => log.rememberReplicated(`r${k}`, "f", answer(k), at(k * 10, stamp)));
    log.expire(125);
    expect(log.entries().map(([id]) => id)).to.deep.equal(["r3", "r4"]);
    log.expire(141);
    expect(log.size).to.equal(0);
  });

  it("keeps order when the monotonic time given goes back, holding the later id longer", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 10 });
    log.rememberReplicated("a", "f", answer(1), at(50));
    log.rememberReplicated("b", "f", answer(2), at(10));
    log.expire(150);
    expect(log.lookup("b", "f")).to.deep.equal(answer(2));
    log.expire(151);
    expect(log.size).to.equal(0);
  });

  it("refuses a time that is not a finite number, before changing anything", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 10 });
    expect(() => log.remember("a", "f", answer(1), at(Number.NaN))).to.throw(InvalidArgumentError, /nowMs/);
    expect(() => log.assertRoom(1, Number.POSITIVE_INFINITY)).to.throw(InvalidArgumentError, /nowMs/);
    expect(log.size).to.equal(0);
  });
});

describe("request log - snapshot restore", () => {
  const RETENTION = 15 * 60_000;

  it("keeps a restored id for what is left of its window", () => {
    const log = new RequestLog({ retentionMs: RETENTION, maxEntries: 10 });
    const nowMs = 1_000;
    // Answered 10 minutes ago by the wall clock: 5 minutes left.
    log.restore("ten-min", "f", answer(1), { stampMs: WALL - 10 * 60_000, nowMs, wallNowMs: WALL });
    // Stamped in the future (skewed writer): counts as new, a full window.
    log.restore("future", "f", answer(2), { stampMs: WALL + HOUR, nowMs, wallNowMs: WALL });
    log.expire(nowMs + 5 * 60_000);
    expect(log.lookup("ten-min", "f")).to.deep.equal(answer(1));
    log.expire(nowMs + 5 * 60_000 + 1);
    expect(log.lookup("ten-min", "f")).to.equal(undefined);
    log.expire(nowMs + RETENTION);
    expect(log.lookup("future", "f")).to.deep.equal(answer(2));
    log.expire(nowMs + RETENTION + 1);
    expect(log.size).to.equal(0);
  });

  it("drops an id whose window ended before the restore, and keeps its stamp for the next snapshot", () => {
    const log = new RequestLog({ retentionMs: RETENTION, maxEntries: 10 });
    log.restore("stale", "f", answer(1), { stampMs: WALL - HOUR, nowMs: 0, wallNowMs: WALL });
    log.restore("fresh", "f", answer(2), { stampMs: WALL - 60_000, nowMs: 0, wallNowMs: WALL });
    expect(log.entries().map(([id, r]) => [id, r.answeredAtMs])).to.deep.equal([
      ["stale", WALL - HOUR],
      ["fresh", WALL - 60_000],
    ]);
    log.expire(1);
    expect(log.entries().map(([id]) => id)).to.deep.equal(["fresh"]);
  });

  it("keeps the ring ordered when an older stamp follows a newer one, so eviction runs past it", () => {
    const log = new RequestLog({ retentionMs: RETENTION, maxEntries: 10 });
    log.restore("newer", "f", answer(1), { stampMs: WALL - 60_000, nowMs: 0, wallNowMs: WALL });
    // Older than "newer": it is held as long as "newer" (the safe side).
    log.restore("older", "f", answer(2), { stampMs: WALL - 10 * 60_000, nowMs: 0, wallNowMs: WALL });
    log.rememberReplicated("live", "f", answer(3), at(1));
    log.expire(RETENTION - 60_000);
    expect(log.size).to.equal(3);
    log.expire(RETENTION - 60_000 + 1);
    expect(log.entries().map(([id]) => id)).to.deep.equal(["live"]);
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
    answers.forEach((a, k) => log.remember(`r${k}`, `f${k}`, a, at(k, k)));
    expect(answers.map((_, k) => log.lookup(`r${k}`, `f${k}`))).to.deep.equal(answers);
    // Acknowledged first, then refusals; local and replicated alike.
    const order = [0, 2, 3, 4, 1];
    expect(log.entries()).to.deep.equal(order.map((k) => [`r${k}`, { fingerprint: `f${k}`, answer: answers[k], answeredAtMs: k }]));
  });

  it("keeps order and content while the ring grows and wraps", () => {
    // 5,000 ids, each kept 2,999 ms: the ring grows past its initial size, then
    // wraps; the last 3,000 remain, oldest first.
    const log = new RequestLog({ retentionMs: 2_999, maxEntries: 10_000 });
    for (let k = 0; k < 5_000; k++) log.remember(`r${k}`, `f${k % 7}`, answer(k), at(k));
    expect(log.size).to.equal(3_000);
    expect(log.lookup("r1999", "f4")).to.equal(undefined);
    expect(log.lookup("r2000", `f${2000 % 7}`)).to.deep.equal(answer(2000));
    expect(log.lookup("r4999", `f${4999 % 7}`)).to.deep.equal(answer(4999));
    const ids = log.entries().map(([id]) => id);
    expect(ids).to.deep.equal(Array.from({ length: 3_000 }, (_, k) => `r${2000 + k}`));
    expect(log.fill.local).to.equal(3_000);
  });

  it("refuses limits below one and a negative retention", () => {
    expect(() => new RequestLog({ retentionMs: 1000, maxEntries: 0 })).to.throw(/maxEntries/);
    expect(() => new RequestLog({ retentionMs: 1000, maxEntries: 1, maxRefusals: 0 })).to.throw(/maxRefusals/);
    expect(() => new RequestLog({ retentionMs: -1, maxEntries: 1 })).to.throw(/retentionMs/);
  });
});

type Step =
  | { readonly op: "local"; readonly refused: boolean }
  | { readonly op: "peer"; readonly skewMs: number }
  | { readonly op: "restore"; readonly ageMs: number }
  | { readonly op: "advance"; readonly ms: number }
  | { readonly op: "wallJump"; readonly ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant("local" as const), refused: fc.boolean() }),
  fc.record({ op: fc.constant("peer" as const), skewMs: fc.integer({ min: -2 * HOUR, max: 2 * HOUR }) }),
  fc.record({ op: fc.constant("restore" as const), ageMs: fc.integer({ min: -HOUR, max: 300 }) }),
  fc.record({ op: fc.constant("advance" as const), ms: fc.nat(60) }),
  fc.record({ op: fc.constant("wallJump" as const), ms: fc.integer({ min: -2 * HOUR, max: 2 * HOUR }) }),
);

describe("request log - properties", () => {
  it("recalls every acknowledged id received within the window, and counts local admissions exactly", () => {
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 150 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 200 }),
        (steps, maxEntries, maxRefusals, retentionMs) => {
          const log = new RequestLog({ retentionMs, maxEntries, maxRefusals });
          let mono = 0;
          let wall = WALL;
          let id = 0;
          // Acknowledged ids → their local receive time (lower bound, for restores), and whether local.
          const acknowledged = new Map<string, { readonly receivedAt: number; readonly local: boolean }>();
          for (const s of steps) {
            const key = `r${id++}`;
            switch (s.op) {
              case "advance":
                mono += s.ms;
                break;
              case "wallJump":
                wall += s.ms;
                break;
              case "local": {
                if (s.refused) {
                  log.remember(key, "f", refusal(id), { stampMs: wall, nowMs: mono });
                  break;
                }
                const before = log.entries();
                try {
                  log.assertRoom(1, mono);
                } catch (error) {
                  expect(error).to.be.instanceOf(RequestLogFullError);
                  expect(log.entries()).to.deep.equal(before);
                  const inWindow = [...acknowledged.values()].filter((a) => a.local && a.receivedAt >= mono - retentionMs);
                  expect(inWindow.length).to.equal(maxEntries);
                  break;
                }
                log.remember(key, "f", answer(id), { stampMs: wall, nowMs: mono });
                acknowledged.set(key, { receivedAt: mono, local: true });
                break;
              }
              case "peer":
                log.rememberReplicated(key, "f", answer(id), { stampMs: wall + s.skewMs, nowMs: mono });
                acknowledged.set(key, { receivedAt: mono, local: false });
                break;
              case "restore":
                log.restore(key, "f", answer(id), { stampMs: wall - s.ageMs, nowMs: mono, wallNowMs: wall });
                acknowledged.set(key, { receivedAt: mono - Math.min(Math.max(s.ageMs, 0), retentionMs), local: false });
                break;
            }
            log.expire(mono);
            for (const [other, a] of acknowledged) {
              const n = Number(other.slice(1)) + 1;
              if (a.receivedAt >= mono - retentionMs) expect(log.lookup(other, "f"), other).to.deep.equal(answer(n));
            }
            const local = [...acknowledged.values()].filter((a) => a.local && a.receivedAt >= mono - retentionMs).length;
            expect(log.fill.local).to.equal(local);
            expect(log.fill.local).to.be.at.most(maxEntries);
            expect(log.fill.refusals).to.be.at.most(maxRefusals);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("request log - frozen copy for snapshots", () => {
  it("holds the answers of entries() at the instant it was taken, whatever happens after", () => {
    const log = new RequestLog({ retentionMs: 1_000, maxEntries: 100, maxRefusals: 3 });
    const approved = { kind: "debit" as const, outcome: DebitOutcome.Approved, balance: 5n, localRights: 4n };
    const refused = { kind: "debit" as const, outcome: DebitOutcome.InsufficientCredit, balance: 1n, localRights: 0n };
    const wide = { kind: "grant" as const, outcome: DebitOutcome.Approved, balance: 1n << 70n, localRights: 3n };
    for (let k = 0; k < 2_000; k++) log.rememberReplicated(`a-${k}`, `f-${k}`, approved, { stampMs: k, nowMs: k / 10 });
    log.remember("wide", "fw", wide, { stampMs: 7, nowMs: 200 });
    for (let k = 0; k < 5; k++) log.remember(`r-${k}`, `fr-${k}`, refused, { stampMs: 9, nowMs: 200 });
    const expected = log.entries().map(([requestId, r]) => ({ requestId, ...r }));
    const frozen = log.freeze();
    log.expire(1_150);
    log.remember("later", "fl", approved, { stampMs: 9, nowMs: 1_150 });
    expect(frozen.size).to.equal(expected.length);
    expect(frozen.toArray()).to.deep.equal(expected);
    expect(() => frozen.record(frozen.size)).to.throw(RangeError);
  });
});

describe("request log - fingerprints kept as bytes", () => {
  const account = fc.stringMatching(/^[A-Za-z0-9._:@/-]{1,128}$/);
  const amount = fc.bigInt({ min: 1n, max: (1n << 63n) - 1n });
  const serviceFingerprint = fc.tuple(fc.constantFrom("d", "g"), account, amount).map(([kind, a, n]) => `${kind}|${a}|${n}`);
  /** What the service builds, what the wire admits (printable ASCII), and strings kept apart (beyond ASCII). */
  const fingerprint = fc.oneof(serviceFingerprint, fc.stringMatching(/^[\x20-\x7e]{0,40}$/), fc.string({ unit: "binary", maxLength: 12 }));
  /** `base` changed in one place: the nearest neighbours an exact comparison must still tell apart. */
  const nearMiss = fc.tuple(serviceFingerprint, fc.nat(), fc.integer({ min: 0x20, max: 0x7e }), fc.constantFrom("change", "drop", "add")).map(([base, pos, code, how]) => {
    const k = pos % base.length;
    const c = String.fromCharCode(code);
    const other = how === "change" ? base.slice(0, k) + c + base.slice(k + 1) : how === "drop" ? base.slice(0, k) + base.slice(k + 1) : base.slice(0, k) + c + base.slice(k);
    return [base, other] as const;
  });

  it("never takes two different fingerprints for the same one: a retry with other parameters is a conflict, for either kind of answer", () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(fingerprint, fingerprint), nearMiss), fc.nat(3_000), ([first, second], filler) => {
        // Filler entries move the fingerprint to any place in the byte ring, across its end and its growth.
        const log = new RequestLog({ retentionMs: 1_000, maxEntries: 10_000, maxRefusals: 10_000 });
        // The first half expires when "acked" arrives, so the ring's head moves and its tail may wrap.
        for (let k = 0; k < filler; k++) log.rememberReplicated(`x${k}`, `d|filler-${k}|${k + 1}`, answer(k), at(k < filler / 2 ? 0 : 2_000));
        log.remember("acked", first, answer(1), at(2_000));
        log.remember("refused", first, refusal(2), at(2_000));
        expect(log.lookup("acked", first)).to.deep.equal(answer(1));
        expect(log.lookup("refused", first)).to.deep.equal(refusal(2));
        if (first === second) return;
        expect(() => log.lookup("acked", second)).to.throw(RequestConflictError).with.property("requestId", "acked");
        expect(() => log.lookup("refused", second)).to.throw(RequestConflictError).with.property("requestId", "refused");
      }),
      { numRuns: 400 },
    );
  });

  it("tells apart every pair in an exhaustive space of short fingerprints, and gives each back exactly", () => {
    // Every debit and grant of accounts "a", "b", "ab" for amounts 1..40: 240 fingerprints, all 57,600 pairs compared.
    const space: string[] = [];
    for (const kind of ["d", "g"]) for (const a of ["a", "b", "ab"]) for (let n = 1; n <= 40; n++) space.push(`${kind}|${a}|${n}`);
    const log = new RequestLog({ retentionMs: 1_000, maxEntries: space.length });
    space.forEach((f, k) => log.remember(`r${k}`, f, answer(k), at(0)));
    for (let k = 0; k < space.length; k++) {
      for (let other = 0; other < space.length; other++) {
        if (other === k) expect(log.lookup(`r${k}`, space[other]!)).to.deep.equal(answer(k));
        else expect(() => log.lookup(`r${k}`, space[other]!)).to.throw(RequestConflictError);
      }
    }
    expect(log.entries().map(([, r]) => r.fingerprint)).to.deep.equal(space);
  });

  it("gives back every fingerprint exactly in entries() and a frozen copy: beyond ASCII, empty, and wrapped around the buffer end", () => {
    const log = new RequestLog({ retentionMs: 100, maxEntries: 100_000 });
    // Fill, then let most of it expire, so later fingerprints wrap around the byte buffer's end.
    for (let k = 0; k < 3_000; k++) log.remember(`old${k}`, `d|old-account-${k}|${k + 1}`, answer(k), at(0));
    const kept = ["d|acct-1|5", "", "g|kontö|7", "d|😀|1", "x".repeat(70_000), ...Array.from({ length: 2_000 }, (_, k) => `g|wrapped-${k}|${k * 7919 + 1}`)];
    kept.forEach((f, k) => log.remember(`n${k}`, f, answer(k), at(101)));
    expect(log.size).to.equal(kept.length);
    const frozen = log.freeze();
    log.expire(1_000);
    expect(frozen.toArray().map((r) => r.fingerprint)).to.deep.equal(kept);
    kept.forEach((f, k) => log.remember(`again${k}`, f, answer(k), at(1_000)));
    expect(log.entries().map(([, r]) => r.fingerprint)).to.deep.equal(kept);
    kept.forEach((f, k) => expect(log.lookup(`again${k}`, f)).to.deep.equal(answer(k)));
  });
});
