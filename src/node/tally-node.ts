// A regional Tally node: the write rules (core WritePath) over the replica
// state, made durable by the ReplicaWriter, with rights moved by the broker
// and peers merged by the PeerSet. gRPC handlers call only this class; the
// connections it uses are opened and handed in by src/app.

import { DebitOutcome, ReplicaState, type Answer } from "../core/replica-state";
import { ReplicaSet } from "../core/replica-set";
import type { Policy } from "../core/policy";
import { mergeChanges } from "../core/merge-changes";
import { lotRowId, rowOwner } from "../core/lot-rows";
import type { LotTerms } from "../core/lots";
import type { RequestTime } from "../core/request-log";
import { performance } from "node:perf_hooks";
import { debitFingerprint, grantFingerprint, WritePath, type Admission, type DebitItem, type DebitStep } from "../core/write-path";
import type { DecodedDelta } from "../replication/delta-codec";
import type { ReplicaWriter, WriterFencedError } from "../replication/replica-writer";
import type { SnapshotHeaderValue } from "../replication/snapshot-decoder";
import type { TallyMetrics } from "../metrics/tally-metrics";
import { BalanceWatchHub } from "./balance-watch";
import type { Logger } from "./logger";
import type { NodeConfig } from "./node-config";
import type { NodeTransports } from "./node-transports";
import { NodeUnavailableError } from "./node-errors";
import type { PeerSet } from "./peer-set";
import { applySnapshotChunk, recoverOwnRow } from "./recovery";
import type { RightsBroker } from "./rights-broker";
import type { Snapshotter } from "./snapshotter";
import { createPeerSet, createRightsBroker, createSnapshotter, createWriter } from "./node-parts";
import { NodeViews } from "./node-views";
import { WriterRole, type WriterRoleState } from "./writer-role";
import { HoldDesk } from "./hold-desk";

export type { DebitItem } from "../core/write-path";

/** The account a row belongs to (a lot row's account, or the row itself). */
function accountOf(rowId: string): string {
  return rowOwner(rowId)?.accountId ?? rowId;
}

const SHUTTING_DOWN = "node is shutting down";
export type { NodeTransports } from "./node-transports";

export interface Decision {
  readonly answer: Answer;
  readonly replayed: boolean;
}

export class TallyNode {
  readonly state: ReplicaState;
  readonly writes: WritePath;
  readonly watches: BalanceWatchHub;
  readonly peers: PeerSet;
  readonly rights: RightsBroker;
  readonly views: NodeViews;
  /** Holds and refunds (admission, durability, the timeout sweep). */
  readonly holds: HoldDesk;
  private writer: ReplicaWriter | undefined;
  /** With several nodes per region: standby, writer or deposed (undefined: the single writer). */
  private role: WriterRole | undefined;
  private snapshotter: Snapshotter | undefined;
  /** Stops of the parts only the writer runs (status beacon, snapshot requests). */
  private readonly writerStops: Array<() => void> = [];
  /** Another process appended to this region's stream: this node never writes or snapshots again. */
  private fenced = false;
  private unavailable: string | undefined = "node is starting";
  ready = false;
  /**
   * Resolves with the reason when this node, a writer among several of its
   * region, is deposed. Its memory may hold decisions whose append was
   * refused, so it must not stand by on it: `tally serve` exits and its
   * supervisor starts it again as a standby from the durable state.
   */
  readonly deposed: Promise<string>;
  private resolveDeposed: (reason: string) => void = () => undefined;

