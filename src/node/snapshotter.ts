// Full-state snapshots of this replica: periodic (when anything changed),
// and on request before a settlement. A snapshot records exactly what it
// holds: the state is copied at one instant, and the writer's barrier closes
// the stream message there, so the recorded sequence covers that copy and
// nothing written later. Afterwards the own stream is purged below what both
// the snapshot and every peer cover.

import type { ReplicaState } from "../core/replica-state";
import { purgeFloor } from "../core/write-path";
import type { ReplicaLog } from "../replication/jetstream-log";
import type { ReplicaWriter } from "../replication/replica-writer";
import type { SnapshotHeaderValue } from "../replication/snapshot-decoder";
import { encodeSnapshot, headerToWire, type SnapshotPace } from "../replication/snapshot-encoder";
import { SNAPSHOT_FORMAT_SEALED } from "../replication/snapshot-seal";
import type { SnapshotStore } from "../replication/snapshot-store";
import type { Logger } from "./logger";
import type { PeerSet } from "./peer-set";

export interface SnapshotterOptions {
  readonly region: string;
  readonly state: ReplicaState;
  readonly writer: ReplicaWriter;
  readonly store: SnapshotStore;
  readonly log: ReplicaLog;
  readonly peers: PeerSet;
  readonly intervalMs: number;
  readonly maxRetainedMessages: number;
  readonly logger: Logger;
  readonly now: () => number;
  /** How much of the event loop encoding may take; DEFAULT_SNAPSHOT_PACE when absent. */
  readonly pace?: SnapshotPace;
  onWritten(seconds: number, bytes: number): void;
}

export class Snapshotter {
  private running: Promise<TakenSnapshot> | undefined;
  private last: SnapshotHeaderValue | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: SnapshotterOptions) {}

  /** The header this node recovered from (so an unchanged state is not rewritten). */
  set recovered(header: SnapshotHeaderValue | undefined) {
    this.last = header;
  }

  /**
   * Takes a snapshot every interval at this region's phase of the wall clock
   * (see snapshotDelay), so regions snapshot in turn rather than together,
   * whenever each node started.
   */
  start(): void {
    const { intervalMs, region, state, now } = this.options;
    if (intervalMs <= 0) return;
    const schedule = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        this.take()
          .catch((error: unknown) => this.options.logger.warn("snapshot failed", { error: String(error) }))
          .finally(schedule);
      }, snapshotDelay(now(), intervalMs, state.replicas.indexOf(region), state.replicas.size));
      this.timer.unref();
    };
    schedule();
  }

  /**
   * Stops the timer and cuts a snapshot being written short; resolves once its
   * write has ended (within `graceMs`), so the NATS connection is never closed
   * under the object store's chunk publishes (which would reject unobserved).
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const running = this.running;
    if (running === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([running.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }

  /** Writes a snapshot unless nothing changed since the last one; resolves with the current header. */
  async take(): Promise<SnapshotHeaderValue> {
    return (await this.takeOnce()).header;
  }

  /**
   * As take(), but the header's `takenAtMs` is raised to when this region
   * last found its state unchanged since that snapshot: the stored snapshot
   * is this region's state as of then. Settlement judges breakage by this
   * clock, so a region with nothing new does not hold a lot's breakage back
   * until it next writes something.
   */
  async current(): Promise<SnapshotHeaderValue> {
    const { header, currentAtMs } = await this.takeOnce();
    return { ...header, takenAtMs: Math.max(header.takenAtMs, currentAtMs) };
  }

  private takeOnce(): Promise<TakenSnapshot> {
    this.running ??= this.write().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async write(): Promise<TakenSnapshot> {
    const { region, state, writer, peers, logger, now } = this.options;
    const started = now();
    const freezeStarted = performance.now();
    const frozen = state.freeze();
    const freezeMs = performance.now() - freezeStarted;
    const applied = peers.applied();
    const durableSequence = await writer.barrier();
    // Nothing written or applied since the last snapshot: it is still this
    // region's state, as of `started` (taken before the check).
    if (this.last !== undefined && unchanged(this.last, durableSequence, applied)) return { header: this.last, currentAtMs: started };
    const header: SnapshotHeaderValue = {
      replica: region,
      replicas: [...state.replicas.names],
      replayFrom: durableSequence + 1,
      durableSequence,
      applied,
      takenAtMs: started,
      accounts: frozen.ids.length,
      requests: frozen.requests.size,
      policies: frozen.policies.length,
      format: SNAPSHOT_FORMAT_SEALED,
      holds: frozen.holds.length,
      refunds: frozen.refunds.length,
    };
    let bytes = 0;
    const isStopped = (): boolean => this.stopped;
    const counted = async function* (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
      for await (const chunk of chunks) {
        // A node stopping mid-snapshot ends the object here; the store drops its partial chunks.
        if (isStopped()) throw new Error(`snapshot of ${region} cut short: the node is stopping`);
        bytes += chunk.length;
        yield chunk;
      }
    };
    await this.options.store.write(region, counted(encodeSnapshot(frozen, headerToWire(header), this.options.pace)));
    this.last = header;
    const keepFrom = purgeFloor(durableSequence + 1, peers.appliedOfOurs(), this.options.maxRetainedMessages);
    const purged = keepFrom > 1 ? await this.options.log.purgeBelow(region, keepFrom) : 0;
    this.options.onWritten((now() - started) / 1000, bytes);
    logger.info("snapshot written", {
      accounts: frozen.ids.length,
      requests: frozen.requests.size,
      durableSequence,
      purged,
      bytes,
      freezeMs: Math.round(freezeMs * 10) / 10,
      ms: now() - started,
    });
    return { header, currentAtMs: started };
  }
}

/** A snapshot's header, and when the state it holds was last found current. */
interface TakenSnapshot {
  readonly header: SnapshotHeaderValue;
  readonly currentAtMs: number;
}

function unchanged(last: SnapshotHeaderValue, durableSequence: number, applied: Readonly<Record<string, number>>): boolean {
  if (last.durableSequence !== durableSequence) return false;
  return Object.entries(applied).every(([peer, sequence]) => (last.applied[peer] ?? 0) === sequence);
}

/**
 * Ms from `nowMs` (wall clock) to this region's next snapshot time: region k of
 * n snapshots at wall times ≡ k·interval/n (mod interval), so the regions of a
 * cluster take turns, spread evenly over the interval. At least 1 ms.
 */
export function snapshotDelay(nowMs: number, intervalMs: number, index: number, regions: number): number {
  const phase = Math.floor((Math.max(0, index) * intervalMs) / Math.max(1, regions));
  const into = (((nowMs - phase) % intervalMs) + intervalMs) % intervalMs;
  return Math.max(1, intervalMs - into);
}
