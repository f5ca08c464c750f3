// The only writer of a replica's stream (src/replication/replica-writer.ts)
// over a fake StreamAppender that behaves like JetStream's expected-last-
// sequence check: an append whose expected sequence is not the stream's last
// is a WriterFencedError. Appends can be held until a test releases them.

import { expect } from "chai";
import type { DurableWrite } from "../../src/core/durable-write";
import { ReplicaSet } from "../../src/core/replica-set";
import type { SlotChange } from "../../src/core/replica-state";
import { decodeDeltaOrThrow } from "../../src/replication/delta-codec";
import { PoisonWriteError } from "../../src/replication/replica-writer";
import { ReplicaWriter, WriterFencedError, type StreamAppender, type ReplicaWriterOptions } from "../../src/replication/replica-writer";
import { track, turns, until } from "./support/conditions";

const REPLICAS = new ReplicaSet(["east", "west"]);

interface Append {
  readonly replica: string;
  readonly data: Uint8Array;
  readonly expectedLastSeq: number;
  readonly msgId: string;
}

class FakeStream implements StreamAppender {
  maxPayload = 1024 * 1024;
  readonly appends: Append[] = [];
  /** Errors thrown by the next appends, in order (after any hold). */
  readonly failures: Error[] = [];
  /** When set, every append waits for release(). */
  hold = false;
  private readonly held: Array<() => void> = [];

  constructor(public last: number) {}

  async append(replica: string, data: Uint8Array, expectedLastSeq: number, msgId: string): Promise<number> {
    this.appends.push({ replica, data, expectedLastSeq, msgId });
    if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
    if (expectedLastSeq !== this.last) throw new WriterFencedError(`TALLY_${replica}`);
    this.last++;
    return this.last;
  }

  get waiting(): number {
    return this.held.length;
  }

  release(): void {
    this.held.shift()?.();
  }

  /** The accounts whose slots the append at `index` carried. */
  accountsOf(index: number): string[] {
    const append = this.appends[index];
    if (append === undefined) throw new Error(`no append ${index}`);
    return decodeDeltaOrThrow(REPLICAS, append.data, "east").slots.map((s) => s.accountId);
  }
}

interface Hooks {
  readonly fenced: WriterFencedError[];
  readonly errors: unknown[];
  readonly committed: number[];
  digest: string;
}

function writer(stream: FakeStream, options: Partial<ReplicaWriterOptions> = {}): { w: ReplicaWriter; hooks: Hooks } {
  const hooks: Hooks = { fenced: [], errors: [], committed: [], digest: "00000000000000d0" };
  const w = new ReplicaWriter(
    stream,
    {
      region: "east",
      replicas: REPLICAS,
      startSequence: stream.last,
      maxBatchSlots: 1_000,
      retryDelayMs: 1,
      instanceId: "inst",
      now: () => 1_700_000_000_000,
      ...options,
    },
    {
      rowDigest: () => hooks.digest,
      onFenced: (error) => hooks.fenced.push(error),
      onCommitted: (slots) => hooks.committed.push(slots),
      onError: (error) => hooks.errors.push(error),
    },
  );
  return { w, hooks };
}

function write(accountId: string, value = 1n, count = 1): DurableWrite {
  const slots: SlotChange[] = [];
  for (let column = 0; column < count; column++) slots.push({ accountId: count === 1 ? accountId : `${accountId}-${column}`, writer: 0, column: 0, value });
  return { slots };
}

