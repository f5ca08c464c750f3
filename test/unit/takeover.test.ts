// Takeover and lease keeping (src/replication/takeover.ts) with no server: a
// fake lease and a fake stream that checks the expected last sequence as
// JetStream does.

import { expect } from "chai";
import { ReplicaSet } from "../../src/core/replica-set";
import type { LeaseStatus } from "../../src/core/lease-clock";
import { ReplicaWriter, WriterFencedError, type StreamAppender } from "../../src/replication/replica-writer";
import { LeaseKeeper, takeOver, TakeoverAbortedError, type KeptLease, type LeaseLostError, type TakeoverLease } from "../../src/replication/takeover";
import type { WriterLeaseOptions } from "../../src/replication/writer-lease";

const REPLICAS = new ReplicaSet(["east", "west"]);
const LEASE_OPTIONS: WriterLeaseOptions = {
  region: "east",
  nodeId: "n1",
  timing: { ttlMs: 1_000, renewAfterMs: 300, marginMs: 200 },
  monotonic: () => 0,
  placeByRegion: false,
};

class FakeStream implements StreamAppender {
  maxPayload = 1024 * 1024;
  /** Called before each append is judged (lets a test append "from another writer" first). */
  beforeAppend: (() => void) | undefined;
  constructor(public last: number) {}

  append(replica: string, _data: Uint8Array, expectedLastSeq: number): Promise<number> {
    this.beforeAppend?.();
    if (expectedLastSeq !== this.last) return Promise.reject(new WriterFencedError(`TALLY_${replica}`));
    this.last++;
    return Promise.resolve(this.last);
  }
}

function writerAt(stream: FakeStream, tail: number): ReplicaWriter {
  return new ReplicaWriter(
    stream,
    { region: "east", replicas: REPLICAS, startSequence: tail, maxBatchSlots: 100, retryDelayMs: 1, instanceId: `i${tail}`, now: () => 0 },
    { rowDigest: () => "00000000000000d0", onFenced: () => undefined, onCommitted: () => undefined, onError: () => undefined },
  );
}

/** A lease the test hands out: refused `refusals` times, then held. */
function fakeLease(refusals: number): TakeoverLease & { attempts: number; held: boolean } {
  const lease = {
    attempts: 0,
    held: false,
    options: LEASE_OPTIONS,
    tryAcquire(): Promise<boolean> {
      lease.attempts++;
      lease.held = lease.attempts > refusals;
      return Promise.resolve(lease.held);
    },
  };
  return lease;
}

describe("takeover - lease, replay, fence", () => {
  it("takeover - waits while another node holds the lease, then replays to the tail and fences there", async () => {
    const stream = new FakeStream(12);
    const lease = fakeLease(2);
    let waited = 0;
    const took = await takeOver({
      lease,
      replayToTail: () => Promise.resolve(stream.last),
      writerAt: (tail) => writerAt(stream, tail),
      retryMs: 0,
      stopped: () => false,
      whileWaiting: () => {
        waited++;
        return Promise.resolve();
      },
    });
    expect(lease.attempts).to.equal(3);
    expect(waited).to.equal(2);
    expect(took.fenceSequence).to.equal(13);
    expect(took.writer.sequence).to.equal(13);
  });

  it("takeover - a fence refused because the old writer appended after the replay is retried after a new replay", async () => {
    const stream = new FakeStream(5);
    const lost: WriterFencedError[] = [];
    let replays = 0;
    stream.beforeAppend = () => {
      stream.beforeAppend = undefined;
      stream.last++; // the old writer's append lands between the replay and the fence
    };
    const took = await takeOver({
      lease: fakeLease(0),
      replayToTail: () => {
        replays++;
        return Promise.resolve(stream.last);
      },
      writerAt: (tail) => writerAt(stream, tail),
      retryMs: 0,
      stopped: () => false,
      onFenceLost: (error) => lost.push(error),
    });
    expect(replays).to.equal(2);
    expect(lost).to.have.length(1);
    expect(took.fenceSequence).to.equal(7); // 6 is the old writer's append; the fence follows it
  });

  it("takeover - a lease that lapsed during a long replay is taken again before the fence, never fenced on", async () => {
    const stream = new FakeStream(40);
    const lease = fakeLease(0);
    const heldAtFence: boolean[] = [];
    let replays = 0;
    stream.beforeAppend = () => heldAtFence.push(lease.held);
    const took = await takeOver({
      lease,
      replayToTail: () => {
        replays++;
        // The first replay outlasts the lease (by this node's clock).
        if (replays === 1) lease.held = false;
        return Promise.resolve(stream.last);
      },
      writerAt: (tail) => writerAt(stream, tail),
      retryMs: 0,
      stopped: () => false,
    });
    expect(replays).to.equal(2);
    expect(lease.attempts).to.equal(2);
    expect(heldAtFence).to.deep.equal([true]);
    expect(took.fenceSequence).to.equal(41);
  });

  it("takeover - a failed attempt is reported and retried; without onError it ends the takeover", async () => {
    const stream = new FakeStream(0);
    let failures = 1;
    const errors: unknown[] = [];
    const replayToTail = (): Promise<number> => (failures-- > 0 ? Promise.reject(new Error("no server")) : Promise.resolve(stream.last));
    const took = await takeOver({
      lease: fakeLease(0),
      replayToTail,
      writerAt: (tail) => writerAt(stream, tail),
      retryMs: 0,
      stopped: () => false,
      onError: (error) => errors.push(error),
    });
    expect(errors).to.have.length(1);
    expect(took.fenceSequence).to.equal(1);

    let thrown: unknown;
    await takeOver({
      lease: fakeLease(0),
      replayToTail: () => Promise.reject(new Error("no server")),
      writerAt: (tail) => writerAt(stream, tail),
      retryMs: 0,
      stopped: () => false,
    }).catch((error: unknown) => (thrown = error));
    expect(thrown).to.be.instanceOf(Error).with.property("message", "no server");
  });

  it("takeover - stopping gives the takeover up between attempts", async () => {
    let stop = false;
    let thrown: unknown;
    await takeOver({
      lease: fakeLease(1_000),
      replayToTail: () => Promise.resolve(0),
      writerAt: (tail) => writerAt(new FakeStream(0), tail),
      retryMs: 0,
      stopped: () => stop,
      whileWaiting: () => {
        stop = true;
        return Promise.resolve();
      },
    }).catch((error: unknown) => (thrown = error));
    expect(thrown).to.be.instanceOf(TakeoverAbortedError);
  });
});

