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
import { encodeSnapshot, headerToWire, type SnapshotHeaderValue } from "../replication/snapshot-codec";
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
  onWritten(seconds: number, bytes: number): void;
}

export class Snapshotter {
  private running: Promise<SnapshotHeaderValue> | undefined;
  private last: SnapshotHeaderValue | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SnapshotterOptions) {}

  /** The header this node recovered from (so an unchanged state is not rewritten). */
  set recovered(header: SnapshotHeaderValue | undefined) {
    this.last = header;
  }

  start(): void {
    if (this.options.intervalMs <= 0) return;
    this.timer = setInterval(() => {
      this.take().catch((error: unknown) => this.options.logger.warn("snapshot failed", { error: String(error) }));
    }, this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }

  /** Writes a snapshot unless nothing changed since the last one; resolves with the current header. */
  take(): Promise<SnapshotHeaderValue> {
    this.running ??= this.write().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async write(): Promise<SnapshotHeaderValue> {
    const { region, state, writer, peers, logger, now } = this.options;
    const started = now();
    const frozen = state.freeze();
    const applied = peers.applied();
    const durableSequence = await writer.barrier();
    if (this.last !== undefined && unchanged(this.last, durableSequence, applied)) return this.last;
    const header: SnapshotHeaderValue = {
      replica: region,
      replicas: [...state.replicas.names],
      replayFrom: durableSequence + 1,
      durableSequence,
      applied,
      takenAtMs: started,
      accounts: frozen.ids.length,
    };
    let bytes = 0;
    const counted = async function* (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
      for await (const chunk of chunks) {
        bytes += chunk.length;
        yield chunk;
      }
    };
    await this.options.store.write(region, counted(encodeSnapshot(frozen, headerToWire(header))));
    this.last = header;
    const keepFrom = purgeFloor(durableSequence + 1, peers.appliedOfOurs(), this.options.maxRetainedMessages);
    const purged = keepFrom > 1 ? await this.options.log.purgeBelow(region, keepFrom) : 0;
    this.options.onWritten((now() - started) / 1000, bytes);
    logger.info("snapshot written", { accounts: frozen.ids.length, durableSequence, purged, bytes, ms: now() - started });
    return header;
  }
}

function unchanged(last: SnapshotHeaderValue, durableSequence: number, applied: Readonly<Record<string, number>>): boolean {
  if (last.durableSequence !== durableSequence) return false;
  return Object.entries(applied).every(([peer, sequence]) => (last.applied[peer] ?? 0) === sequence);
}