  private constructor(
    readonly config: NodeConfig,
    readonly transports: NodeTransports,
    readonly metrics: TallyMetrics,
    readonly logger: Logger,
    readonly now: () => number,
    /** Local monotonic time: retention of request ids, waits and demand rates; never jumps. */
    readonly monotonic: () => number,
  ) {
    this.deposed = new Promise((resolve) => (this.resolveDeposed = resolve));
    this.state = new ReplicaState({
      replicas: new ReplicaSet(config.regions),
      self: config.region,
      defaultPolicy: config.defaultPolicy,
      requestLog: { retentionMs: config.requestRetentionMs, maxEntries: config.maxRememberedRequests },
      lotGuardMs: config.lotGuardMs,
    });
    this.writes = new WritePath(this.state);
    this.watches = new BalanceWatchHub({
      limits: { maxPerNode: config.maxWatchers, maxPerAccount: config.maxWatchersPerAccount },
      onListenerError: (error) => logger.error("balance watcher failed", { error: error instanceof Error ? error.message : String(error) }),
    });
    this.peers = createPeerSet(this, {
      apply: (delta) => this.applyDelta(delta),
      catchUpFromSnapshot: (replica) => this.catchUpFromSnapshot(replica),
    });
    const isWritable = (): boolean => this.ready && this.unavailable === undefined;
    this.rights = createRightsBroker(this, {
      region: config.region,
      state: this.state,
      watches: this.watches,
      get writable() {
        return isWritable();
      },
      commit: (write) => this.durable().commit(write),
      wallClock: () => this.now(),
    });
    this.views = new NodeViews(this);
    this.holds = new HoldDesk({
      region: config.region,
      state: this.state,
      writes: this.writes,
      metrics,
      logger,
      requestRetentionMs: config.requestRetentionMs,
      admit: (requestId, fingerprint) => this.admit(requestId, fingerprint),
      commit: (write) => this.durable().commit(write),
      barrier: () => this.durable().barrier(),
      time: () => this.time(),
      monotonic: () => this.monotonic(),
      get writable() {
        return isWritable();
      },
      notify: (accountId) => this.watches.notify(accountId),
      acquireRights: (accountId, deficit, deadlineMs) => this.rights.acquire(accountId, deficit, deadlineMs),
      demand: (accountId, amount, approved) => {
        if (approved) this.rights.afterLocalDebit(accountId, amount, this.monotonic());
        else this.rights.afterShortfall(accountId, amount);
      },
    });
  }

  /** Recovers this replica's own row from its stream, follows the peers, then serves. */
  static async start(
    config: NodeConfig,
    transports: NodeTransports,
    metrics: TallyMetrics,
    logger: Logger,
    now: () => number = Date.now,
    monotonic: () => number = () => performance.now(),
  ): Promise<TallyNode> {
    const node = new TallyNode(config, transports, metrics, logger, now, monotonic);
    await node.recover();
    return node;
  }

  get region(): string {
    return this.config.region;
  }

  /** Sequence of this replica's last durable message. */
  get sequence(): number {
    return this.writer?.sequence ?? 0;
  }

  get publishedDigest(): string {
    return this.writer?.publishedDigest ?? "";
  }

  /** Why writes are refused now, or undefined when they are accepted. */
  get unavailableReason(): string | undefined {
    if (this.unavailable !== undefined) return this.unavailable;
    const health = this.writer?.health;
    if (health !== undefined && health.consecutiveFailures >= 3) return `commits are failing: ${health.lastError ?? "unknown error"}`;
    return undefined;
  }

  /** True while this node writes its region's replica (health: who writes). */
  get writing(): boolean {
    if (this.role !== undefined) return this.role.writing && this.unavailable === undefined;
    return this.writer !== undefined && this.unavailable === undefined;
  }

  /** Standby, writer or deposed with several nodes per region; undefined for the single writer. */
  get writerRole(): WriterRoleState | undefined {
    return this.role?.state;
  }

  /** The node holding the region's writer lease as this node last knew it; undefined with a single node. */
  get leaseHolder(): string | undefined {
    return this.role?.leaseHolder;
  }

  private async recover(): Promise<void> {
    const { config, transports, logger } = this;
    const recovered = await this.recoverOwnRow();
    // A fresh snapshot lets peers that refused the stray messages move past them.
    const onForeign = (): void => void this.takeSnapshot().catch((error: unknown) => logger.warn("snapshot after stray messages failed", { error: String(error) }));
    if (config.writerLease === undefined) {
      this.writer = createWriter(this, recovered.sequence, (error) => this.fence(error), onForeign);
      await this.startPeers(recovered.header);
      this.startWriting(this.writer, recovered.header);
      return;
    }
    if (transports.openLease === undefined) throw new Error("a writer lease needs NATS KV (transports.openLease)");
    const lease = await transports.openLease(config.writerLease);
    await this.startPeers(recovered.header);
    this.role = new WriterRole({
      region: config.region,
      replicas: this.state.replicas,
      log: transports.log,
      lease,
      fromSequence: recovered.sequence,
      apply: (delta) => this.applyDelta(delta),
      recoverOwnRow: async () => (await this.recoverOwnRow()).sequence,
      createWriter: (tail, onFenced) => createWriter(this, tail, onFenced, onForeign),
      onWriting: (writer) => {
        this.writer = writer;
        this.startWriting(writer, undefined);
      },
      onDeposed: (reason) => {
        if (this.unavailable === SHUTTING_DOWN) return;
        this.unavailable = reason;
        this.stopWriting();
        this.resolveDeposed(reason);
      },
      standbyPollMs: config.standbyPollMs,
      logger,
    });
    // Reads are served from here on; writes wait for the lease.
    this.unavailable = "standby: another node of this region writes (this node takes over when it holds the writer lease)";
    this.ready = true;
    this.role.start();
  }

