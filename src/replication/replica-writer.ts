// The only writer of this replica's stream: group commit, encoding and
// fencing. An append names the sequence it expects to follow, so a second
// process writing the same replica fences this one; after a fence or stop
// every waiting call ends at once (nothing of theirs was acknowledged).

import type { ReplicaSet } from "../core/replica-set";
import type { CommitBatch, DurableWrite } from "../core/durable-write";
import type { SlotChange } from "../core/replica-state";
import { encodeDelta } from "./delta-codec";
import { findStrayMessages, type StreamReader } from "./stray-messages";

const EMPTY_BATCH: CommitBatch = { slots: [], requests: [], policies: [] };

/** A second writer appended to this replica's stream. */
export class WriterFencedError extends Error {
  override readonly name = "WriterFencedError";
  constructor(
    readonly stream: string,
    options?: { cause?: unknown },
  ) {
    super(`another writer appended to ${stream}; this node must stop writing`, options);
  }
}

/** The part of the durable log a writer needs (JetStream in production, a fake in tests). */
export interface StreamAppender extends StreamReader {
  /** Appends if the stream's last sequence is `expectedLastSeq`; returns the new sequence. */
  append(replica: string, data: Uint8Array, expectedLastSeq: number, msgId: string): Promise<number>;
  /** Largest message the server accepts. */
  readonly maxPayload: number;
}

export interface WriterHooks {
  /** The row digest of this replica now (published with each message). */
  rowDigest(): string;
  /** Other writers' non-zero slots of these accounts as held now (the message's causal context). */
  context?(accountIds: ReadonlySet<string>): SlotChange[];
  /** Called once when another writer fenced this one. */
  onFenced(error: WriterFencedError): void;
  onCommitted(slots: number, seconds: number): void;
  /** Messages this node did not write were found in its stream and stepped over. */
  onForeign?(sequences: readonly number[], reason: string): void;
  onError(error: unknown): void;
}

export interface ReplicaWriterOptions {
  readonly region: string;
  readonly replicas: ReplicaSet;
  /** Sequence of the last message of the stream at start (recovered). */
  readonly startSequence: number;
  readonly maxBatchSlots: number;
  readonly retryDelayMs: number;
  /** Distinguishes this process's message ids from an earlier one's (dedupe window). */
  readonly instanceId: string;
  readonly now: () => number;
}

export class ReplicaWriter {
  private readonly committer: GroupCommitter;
  private ownSequence: number;
  private ownDigest = "";
  private published = 0;
  private fenced = false;

  constructor(
    private readonly log: StreamAppender,
    private readonly options: ReplicaWriterOptions,
    private readonly hooks: WriterHooks,
  ) {
    this.ownSequence = options.startSequence;
    this.ownDigest = hooks.rowDigest();
    this.committer = new GroupCommitter(
      (batch) => this.publish(batch),
      { maxBatchSlots: options.maxBatchSlots, retryDelayMs: options.retryDelayMs },
      (error) => hooks.onError(error),
    );
  }

  /** Sequence of the last durable message of this replica. */
  get sequence(): number {
    return this.ownSequence;
  }

  /** Row digest at `sequence`, as published. */
  get publishedDigest(): string {
    return this.ownDigest;
  }

  get health(): CommitHealth {
    return this.committer.health;
  }

  /** True once another writer's append refused one of this writer's: it must not serve writes. */
  get fencedOut(): boolean {
    return this.fenced;
  }

  get idle(): boolean {
    return this.committer.idle;
  }

  /** Resolves with the sequence once `write` is durable. */
  commit(write: DurableWrite): Promise<number> {
    return this.committer.commit(write);
  }

  /** Everything committed before is durable; the resolved sequence covers exactly that and nothing later. */
  barrier(): Promise<number> {
    // Idle: the last durable message is the stream's, recovered ones included
    // (the committer only knows the sequences it published itself).
    if (this.committer.idle) return Promise.resolve(this.ownSequence);
    return this.committer.barrier();
  }

  /** Ends every waiter with `reason`; later commits fail with it at once. */
  stop(reason: Error): void {
    this.committer.stop(reason);
  }

  /** Steps over stray messages after ownSequence, if every one is; true when it did. */
  private async stepOverForeign(): Promise<boolean> {
    const stray = await findStrayMessages(this.log, this.options.region, this.options.replicas, this.ownSequence);
    if (stray === undefined) return false;
    this.ownSequence = stray.sequences[stray.sequences.length - 1]!;
    this.hooks.onForeign?.(stray.sequences, stray.reason);
    return true;
  }

