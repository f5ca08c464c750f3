// A regional Tally node: the replica state, its durable log in JetStream with
// group commit, the followers of every other replica, the status exchange and
// the rights broker, wired together. gRPC handlers call only this class.

import { Events } from "nats";
import { ReplicaSet } from "../core/replica-set";
import {
  DebitOutcome,
  ReplicaState,
  type Answer,
  type Contribution,
  type SlotChange,
} from "../core/replica-state";
import { RequestConflictError } from "../core/errors";
import type { Policy, PolicyWrite } from "../core/policy";
import { digestHex } from "../core/row-digest";
import { decodeDeltaOrThrow, encodeDelta, type DecodedDelta } from "../replication/delta-codec";
import type { CommitBatch, RequestRecord } from "../replication/durable-write";
import { GroupCommitter } from "../replication/group-commit";
import { ReplicaLog, WriterFencedError } from "../replication/jetstream-log";
import { PeerFollower } from "../replication/peer-follower";
import { StatusExchange } from "../replication/status-exchange";
import { SnapshotStore } from "../replication/snapshot-store";
import { encodeSnapshot } from "../replication/snapshot-codec";
import { policyFromWire, requestFromWire } from "../replication/delta-codec";
import { SnapshotHeader, type SnapshotChunk } from "../generated/tally/replication/v1/replication";
import { snapshotSubject } from "../replication/subjects";
import type { Subscription } from "nats";
import type { TallyMetrics } from "../metrics/tally-metrics";
import { BalanceWatchHub } from "./balance-watch";
import type { NodeConfig } from "./node-config";
import { RightsBroker } from "./rights-broker";
import type { Logger } from "./logger";

export interface Decision {
  readonly answer: Answer;
  readonly replayed: boolean;
}

export interface DebitItem {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
}

export interface RegionView extends Contribution {
  readonly appliedSequence: number;
  readonly stalenessMs: number;
}

export interface BalanceView {
  readonly balance: bigint;
  readonly localRights: bigint;
  readonly regions: RegionView[];
  readonly policy: Policy;
}

export interface PeerView {
  readonly region: string;
  readonly appliedSequence: number;
  readonly reportedSequence: number;
  readonly pending: number;
  readonly lagSeconds: number;
  readonly converged: boolean;
  readonly digest: string;
  readonly lastHeardMs: number;
}

interface OutcomeCounts {
  approved: number;
  overdraft: number;
  insufficient: number;
}

interface InFlight {
  readonly fingerprint: string;
  readonly decision: Promise<Answer>;
}

/** The node is shutting down or fenced; the call may be retried elsewhere. */
export class NodeUnavailableError extends Error {
  override readonly name = "NodeUnavailableError";
}

function debitFingerprint(accountId: string, amount: bigint): string {
  return `d|${accountId}|${amount}`;
}

function grantFingerprint(accountId: string, amount: bigint): string {
  return `g|${accountId}|${amount}`;
}

export class TallyNode {
  readonly replicas: ReplicaSet;
  readonly state: ReplicaState;
  readonly watches = new BalanceWatchHub();
  readonly rights: RightsBroker;
  private readonly committer: GroupCommitter;
  private readonly followers = new Map<string, PeerFollower>();
  private readonly inFlight = new Map<string, InFlight>();
  private status: StatusExchange | undefined;
  readonly snapshots: SnapshotStore;
  private snapshotting: Promise<SnapshotHeader> | undefined;
  private lastSnapshotSequence = 0;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private snapshotRequests: Subscription | undefined;
  private ownSequence = 0;
  private ownPublishedDigest = "";
  private publishCounter = 0;
  private lastPolicyWriteMs = 0;
  private readonly reportedDivergences = new Map<string, number>();
  private readonly instanceId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  private closed = false;
  private fenced = false;
  ready = false;