  private recoverOwnRow(): ReturnType<typeof recoverOwnRow> {
    return recoverOwnRow({
      region: this.config.region,
      state: this.state,
      log: this.transports.log,
      store: this.transports.snapshots,
      apply: (delta) => this.applyDelta(delta),
      logger: this.logger,
      clock: this,
    });
  }

  private async startPeers(header: SnapshotHeaderValue | undefined): Promise<void> {
    const caughtUp = await this.peers.start(header?.applied ?? {}, this.config.catchUpTimeoutMs);
    if (!caughtUp) this.logger.warn("serving before every peer was applied (peer unreachable?)");
  }

  /** The writer-only parts: status broadcast, rights, snapshots; then writes are accepted. */
  private startWriting(writer: ReplicaWriter, recoveredHeader: SnapshotHeaderValue | undefined): void {
    if (this.unavailable === SHUTTING_DOWN) return;
    const { transports } = this;
    this.writerStops.push(
      transports.startStatus(
        () => ({ ownSequence: this.sequence, ownDigest: this.publishedDigest, applied: this.views.appliedVector() }),
        (replica, status) => this.peers.observe(replica, status),
      ),
    );
    this.rights.start();
    this.snapshotter = createSnapshotter(this, writer, this.peers);
    this.snapshotter.recovered = recoveredHeader;
    this.snapshotter.start();
    this.writerStops.push(transports.serveSnapshotRequests(() => this.currentSnapshot()));
    this.unavailable = undefined;
    this.ready = true;
    // Holds that timed out while the node was down expire at once, then on every tick.
    const sweep = (): void => {
      this.holds.sweep().catch((error: unknown) => this.logger.warn("hold timeout sweep failed", { error: String(error) }));
    };
    sweep();
    const timer = setInterval(sweep, Math.max(1, this.config.holdSweepIntervalMs));
    timer.unref();
    // A writer-only part: a standby or deposed node never expires holds (the writer does, through its stream).
    this.writerStops.push(() => clearInterval(timer));
  }

  /**
   * A deposed writer stops every part that writes or speaks for the region:
   * no status beside the new writer's, no rights given, and above all no
   * snapshot (it would replace the new writer's and purge under it).
   */
  private stopWriting(): void {
    this.rights.stop();
    for (const stop of this.writerStops.splice(0)) stop();
    void this.snapshotter?.stop();
  }

  private durable(): ReplicaWriter {
    const writer = this.writer;
    if (writer === undefined) throw new NodeUnavailableError("node is starting");
    return writer;
  }

  private catchUpFromSnapshot = async (replica: string): Promise<number> => {
    const header = await this.transports.snapshots.read(replica, (chunk) => applySnapshotChunk(this.state, chunk, this, "peer"));
    if (header === undefined) throw new Error(`no snapshot of ${replica} to cover purged messages`);
    this.logger.info("caught up from a peer snapshot", { peer: replica, replayFrom: header.replayFrom });
    return header.replayFrom - 1;
  };

  /** Writes a full-state snapshot now (or returns the current one when nothing changed). */
  takeSnapshot(): Promise<SnapshotHeaderValue> {
    return this.snapshotting((snapshotter) => snapshotter.take());
  }

  /**
   * As takeSnapshot, with `takenAtMs` raised to when the state was last found
   * unchanged since (Snapshotter.current): what settlement's cut is told.
   */
  currentSnapshot(): Promise<SnapshotHeaderValue> {
    return this.snapshotting((snapshotter) => snapshotter.current());
  }

  private snapshotting(take: (snapshotter: Snapshotter) => Promise<SnapshotHeaderValue>): Promise<SnapshotHeaderValue> {
    if (this.snapshotter === undefined) return Promise.reject(new NodeUnavailableError("node is starting"));
    // Only the writer snapshots its region (a deposed one would replace the new writer's snapshot).
    if (this.fenced || (this.role !== undefined && !this.role.writing)) return Promise.reject(new NodeUnavailableError(this.unavailable ?? "not the writer of this region"));
    return take(this.snapshotter);
  }