  /**
   * The takeover's fence (DESIGN §12): appends an empty message with expected
   * last sequence = the tail this node replayed (`startSequence`), before it
   * serves. Once it is stored, any append of a writer that had not seen it is
   * refused; if something was appended after the replay, this writer is the
   * one fenced (WriterFencedError, onFenced) and must not serve. An empty
   * delta needs no new message type: every reader applies it as a no-op.
   * Call it before the first commit. Returns the fence's sequence.
   */
  async fence(): Promise<number> {
    for (;;) {
      try {
        return await this.append(EMPTY_BATCH);
      } catch (error) {
        // Stray messages (not this replica's deltas) were stepped over: fence after them.
        if (error instanceof WriterFencedError && !this.fenced) continue;
        throw error;
      }
    }
  }

  private async publish(plain: CommitBatch): Promise<number> {
    // Only a barrier alone makes an empty batch: what it covers is durable at
    // the last message already, and an empty message would only lengthen the stream.
    if (
      plain.slots.length === 0 &&
      plain.requests.length === 0 &&
      plain.policies.length === 0 &&
      (plain.holds?.length ?? 0) === 0 &&
      (plain.refunds?.length ?? 0) === 0
    ) {
      return this.ownSequence;
    }
    return this.append(plain);
  }

  private async append(plain: CommitBatch): Promise<number> {
    const batch: CommitBatch =
      this.hooks.context === undefined || plain.slots.length === 0
        ? plain
        : { ...plain, context: this.hooks.context(new Set(plain.slots.map((s) => s.accountId))) };
    const digest = this.hooks.rowDigest();
    let bytes: Uint8Array;
    try {
      bytes = encodeDelta(this.options.replicas, this.options.replicas.indexOf(this.options.region), batch, this.options.now(), digest);
    } catch (error) {
      throw new PoisonWriteError(`cannot encode the change: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    if (bytes.length > this.log.maxPayload) {
      throw new PoisonWriteError(
        `the change is ${bytes.length} bytes, above the stream's ${this.log.maxPayload}-byte message limit; send fewer items per call`,
      );
    }
    const started = process.hrtime.bigint();
    const msgId = `${this.options.instanceId}-${this.published + 1}`;
    let sequence: number;
    try {
      sequence = await this.log.append(this.options.region, bytes, this.ownSequence, msgId);
    } catch (error) {
      if (error instanceof WriterFencedError && !this.fenced && (await this.stepOverForeign())) throw error;
      if (error instanceof WriterFencedError && !this.fenced) {
        this.fenced = true;
        this.committer.stop(error);
        this.hooks.onFenced(error);
      }
      throw error;
    }
    this.published++;
    this.ownSequence = sequence;
    this.ownDigest = digest;
    this.hooks.onCommitted(batch.slots.length, Number(process.hrtime.bigint() - started) / 1e9);
    return sequence;
  }
}

// Writes from many concurrent calls are coalesced into one publish; every
// waiting call is answered when that publish is durable. While a publish is in
// flight the next batch accumulates, so batches grow with load and durability
// costs latency, not throughput. A write is never split: its slots and request
// records travel in one message, so recovery never restores a change without
// the record that makes its retry a replay. A failed publish is retried (slot
// values are absolute) unless it can never be published (a poison write): then
// each write is published alone and only the poisoned ones fail. stop() ends
// every waiter at once.

export interface GroupCommitOptions {
  /** Most slot changes in one publish (a single larger write is published alone). */
  readonly maxBatchSlots: number;
  /** Pause before retrying a failed publish. */
  readonly retryDelayMs: number;
}

/** Publishes one batch; resolves with the sequence it was stored at. */
export type BatchPublisher = (batch: CommitBatch) => Promise<number>;

/** A write that can never be published (too large, or values that cannot be encoded). */
export class PoisonWriteError extends Error {
  override readonly name = "PoisonWriteError";
}

interface Queued {
  readonly write: DurableWrite;
  /** Ends the current message: a snapshot needs to know exactly what it covers. */
  readonly cut: boolean;
  resolve(sequence: number): void;
  reject(error: unknown): void;
}

export interface CommitHealth {
  /** Publishes that failed in a row (0 once one succeeds). */
  readonly consecutiveFailures: number;
  readonly lastError: string | undefined;
}

export class GroupCommitter {
  private queue: Queued[] = [];
  /** The writes of the message being published. */
  private publishingGroup: Queued[] = [];
  private publishing = false;
  private scheduled = false;
  private stoppedWith: Error | undefined;
  private failures = 0;
  private lastError: string | undefined;
  private lastSequence = 0;

  constructor(
    private readonly publish: BatchPublisher,
    private readonly options: GroupCommitOptions,
    private readonly onError: (error: unknown) => void,
  ) {}