describe("replica writer - appending", () => {
  it("replica writer - each message follows the previous one: the sequence advances and the expected last sequence is the previous", async () => {
    const stream = new FakeStream(41);
    const { w, hooks } = writer(stream);
    expect(w.sequence).to.equal(41);
    hooks.digest = "00000000000000d1";
    expect(await w.commit(write("a"))).to.equal(42);
    expect(w.sequence).to.equal(42);
    expect(w.publishedDigest).to.equal("00000000000000d1");
    hooks.digest = "00000000000000d2";
    expect(await w.commit(write("b"))).to.equal(43);
    expect(stream.appends.map((a) => [a.replica, a.expectedLastSeq, a.msgId])).to.deep.equal([
      ["east", 41, "inst-1"],
      ["east", 42, "inst-2"],
    ]);
    const second = decodeDeltaOrThrow(REPLICAS, stream.appends[1]!.data, "east");
    expect(second.writer).to.equal(0);
    expect(second.rowDigest).to.equal("00000000000000d2");
    expect(second.slots.map((s) => s.accountId)).to.deep.equal(["b"]);
    expect(hooks.committed).to.deep.equal([1, 1]);
    expect(w.sequence).to.equal(43);
  });

  it("replica writer - writes of one turn share one message and one sequence", async () => {
    const stream = new FakeStream(0);
    const { w } = writer(stream);
    const sequences = await Promise.all([w.commit(write("a")), w.commit(write("b")), w.commit(write("c"))]);
    expect(sequences).to.deep.equal([1, 1, 1]);
    expect(stream.appends).to.have.length(1);
    expect(stream.accountsOf(0)).to.deep.equal(["a", "b", "c"]);
  });
});

describe("replica writer - fencing", () => {
  it("replica writer - a fence stops the writer, calls onFenced once and ends every waiter at once", async () => {
    const stream = new FakeStream(10);
    const { w, hooks } = writer(stream, { retryDelayMs: 10_000 });
    stream.hold = true;
    const inFlight = track(w.commit(write("a")));
    await until(() => stream.waiting === 1, "the first append");
    const queued = [track(w.commit(write("b"))), track(w.commit(write("c")))];
    stream.last = 11; // another process appended to this replica's stream
    stream.release();
    // No retry delay and no further append: every waiter ends within a few turns.
    await turns(5);
    for (const waiter of [inFlight, ...queued]) {
      expect(waiter.current.state).to.equal("rejected");
      if (waiter.current.state === "rejected") expect(waiter.current.error).to.be.instanceOf(WriterFencedError);
    }
    expect(hooks.fenced).to.have.length(1);
    expect(stream.appends).to.have.length(1);
    expect(w.sequence).to.equal(10);

    let later: unknown;
    await w.commit(write("d")).catch((error: unknown) => (later = error));
    expect(later).to.be.instanceOf(WriterFencedError);
    expect(hooks.fenced).to.have.length(1);
    expect(stream.appends).to.have.length(1);
  });
});

describe("replica writer - takeover fence", () => {
  it("replica writer - the fence is an empty message at the replayed tail; later commits follow it", async () => {
    const stream = new FakeStream(7);
    const { w } = writer(stream);
    expect(await w.fence()).to.equal(8);
    expect(stream.appends[0]?.expectedLastSeq).to.equal(7);
    const fence = decodeDeltaOrThrow(REPLICAS, stream.appends[0]!.data, "east");
    expect([fence.slots.length, fence.requests.length, fence.policies.length]).to.deep.equal([0, 0, 0]);
    expect(await w.commit(write("a"))).to.equal(9);
    expect(stream.appends[1]?.expectedLastSeq).to.equal(8);
  });

  it("replica writer - a fence refused (appended to since the replay) leaves the writer fenced out: it serves nothing", async () => {
    const stream = new FakeStream(7);
    const { w, hooks } = writer(stream);
    stream.last = 8; // the old writer appended after this node's replay
    let refused: unknown;
    await w.fence().catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(WriterFencedError);
    expect(w.fencedOut).to.equal(true);
    expect(hooks.fenced).to.have.length(1);
    let later: unknown;
    await w.commit(write("a")).catch((error: unknown) => (later = error));
    expect(later).to.be.instanceOf(WriterFencedError);
    expect(stream.appends).to.have.length(1);
  });
});