  private constructor(
    readonly config: NodeConfig,
    readonly log: ReplicaLog,
    readonly metrics: TallyMetrics,
    readonly logger: Logger,
    private readonly now: () => number,
  ) {
    this.replicas = new ReplicaSet(config.regions);
    this.state = new ReplicaState({
      replicas: this.replicas,
      self: config.region,
      defaultPolicy: config.defaultPolicy,
      requestLog: { retentionMs: config.requestRetentionMs, maxEntries: config.maxRememberedRequests },
    });
    this.committer = new GroupCommitter(
      (batch) => this.publish(batch),
      { maxBatchSlots: config.maxCommitSlots, retryDelayMs: 100 },
      (error) => {
        this.metrics.commitErrors.inc();
        this.logger.warn("commit failed, retrying", { error: String(error) });
      },
    );
    this.rights = new RightsBroker(this, log.connection, metrics, logger, now);
    this.snapshots = new SnapshotStore(log);
  }

  /** Connects, recovers this replica's own row from its stream, starts following peers, then serves. */
  static async start(
    config: NodeConfig,
    metrics: TallyMetrics,
    logger: Logger,
    now: () => number = Date.now,
  ): Promise<TallyNode> {
    const log = await ReplicaLog.open({
      url: config.natsUrl,
      name: `tally-${config.region}`,
      placeByRegion: config.placeStreamsByRegion,
    });
    const node = new TallyNode(config, log, metrics, logger, now);
    try {
      await node.recover();
    } catch (error) {
      await log.close();
      throw error;
    }
    return node;
  }

  private async recover(): Promise<void> {
    const self = this.config.region;
    await this.ensureStreams();
    const started = this.now();
    const header = await this.snapshots.read(self, (chunk) => this.applySnapshotChunk(chunk));
    const replayFrom = header === undefined ? 1 : Number(header.replayFrom);
    const firstStored = await this.log.firstSequence(self);
    if (firstStored > replayFrom && (await this.log.lastSequence(self)) >= firstStored) {
      throw new Error(`stream of ${self} starts at ${firstStored} but the snapshot needs ${replayFrom}: refusing to serve a partial row`);
    }
    this.ownSequence = Math.max(
      header === undefined ? 0 : Number(header.durableSequence),
      await this.log.replay(self, replayFrom, (m) => this.applyDelta(decodeDeltaOrThrow(this.replicas, m.data, self))),
    );
    this.lastSnapshotSequence = header === undefined ? 0 : Number(header.durableSequence);
    this.ownPublishedDigest = digestHex(this.state.rowDigest(this.state.self));
    this.logger.info("own row recovered", {
      sequence: this.ownSequence,
      fromSnapshot: header !== undefined,
      replayedFrom: replayFrom,
      accounts: this.state.accountCount,
      ms: this.now() - started,
    });
    this.trackConnection();
    for (const peer of this.replicas.names) {
      if (peer === self) continue;
      const follower = new PeerFollower(
        peer,
        this.replicas,
        this.log,
        {
          apply: (delta) => this.applyDelta(delta),
          onError: (error) => this.logger.warn("follow failed, retrying", { peer, error: String(error) }),
          catchUpFromSnapshot: async (replica) => {
            const peerHeader = await this.snapshots.read(replica, (chunk) => this.applySnapshotChunk(chunk));
            if (peerHeader === undefined) throw new Error(`no snapshot of ${replica} to cover purged messages`);
            this.logger.info("caught up from a peer snapshot", { peer: replica, replayFrom: Number(peerHeader.replayFrom) });
            return Number(peerHeader.replayFrom) - 1;
          },
        },
        this.now,
      );
      follower.appliedSequence = Number(header?.applied[peer] ?? 0n);
      const index = this.replicas.indexOf(peer);
      follower.localDigest = () => digestHex(this.state.rowDigest(index));
      this.followers.set(peer, follower);
      void follower.start();
    }
    const caughtUp = await Promise.all(
      [...this.followers.values()].map((f) => f.waitCaughtUp(this.config.catchUpTimeoutMs)),
    );
    if (caughtUp.some((c) => !c)) this.logger.warn("serving before every peer was applied (peer unreachable?)");
    this.status = new StatusExchange(
      this.log.connection,
      self,
      () => ({ ownSequence: this.ownSequence, ownDigest: this.ownPublishedDigest, applied: this.appliedVector() }),
      (replica, status) =>
        this.followers.get(replica)?.observeStatus(status.ownSequence, status.ownDigest, status.applied[self]),
      this.now,
    );
    this.status.start(this.config.statusIntervalMs);
    this.rights.start();
    this.startSnapshots();
    this.ready = true;
  }

