// The write rules of one replica (src/core/write-path.ts): idempotent
// admission, batch admission, the debit and overdraft decision, grant
// spreading and the purge floor. Pure, so no fakes are needed: a real
// ReplicaState underneath.

import { expect } from "chai";
import fc from "fast-check";
import { DebitOutcome, type Answer } from "../../src/core/answer";
import { RequestConflictError } from "../../src/core/errors";
import { Mode } from "../../src/core/policy";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import {
  debitFingerprint,
  grantFingerprint,
  purgeFloor,
  WritePath,
  type Admission,
  type DebitItem,
  type DebitRequestInput,
  type DebitStep,
} from "../../src/core/write-path";
import { track, turn } from "./support/conditions";

const NAMES = ["r0", "r1", "r2"] as const;

function writePath(names: readonly string[] = NAMES, self = "r0"): WritePath {
  return new WritePath(new ReplicaState({ replicas: new ReplicaSet(names), self, initialAccounts: 4 }));
}

function item(accountId: string, amount: bigint, requestId: string): DebitItem {
  return { accountId, amount, requestId };
}

function debitInput(i: DebitItem, final: boolean, nowMs = 1_000): DebitRequestInput {
  return { item: i, fingerprint: debitFingerprint(i.accountId, i.amount), time: { stampMs: nowMs, nowMs }, final };
}

function decided(step: DebitStep): Extract<DebitStep, { kind: "decided" }> {
  if (step.kind !== "decided") throw new Error(`expected a decision, got ${step.kind}`);
  return step;
}

function newTicket(admission: Admission | { kind: "duplicate"; of: number }): Extract<Admission, { kind: "new" }>["ticket"] {
  if (admission.kind !== "new") throw new Error(`expected a new admission, got ${admission.kind}`);
  return admission.ticket;
}

const APPROVED: Answer = { kind: "debit", outcome: DebitOutcome.Approved, balance: 5n, localRights: 5n };

describe("write path - admission", () => {
  it("write path - an unknown id is admitted as new and counted in flight", () => {
    const w = writePath();
    const admission = w.admit("req-1", debitFingerprint("a", 1n), 0);
    expect(admission.kind).to.equal("new");
    expect(w.requestsInFlight).to.equal(1);
  });

  it("write path - a remembered id with the same parameters replays the remembered answer", () => {
    const w = writePath();
    w.state.grant("a", 10n);
    const first = decided(w.debit(debitInput(item("a", 4n, "req-1"), true)));
    const admission = w.admit("req-1", debitFingerprint("a", 4n), 0);
    expect(admission).to.deep.equal({ kind: "replay", answer: first.answer });
    expect(w.requestsInFlight).to.equal(0);
  });

  it("write path - a remembered id with other parameters is a RequestConflictError", () => {
    const w = writePath();
    w.state.grant("a", 10n);
    w.debit(debitInput(item("a", 4n, "req-1"), true));
    expect(() => w.admit("req-1", debitFingerprint("a", 5n), 0)).to.throw(RequestConflictError, "req-1");
    expect(() => w.admit("req-1", debitFingerprint("b", 4n), 0)).to.throw(RequestConflictError);
    expect(() => w.admit("req-1", grantFingerprint("a", 4n), 0)).to.throw(RequestConflictError);
    expect(w.requestsInFlight).to.equal(0);
  });

  it("write path - an id in flight with the same parameters is joined and sees the first call's answer", async () => {
    const w = writePath();
    const ticket = newTicket(w.admit("req-1", debitFingerprint("a", 1n), 0));
    const joined = w.admit("req-1", debitFingerprint("a", 1n), 0);
    if (joined.kind !== "joined") throw new Error(`expected joined, got ${joined.kind}`);
    const seen = track(joined.decision);
    await turn();
    expect(seen.current.state).to.equal("pending");
    ticket.resolve(APPROVED);
    expect(await joined.decision).to.deep.equal(APPROVED);
  });

  it("write path - an id in flight with other parameters is a RequestConflictError and leaves the first in flight", () => {
    const w = writePath();
    newTicket(w.admit("req-1", debitFingerprint("a", 1n), 0));
    expect(() => w.admit("req-1", debitFingerprint("a", 2n), 0)).to.throw(RequestConflictError);
    expect(w.requestsInFlight).to.equal(1);
    expect(w.admit("req-1", debitFingerprint("a", 1n), 0).kind).to.equal("joined");
  });

  it("write path - duplicates fired in one tick never both decide: only the first admission of each id is new", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom("x", "y", "z", "w"), { minLength: 1, maxLength: 30 }), (ids) => {
        const w = writePath();
        // Every admit runs before any await, as concurrent calls of one tick would.
        const kinds = ids.map((id) => w.admit(id, debitFingerprint("a", 1n), 0).kind);
        ids.forEach((id, index) => {
          const expected = ids.indexOf(id) === index ? "new" : "joined";
          expect(kinds[index], `admission ${index} of "${id}"`).to.equal(expected);
        });
        expect(w.requestsInFlight).to.equal(new Set(ids).size);
      }),
    );
  });

  it("write path - a resolved ticket releases the id, and a retry then recalls the remembered answer", () => {
    const w = writePath();
    w.state.grant("a", 10n);
    const i = item("a", 3n, "req-1");
    const ticket = newTicket(w.admit(i.requestId, debitFingerprint("a", 3n), 0));
    const step = decided(w.debit(debitInput(i, true)));
    ticket.resolve(step.answer);
    expect(w.requestsInFlight).to.equal(0);
    expect(w.admit(i.requestId, debitFingerprint("a", 3n), 0)).to.deep.equal({ kind: "replay", answer: step.answer });
    expect(w.state.rights("a")).to.equal(7n);
  });

  it("write path - a rejected ticket releases the id and fails its joiners; the id is then admitted anew", async () => {
    const w = writePath();
    const ticket = newTicket(w.admit("req-1", debitFingerprint("a", 3n), 0));
    const joined = w.admit("req-1", debitFingerprint("a", 3n), 0);
    if (joined.kind !== "joined") throw new Error("expected joined");
    const failure = new Error("not durable");
    ticket.reject(failure);
    expect(w.requestsInFlight).to.equal(0);
    let seen: unknown;
    await joined.decision.catch((error: unknown) => (seen = error));
    expect(seen).to.equal(failure);
    expect(w.admit("req-1", debitFingerprint("a", 3n), 0).kind).to.equal("new");
  });

  it("write path - a ticket settled twice does not release a later registration of the same id", () => {
    const w = writePath();
    const first = newTicket(w.admit("req-1", debitFingerprint("a", 3n), 0));
    first.reject(new Error("failed"));
    newTicket(w.admit("req-1", debitFingerprint("a", 3n), 0));
    first.resolve(APPROVED);
    expect(w.requestsInFlight).to.equal(1);
    expect(w.admit("req-1", debitFingerprint("a", 3n), 0).kind).to.equal("joined");
  });
});

