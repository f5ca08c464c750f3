// Two nodes of one region contend for its writer role over a real nats-server
// (DESIGN §12, spec/ha.qnt): the lease in JetStream KV decides who tries; the
// fence (an empty message appended at the replayed tail with expected last
// sequence) makes a deposed writer's next append fail, after which it
// acknowledges nothing. A GC pause is a frozen monotonic clock: the paused
// node still believes in its lease.

import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import { debitFingerprint, grantFingerprint } from "../../src/core/write-path";
import { DebitOutcome, ReplicaState, type Answer } from "../../src/core/replica-state";
import { ReplicaSet } from "../../src/core/replica-set";
import type { DurableWrite } from "../../src/core/durable-write";
import { decodeDeltaOrThrow, type DecodedDelta } from "../../src/replication/delta-codec";
import { ReplicaLog } from "../../src/replication/jetstream-log";
import { ReplicaWriter, WriterFencedError } from "../../src/replication/replica-writer";
import { LeaseKeeper, LeaseLostError, takeOver, type TookOver } from "../../src/replication/takeover";
import { WriterLease } from "../../src/replication/writer-lease";
import { digestHex } from "../../src/core/row-digest";
import { until } from "../unit/support/conditions";
import { natsConnectOptions, useStandaloneNats } from "../support/nats";

const REGION = "east";
const REPLICAS = new ReplicaSet([REGION, "west"]);
const ACCOUNT = "acct-1";
const TIMING = { ttlMs: 1_000, renewAfterMs: 300, marginMs: 200 };

/** A monotonic clock that a test can stop (a GC pause: the process sees no time pass). */
class PausableClock {
  private frozenAt: number | undefined;
  now(): number {
    return this.frozenAt ?? performance.now();
  }
  pause(): void {
    this.frozenAt = performance.now();
  }
  resume(): void {
    this.frozenAt = undefined;
  }
}

/** One node of region east: its state, its view of the own stream, its lease and (when it writes) its writer. */
class Contender {
  readonly state = new ReplicaState({ replicas: REPLICAS, self: REGION });
  readonly acked: string[] = [];
  readonly fenced: WriterFencedError[] = [];
  writer: ReplicaWriter | undefined;
  /** Last sequence of the own stream applied to `state`. */
  applied = 0;
  private constructor(
    readonly name: string,
    readonly log: ReplicaLog,
    readonly lease: WriterLease,
    private readonly clock: PausableClock,
  ) {}

  static async open(name: string, connection: NatsConnection): Promise<Contender> {
    const log = await ReplicaLog.over(connection, { placeByRegion: false });
    await log.ensureStream(REGION);
    const clock = new PausableClock();
    const lease = await WriterLease.open(log, { region: REGION, nodeId: name, timing: TIMING, monotonic: () => clock.now(), placeByRegion: false });
    return new Contender(name, log, lease, clock);
  }

  pause(): void {
    this.clock.pause();
  }

  resume(): void {
    this.clock.resume();
  }

  /** Replays the own stream from what this node applied to its tail. */
  async replayToTail(): Promise<number> {
    this.applied = await this.log.replay(REGION, this.applied + 1, (m) => this.apply(decodeDeltaOrThrow(REPLICAS, m.data, REGION)));
    return this.applied;
  }

  takeOver(hooks: { afterReplay?: () => Promise<void> } = {}): Promise<TookOver> {
    return takeOver({
      lease: this.lease,
      replayToTail: async () => {
        const tail = await this.replayToTail();
        await hooks.afterReplay?.();
        return tail;
      },
      writerAt: (tail) => {
        this.writer = new ReplicaWriter(
          this.log,
          { region: REGION, replicas: REPLICAS, startSequence: tail, maxBatchSlots: 1_000, retryDelayMs: 10, instanceId: `${this.name}-${tail}`, now: Date.now },
          {
            rowDigest: () => digestHex(this.state.rowDigest(0)),
            onFenced: (error) => this.fenced.push(error),
            onCommitted: () => undefined,
            onError: () => undefined,
          },
        );
        return this.writer;
      },
      retryMs: 50,
      stopped: () => false,
    });
  }

