// Following a peer's stream (src/replication/peer-follower.ts) over a fake
// log: the test sets the stream's bounds and pushes messages into the
// consumer the follower opened, so gaps and purges are exact.

import { expect } from "chai";
import type { ConsumerMessages } from "nats";
import type { CommitBatch } from "../../src/core/durable-write";
import { ReplicaSet } from "../../src/core/replica-set";
import { encodeDelta, type DecodedDelta } from "../../src/replication/delta-codec";
import type { LoggedMessage, ReplicaLog } from "../../src/replication/jetstream-log";
import { PeerFollower, type FollowerEvents } from "../../src/replication/peer-follower";
import { turns, until } from "./support/conditions";

const REPLICAS = new ReplicaSet(["east", "west"]);
const PEER = "west";

class FakeConsumer {
  stopped = false;
  private close: () => void = () => undefined;
  private readonly done = new Promise<void>((resolve) => (this.close = resolve));

  stop(): void {
    this.stopped = true;
    this.close();
  }

  closed(): Promise<void | Error> {
    return this.done;
  }
}

interface Follow {
  readonly replica: string;
  readonly fromSeq: number;
  readonly deliver: (message: LoggedMessage) => void;
  readonly consumer: FakeConsumer;
}

class FakeLog {
  first = 1;
  last = 0;
  readonly follows: Follow[] = [];

  bounds(replica: string): Promise<{ first: number; last: number }> {
    expect(replica).to.equal(PEER);
    return Promise.resolve({ first: this.first, last: this.last });
  }

  follow(replica: string, fromSeq: number, onMessage: (message: LoggedMessage) => void): Promise<ConsumerMessages> {
    const consumer = new FakeConsumer();
    this.follows.push({ replica, fromSeq, deliver: onMessage, consumer });
    const handle: Pick<ConsumerMessages, "stop" | "closed"> = consumer;
    return Promise.resolve(handle as ConsumerMessages);
  }

  get current(): Follow {
    const follow = this.follows[this.follows.length - 1];
    if (follow === undefined) throw new Error("nothing is followed");
    return follow;
  }
}

class Events implements FollowerEvents {
  readonly applied: DecodedDelta[] = [];
  readonly catchUps: string[] = [];
  readonly errors: unknown[] = [];
  readonly refusals: Array<[number, string]> = [];
  /** What each catch-up from a snapshot reports as covered, in order (the last repeats). */
  covered: number[] = [];

  apply(delta: DecodedDelta): void {
    this.applied.push(delta);
  }

  refused(sequence: number, reason: string): void {
    this.refusals.push([sequence, reason]);
  }

  catchUpFromSnapshot(replica: string): Promise<number> {
    this.catchUps.push(replica);
    const covered = this.covered.length > 1 ? this.covered.shift()! : this.covered[0];
    if (covered === undefined) return Promise.reject(new Error("no snapshot"));
    return Promise.resolve(covered);
  }

  onError(error: unknown): void {
    this.errors.push(error);
  }
}

function message(seq: number, account: string, pending = 0, rowDigest = ""): LoggedMessage {
  const batch: CommitBatch = { slots: [{ accountId: account, writer: 1, column: 1, value: BigInt(seq) }], requests: [], policies: [] };
  return { seq, data: encodeDelta(REPLICAS, 1, batch, 1_000 + seq, rowDigest), pending };
}

function accountsApplied(events: Events): string[] {
  return events.applied.flatMap((d) => d.slots.map((s) => s.accountId));
}