describe("write path - batch admission", () => {
  it("write path - a batch admits each new id, and a duplicate id points at its first occurrence", () => {
    const w = writePath();
    const admissions = w.admitBatch([item("a", 1n, "p"), item("b", 2n, "q"), item("a", 1n, "p"), item("a", 1n, "p")], 0);
    expect(admissions.map((a) => a.kind)).to.deep.equal(["new", "new", "duplicate", "duplicate"]);
    expect(admissions[2]).to.deep.equal({ kind: "duplicate", of: 0 });
    expect(admissions[3]).to.deep.equal({ kind: "duplicate", of: 0 });
    expect(w.requestsInFlight).to.equal(2);
  });

  it("write path - a batch replays remembered ids and joins ids in flight", () => {
    const w = writePath();
    w.state.grant("a", 10n);
    const remembered = decided(w.debit(debitInput(item("a", 1n, "done"), true)));
    newTicket(w.admit("flying", debitFingerprint("b", 2n), 0));
    const admissions = w.admitBatch([item("a", 1n, "done"), item("b", 2n, "flying"), item("c", 3n, "fresh")], 0);
    expect(admissions[0]).to.deep.equal({ kind: "replay", answer: remembered.answer });
    expect(admissions[1]?.kind).to.equal("joined");
    expect(admissions[2]?.kind).to.equal("new");
  });

  const conflicts: ReadonlyArray<[string, (w: WritePath) => void, DebitItem[]]> = [
    ["inside the batch", () => undefined, [item("a", 1n, "p"), item("b", 1n, "q"), item("a", 2n, "p")]],
    [
      "with a remembered request",
      (w) => {
        w.state.grant("a", 10n);
        w.debit(debitInput(item("a", 1n, "old"), true));
      },
      [item("a", 1n, "p"), item("b", 1n, "q"), item("a", 9n, "old")],
    ],
    ["with a request in flight", (w) => newTicket(w.admit("old", debitFingerprint("a", 1n), 0)), [item("a", 1n, "p"), item("b", 1n, "q"), item("a", 9n, "old")]],
  ];
  for (const [where, prepare, items] of conflicts) {
    it(`write path - a batch with a conflict ${where} throws and registers nothing`, () => {
      const w = writePath();
      prepare(w);
      const inFlight = w.requestsInFlight;
      const remembered = w.state.rememberedRequests;
      expect(() => w.admitBatch(items, 0)).to.throw(RequestConflictError);
      expect(w.requestsInFlight).to.equal(inFlight);
      expect(w.state.rememberedRequests).to.equal(remembered);
      // The ids before the conflict were not registered: each is admitted as new now.
      expect(w.admit("p", debitFingerprint("a", 1n), 0).kind).to.equal("new");
      expect(w.admit("q", debitFingerprint("b", 1n), 0).kind).to.equal("new");
    });
  }

  it("write path - batch admission agrees with one-by-one admission when there is no conflict", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom("i1", "i2", "i3", "i4"), fc.constantFrom("a", "b")), { minLength: 1, maxLength: 20 }), (raw) => {
        // One fingerprint per id, so no conflict is possible.
        const items = raw.map(([id]) => item(id === "i1" || id === "i2" ? "a" : "b", 1n, id));
        const batch = writePath().admitBatch(items, 0);
        const single = writePath();
        items.forEach((it, index) => {
          const first = items.findIndex((other) => other.requestId === it.requestId);
          const got = batch[index];
          if (first === index) {
            expect(got?.kind).to.equal(single.admit(it.requestId, debitFingerprint(it.accountId, it.amount), 0).kind);
          } else {
            expect(got).to.deep.equal({ kind: "duplicate", of: first });
          }
        });
      }),
    );
  });
});