  /** Decides in memory (as the node does), then commits; the answer is the acknowledgement. */
  decideDebit(amount: bigint, requestId: string): { answer: Answer; commit: () => Promise<Answer> } {
    const result = this.state.debit(ACCOUNT, amount, false);
    const write: DurableWrite = {
      slots: result.changes,
      requests: [{ requestId, fingerprint: debitFingerprint(ACCOUNT, amount), answer: result.answer, answeredAtMs: Date.now() }],
    };
    return { answer: result.answer, commit: () => this.commit(write, requestId, result.answer) };
  }

  async grant(amount: bigint, requestId: string): Promise<Answer> {
    const result = this.state.grant(ACCOUNT, amount);
    const write: DurableWrite = {
      slots: result.changes,
      requests: [{ requestId, fingerprint: grantFingerprint(ACCOUNT, amount), answer: result.answer, answeredAtMs: Date.now() }],
    };
    return this.commit(write, requestId, result.answer);
  }

  async close(): Promise<void> {
    this.writer?.stop(new Error("test over"));
    await this.log.close();
  }

  private async commit(write: DurableWrite, requestId: string, answer: Answer): Promise<Answer> {
    if (this.writer === undefined) throw new Error(`${this.name} is not a writer`);
    this.applied = await this.writer.commit(write);
    this.acked.push(requestId);
    return answer;
  }

  private apply(delta: DecodedDelta): void {
    for (const s of delta.slots) this.state.merge(s.accountId, s.writer, s.column, s.value);
  }
}

/** Every message of the own stream, decoded. */
async function streamOf(log: ReplicaLog): Promise<DecodedDelta[]> {
  const out: DecodedDelta[] = [];
  await log.replay(REGION, 1, (m) => out.push(decodeDeltaOrThrow(REPLICAS, m.data, REGION)));
  return out;
}

function requestIdsIn(stream: readonly DecodedDelta[]): string[] {
  return stream.flatMap((d) => d.requests.map((r) => r.requestId));
}

function isFence(delta: DecodedDelta): boolean {
  return delta.slots.length === 0 && delta.requests.length === 0 && delta.policies.length === 0;
}

