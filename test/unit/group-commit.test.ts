// Group commit: the durability gate of every acknowledged change. Publishing
// is a fake here (an in-memory recorder) because the committer's contract is
// about batching, ordering and retries, not about NATS.

import { expect } from "chai";
import type { SlotChange } from "../../src/core/replica-state";
import type { CommitBatch } from "../../src/replication/durable-write";
import { GroupCommitter } from "../../src/replication/group-commit";

const slot = (accountId: string, value: bigint, column = 0): SlotChange => ({ accountId, writer: 0, column, value });

interface Recorder {
  readonly batches: CommitBatch[];
  release(): void;
  failNext: number;
}

/** A publisher whose publishes complete only when released (or fail `failNext` times). */
function recorder(): { publish: (b: CommitBatch) => Promise<void>; rec: Recorder } {
  const gates: Array<() => void> = [];
  const rec: Recorder = {
    batches: [],
    failNext: 0,
    release: () => gates.shift()?.(),
  };
  const publish = (batch: CommitBatch): Promise<void> => {
    if (rec.failNext > 0) {
      rec.failNext--;
      return Promise.reject(new Error("publish failed"));
    }
    rec.batches.push(batch);
    return new Promise((resolve) => gates.push(resolve));
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

  it("group commit - an oversized window is split; parts are marked partial and waiters resolve after the last", async () => {
    const { publish, rec } = recorder();
    const committer = new GroupCommitter(publish, { maxBatchSlots: 2, retryDelayMs: 1 }, () => undefined);
    let done = false;
    const pending = committer
      .commit({ slots: [slot("a", 1n), slot("b", 1n), slot("c", 1n), slot("d", 1n), slot("e", 1n)] })
      .then(() => (done = true));
    for (let i = 0; i < 3; i++) {
      await tick();
      expect(done).to.equal(false);
      rec.release();
    }
    await pending;
    expect(rec.batches.map((b) => b.slots.length)).to.deep.equal([2, 2, 1]);
    expect(rec.batches.map((b) => b.partial === true)).to.deep.equal([true, true, false]);
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
