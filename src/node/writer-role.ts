// A node's part in a region with several nodes (DESIGN §12, spec/ha.qnt):
// standby (follows the own stream, serves reads) until it takes the writer
// lease; then takeover (replay the own stream to its tail, append the fence
// there); then writer, keeping the lease, until deposed (a refused append or
// a lost lease). Deposed is final for this process: it stops writing at once
// and a restart makes it a standby again (rejoining as standby in-process
// would need every writer-only part to restart; see docs/spec.md).

import { decodeDeltaOrThrow, type DecodedDelta } from "../replication/delta-codec";
import { ReplayError, type ReplicaLog } from "../replication/jetstream-log";
import type { ReplicaWriter } from "../replication/replica-writer";
import { LeaseKeeper, LeaseLostError, takeOver, TakeoverAbortedError } from "../replication/takeover";
import type { WriterLease } from "../replication/writer-lease";
import type { ReplicaSet } from "../core/replica-set";
import type { Logger } from "./logger";

export type WriterRoleState =
  | { readonly kind: "standby"; readonly holder: string | undefined }
  | { readonly kind: "writer"; readonly fenceSequence: number }
  | { readonly kind: "deposed"; readonly reason: string };

export interface WriterRoleOptions {
  readonly region: string;
  readonly replicas: ReplicaSet;
  readonly log: ReplicaLog;
  readonly lease: WriterLease;
  /** Last own-stream sequence already in the node's state (recovered at start). */
  readonly fromSequence: number;
  /** Merges one own-stream message into the node's state (as recovery does). */
  apply(delta: DecodedDelta): void;
  /** Rebuilds the own row from snapshot + stream when the stream was purged past what was applied; returns the tail. */
  recoverOwnRow(): Promise<number>;
  /** A writer whose next append expects `tail`; `onFenced` is its deposition. */
  createWriter(tail: number, onFenced: () => void): ReplicaWriter;
  /** The node may serve writes through `writer` now. */
  onWriting(writer: ReplicaWriter): void;
  /** The node must stop writing now (writes end UNAVAILABLE with `reason`). */
  onDeposed(reason: string): void;
  /** Pause between looks at the lease and the own stream while standing by. */
  readonly standbyPollMs: number;
  readonly logger: Logger;
}

export class WriterRole {
  private current: WriterRoleState = { kind: "standby", holder: undefined };
  private applied: number;
  private stopped = false;
  private keeper: LeaseKeeper | undefined;
  private writer: ReplicaWriter | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: WriterRoleOptions) {
    this.applied = options.fromSequence;
  }

  get state(): WriterRoleState {
    return this.current;
  }

  get writing(): boolean {
    return this.current.kind === "writer";
  }

  /** Who holds the region's writer lease as this node last knew it (this node while it writes). */
  get leaseHolder(): string | undefined {
    switch (this.current.kind) {
      case "writer":
        return this.options.lease.options.nodeId;
      case "standby":
        return this.current.holder;
      case "deposed":
        return undefined;
    }
  }

  /** Stands by in the background until this node writes (or is stopped). */
  start(): void {
    this.running = this.standBy();
  }

  /** Stops standing by or writing; a writer gives its lease up so a standby takes over without waiting out the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.keeper?.stop();
    await this.running;
    if (this.current.kind === "writer") {
      await this.options.lease.release().catch((error: unknown) => this.options.logger.warn("could not release the writer lease", { error: String(error) }));
    }
  }

  private async standBy(): Promise<void> {
    const { lease, logger } = this.options;
    try {
      const took = await takeOver({
        lease,
        replayToTail: () => this.replayToTail(),
        writerAt: (tail) => {
          const writer = this.options.createWriter(tail, () => {
            if (this.writer === writer) this.depose("another node appended to this region's stream (it took over)");
          });
          return writer;
        },
        retryMs: this.options.standbyPollMs,
        stopped: () => this.stopped,
        whileWaiting: () => this.follow(),
        onFenceLost: () => logger.warn("takeover: the old writer appended after the replay; replaying again"),
        onError: (error) => logger.warn("takeover attempt failed; retrying", { error: String(error) }),
      });
      if (this.stopped) {
        // Stopped during the takeover: hand the lease back rather than make the next node wait out the TTL.
        took.writer.stop(new TakeoverAbortedError("node is shutting down"));
        await lease.release().catch(() => undefined);
        return;
      }
      this.writer = took.writer;
      this.current = { kind: "writer", fenceSequence: took.fenceSequence };
      logger.info("writer of the region: lease held, fence appended", { fenceSequence: took.fenceSequence, leaseRevision: lease.revision });
      this.keeper = new LeaseKeeper({
        lease,
        checkEveryMs: Math.max(10, Math.floor(lease.options.timing.renewAfterMs / 4)),
        onLost: (error) => this.depose(error.message, error),
        onError: (error) => logger.warn("writer lease renewal failed; retrying", { error: String(error) }),
      }).start();
      this.options.onWriting(took.writer);
    } catch (error) {
      if (error instanceof TakeoverAbortedError) return;
      logger.error("standby stopped: the takeover failed", { error: String(error) });
      this.depose(`takeover failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** While another node writes: apply what it appended (reads stay fresh) and note who holds the lease. */
  private async follow(): Promise<void> {
    try {
      await this.replayToTail();
      const holder = (await this.options.lease.holder())?.node;
      if (this.current.kind === "standby" && this.current.holder !== holder) {
        this.options.logger.info("standing by", { writer: holder ?? "none (lease free or expired)" });
      }
      this.current = { kind: "standby", holder };
    } catch (error) {
      this.options.logger.warn("standby could not follow the own stream", { error: String(error) });
    }
  }

  private async replayToTail(): Promise<number> {
    const { log, region, replicas } = this.options;
    try {
      this.applied = await log.replay(region, this.applied + 1, (m) => this.options.apply(decodeDeltaOrThrow(replicas, m.data, region)));
    } catch (error) {
      if (!(error instanceof ReplayError)) throw error;
      // Purged below what was applied (the writer snapshotted): snapshot + tail, as at start.
      this.applied = await this.options.recoverOwnRow();
    }
    return this.applied;
  }

  private depose(reason: string, error?: LeaseLostError): void {
    if (this.current.kind === "deposed") return;
    this.current = { kind: "deposed", reason };
    this.keeper?.stop();
    this.options.lease.drop();
    this.writer?.stop(error ?? new LeaseLostError(this.options.region, reason));
    this.options.logger.error("no longer the writer of the region; restart this node to stand by again", { reason });
    this.options.onDeposed(reason);
  }
}
