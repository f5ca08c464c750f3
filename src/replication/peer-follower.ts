// Follows one replica's stream and merges its group commits into the local
// state, keeping what convergence needs: the applied sequence (this node's
// version-vector entry for the replica), pending count, lag and whether the
// merged row's digest equals the digest the writer published at that sequence.

import { decodeDelta, type DecodedDelta } from "./delta-codec";
import { inboundContext, type InboundContext } from "./inbound";
import { isStreamNotFound, type ReplicaLog } from "./jetstream-log";
import type { ReplicaSet } from "../core/replica-set";
import type { ConsumerMessages } from "nats";

/** A status may claim at most this far beyond the stream's last sequence seen (a writer cannot outrun its stream). */
const MAX_CLAIM_AHEAD = 1_000_000;
/** How long to wait before looking again for a snapshot that covers a refused message. */
const REFUSED_RETRY_MS = 5_000;

export interface FollowerEvents {
  /** Applies a decoded delta to the state. */
  apply(delta: DecodedDelta): void;
  /**
   * The writer purged messages this node never applied: merge the writer's
   * snapshot and return the sequence to continue after.
   */
  catchUpFromSnapshot(replica: string): Promise<number>;
  /** Reports a follow failure (retried). */
  onError(error: unknown): void;
  /**
   * A message of the stream was refused (undecodable, another cluster, values
   * no writer could produce). It is not applied and the applied sequence does
   * not move past it; the follower waits for a snapshot of the writer that
   * covers it.
   */
  refused(sequence: number, reason: string): void;
}

export class PeerFollower {
  appliedSequence = 0;
  /** Highest sequence the writer is known to have published (from the consumer or its status). */
  reportedSequence = 0;
  lastPublishedAtMs = 0;
  /** Local monotonic time of the last message or status from the writer (0: never). */
  lastHeardMs = 0;
  /** Local monotonic time since which changes have been pending (0: none pending). */
  private pendingSinceMs = 0;
  /** undefined until a digest was compared. */
  converged: boolean | undefined;
  divergences = 0;
  private suspectSequence = -1;
  private recovering = false;
  private watchdog: NodeJS.Timeout | undefined;
  /** The writer's own report of how far it applied this node's stream (from its status). */
  appliedOfOurs: number | undefined;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private caughtUpWaiters: Array<() => void> = [];
  private readonly ctx: InboundContext;
  /** Highest last sequence the stream itself reported (JetStream, not a peer's claim). */
  private streamLast = 0;
  /** Sequence of a refused message the follower is stuck behind, if any. */
  refusedAt: number | undefined;
  /** The writer's stream does not exist yet: its node never started, so nothing is missing here. */
  private streamAbsent = false;

  constructor(
    readonly replica: string,
    replicas: ReplicaSet,
    private readonly log: ReplicaLog,
    private readonly events: FollowerEvents,
    private readonly now: () => number,
    maxSlotValue?: bigint,
  ) {
    this.ctx = inboundContext(replicas, maxSlotValue === undefined ? {} : { maxSlotValue });
  }

  get pending(): number {
    return Math.max(0, this.reportedSequence - this.appliedSequence);
  }

  /**
   * How long changes of the writer have been waiting here, on the local
   * monotonic clock: never the writer's clock, so a skewed peer cannot fake
   * lag or hide it.
   */
  lagMs(nowMs: number): number {
    if (this.pending === 0) {
      this.pendingSinceMs = 0;
      return 0;
    }
    if (this.pendingSinceMs === 0) this.pendingSinceMs = nowMs;
    return Math.max(0, nowMs - this.pendingSinceMs);
  }

  get caughtUp(): boolean {
    return this.pending === 0;
  }