  // ---- snapshots -------------------------------------------------------------

  private applySnapshotChunk(chunk: SnapshotChunk): void {
    for (const account of chunk.accounts) this.state.mergeAccount(account.accountId, account.values);
    for (const wire of chunk.requests) {
      const r = requestFromWire(wire);
      this.state.remember(r.requestId, r.fingerprint, r.answer, r.answeredAtMs);
    }
    for (const wire of chunk.policies) {
      const p = policyFromWire(wire);
      this.state.applyPolicy(p.accountId, p.write);
    }
  }

  private startSnapshots(): void {
    const interval = this.config.snapshotIntervalMs;
    if (interval > 0) {
      this.snapshotTimer = setInterval(() => {
        if (this.ownSequence > this.lastSnapshotSequence) {
          this.takeSnapshot().catch((error: unknown) => this.logger.warn("snapshot failed", { error: String(error) }));
        }
      }, interval);
      this.snapshotTimer.unref();
    }
    // Settlement asks every region for a fresh snapshot before it joins them.
    this.snapshotRequests = this.log.connection.subscribe(snapshotSubject(this.config.region), {
      callback: (error, message) => {
        if (error !== null) return;
        this.takeSnapshot().then(
          (header) => message.respond(SnapshotHeader.encode(header).finish()),
          (snapshotError: unknown) => this.logger.warn("requested snapshot failed", { error: String(snapshotError) }),
        );
      },
    });
  }

  /**
   * Writes a full-state snapshot: a synchronous copy, then a barrier commit so
   * every copied value is durable, then the chunked write. Afterwards the own
   * stream is purged below what both the snapshot and every peer have covered
   * (or below the snapshot alone when the stream grew too long; lagging peers
   * then catch up from the snapshot).
   */
  takeSnapshot(): Promise<SnapshotHeader> {
    this.snapshotting ??= this.writeSnapshot().finally(() => {
      this.snapshotting = undefined;
    });
    return this.snapshotting;
  }

  private async writeSnapshot(): Promise<SnapshotHeader> {
    const started = this.now();
    const frozen = this.state.freeze();
    const applied: Record<string, bigint> = {};
    for (const [peer, follower] of this.followers) applied[peer] = BigInt(follower.appliedSequence);
    const replayFrom = this.ownSequence + 1;
    await this.committer.barrier();
    const header: SnapshotHeader = {
      replica: this.config.region,
      replicas: [...this.replicas.names],
      replayFrom: BigInt(replayFrom),
      durableSequence: BigInt(this.ownSequence),
      applied,
      takenAtMs: BigInt(started),
      accounts: BigInt(frozen.ids.length),
      cluster: undefined,
    };
    await this.snapshots.write(this.config.region, encodeSnapshot(frozen, header));
    this.lastSnapshotSequence = this.ownSequence;
    let keepFrom = replayFrom;
    for (const follower of this.followers.values()) keepFrom = Math.min(keepFrom, (follower.appliedOfOurs ?? 0) + 1);
    if (replayFrom - keepFrom > this.config.maxRetainedMessages) keepFrom = replayFrom;
    const purged = keepFrom > 1 ? await this.log.purgeBelow(this.config.region, keepFrom) : 0;
    this.metrics.snapshots.inc();
    this.metrics.snapshotDuration.observe((this.now() - started) / 1000);
    this.logger.info("snapshot written", { accounts: frozen.ids.length, replayFrom, purged, ms: this.now() - started });
    return header;
  }