  get pendingWrites(): number {
    return this.queue.length;
  }

  get idle(): boolean {
    return !this.publishing && !this.scheduled && this.queue.length === 0;
  }

  get health(): CommitHealth {
    return { consecutiveFailures: this.failures, lastError: this.lastError };
  }

  /** Resolves with the stream sequence once `write` is durable; rejects if it never can be. */
  commit(write: DurableWrite): Promise<number> {
    return this.enqueue(write, false);
  }

  /**
   * Resolves with the sequence of the last message holding a write committed
   * before this call, once it is durable. The message closes there: writes
   * committed afterwards go into a later message.
   */
  barrier(): Promise<number> {
    if (this.idle) return Promise.resolve(this.lastSequence);
    return this.enqueue({ slots: [] }, true);
  }

  /** Stops publishing; every waiting call ends with `reason` (nothing of theirs was acknowledged). */
  stop(reason: Error): void {
    if (this.stoppedWith !== undefined) return;
    this.stoppedWith = reason;
    const waiting = [...this.publishingGroup, ...this.queue];
    this.queue = [];
    this.publishingGroup = [];
    for (const q of waiting) q.reject(reason);
  }

  private enqueue(write: DurableWrite, cut: boolean): Promise<number> {
    if (this.stoppedWith !== undefined) return Promise.reject(this.stoppedWith);
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ write, cut, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.publishing || this.scheduled || this.stoppedWith !== undefined) return;
    this.scheduled = true;
    // setImmediate lets every call arriving in the same I/O turn join the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Whole writes, in order, up to the slot budget or a cut. */
  private take(): Queued[] {
    let slots = 0;
    let count = 0;
    for (const q of this.queue) {
      if (count > 0 && slots + q.write.slots.length > this.options.maxBatchSlots) break;
      slots += q.write.slots.length;
      count++;
      if (q.cut) break;
    }
    return this.queue.splice(0, count);
  }

  private async flush(): Promise<void> {
    if (this.publishing) return;
    this.publishing = true;
    try {
      while (this.stoppedWith === undefined && this.queue.length > 0) {
        const group = this.take();
        this.publishingGroup = group;
        await this.publishGroup(group, batchOf(group.map((q) => q.write)));
        this.publishingGroup = [];
      }
    } finally {
      this.publishing = false;
    }
  }

  /** Publishes until durable; a poison batch is retried write by write so only the poisoned fail. */
  private async publishGroup(group: Queued[], batch: CommitBatch): Promise<void> {
    for (;;) {
      if (this.stoppedWith !== undefined) {
        for (const q of group) q.reject(this.stoppedWith);
        return;
      }
      try {
        const sequence = await this.publish(batch);
        this.failures = 0;
        this.lastError = undefined;
        this.lastSequence = sequence;
        for (const q of group) q.resolve(sequence);
        return;
      } catch (error) {
        if (error instanceof PoisonWriteError) {
          if (group.length === 1) {
            group[0]?.reject(error);
            return;
          }
          for (const q of group) await this.publishGroup([q], batchOf([q.write]));
          return;
        }
        this.failures++;
        this.lastError = error instanceof Error ? error.message : String(error);
        this.onError(error);
        await new Promise((r) => setTimeout(r, this.options.retryDelayMs));
      }
    }
  }
}

/** One message: the writes' slots (latest value of each slot wins) with all their records. */
function batchOf(writes: readonly DurableWrite[]): CommitBatch {
  const merged = new Map<string, SlotChange>();
  const requests: CommitBatch["requests"] = [];
  const policies: CommitBatch["policies"] = [];
  const holds: NonNullable<CommitBatch["holds"]> = [];
  const refunds: NonNullable<CommitBatch["refunds"]> = [];
  for (const write of writes) {
    for (const slot of write.slots) {
      const key = `${slot.writer}\u0000${slot.column}\u0000${slot.accountId}`;
      const current = merged.get(key);
      if (current === undefined || current.value < slot.value) merged.set(key, slot);
    }
    if (write.requests !== undefined) for (const r of write.requests) requests.push(r);
    if (write.policy !== undefined) policies.push(write.policy);
    // Records are absolute and only move forward, so later ones in the batch win on replay.
    if (write.holds !== undefined) for (const h of write.holds) holds.push(h);
    if (write.refunds !== undefined) for (const t of write.refunds) refunds.push(t);
  }
  return holds.length === 0 && refunds.length === 0
    ? { slots: [...merged.values()], requests, policies }
    : { slots: [...merged.values()], requests, policies, holds, refunds };
}