describe("replica writer - failures", () => {
  it("replica writer - a message above maxPayload fails only the write that made it too large", async () => {
    const stream = new FakeStream(0);
    stream.maxPayload = 400;
    const { w } = writer(stream);
    const big = w.commit(write("a-rather-long-account-identifier", 1n, 40));
    const small = w.commit(write("small"));
    let bigError: unknown;
    await big.catch((error: unknown) => (bigError = error));
    expect(bigError).to.be.instanceOf(PoisonWriteError);
    expect(String(bigError)).to.match(/above the stream's 400-byte message limit/);
    expect(await small).to.equal(1);
    expect(stream.appends).to.have.length(1);
    expect(stream.accountsOf(0)).to.deep.equal(["small"]);
    for (const a of stream.appends) expect(a.data.length).to.be.at.most(400);
    // The writer goes on.
    expect(await w.commit(write("next"))).to.equal(2);
  });

  it("replica writer - transient errors are retried with the same expected sequence, reported, and counted until a success", async () => {
    const stream = new FakeStream(5);
    const { w, hooks } = writer(stream);
    stream.hold = true;
    stream.failures.push(new Error("timeout 1"), new Error("timeout 2"));
    const committed = track(w.commit(write("a")));
    for (let attempt = 1; attempt <= 2; attempt++) {
      await until(() => stream.waiting === 1, `attempt ${attempt}`);
      expect(w.health.consecutiveFailures).to.equal(attempt - 1);
      stream.release();
      await until(() => hooks.errors.length === attempt, `failure ${attempt} reported`);
      expect(w.health).to.deep.equal({ consecutiveFailures: attempt, lastError: `timeout ${attempt}` });
    }
    await until(() => stream.waiting === 1, "the third attempt");
    expect(committed.current.state).to.equal("pending");
    stream.release();
    await until(() => committed.current.state !== "pending", "the commit");
    expect(committed.current).to.deep.equal({ state: "resolved", value: 6 });
    expect(w.health).to.deep.equal({ consecutiveFailures: 0, lastError: undefined });
    expect(stream.appends.map((a) => a.expectedLastSeq)).to.deep.equal([5, 5, 5]);
    expect(hooks.fenced).to.have.length(0);
  });
});

describe("replica writer - barrier", () => {
  it("replica writer - a barrier on a writer that has not written yet resolves with the recovered sequence", async () => {
    const stream = new FakeStream(41);
    const { w } = writer(stream);
    expect(await w.barrier()).to.equal(41);
    expect(stream.appends).to.have.length(0);
  });

  it("replica writer - a barrier when idle resolves with the last message and appends nothing", async () => {
    const stream = new FakeStream(41);
    const { w } = writer(stream);
    await w.commit(write("a"));
    expect(await w.barrier()).to.equal(42);
    expect(stream.appends).to.have.length(1);
  });

  it("replica writer - a barrier resolves with the message holding the writes committed before it; later writes land after", async () => {
    const stream = new FakeStream(0);
    const { w } = writer(stream);
    stream.hold = true;
    const first = w.commit(write("a"));
    await until(() => stream.waiting === 1, "the first append");
    const before = w.commit(write("b"));
    const barrier = w.barrier();
    const after = w.commit(write("c"));
    stream.release();
    await until(() => stream.waiting === 1 && stream.appends.length === 2, "the second append");
    stream.release();
    await until(() => stream.waiting === 1 && stream.appends.length === 3, "the third append");
    stream.release();
    expect(await first).to.equal(1);
    expect(await before).to.equal(2);
    expect(await barrier).to.equal(2);
    expect(await after).to.equal(3);
    expect(stream.accountsOf(1)).to.deep.equal(["b"]);
    expect(stream.accountsOf(2)).to.deep.equal(["c"]);
  });

  it("replica writer - a barrier behind a message in flight resolves with that message's sequence and appends nothing of its own", async () => {
    const stream = new FakeStream(0);
    const { w } = writer(stream);
    stream.hold = true;
    const first = w.commit(write("a"));
    await until(() => stream.waiting === 1, "the first append");
    const barrier = track(w.barrier());
    const after = w.commit(write("c"));
    await turns(3);
    expect(barrier.current.state).to.equal("pending");
    while (barrier.current.state === "pending") {
      await until(() => stream.waiting === 1 || barrier.current.state !== "pending", "an append or the barrier");
      stream.release();
      await turns(2);
    }
    stream.hold = false;
    while (stream.waiting > 0) stream.release();
    const firstSequence = await first;
    const afterSequence = await after;
    if (barrier.current.state !== "resolved") throw new Error("the barrier failed");
    // Exactly the message in flight: no empty message is appended for the barrier.
    expect(barrier.current.value).to.equal(firstSequence);
    expect(afterSequence).to.equal(firstSequence + 1);
    expect(stream.appends).to.have.length(2);
    expect(stream.accountsOf(0)).to.deep.equal(["a"]);
    expect(stream.accountsOf(1)).to.deep.equal(["c"]);
  });
});