  /** Creates every replica's stream; this node's own must exist, the others are retried in the background. */
  private async ensureStreams(): Promise<void> {
    const deadline = this.now() + 30_000;
    for (;;) {
      try {
        await this.log.ensureStream(this.config.region);
        await this.snapshots.bucket(this.config.region);
        break;
      } catch (error) {
        if (this.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    await Promise.all(
      this.replicas.names
        .filter((r) => r !== this.config.region)
        .map(async (replica) => {
          for (let attempt = 0; attempt < 40; attempt++) {
            try {
              await this.log.ensureStream(replica);
              await this.snapshots.bucket(replica);
              return;
            } catch {
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        }),
    );
  }

  private trackConnection(): void {
    this.metrics.natsConnected.set(1);
    void (async () => {
      for await (const s of this.log.connection.status()) {
        if (s.type === Events.Disconnect) this.metrics.natsConnected.set(0);
        if (s.type === Events.Reconnect) this.metrics.natsConnected.set(1);
      }
    })();
  }

  // ---- the write path ------------------------------------------------------

  async debit(item: DebitItem, maxWaitMs: number): Promise<Decision> {
    const fingerprint = debitFingerprint(item.accountId, item.amount);
    const earlier = await this.earlierDecision(item.requestId, fingerprint);
    if (earlier !== undefined) return earlier;
    const decision = this.decideDebit(item, fingerprint, maxWaitMs);
    return { answer: await this.track(item.requestId, fingerprint, decision), replayed: false };
  }

  /** Decides debits in order without waiting for rights; one durable commit for the batch. */
  async debitBatch(items: readonly DebitItem[]): Promise<Decision[]> {
    this.assertWritable();
    // First pass: every id is checked before anything changes (ALREADY_EXISTS changes nothing).
    const earlier: Array<Answer | Promise<Answer> | undefined> = new Array<Answer | Promise<Answer> | undefined>(items.length);
    const fingerprints: string[] = new Array<string>(items.length);
    const seen = new Map<string, string>();
    items.forEach((item, index) => {
      const fingerprint = debitFingerprint(item.accountId, item.amount);
      fingerprints[index] = fingerprint;
      const inBatch = seen.get(item.requestId);
      if (inBatch !== undefined && inBatch !== fingerprint) throw new RequestConflictError(item.requestId);
      seen.set(item.requestId, fingerprint);
      const pending = this.inFlight.get(item.requestId);
      if (pending !== undefined) {
        if (pending.fingerprint !== fingerprint) throw new RequestConflictError(item.requestId);
        earlier[index] = pending.decision;
      } else {
        earlier[index] = this.state.recall(item.requestId, fingerprint);
      }
    });
    const results: Decision[] = new Array<Decision>(items.length);
    const waiting: Array<[number, Promise<Answer>]> = [];
    const slots: SlotChange[] = [];
    const requests: RequestRecord[] = [];
    const counts: OutcomeCounts = { approved: 0, overdraft: 0, insufficient: 0 };
    const nowMs = this.now();
    const decided = new Set<string>();
    items.forEach((item, index) => {
      const known = earlier[index];
      if (known instanceof Promise) {
        waiting.push([index, known]);
        return;
      }
      // A duplicate id later in the same batch is answered by the first one.
      const recalled = known ?? (decided.has(item.requestId) ? this.state.recall(item.requestId, fingerprints[index]!) : undefined);
      if (recalled !== undefined) {
        results[index] = { answer: recalled, replayed: true };
        return;
      }
      const answer = this.debitNow(item, fingerprints[index]!, nowMs, false, slots, requests, false, counts);
      decided.add(item.requestId);
      if (answer.outcome === DebitOutcome.InsufficientCredit) this.rights.onShortfall(item.accountId, item.amount);
      results[index] = { answer, replayed: false };
    });
    if (counts.approved > 0) this.metrics.debitResult.approved.inc(counts.approved);
    if (counts.overdraft > 0) this.metrics.debitResult.overdraft.inc(counts.overdraft);
    if (counts.insufficient > 0) this.metrics.debitResult.insufficient.inc(counts.insufficient);
    if (slots.length > 0 || requests.length > 0) {
      const durable = this.committer.commit({ slots, requests });
      for (const r of requests) {
        const answer = r.answer;
        this.inFlight.set(r.requestId, { fingerprint: r.fingerprint, decision: durable.then(() => answer) });
      }
      try {
        await durable;
      } finally {
        for (const r of requests) this.inFlight.delete(r.requestId);
      }
    }
    for (const [index, decision] of waiting) results[index] = { answer: await decision, replayed: true };
    return results;
  }

  async grant(accountId: string, amount: bigint, requestId: string): Promise<Decision> {
    const fingerprint = grantFingerprint(accountId, amount);
    const earlier = await this.earlierDecision(requestId, fingerprint);
    if (earlier !== undefined) return earlier;
    this.assertWritable();
    const granted = this.state.grant(accountId, amount);
    const changes = granted.changes;
    let answer = granted.answer;
    if (this.config.spreadGrants && this.replicas.size > 1) {
      const share = amount / BigInt(this.replicas.size);
      if (share > 0n) {
        for (let peer = 0; peer < this.replicas.size; peer++) {
          if (peer !== this.state.self) changes.push(...this.state.transfer(accountId, peer, share));
        }
        answer = { ...answer, localRights: this.state.rights(accountId) };
      }
    }
    const nowMs = this.now();
    this.state.remember(requestId, fingerprint, answer, nowMs);
    this.watches.notify(accountId);
    const durable = this.committer
      .commit({ slots: changes, requests: [{ requestId, fingerprint, answer, answeredAtMs: nowMs }] })
      .then(() => answer);
    return { answer: await this.track(requestId, fingerprint, durable), replayed: false };
  }

  async setPolicy(accountId: string, policy: Policy): Promise<Policy> {
    this.assertWritable();
    // Strictly increasing per writer, so two writes in one millisecond keep their order.
    const writtenAtMs = Math.max(this.now(), this.lastPolicyWriteMs + 1);
    this.lastPolicyWriteMs = writtenAtMs;
    const write: PolicyWrite = { ...policy, writtenAtMs, replica: this.config.region };
    this.state.applyPolicy(accountId, write);
    await this.committer.commit({ slots: [], policy: { accountId, write } });
    this.watches.notify(accountId);
    return this.state.policy(accountId);
  }

  /** Moves rights from this region to another (manual or broker-initiated). Durable on return. */
  async transfer(accountId: string, toRegion: string, amount: bigint): Promise<bigint> {
    this.assertWritable();
    const changes = this.state.transfer(accountId, this.replicas.indexOf(toRegion), amount);
    await this.commitSlots(changes);
    return this.state.rights(accountId);
  }

  /** Makes own-row changes durable (used by the rights broker). */
  async commitSlots(slots: SlotChange[]): Promise<void> {
    await this.committer.commit({ slots });
  }

  private async earlierDecision(requestId: string, fingerprint: string): Promise<Decision | undefined> {
    const pending = this.inFlight.get(requestId);
    if (pending !== undefined) {
      if (pending.fingerprint !== fingerprint) throw new RequestConflictError(requestId);
      return { answer: await pending.decision, replayed: true };
    }
    const recalled = this.state.recall(requestId, fingerprint);
    return recalled === undefined ? undefined : { answer: recalled, replayed: true };
  }

  /** Keeps the request id in flight until its answer is durable, so a concurrent retry waits for it. */
  private async track(requestId: string, fingerprint: string, decision: Promise<Answer>): Promise<Answer> {
    this.inFlight.set(requestId, { fingerprint, decision });
    try {
      return await decision;
    } finally {
      this.inFlight.delete(requestId);
    }
  }

  private async decideDebit(item: DebitItem, fingerprint: string, maxWaitMs: number): Promise<Answer> {
    this.assertWritable();
    const slots: SlotChange[] = [];
    const requests: RequestRecord[] = [];
    let answer = this.debitNow(item, fingerprint, this.now(), false, slots, requests, maxWaitMs > 0);
    if (answer.outcome === DebitOutcome.InsufficientCredit && maxWaitMs > 0) {
      const waitStarted = this.now();
      const deadline = waitStarted + maxWaitMs;
      // Concurrent debits may take the rights that arrived first: keep asking
      // until this one fits or its deadline passes.
      for (;;) {
        const deficit = item.amount - this.state.rights(item.accountId);
        const before = this.state.rights(item.accountId);
        await this.rights.acquire(item.accountId, deficit, deadline);
        this.assertWritable();
        const stalled = this.state.rights(item.accountId) <= before;
        // Nothing came and the balance known here cannot cover it: refuse now
        // rather than wait out the deadline. Otherwise (a donor was rate-limited
        // or busy) try again shortly, until the deadline.
        const hopeless = stalled && this.state.balance(item.accountId) < item.amount;
        const lastChance = this.now() >= deadline || hopeless;
        answer = this.debitNow(item, fingerprint, this.now(), lastChance, slots, requests, !lastChance);
        if (answer.outcome !== DebitOutcome.InsufficientCredit || lastChance) break;
        if (stalled) await new Promise((r) => setTimeout(r, Math.max(0, Math.min(5, deadline - this.now()))));
      }
      this.metrics.rightsWait.observe((this.now() - waitStarted) / 1000);
    }
    if (slots.length === 0 && requests.length === 0) return answer;
    await this.committer.commit({ slots, requests });
    return answer;
  }

  /**
   * Decides one debit against the current state. `final` false means a refusal
   * may still be retried after waiting, so it is not remembered or counted yet.
   */
  private debitNow(
    item: DebitItem,
    fingerprint: string,
    nowMs: number,
    afterWait: boolean,
    slots: SlotChange[],
    requests: RequestRecord[],
    willWait = false,
    counts?: OutcomeCounts,
  ): Answer {
    const allowOverdraft = afterWait || !willWait;
    const result = this.state.debit(item.accountId, item.amount, allowOverdraft);
    const { answer } = result;
    if (answer.outcome === DebitOutcome.InsufficientCredit) {
      if (willWait) return answer;
      if (counts !== undefined) counts.insufficient++;
      else this.metrics.debitResult.insufficient.inc();
      if (result.globallyCoverable) this.metrics.falseRejections.inc();
      // A refusal changes nothing, so it is remembered locally only.
      this.state.remember(item.requestId, fingerprint, answer, nowMs);
      return answer;
    }
    for (const change of result.changes) slots.push(change);
    if (answer.outcome === DebitOutcome.ApprovedWithOverdraft) {
      const before = answer.localRights + item.amount;
      const used = before >= 0n ? item.amount - before : item.amount;
      this.metrics.overdraftUsed.inc(Number(used));
      if (counts !== undefined) counts.overdraft++;
      else this.metrics.debitResult.overdraft.inc();
    } else if (counts !== undefined) {
      counts.approved++;
    } else {
      this.metrics.debitResult.approved.inc();
    }
    this.state.remember(item.requestId, fingerprint, answer, nowMs);
    requests.push({ requestId: item.requestId, fingerprint, answer, answeredAtMs: nowMs });
    this.rights.observeDebit(item.accountId, item.amount, nowMs, answer.localRights, answer.balance);
    this.watches.notify(item.accountId);
    return answer;
  }

  private assertWritable(): void {
    if (this.closed) throw new NodeUnavailableError("node is shutting down");
    if (this.fenced) throw new NodeUnavailableError("another process writes this region's replica; this node stopped writing");
  }

  private async publish(batch: CommitBatch): Promise<void> {
    const digest = batch.partial === true ? "" : digestHex(this.state.rowDigest(this.state.self));
    const bytes = encodeDelta(this.replicas, this.state.self, batch, this.now(), digest);
    const started = process.hrtime.bigint();
    const msgId = `${this.instanceId}-${++this.publishCounter}`;
    let seq: number;
    try {
      seq = await this.log.append(this.config.region, bytes, this.ownSequence, msgId);
    } catch (error) {
      if (error instanceof WriterFencedError) {
        this.fenced = true;
        this.committer.stop();
        this.logger.error("fenced: another writer appended to this region's stream", {});
      }
      this.publishCounter--;
      throw error;
    }
    this.ownSequence = seq;
    if (digest !== "") this.ownPublishedDigest = digest;
    this.metrics.commits.inc();
    this.metrics.commitSlots.observe(batch.slots.length);
    this.metrics.commitDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
  }

  // ---- merging -------------------------------------------------------------

  private applyDelta(delta: DecodedDelta): void {
    const debitColumn = this.replicas.size;
    const fromPeer = delta.writer !== this.state.self;
    const nowMs = this.now();
    for (const slot of delta.slots) {
      const before = fromPeer && slot.column === debitColumn ? this.state.slot(slot.accountId, slot.writer, slot.column) : 0n;
      if (!this.state.merge(slot.accountId, slot.writer, slot.column, slot.value)) continue;
      if (fromPeer && slot.column === debitColumn) {
        this.rights.observePeerDebit(slot.accountId, slot.writer, slot.value - before, nowMs);
      }
      this.watches.notify(slot.accountId);
    }
    for (const request of delta.requests) {
      this.state.remember(request.requestId, request.fingerprint, request.answer, request.answeredAtMs);
    }
    for (const policy of delta.policies) {
      if (this.state.applyPolicy(policy.accountId, policy.write)) this.watches.notify(policy.accountId);
    }
  }

  // ---- reads -----------------------------------------------------------------

  balanceView(accountId: string): BalanceView {
    const nowMs = this.now();
    const regions = this.state.contributions(accountId).map((c) => {
      const follower = this.followers.get(c.replica);
      return {
        ...c,
        appliedSequence: follower?.appliedSequence ?? this.ownSequence,
        stalenessMs: follower === undefined ? 0 : Math.max(0, nowMs - follower.lastHeardMs),
      };
    });
    return {
      balance: this.state.balance(accountId),
      localRights: this.state.rights(accountId),
      regions,
      policy: this.state.policy(accountId),
    };
  }

  appliedVector(): Record<string, number> {
    const vector: Record<string, number> = { [this.config.region]: this.ownSequence };
    for (const [peer, follower] of this.followers) vector[peer] = follower.appliedSequence;
    return vector;
  }

  peerViews(): PeerView[] {
    const nowMs = this.now();
    return this.replicas.names.map((region) => {
      const follower = this.followers.get(region);
      if (follower === undefined) {
        return {
          region,
          appliedSequence: this.ownSequence,
          reportedSequence: this.ownSequence,
          pending: 0,
          lagSeconds: 0,
          converged: true,
          digest: this.ownPublishedDigest,
          lastHeardMs: 0,
        };
      }
      return {
        region,
        appliedSequence: follower.appliedSequence,
        reportedSequence: follower.reportedSequence,
        pending: follower.pending,
        lagSeconds:
          follower.pending > 0 && follower.lastPublishedAtMs > 0 ? Math.max(0, nowMs - follower.lastPublishedAtMs) / 1000 : 0,
        converged: follower.converged ?? follower.appliedSequence === 0,
        digest: digestHex(this.state.rowDigest(this.replicas.indexOf(region))),
        lastHeardMs: follower.lastHeardMs === 0 ? 0 : nowMs - follower.lastHeardMs,
      };
    });
  }

  /** Refreshes the gauges that are read, not counted. */
  refreshGauges(): void {
    this.metrics.accounts.set(this.state.accountCount);
    this.metrics.rememberedRequests.set(this.state.rememberedRequests);
    this.metrics.watchers.set(this.watches.size);
    for (const peer of this.peerViews()) {
      if (peer.region === this.config.region) continue;
      this.metrics.replicationLagSeconds.set({ peer: peer.region }, peer.lagSeconds);
      this.metrics.replicationPending.set({ peer: peer.region }, peer.pending);
      this.metrics.appliedSequence.set({ peer: peer.region }, peer.appliedSequence);
      this.metrics.converged.set({ peer: peer.region }, peer.converged ? 1 : 0);
      this.metrics.peerLastHeard.set({ peer: peer.region }, peer.lastHeardMs / 1000);
      const follower = this.followers.get(peer.region);
      const reported = this.reportedDivergences.get(peer.region) ?? 0;
      if (follower !== undefined && follower.divergences > reported) {
        this.metrics.divergences.inc({ peer: peer.region }, follower.divergences - reported);
        this.reportedDivergences.set(peer.region, follower.divergences);
      }
    }
    this.metrics.appliedSequence.set({ peer: this.config.region }, this.ownSequence);
  }

  get sequence(): number {
    return this.ownSequence;
  }

  /** Stops writing, waits briefly for pending commits, then closes NATS. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ready = false;
    this.rights.stop();
    this.status?.stop();
    this.watches.closeAll();
    if (this.snapshotTimer !== undefined) clearInterval(this.snapshotTimer);
    this.snapshotRequests?.unsubscribe();
    const deadline = this.now() + 5_000;
    while (this.committer.pendingSlots > 0 && this.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const follower of this.followers.values()) follower.stop();
    await this.log.close();
  }
}