/** A lease whose status and renewal answers the test sets. */
function keptLease(status: LeaseStatus, renew: () => Promise<boolean>): KeptLease & { drops: number; renewals: number } {
  const lease = {
    drops: 0,
    renewals: 0,
    options: LEASE_OPTIONS,
    status: () => status,
    renew: () => {
      lease.renewals++;
      return renew();
    },
    drop: () => {
      lease.drops++;
    },
  };
  return lease;
}

describe("takeover - keeping the lease", () => {
  it("lease keeper - a valid lease is left alone; a due one is renewed", async () => {
    const lost: LeaseLostError[] = [];
    const valid = keptLease("valid", () => Promise.resolve(true));
    await new LeaseKeeper({ lease: valid, checkEveryMs: 10, onLost: (e) => lost.push(e) }).check();
    expect(valid.renewals).to.equal(0);
    const due = keptLease("renew-due", () => Promise.resolve(true));
    await new LeaseKeeper({ lease: due, checkEveryMs: 10, onLost: (e) => lost.push(e) }).check();
    expect(due.renewals).to.equal(1);
    expect(lost).to.deep.equal([]);
  });

  it("lease keeper - a refused renewal is reported once as lost and the lease dropped", async () => {
    const lost: LeaseLostError[] = [];
    const lease = keptLease("renew-due", () => Promise.resolve(false));
    const keeper = new LeaseKeeper({ lease, checkEveryMs: 10, onLost: (e) => lost.push(e) });
    await keeper.check();
    await keeper.check();
    expect(lost).to.have.length(1);
    expect(lost[0]?.reason).to.match(/renewal refused/);
    expect(lease.drops).to.equal(1);
  });

  it("lease keeper - a lease expired by the holder's clock is lost without asking the server", async () => {
    const lost: LeaseLostError[] = [];
    const lease = keptLease("expired", () => Promise.resolve(true));
    await new LeaseKeeper({ lease, checkEveryMs: 10, onLost: (e) => lost.push(e) }).check();
    expect(lease.renewals).to.equal(0);
    expect(lost).to.have.length(1);
    expect(lost[0]?.reason).to.match(/clock/);
  });

  it("lease keeper - a renewal with no answer is reported and the lease kept until the clock says otherwise", async () => {
    const lost: LeaseLostError[] = [];
    const errors: unknown[] = [];
    const lease = keptLease("renew-due", () => Promise.reject(new Error("timeout")));
    await new LeaseKeeper({ lease, checkEveryMs: 10, onLost: (e) => lost.push(e), onError: (e) => errors.push(e) }).check();
    expect(errors).to.have.length(1);
    expect(lost).to.deep.equal([]);
    expect(lease.drops).to.equal(0);
  });
});