  /** Starts following, retrying until it succeeds or the follower is stopped. */
  async start(): Promise<void> {
    this.startWatchdog();
    while (!this.stopped) {
      try {
        const bounds = await this.log.bounds(this.replica);
        this.streamLast = Math.max(this.streamLast, bounds.last);
        // The stream is the authority: a claim beyond it (a bad status) is dropped here.
        this.reportedSequence = Math.max(this.appliedSequence, bounds.last);
        // The writer purged messages this node never applied: a consumer would
        // wait for a new message to notice, so catch up from its snapshot now.
        if (bounds.first > this.appliedSequence + 1 && bounds.last > this.appliedSequence) {
          this.recoverGap(bounds.first);
          return;
        }
        const messages = await this.log.follow(this.replica, this.appliedSequence + 1, (m) => this.onMessage(m.seq, m.data, m.pending));
        this.messages = messages;
        this.streamAbsent = false;
        // A consumer that ends on its own (e.g. it gave up during a partition) is replaced.
        void messages.closed().then(() => {
          if (!this.stopped && !this.recovering && this.messages === messages) this.restart("consumer closed");
        });
        this.notifyIfCaughtUp();
        return;
      } catch (error) {
        if (isStreamNotFound(error)) {
          // Reported once: the follower looks again until the writer's node creates it.
          if (!this.streamAbsent) this.events.onError(new Error(`the stream of ${this.replica} does not exist yet; following it once its node creates it`));
          this.streamAbsent = true;
          this.notifyIfCaughtUp();
        } else {
          this.events.onError(error);
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /**
   * Anti-entropy backstop: if the writer reports changes this node has not
   * applied and nothing arrives for a while, the consumer is recreated from
   * the last applied sequence.
   */
  private startWatchdog(): void {
    if (this.watchdog !== undefined) return;
    let lastApplied = this.appliedSequence;
    let stalledChecks = 0;
    this.watchdog = setInterval(() => {
      if (this.stopped || this.recovering || this.messages === undefined) return;
      if (this.pending > 0 && this.appliedSequence === lastApplied) stalledChecks++;
      else stalledChecks = 0;
      lastApplied = this.appliedSequence;
      if (stalledChecks >= 2) {
        stalledChecks = 0;
        this.restart(`no progress with ${this.pending} pending`);
      }
    }, 1_500);
    this.watchdog.unref();
  }

  private restart(reason: string): void {
    this.events.onError(new Error(`following ${this.replica} again: ${reason}`));
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
    void this.start();
  }

  /** Resolves when the follower has applied everything known, or after `timeoutMs`. */
  async waitCaughtUp(timeoutMs: number): Promise<boolean> {
    if (this.caughtUp && (this.messages !== undefined || this.streamAbsent)) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.caughtUpWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** A status broadcast from the writer: its newest sequence and digest. */
  observeStatus(ownSequence: number, ownDigest: string, appliedOfOurs?: number): void {
    if (appliedOfOurs !== undefined) this.appliedOfOurs = appliedOfOurs;
    this.lastHeardMs = this.now();
    if (ownSequence > Math.max(this.streamLast, this.appliedSequence) + MAX_CLAIM_AHEAD) return;
    this.reportedSequence = Math.max(this.reportedSequence, ownSequence);
    if (ownSequence === this.appliedSequence && ownDigest !== "") this.compareDigest(ownSequence, ownDigest);
  }

  stop(): void {
    this.stopped = true;
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.messages?.stop();
    this.messages = undefined;
  }

  /** The digest of the replica's row as held here, provided by the owner. */
  localDigest: () => string = () => "";

  private onMessage(seq: number, data: Uint8Array, pending: number): void {
    if (seq <= this.appliedSequence || this.recovering) return;
    if (seq > this.appliedSequence + 1) {
      this.recoverGap(seq);
      return;
    }
    const decoded = decodeDelta(data, { ...this.ctx, expectedWriter: this.replica });
    if (!decoded.ok) {
      // Not applied and not skipped: the writer's next snapshot covering it lets us go on.
      this.refusedAt = seq;
      this.events.refused(seq, decoded.reason);
      this.recoverGap(seq + 1, REFUSED_RETRY_MS);
      return;
    }
    const delta = decoded.value;
    try {
      this.events.apply(delta);
    } catch (error) {
      this.events.onError(new Error(`message ${seq} of ${this.replica} could not be applied: ${String(error)}`));
    }
    this.refusedAt = undefined;
    this.appliedSequence = seq;
    this.streamLast = Math.max(this.streamLast, seq + pending);
    this.reportedSequence = Math.max(this.reportedSequence, seq + pending);
    this.lastPublishedAtMs = delta.publishedAtMs;
    this.lastHeardMs = this.now();
    if (delta.rowDigest !== "") this.compareDigest(seq, delta.rowDigest);
    this.notifyIfCaughtUp();
  }

  /**
   * Compares this node's copy of the row with the writer's digest at the same
   * sequence. A copy may briefly run ahead of the stream (rights replies carry
   * newer values), so a mismatch counts as divergence only when it is seen
   * twice at the same sequence (the writer repeats its status while idle).
   */
  /** Messages before `seq` were purged (covered by a snapshot): load it, then follow again. */
  private recoverGap(seq: number, retryMs = 500): void {
    this.recovering = true;
    this.messages?.stop();
    this.messages = undefined;
    void (async () => {
      for (;;) {
        if (this.stopped) return;
        try {
          const coveredUpTo = await this.events.catchUpFromSnapshot(this.replica);
          if (coveredUpTo + 1 < seq) throw new Error(`snapshot of ${this.replica} covers ${coveredUpTo}, stream starts at ${seq}`);
          this.appliedSequence = Math.max(this.appliedSequence, coveredUpTo);
          this.refusedAt = undefined;
          break;
        } catch (error) {
          this.events.onError(error);
          await new Promise((r) => setTimeout(r, retryMs));
        }
      }
      this.recovering = false;
      await this.start();
    })();
  }

  private compareDigest(sequence: number, published: string): void {
    const local = this.localDigest();
    if (local === published) {
      this.converged = true;
      this.suspectSequence = -1;
      return;
    }
    if (this.suspectSequence === sequence) {
      if (this.converged !== false) this.divergences++;
      this.converged = false;
      return;
    }
    this.suspectSequence = sequence;
  }

  private notifyIfCaughtUp(): void {
    if (!this.caughtUp || this.caughtUpWaiters.length === 0) return;
    const waiters = this.caughtUpWaiters;
    this.caughtUpWaiters = [];
    for (const w of waiters) w();
  }
}
