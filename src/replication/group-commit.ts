// Group commit: changes from many concurrent calls are coalesced into one
// publish; every waiting call is answered when that publish is durable. While
// a publish is in flight the next batch accumulates, so batches grow with load
// and durability costs latency, not throughput. A failed publish is retried
// (slot values are absolute, so a retry is idempotent); callers are bounded by
// their own deadlines.

import type { SlotChange } from "../core/replica-state";
import type { CommitBatch, DurableWrite } from "./durable-write";

export interface GroupCommitOptions {
  /** Most slot changes in one publish. */
  readonly maxBatchSlots: number;
  /** Pause before retrying a failed publish. */
  readonly retryDelayMs: number;
}

export type BatchPublisher = (batch: CommitBatch) => Promise<void>;

interface Waiter {
  resolve(): void;
}

export class GroupCommitter {
  private slots = new Map<string, SlotChange>();
  private requests: CommitBatch["requests"] = [];
  private policies: CommitBatch["policies"] = [];
  private waiters: Waiter[] = [];
  private publishing = false;
  private scheduled = false;
  private stopped = false;

  constructor(
    private readonly publish: BatchPublisher,
    private readonly options: GroupCommitOptions,
    private readonly onError: (error: unknown) => void,
  ) {}

  get pendingSlots(): number {
    return this.slots.size;
  }

  /** Resolves when `write` is durable. */
  commit(write: DurableWrite): Promise<void> {
    for (const slot of write.slots) {
      const key = `${slot.writer}\u0000${slot.column}\u0000${slot.accountId}`;
      const current = this.slots.get(key);
      if (current === undefined || current.value < slot.value) this.slots.set(key, slot);
    }
    if (write.requests !== undefined) for (const r of write.requests) this.requests.push(r);
    if (write.policy !== undefined) this.policies.push(write.policy);
    const done = new Promise<void>((resolve) => this.waiters.push({ resolve }));
    this.schedule();
    return done;
  }

  /** Resolves when everything committed before this call is durable; publishes nothing extra when idle. */
  barrier(): Promise<void> {
    if (!this.publishing && !this.scheduled && this.slots.size === 0 && this.waiters.length === 0) return Promise.resolve();
    return this.commit({ slots: [] });
  }

  /** Stops publishing; pending callers never resolve (they were not acknowledged). */
  stop(): void {
    this.stopped = true;
  }

  private schedule(): void {
    if (this.publishing || this.scheduled || this.stopped) return;
    this.scheduled = true;
    // setImmediate lets every call arriving in the same I/O turn join the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private take(): { batch: CommitBatch; waiters: Waiter[] } {
    let slots = [...this.slots.values()];
    if (slots.length > this.options.maxBatchSlots) {
      // Oversized windows are published whole in several messages by the loop
      // below; here we only cut the slots, the waiters stay for the last part.
      const rest = slots.slice(this.options.maxBatchSlots);
      slots = slots.slice(0, this.options.maxBatchSlots);
      this.slots = new Map(rest.map((s) => [`${s.writer}\u0000${s.column}\u0000${s.accountId}`, s]));
      return { batch: { slots, requests: [], policies: [], partial: true }, waiters: [] };
    }
    const batch = { slots, requests: this.requests, policies: this.policies };
    const waiters = this.waiters;
    this.slots = new Map();
    this.requests = [];
    this.policies = [];
    this.waiters = [];
    return { batch, waiters };
  }

  private async flush(): Promise<void> {
    if (this.publishing || this.stopped) return;
    this.publishing = true;
    try {
      while (!this.stopped && (this.slots.size > 0 || this.waiters.length > 0)) {
        const { batch, waiters } = this.take();
        for (;;) {
          try {
            await this.publish(batch);
            break;
          } catch (error) {
            this.onError(error);
            if (this.stopped) return;
            await new Promise((r) => setTimeout(r, this.options.retryDelayMs));
          }
        }
        for (const waiter of waiters) waiter.resolve();
      }
    } finally {
      this.publishing = false;
    }
  }
}