  // A request is admitted in one synchronous step (see WritePath.admit); a
  // fenced or stopping node refuses before it, so a retry never replays an
  // answer that was not made durable.
  private admit(requestId: string, fingerprint: string): Admission {
    this.assertWritable();
    return this.writes.admit(requestId, fingerprint, this.monotonic());
  }

  async debit(item: DebitItem, maxWaitMs: number): Promise<Decision> {
    const admission = this.admit(item.requestId, debitFingerprint(item.accountId, item.amount));
    if (admission.kind === "replay") return { answer: admission.answer, replayed: true };
    if (admission.kind === "joined") return { answer: await admission.decision, replayed: true };
    try {
      const answer = await this.decideDebit(item, maxWaitMs);
      admission.ticket.resolve(answer);
      return { answer, replayed: false };
    } catch (error) {
      admission.ticket.reject(error);
      throw error;
    }
  }

  /** Decides debits in order without waiting for rights; one durable commit for the batch. */
  async debitBatch(items: readonly DebitItem[]): Promise<Decision[]> {
    this.assertWritable();
    const time = this.time();
    this.state.expireRequests(time.nowMs);
    const batch = this.writes.debitBatch(items, this.writes.admitBatch(items, time.nowMs), time);
    for (const [item, step] of batch.decided) {
      this.account(item, step, time.nowMs);
      if (step.answer.outcome === DebitOutcome.InsufficientCredit) this.rights.afterShortfall(item.accountId, item.amount);
    }
    try {
      if (batch.write.slots.length > 0) await this.durable().commit(batch.write);
    } catch (error) {
      for (const [ticket] of batch.tickets) ticket.reject(error);
      throw error;
    }
    for (const [ticket, answer] of batch.tickets) ticket.resolve(answer);
    // Decided items are committed; the rest of the batch is refused with this error.
    if (batch.failure !== undefined) throw batch.failure;
    return batch.results();
  }

  /** Grants into the account's base lot, or with `lot` into the lot with those terms. */
  async grant(accountId: string, amount: bigint, requestId: string, lot?: LotTerms): Promise<Decision> {
    const rowId = lot === undefined ? accountId : lotRowId(accountId, lot);
    const admission = this.admit(requestId, grantFingerprint(accountId, amount, rowId));
    if (admission.kind === "replay") return { answer: admission.answer, replayed: true };
    if (admission.kind === "joined") return { answer: await admission.decision, replayed: true };
    try {
      const granted = this.writes.grant({ accountId, amount, requestId, time: this.time(), spread: this.config.spreadGrants, lot });
      this.watches.notify(accountId);
      await this.durable().commit(granted.write);
      admission.ticket.resolve(granted.answer);
      return { answer: granted.answer, replayed: false };
    } catch (error) {
      admission.ticket.reject(error);
      throw error;
    }
  }

  async setPolicy(accountId: string, policy: Policy): Promise<Policy> {
    this.assertWritable();
    // Stamped above the write it replaces (a hybrid logical clock), so a later write wins even from a clock behind.
    const write = this.state.writePolicy(accountId, policy, this.now());
    await this.durable().commit({ slots: [], policy: { accountId, write } });
    this.watches.notify(accountId);
    return this.state.policy(accountId);
  }

  /** Moves rights from this region to another (manual). Durable on return. */
  async transfer(accountId: string, toRegion: string, amount: bigint): Promise<bigint> {
    this.assertWritable();
    // An account with lots gives from its spendable lots (by this node's clock), as a donor does.
    const clockMs = this.time().stampMs;
    const changes = this.state.transfer(accountId, this.state.replicas.indexOf(toRegion), amount, clockMs);
    await this.durable().commit({ slots: changes });
    return this.state.spendableRights(accountId, clockMs);
  }

