// Group commit: writes from many concurrent calls are coalesced into one
// publish; every waiting call is answered when that publish is durable. While
// a publish is in flight the next batch accumulates, so batches grow with load
// and durability costs latency, not throughput.
//
// A write is never split: its slots and its request records travel in one
// message, so recovery can never restore a change without the record that
// makes its retry a replay. A failed publish is retried (slot values are
// absolute, so a retry is idempotent) unless the batch can never be published
// (a poison write): then each write is published alone and only the poisoned
// ones fail. stop() ends every waiter at once with the given error.

import type { SlotChange } from "../core/replica-state";
import type { CommitBatch, DurableWrite } from "../core/durable-write";

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
  for (const write of writes) {
    for (const slot of write.slots) {
      const key = `${slot.writer}\u0000${slot.column}\u0000${slot.accountId}`;
      const current = merged.get(key);
      if (current === undefined || current.value < slot.value) merged.set(key, slot);
    }
    if (write.requests !== undefined) for (const r of write.requests) requests.push(r);
    if (write.policy !== undefined) policies.push(write.policy);
  }
  return { slots: [...merged.values()], requests, policies };
}