describe("peer follower - following", () => {
  let follower: PeerFollower | undefined;
  afterEach(() => follower?.stop());

  function setup(): { log: FakeLog; events: Events; f: PeerFollower } {
    const log = new FakeLog();
    const events = new Events();
    const narrow: Pick<ReplicaLog, "bounds" | "follow"> = log;
    follower = new PeerFollower(PEER, REPLICAS, narrow as ReplicaLog, events, () => 5_000);
    return { log, events, f: follower };
  }

  it("peer follower - follows from the first unapplied sequence and applies messages in order", async () => {
    const { log, events, f } = setup();
    await f.start();
    expect(log.follows.map((x) => [x.replica, x.fromSeq])).to.deep.equal([[PEER, 1]]);
    log.current.deliver(message(1, "a", 1));
    log.current.deliver(message(2, "b", 0));
    expect(accountsApplied(events)).to.deep.equal(["a", "b"]);
    expect(f.appliedSequence).to.equal(2);
    expect(f.reportedSequence).to.equal(2);
    expect(f.lastPublishedAtMs).to.equal(1_002);
    // A redelivered message is not applied twice.
    log.current.deliver(message(2, "b"));
    expect(events.applied).to.have.length(2);
  });

  it("peer follower - a message after a gap is not applied; the follower catches up from the snapshot and follows after it", async () => {
    const { log, events, f } = setup();
    events.covered = [6];
    await f.start();
    const firstConsumer = log.current;
    firstConsumer.deliver(message(1, "a"));
    log.first = 7; // messages 2..6 were purged: the next delivered is 7
    log.last = 7;
    firstConsumer.deliver(message(7, "g"));
    expect(accountsApplied(events)).to.deep.equal(["a"]);
    await until(() => log.follows.length === 2, "following again");
    expect(events.catchUps).to.deep.equal([PEER]);
    expect(firstConsumer.consumer.stopped).to.equal(true);
    expect(f.appliedSequence).to.equal(6);
    expect(log.current.fromSeq).to.equal(7);
    log.current.deliver(message(7, "g"));
    expect(accountsApplied(events)).to.deep.equal(["a", "g"]);
    expect(f.appliedSequence).to.equal(7);
    expect(events.errors).to.have.length(0);
  });

  it("peer follower - a purged stream at start is caught up from the snapshot without waiting for a message", async () => {
    const { log, events, f } = setup();
    log.first = 10;
    log.last = 12;
    events.covered = [9];
    await f.start();
    await until(() => log.follows.length === 1, "following after the catch-up");
    expect(events.catchUps).to.deep.equal([PEER]);
    expect(f.appliedSequence).to.equal(9);
    expect(log.current.fromSeq).to.equal(10);
    expect(events.applied).to.have.length(0);
  });

  it("peer follower - a stream purged to empty at start is caught up from the snapshot", async () => {
    const { log, events, f } = setup();
    log.first = 13;
    log.last = 12;
    events.covered = [12];
    await f.start();
    await until(() => log.follows.length === 1, "following after the catch-up");
    expect(f.appliedSequence).to.equal(12);
    expect(log.current.fromSeq).to.equal(13);
  });

  it("peer follower - a stream that starts right after what was applied is followed without a catch-up", async () => {
    const { log, events, f } = setup();
    f.appliedSequence = 9;
    log.first = 10;
    log.last = 12;
    await f.start();
    expect(events.catchUps).to.have.length(0);
    expect(log.current.fromSeq).to.equal(10);
  });

  it("peer follower - a snapshot that does not reach the stream's first message is reported and retried", async () => {
    const { log, events, f } = setup();
    log.first = 10;
    log.last = 12;
    events.covered = [5, 9];
    await f.start();
    await until(() => log.follows.length === 1, "following after the second catch-up");
    expect(events.catchUps).to.have.length(2);
    expect(String(events.errors[0])).to.include("covers 5, stream starts at 10");
    expect(f.appliedSequence).to.equal(9);
    expect(log.current.fromSeq).to.equal(10);
  });

  it("peer follower - a malformed message is refused, never applied nor skipped; a snapshot covering it lets the follower go on", async () => {
    const { log, events, f } = setup();
    await f.start();
    events.covered = [1];
    log.current.deliver({ seq: 1, data: new Uint8Array([0xff, 0xff, 0xff]), pending: 0 });
    expect(events.refusals.map(([seq]) => seq)).to.deep.equal([1]);
    expect(f.appliedSequence).to.equal(0);
    expect(f.refusedAt).to.equal(1);
    await until(() => f.appliedSequence === 1 && log.follows.length === 2, "caught up past the refused message", 10_000);
    log.current.deliver(message(2, "b"));
    expect(accountsApplied(events)).to.deep.equal(["b"]);
    expect(f.appliedSequence).to.equal(2);
    expect(f.refusedAt).to.equal(undefined);
  });

  it("peer follower - lag is measured on the local clock from when changes became pending, whatever the writer's clock says", async () => {
    const { log, f } = setup();
    await f.start();
    // A writer an hour ahead publishes: its stamps never enter the lag.
    log.current.deliver({ ...message(1, "a", 2), data: encodeDelta(REPLICAS, 1, { slots: [], requests: [], policies: [] }, Date.now() + 3_600_000, "") });
    expect(f.pending).to.equal(2);
    expect(f.lagMs(10_000)).to.equal(0);
    expect(f.lagMs(10_750)).to.equal(750);
    log.current.deliver(message(2, "b", 0));
    log.current.deliver(message(3, "c", 0));
    expect(f.pending).to.equal(0);
    expect(f.lagMs(20_000)).to.equal(0);
  });

  it("peer follower - a status claiming a sequence far beyond the stream is ignored", async () => {
    const { f } = setup();
    await f.start();
    f.observeStatus(2 ** 52, "");
    expect(f.pending).to.equal(0);
  });

  it("peer follower - a digest equal to the local one marks the peer converged", async () => {
    const { log, f } = setup();
    f.localDigest = () => "00000000000000ab";
    await f.start();
    log.current.deliver(message(1, "a", 0, "00000000000000ab"));
    expect(f.converged).to.equal(true);
  });

  it("peer follower - a digest that differs twice at the same sequence counts one divergence", async () => {
    const { log, f } = setup();
    f.localDigest = () => "000000000000aaaa";
    await f.start();
    log.current.deliver(message(1, "a", 0, "000000000000bbbb"));
    expect(f.converged).to.equal(undefined);
    f.observeStatus(1, "000000000000bbbb");
    expect(f.converged).to.equal(false);
    f.observeStatus(1, "000000000000bbbb");
    expect(f.divergences).to.equal(1);
  });

  it("peer follower - waitCaughtUp resolves once everything reported is applied", async () => {
    const { log, f } = setup();
    log.last = 2;
    await f.start();
    let caughtUp: boolean | undefined;
    void f.waitCaughtUp(10_000).then((value) => (caughtUp = value));
    log.current.deliver(message(1, "a", 1));
    await turns(2);
    expect(caughtUp).to.equal(undefined);
    log.current.deliver(message(2, "b", 0));
    await until(() => caughtUp !== undefined, "caught up");
    expect(caughtUp).to.equal(true);
  });

  it("peer follower - stop() stops the consumer", async () => {
    const { log, f } = setup();
    await f.start();
    f.stop();
    expect(log.current.consumer.stopped).to.equal(true);
  });
});
