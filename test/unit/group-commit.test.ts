// Group commit: the durability gate of every acknowledged change. Publishing
// is a fake here (an in-memory recorder) because the committer's contract is
// about batching, ordering and retries, not about NATS.

import { expect } from "chai";
import type { SlotChange } from "../../src/core/replica-state";
import type { CommitBatch } from "../../src/core/durable-write";
import { GroupCommitter, PoisonWriteError } from "../../src/replication/replica-writer";

const slot = (accountId: string, value: bigint, column = 0): SlotChange => ({ accountId, writer: 0, column, value });

interface Recorder {
  readonly batches: CommitBatch[];
  release(): void;
  failNext: number;
}

/** A publisher whose publishes complete only when released (or fail `failNext` times). */
function recorder(): { publish: (b: CommitBatch) => Promise<number>; rec: Recorder } {
  const gates: Array<() => void> = [];
  const rec: Recorder = {
    batches: [],
    failNext: 0,
    release: () => gates.shift()?.(),
  };
  const publish = (batch: CommitBatch): Promise<number> => {
    if (rec.failNext > 0) {
      rec.failNext--;
      return Promise.reject(new Error("publish failed"));
    }
    rec.batches.push(batch);
    const sequence = rec.batches.length;
    return new Promise((resolve) => gates.push(() => resolve(sequence)));
  };
  return { publish, rec };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("group commit - batching, ordering and retries", () => {
  it("group commit - changes of one turn share one publish and resolve together after it", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, () => undefined);
    const done: string[] = [];
    const a = committer.commit({ slots: [slot("a", 1n)] }).then(() => done.push("a"));
    const b = committer.commit({ slots: [slot("b", 2n)] }).then(() => done.push("b"));
    await tick();
    expect(rec.batches).to.have.length(1);
    expect(rec.batches[0]?.slots.map((s) => s.accountId)).to.deep.equal(["a", "b"]);
    expect(done).to.deep.equal([]);
    rec.release();
    await Promise.all([a, b]);
    expect(done).to.deep.equal(["a", "b"]);
  });

  it("group commit - changes arriving during a publish go into the next one, answered only after it", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, () => undefined);
    let firstDone = false;
    let secondDone = false;
    const first = committer.commit({ slots: [slot("a", 1n)] }).then(() => (firstDone = true));
    await tick();
    const second = committer.commit({ slots: [slot("a", 5n)] }).then(() => (secondDone = true));
    await tick();
    expect(rec.batches).to.have.length(1);
    rec.release();
    await first;
    await tick();
    expect(secondDone).to.equal(false);
    expect(rec.batches).to.have.length(2);
    expect(rec.batches[1]?.slots[0]?.value).to.equal(5n);
    rec.release();
    await second;
    expect(firstDone && secondDone).to.equal(true);
  });

  it("group commit - one slot changed twice in a window is published once, with the larger value", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, () => undefined);
    const all = Promise.all([
      committer.commit({ slots: [slot("a", 3n)] }),
      committer.commit({ slots: [slot("a", 9n)] }),
      committer.commit({ slots: [slot("a", 4n)] }),
    ]);
    await tick();
    expect(rec.batches[0]?.slots).to.deep.equal([slot("a", 9n)]);
    rec.release();
    await all;
  });

  it("group commit - a failed publish is retried and nobody is answered before it succeeds", async () => {
    const { publish, rec } = recorder();
    const errors: unknown[] = [];
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, (e) => errors.push(e));
    rec.failNext = 2;
    let done = false;
    const pending = committer.commit({ slots: [slot("a", 1n)] }).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(errors).to.have.length(2);
    expect(rec.batches).to.have.length(1);
    expect(done).to.equal(false);
    rec.release();
    await pending;
    expect(done).to.equal(true);
  });

  it("group commit - a write is never split: its slots and records share one message, even above the slot budget", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 2, retryDelayMs: 1 }, () => undefined);
    const record = { requestId: "r1", fingerprint: "d|a|1", answer: { kind: "debit" as const, outcome: 1, balance: 0n, localRights: 0n }, answeredAtMs: 1 };
    const big = committer.commit({ slots: [slot("a", 1n), slot("b", 1n), slot("c", 1n)], requests: [record] });
    const small = committer.commit({ slots: [slot("d", 1n)] });
    await tick();
    rec.release();
    await big;
    await tick();
    rec.release();
    await small;
    expect(rec.batches.map((b) => b.slots.length)).to.deep.equal([3, 1]);
    expect(rec.batches[0]?.requests.map((r) => r.requestId)).to.deep.equal(["r1"]);
  });

  it("group commit - whole writes fill a message up to the slot budget; the rest go in the next", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 5, retryDelayMs: 1 }, () => undefined);
    const writes = ["a", "b", "c", "d", "e"].map((id) => committer.commit({ slots: [slot(id, 1n), slot(id, 2n, 1)] }));
    for (let i = 0; i < 3; i++) {
      await tick();
      rec.release();
    }
    await Promise.all(writes);
    expect(rec.batches.map((b) => b.slots.length)).to.deep.equal([4, 4, 2]);
    expect(rec.batches.flatMap((b) => b.slots.filter((s) => s.column === 0).map((s) => s.accountId))).to.deep.equal(["a", "b", "c", "d", "e"]);
  });

  it("group commit - stop ends every waiter at once, including those of the message in flight", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, () => undefined);
    const inFlight = committer.commit({ slots: [slot("a", 1n)] });
    await tick();
    expect(rec.batches).to.have.length(1);
    const queued = committer.commit({ slots: [slot("b", 1n)] });
    committer.stop(new Error("fenced"));
    const outcomes = await Promise.allSettled([inFlight, queued, committer.commit({ slots: [slot("c", 1n)] })]);
    expect(outcomes.map((o) => (o.status === "rejected" ? String(o.reason) : "ok"))).to.deep.equal(["Error: fenced", "Error: fenced", "Error: fenced"]);
  });

  it("group commit - a poison write fails alone; the writes batched with it are published", async () => {
    const published: string[][] = [];
    const committer = new GroupCommitter(
      (batch) => {
        if (batch.slots.some((s) => s.accountId === "poison")) return Promise.reject(new PoisonWriteError("cannot encode"));
        published.push(batch.slots.map((s) => s.accountId));
        return Promise.resolve(published.length);
      },
      { maxBatchSlots: 100, retryDelayMs: 1 },
      () => undefined,
    );
    const outcomes = await Promise.allSettled([
      committer.commit({ slots: [slot("a", 1n)] }),
      committer.commit({ slots: [slot("poison", 1n)] }),
      committer.commit({ slots: [slot("b", 1n)] }),
    ]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(["fulfilled", "rejected", "fulfilled"]);
    expect(published).to.deep.equal([["a"], ["b"]]);
    expect(committer.health.consecutiveFailures).to.equal(0);
  });

  it("group commit - a barrier resolves at once when idle and after everything earlier otherwise", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 100, retryDelayMs: 1 }, () => undefined);
    await committer.barrier();
    expect(rec.batches).to.have.length(0);
    let committed = false;
    const change = committer.commit({ slots: [slot("a", 1n)] }).then(() => (committed = true));
    const barrier = committer.barrier().then(() => committed);
    await tick();
    rec.release();
    await change;
    expect(await barrier).to.equal(true);
  });
});