  private async decideDebit(item: DebitItem, maxWaitMs: number): Promise<Answer> {
    const fingerprint = debitFingerprint(item.accountId, item.amount);
    let step: DebitStep = this.writes.debit({ item, fingerprint, time: this.time(), final: maxWaitMs <= 0 });
    if (step.kind === "short") {
      const waitStarted = this.monotonic();
      const deadline = waitStarted + maxWaitMs;
      // Concurrent debits may take the rights that arrived first: keep asking
      // until this one fits or its deadline passes.
      while (step.kind === "short") {
        const before = this.state.spendableRights(item.accountId, this.now());
        await this.rights.acquire(item.accountId, item.amount - before, deadline);
        // At the deadline, let replies already received be read first (timers run before I/O in a loop turn).
        if (this.monotonic() >= deadline) await new Promise((r) => setImmediate(r));
        this.assertWritable();
        const stalled = this.state.spendableRights(item.accountId, this.now()) <= before;
        // Nothing came and the balance known here cannot cover it: refuse now
        // rather than wait out the deadline.
        const hopeless = stalled && this.state.accountBalance(item.accountId, this.now()) < item.amount;
        step = this.writes.debit({ item, fingerprint, time: this.time(), final: this.monotonic() >= deadline || hopeless });
        if (step.kind === "short" && stalled) await new Promise((r) => setTimeout(r, Math.max(0, Math.min(5, deadline - this.monotonic()))));
      }
      this.metrics.rightsWait.observe((this.monotonic() - waitStarted) / 1000);
    }
    this.account(item, step, this.monotonic());
    if (step.write !== undefined) await this.durable().commit(step.write);
    return step.answer;
  }

  /** Metrics, watchers and demand for one decided debit. */
  private account(item: DebitItem, step: Extract<DebitStep, { kind: "decided" }>, nowMs: number): void {
    const { metrics } = this;
    switch (step.answer.outcome) {
      case DebitOutcome.InsufficientCredit:
        metrics.debitResult.insufficient.inc();
        // False: the cluster held enough, as this node's view or the donors' replies know.
        if (step.falseRejection || this.rights.clusterHeld(item.accountId, item.amount)) metrics.falseRejections.inc();
        return;
      case DebitOutcome.ApprovedWithOverdraft:
        metrics.debitResult.overdraft.inc();
        metrics.overdraftUsed.inc(Number(step.overdraftUsed));
        break;
      case DebitOutcome.Approved:
        metrics.debitResult.approved.inc();
        break;
    }
    this.rights.afterLocalDebit(item.accountId, item.amount, nowMs);
    this.watches.notify(item.accountId);
  }

  private time(): RequestTime {
    return { stampMs: this.now(), nowMs: this.monotonic() };
  }

  private assertWritable(): void {
    if (this.unavailable !== undefined) throw new NodeUnavailableError(this.unavailable);
  }

  private fence(error: WriterFencedError): void {
    this.unavailable = "another process writes this region's replica; this node stopped writing";
    this.fenced = true;
    this.logger.error("fenced: another writer appended to this region's stream", { stream: error.stream });
    // As a deposed writer: above all no snapshot, which would replace the other writer's and purge its stream under it.
    this.stopWriting();
  }

  /** Merges a peer's (or, at recovery, this replica's own) group commit. */
  private applyDelta(delta: DecodedDelta): void {
    const nowMs = this.monotonic();
    mergeChanges(this.state, delta, nowMs, {
      // Watchers and demand follow the account, whichever of its lots changed.
      changed: (rowId) => this.watches.notify(accountOf(rowId)),
      peerDebited: (rowId, writer, amount) => this.rights.afterPeerDebit(accountOf(rowId), writer, amount, nowMs),
      refused: (error) => {
        this.metrics.badMessages.inc({ source: "stream" });
        this.logger.warn("replicated change refused", { writer: this.state.replicas.nameOf(delta.writer), error: String(error) });
      },
    });
  }

  /** Stops writing: every waiting call ends UNAVAILABLE at once; then closes the parts (the log is the caller's). */
  async close(): Promise<void> {
    if (this.unavailable === SHUTTING_DOWN) return;
    this.unavailable = SHUTTING_DOWN;
    this.ready = false;
    this.rights.stop();
    for (const stop of this.writerStops.splice(0)) stop();
    const snapshotEnded = this.snapshotter?.stop();
    this.watches.closeAll();
    // Commits already published get a short grace to be acknowledged; the rest end now.
    const deadline = this.now() + 2_000;
    while (this.writer !== undefined && !this.writer.idle && this.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.writer?.stop(new NodeUnavailableError("node is shutting down; the change was not acknowledged"));
    // After the writer stopped: giving the lease up lets a standby take over at once.
    await this.role?.stop();
    this.peers.stop();
    await snapshotEnded;
  }
}