describe("writer takeover - lease and fence in one region (real nats-server)", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  const open: Contender[] = [];

  async function contender(name: string): Promise<Contender> {
    const connection = await connect(natsConnectOptions(nats()));
    const c = await Contender.open(name, connection);
    open.push(c);
    return c;
  }

  afterEach(async () => {
    for (const c of open.splice(0)) await c.close();
    // Each test starts from an empty stream and no lease.
    const admin = await connect(natsConnectOptions(nats()));
    const jsm = await admin.jetstreamManager();
    await jsm.streams.delete("TALLY_EAST").catch(() => undefined);
    await jsm.streams.delete("KV_TALLY_LEASE_EAST").catch(() => undefined);
    await admin.close();
  });

  it("writer takeover - a writer paused past its lease cannot append after the new writer's fence, and acknowledges nothing more", async () => {
    const a = await contender("a");
    const b = await contender("b");

    const aTerm = await a.takeOver();
    expect(aTerm.fenceSequence).to.equal(1);
    expect(await b.lease.tryAcquire()).to.equal(false); // a holds it
    const granted = await a.grant(3n, "g-1");
    expect(granted.balance).to.equal(3n);

    // a decides a debit of 2 on its balance of 3, then pauses before committing.
    const aDebit = a.decideDebit(2n, "d-a");
    expect(aDebit.answer.outcome).to.equal(DebitOutcome.Approved);
    a.pause();

    // b waits for the server to forget a's lease (no renewals), replays and fences.
    const bTerm = await b.takeOver();
    expect(bTerm.fenceSequence).to.equal(3);
    expect(b.state.balance(ACCOUNT)).to.equal(3n); // the replay saw a's grant
    const bDebit = b.decideDebit(2n, "d-b");
    expect(bDebit.answer.outcome).to.equal(DebitOutcome.Approved);
    await bDebit.commit();

    // a wakes up still believing in its lease, and commits: refused.
    expect(a.lease.held).to.equal(true);
    a.resume();
    let refused: unknown;
    await aDebit.commit().catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(WriterFencedError);
    expect(a.fenced).to.have.length(1);
    expect(a.writer?.fencedOut).to.equal(true);
    // It acknowledges nothing more: later commits end at once.
    let later: unknown;
    await a.grant(5n, "g-a-late").catch((error: unknown) => (later = error));
    expect(later).to.be.instanceOf(WriterFencedError);
    expect(a.acked).to.deep.equal(["g-1"]);

    const stream = await streamOf(a.log);
    expect(stream.map(isFence)).to.deep.equal([true, false, true, false]);
    const ids = requestIdsIn(stream);
    for (const id of [...a.acked, ...b.acked]) expect(ids.filter((x) => x === id), id).to.have.length(1);
    expect(ids).to.not.include("d-a");
    const replayed = new ReplicaState({ replicas: REPLICAS, self: "west" });
    for (const d of stream) for (const s of d.slots) replayed.merge(s.accountId, s.writer, s.column, s.value);
    expect(replayed.balance(ACCOUNT)).to.equal(1n); // 3 − 2: never overspent
  });

  it("writer takeover - a fence refused because the old writer appended after the replay is retried after a new replay", async () => {
    const a = await contender("a");
    const b = await contender("b");
    await a.takeOver();
    await a.grant(3n, "g-1");
    a.pause(); // a keeps believing; its renewals stop

    let raced = false;
    const bTerm = await b.takeOver({
      // Once, between b's replay and b's fence, the old writer appends.
      afterReplay: async () => {
        if (raced) return;
        raced = true;
        await a.grant(1n, "g-2");
      },
    });
    expect(raced).to.equal(true);
    expect(b.fenced).to.have.length(1); // its first fence, at tail 2, was refused
    expect(bTerm.fenceSequence).to.equal(4); // 1 fence(a), 2 g-1, 3 g-2, 4 fence(b)
    expect(b.state.balance(ACCOUNT)).to.equal(4n); // the second replay saw g-2
    let refused: unknown;
    await a.grant(7n, "g-3").catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(WriterFencedError);
    expect(requestIdsIn(await streamOf(b.log))).to.deep.equal(["g-1", "g-2"]);
  });

  it("writer takeover - a renewed lease keeps others out; a lease that ran out is reported lost when renewal is refused", async () => {
    const a = await contender("a");
    const b = await contender("b");
    await a.takeOver();
    const lost: LeaseLostError[] = [];
    const keeper = new LeaseKeeper({ lease: a.lease, checkEveryMs: 20, onLost: (error) => lost.push(error) }).start();
    try {
      // Several renewals span more than one TTL: the lease never lapsed, b is kept out.
      const first = a.lease.revision;
      const startedAt = performance.now();
      await until(() => a.lease.revision >= first + 4 && performance.now() - startedAt > TIMING.ttlMs * 1.2, "a's renewals over more than one TTL", 10_000);
      expect(await b.lease.tryAcquire()).to.equal(false);
      expect(lost).to.deep.equal([]);

      // a pauses (no timers run in a GC pause); b takes over once the server forgets a.
      keeper.stop();
      a.pause();
      await b.takeOver();
      expect((await b.lease.holder())?.node).to.equal("b");

      // a wakes with its clock still believing; the server refuses its renewal.
      expect(a.lease.held).to.equal(true);
      expect(await a.lease.renew()).to.equal(false);
      expect(a.lease.held).to.equal(false);
      // A keeper's next look reports the loss (the node then stops its writer).
      await new LeaseKeeper({ lease: a.lease, checkEveryMs: 20, onLost: (error) => lost.push(error) }).check();
      expect(lost).to.have.length(1);
      expect(lost[0]).to.be.instanceOf(LeaseLostError);
    } finally {
      keeper.stop();
    }
  });
});
