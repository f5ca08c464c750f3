// Becoming a region's writer (DESIGN §12, spec/ha.qnt): take the lease, replay
// the own stream to its tail, append the fence at that tail, then serve; and
// keep the lease while serving. Safety is the fence's: a deposed writer's next
// append is refused whatever its clock says, and it stops (ReplicaWriter).

import type { WriterLease } from "./writer-lease";

/** What a takeover needs of the lease (WriterLease; a fake in unit tests). */
export type TakeoverLease = Pick<WriterLease, "held" | "tryAcquire" | "options">;

/** What a LeaseKeeper needs of the lease. */
export type KeptLease = Pick<WriterLease, "status" | "renew" | "drop" | "options">;
import { WriterFencedError, type ReplicaWriter } from "./replica-writer";

/** This node lost its writer lease (renewal refused, or its own clock says it ran out). */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
  constructor(
    readonly region: string,
    readonly reason: string,
  ) {
    super(`writer lease of ${region} lost (${reason}); this node must stop writing`);
  }
}

/** The takeover was given up (stop requested). */
export class TakeoverAbortedError extends Error {
  override readonly name = "TakeoverAbortedError";
}

export interface TakeoverOptions {
  readonly lease: TakeoverLease;
  /** Replays the own stream to its tail into the node's state; returns the tail's sequence. */
  replayToTail(): Promise<number>;
  /** A writer of the own stream whose next append expects `tail`. */
  writerAt(tail: number): ReplicaWriter;
  /** Pause between attempts while another node holds the lease. */
  readonly retryMs: number;
  /** Checked between attempts; true gives the takeover up. */
  stopped(): boolean;
  /** Each lost race for the fence (another writer appended after the replay). */
  onFenceLost?(error: WriterFencedError): void;
  /** Runs between attempts while another node holds the lease (a standby follows the stream). */
  whileWaiting?(): Promise<void>;
  /**
   * An attempt failed for another reason (no server, timeout); it is retried
   * after retryMs. Without this hook the error ends the takeover.
   */
  onError?(error: unknown): void;
}

export interface TookOver {
  readonly writer: ReplicaWriter;
  /** Sequence of this node's fence: the first message of its term. */
  readonly fenceSequence: number;
}

/**
 * Waits for the lease, then replays and fences. A fence refused because the
 * old writer appended after the replay sends the node back to the start (the
 * lease is kept while it lasts: the next replay sees that append).
 */
export async function takeOver(options: TakeoverOptions): Promise<TookOver> {
  const { lease } = options;
  for (;;) {
    if (options.stopped()) throw new TakeoverAbortedError(`takeover of ${lease.options.region} stopped`);
    let acquired: boolean;
    try {
      acquired = lease.held || (await lease.tryAcquire());
    } catch (error) {
      if (options.onError === undefined) throw error;
      options.onError(error);
      acquired = false;
    }
    if (!acquired) {
      await options.whileWaiting?.();
      await pause(options.retryMs);
      continue;
    }
    let writer: ReplicaWriter | undefined;
    try {
      const tail = await options.replayToTail();
      // A replay longer than the lease left it lapsed by this node's clock:
      // fencing now would make a writer its keeper deposes at once. Take the
      // lease again first; the next replay starts from what is applied, so it is short.
      if (!lease.held) continue;
      writer = options.writerAt(tail);
      const fenceSequence = await writer.fence();
      return { writer, fenceSequence };
    } catch (error) {
      if (error instanceof WriterFencedError) {
        options.onFenceLost?.(error);
        continue;
      }
      // The fence may or may not be stored: this writer is dropped, the next
      // attempt replays (an empty fence changes nothing) and fences again.
      writer?.stop(error instanceof Error ? error : new Error(String(error)));
      if (options.onError === undefined) throw error;
      options.onError(error);
      await pause(options.retryMs);
    }
  }
}

export interface LeaseKeeperOptions {
  readonly lease: KeptLease;
  /** How often the lease's status is looked at. */
  readonly checkEveryMs: number;
  /** Called once when the lease is lost; the writer must stop. */
  onLost(error: LeaseLostError): void;
  onError?(error: unknown): void;
}

/** Renews a held lease when due; reports its loss once. */
export class LeaseKeeper {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private done = false;

  constructor(private readonly options: LeaseKeeperOptions) {}

  start(): this {
    this.timer = setInterval(() => void this.check(), this.options.checkEveryMs);
    return this;
  }

  stop(): void {
    this.done = true;
    clearInterval(this.timer);
  }

  /** One look at the lease (also what the timer runs). */
  async check(): Promise<void> {
    if (this.busy || this.done) return;
    this.busy = true;
    const { lease } = this.options;
    try {
      const status = lease.status();
      if (status === "none" || status === "expired") return this.lose(status === "none" ? "not held" : "its TTL ran out by this node's clock");
      if (status === "renew-due") {
        let renewed: boolean;
        try {
          renewed = await lease.renew();
        } catch (error) {
          // No answer: keep trying until the clock says the lease is gone.
          this.options.onError?.(error);
          return;
        }
        if (!renewed) this.lose("renewal refused: expired at the server or taken by another node");
      }
    } finally {
      this.busy = false;
    }
  }

  private lose(reason: string): void {
    if (this.done) return;
    this.stop();
    this.options.lease.drop();
    this.options.onLost(new LeaseLostError(this.options.lease.options.region, reason));
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