describe("write path - debit decision", () => {
  it("write path - a short debit that may still wait reports the deficit and remembers nothing", () => {
    const w = writePath();
    w.state.grant("a", 30n);
    const step = w.debit(debitInput(item("a", 100n, "req-1"), false));
    expect(step).to.deep.equal({ kind: "short", deficit: 70n, coverable: false });
    expect(w.state.rememberedRequests).to.equal(0);
    expect(w.state.recall("req-1", debitFingerprint("a", 100n))).to.equal(undefined);
    expect(w.state.rights("a")).to.equal(30n);
  });

  it("write path - a short debit is coverable when the balance known here covers it", () => {
    const w = writePath();
    w.state.grant("a", 30n);
    w.state.merge("a", 1, 1, 200n); // r1 was granted 200, as seen here
    const step = w.debit(debitInput(item("a", 100n, "req-1"), false));
    expect(step).to.deep.equal({ kind: "short", deficit: 70n, coverable: true });
  });

  it("write path - a short debit under OVERDRAFT does not use the overdraft while it may still wait", () => {
    const w = writePath();
    w.state.applyPolicy("a", { mode: Mode.Overdraft, overdraftLimit: 1_000n, lowWaterMark: 0n, writtenAtMs: 1, logical: 0, replica: "r0" });
    w.state.grant("a", 10n);
    expect(w.debit(debitInput(item("a", 50n, "req-1"), false))).to.deep.equal({ kind: "short", deficit: 40n, coverable: false });
    expect(w.state.rights("a")).to.equal(10n);
  });

  it("write path - the deficit of a short debit is the amount less this region's rights", () => {
    fc.assert(
      fc.property(fc.bigInt(0n, 10_000n), fc.bigInt(1n, 10_000n), (granted, amount) => {
        const w = writePath();
        if (granted > 0n) w.state.grant("a", granted);
        const step = w.debit(debitInput(item("a", amount, "r"), false));
        if (amount <= granted) expect(step.kind).to.equal("decided");
        else expect(step).to.deep.equal({ kind: "short", deficit: amount - granted, coverable: false });
      }),
    );
  });

  it("write path - a final refusal is remembered, publishes nothing and is a false rejection when the known balance covers it", () => {
    const w = writePath();
    w.state.grant("a", 30n);
    w.state.merge("a", 2, 2, 500n);
    const step = decided(w.debit(debitInput(item("a", 100n, "req-1"), true)));
    expect(step.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(step.answer.localRights).to.equal(30n);
    expect(step.answer.balance).to.equal(530n);
    expect(step.write).to.equal(undefined);
    expect(step.overdraftUsed).to.equal(0n);
    expect(step.falseRejection).to.equal(true);
    expect(w.state.recall("req-1", debitFingerprint("a", 100n))).to.deep.equal(step.answer);
  });

  it("write path - a final refusal is not a false rejection when the known balance is short too", () => {
    const w = writePath();
    w.state.grant("a", 30n);
    w.state.merge("a", 1, 1, 20n);
    const step = decided(w.debit(debitInput(item("a", 100n, "req-1"), true)));
    expect(step.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(step.falseRejection).to.equal(false);
    expect(w.state.rememberedRequests).to.equal(1);
  });

  it("write path - an approved debit returns its slot and request record to make durable, and remembers the answer", () => {
    const w = writePath();
    w.state.grant("a", 30n);
    const step = decided(w.debit(debitInput(item("a", 12n, "req-1"), false, 4_242)));
    expect(step.answer).to.deep.equal({ kind: "debit", outcome: DebitOutcome.Approved, balance: 18n, localRights: 18n });
    expect(step.write?.slots).to.deep.equal([{ accountId: "a", writer: 0, column: 3, value: 12n }]);
    expect(step.write?.requests).to.deep.equal([{ requestId: "req-1", fingerprint: debitFingerprint("a", 12n), answer: step.answer, answeredAtMs: 4_242, origin: 0 }]);
    expect(step.overdraftUsed).to.equal(0n);
    expect(step.falseRejection).to.equal(false);
    expect(w.state.recall("req-1", debitFingerprint("a", 12n))).to.deep.equal(step.answer);
  });

  it("write path - overdraft used is the part of each debit below zero rights", () => {
    const w = writePath();
    w.state.applyPolicy("a", { mode: Mode.Overdraft, overdraftLimit: 100n, lowWaterMark: 0n, writtenAtMs: 1, logical: 0, replica: "r0" });
    w.state.grant("a", 30n);
    const straddling = decided(w.debit(debitInput(item("a", 50n, "d1"), true)));
    expect(straddling.answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(straddling.overdraftUsed).to.equal(20n);
    const below = decided(w.debit(debitInput(item("a", 30n, "d2"), true)));
    expect(below.overdraftUsed).to.equal(30n);
    expect(below.answer.localRights).to.equal(-50n);
    const beyond = decided(w.debit(debitInput(item("a", 51n, "d3"), true)));
    expect(beyond.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
    expect(beyond.overdraftUsed).to.equal(0n);
  });

  it("write path - overdraft on an account with no grant here counts the whole amount", () => {
    const w = writePath();
    w.state.applyPolicy("a", { mode: Mode.Overdraft, overdraftLimit: 100n, lowWaterMark: 0n, writtenAtMs: 1, logical: 0, replica: "r0" });
    const step = decided(w.debit(debitInput(item("a", 40n, "d1"), true)));
    expect(step.answer.outcome).to.equal(DebitOutcome.ApprovedWithOverdraft);
    expect(step.overdraftUsed).to.equal(40n);
  });

  it("write path - the overdraft used by a run of debits sums to how far rights went below zero", () => {
    fc.assert(
      fc.property(fc.bigInt(0n, 500n), fc.bigInt(0n, 500n), fc.array(fc.bigInt(1n, 200n), { maxLength: 20 }), (granted, limit, amounts) => {
        const w = writePath();
        w.state.applyPolicy("a", { mode: Mode.Overdraft, overdraftLimit: limit, lowWaterMark: 0n, writtenAtMs: 1, logical: 0, replica: "r0" });
        if (granted > 0n) w.state.grant("a", granted);
        let used = 0n;
        amounts.forEach((amount, k) => {
          const before = w.state.rights("a");
          const step = decided(w.debit(debitInput(item("a", amount, `d${k}`), true)));
          const positivePart = before > 0n ? before : 0n;
          const expected = step.answer.outcome === DebitOutcome.InsufficientCredit ? 0n : amount > positivePart ? amount - positivePart : 0n;
          expect(step.overdraftUsed).to.equal(expected);
          expect(step.answer.outcome === DebitOutcome.ApprovedWithOverdraft).to.equal(expected > 0n);
          used += step.overdraftUsed;
        });
        const rights = w.state.rights("a");
        expect(used).to.equal(rights < 0n ? -rights : 0n);
        expect(rights >= -limit).to.equal(true);
      }),
    );
  });
});

describe("write path - grants", () => {
  it("write path - a grant without spread keeps every right here, with one slot and its request record", () => {
    const w = writePath();
    const { answer, write } = w.grant({ accountId: "a", amount: 90n, requestId: "g1", time: { stampMs: 7, nowMs: 7 }, spread: false });
    expect(answer).to.deep.equal({ kind: "grant", outcome: DebitOutcome.Approved, balance: 90n, localRights: 90n });
    expect(write.slots).to.deep.equal([{ accountId: "a", writer: 0, column: 0, value: 90n }]);
    expect(write.requests).to.deep.equal([{ requestId: "g1", fingerprint: grantFingerprint("a", 90n), answer, answeredAtMs: 7, origin: 0 }]);
    expect(w.state.recall("g1", grantFingerprint("a", 90n))).to.deep.equal(answer);
  });

  it("write path - a spread grant moves an equal share to every other region in the same write", () => {
    const w = writePath();
    const { answer, write } = w.grant({ accountId: "a", amount: 90n, requestId: "g1", time: { stampMs: 7, nowMs: 7 }, spread: true });
    expect(answer.localRights).to.equal(30n);
    expect(answer.balance).to.equal(90n);
    expect(write.slots).to.deep.equal([
      { accountId: "a", writer: 0, column: 0, value: 90n },
      { accountId: "a", writer: 0, column: 1, value: 30n },
      { accountId: "a", writer: 0, column: 2, value: 30n },
    ]);
    // A peer that merges the write holds its share.
    const peer = new ReplicaState({ replicas: w.state.replicas, self: "r1" });
    for (const s of write.slots) peer.merge(s.accountId, s.writer, s.column, s.value);
    expect(peer.rights("a")).to.equal(30n);
    expect(peer.rights("a", 2)).to.equal(30n);
  });

  it("write path - a spread grant gives each region the floor of an equal share and keeps the remainder here", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.bigInt(1n, 1_000_000n), (n, amount) => {
        const names = Array.from({ length: n }, (_, i) => `r${i}`);
        const w = writePath(names, "r0");
        const { answer } = w.grant({ accountId: "a", amount, requestId: "g", time: { stampMs: 1, nowMs: 1 }, spread: true });
        const share = n > 1 ? amount / BigInt(n) : 0n;
        for (let peer = 1; peer < n; peer++) expect(w.state.rights("a", peer)).to.equal(share);
        expect(answer.localRights).to.equal(amount - share * BigInt(n - 1));
        expect(w.state.rights("a")).to.equal(answer.localRights);
        expect(w.state.balance("a")).to.equal(amount);
      }),
    );
  });
});

describe("write path - purge floor", () => {
  it("write path - with no peers the floor is where replay starts", () => {
    expect(purgeFloor(101, [], 10)).to.equal(101);
  });

  it("write path - a peer behind the snapshot keeps its next message", () => {
    expect(purgeFloor(101, [100, 60, 90], 1_000)).to.equal(61);
  });

  it("write path - a peer that applied nothing keeps the whole stream", () => {
    expect(purgeFloor(101, [undefined, 100], 1_000)).to.equal(1);
  });

  it("write path - a peer ahead of the snapshot does not move the floor past replay", () => {
    expect(purgeFloor(101, [500], 1_000)).to.equal(101);
  });

  it("write path - a peer lagging by more than maxRetained is dropped to the snapshot, by exactly that bound", () => {
    expect(purgeFloor(101, [50], 50)).to.equal(51);
    expect(purgeFloor(101, [49], 50)).to.equal(101);
  });

  it("write path - the floor is never above replay and is either replay or the slowest peer's next message", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.array(fc.option(fc.integer({ min: 0, max: 20_000 }), { nil: undefined })),
        fc.integer({ min: 0, max: 10_000 }),
        (replayFrom, peers, maxRetained) => {
          const floor = purgeFloor(replayFrom, peers, maxRetained);
          const slowest = Math.min(replayFrom, ...peers.map((p) => (p ?? 0) + 1));
          expect(floor).to.be.at.most(replayFrom);
          expect(floor).to.equal(replayFrom - slowest > maxRetained ? replayFrom : slowest);
        },
      ),
    );
  });
});

describe("write path - batch caps", () => {
  it("write path - a batch whose debits of one account could pass the region's int64-safe cap is refused whole, nothing applied", () => {
    const w = writePath();
    w.state.grant("a", 100n);
    w.state.grant("b", 100n);
    const before = w.state.exportAccount("a");
    const cap = (2n ** 63n - 1n) / 3n;
    const items = [item("b", 5n, "x1"), item("a", cap - 1n, "x2"), item("a", 2n, "x3")];
    const batch = w.debitBatch(items, w.admitBatch(items, 0), { stampMs: 1, nowMs: 1 });
    expect(batch.failure?.name).to.equal("BoundExceededError");
    expect(batch.failure?.message).to.match(/nothing in the batch was applied/);
    expect(batch.write.slots).to.deep.equal([]);
    expect(w.state.exportAccount("a")).to.deep.equal(before);
    expect(w.state.balance("b")).to.equal(100n);
    // The ids were released: admitted anew.
    expect(w.admit("x1", debitFingerprint("b", 5n), 0).kind).to.equal("new");
  });
});
