// Full-state snapshots of each replica in a JetStream object store bucket per
// replica (placed in its region). A snapshot bounds recovery time — restart
// = snapshot + tail of the own stream — lets the stream be purged, and gives
// settlement a durable, causally closed state of every replica.

import { StorageType, type ObjectStore } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import { explainReplicaRefusal, type ReplicaLog } from "./jetstream-log";
import { inboundContext, type InboundContext } from "./inbound";
import type { SnapshotChunkValue, SnapshotHeaderValue } from "./snapshot-decoder";
import { readSnapshot, SnapshotDamagedError } from "./snapshot-reader";

const OBJECT_NAME = "state";

/** A read that receives nothing for this long is given up (its chunks are gone from the store). */
export const DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS = 10_000;

export interface SnapshotReadOptions {
  /** Longest wait for the next piece of the object; default DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS. */
  readonly idleTimeoutMs?: number;
}

/**
 * The pieces of an object-store read, given up with an error when none comes
 * for `idleTimeoutMs` (the store's reader waits forever for chunks that were
 * deleted) and with the store's own error (digest mismatch) reworded.
 */
async function* boundedPieces(data: ReadableStream<Uint8Array>, replica: string, idleTimeoutMs: number): AsyncGenerator<Uint8Array> {
  const reader = data.getReader();
  let received = 0;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<"idle">((resolve) => {
        timer = setTimeout(() => resolve("idle"), idleTimeoutMs);
      });
      let next: Awaited<ReturnType<typeof reader.read>> | "idle";
      try {
        next = await Promise.race([reader.read(), idle]);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw new SnapshotDamagedError("undecodable", `snapshot of ${replica}: the object store refused the object after ${received} bytes (${reason})`, 0);
      } finally {
        clearTimeout(timer);
      }
      if (next === "idle") {
        throw new SnapshotDamagedError(
          "undecodable",
          `snapshot of ${replica}: no data for ${idleTimeoutMs} ms after ${received} bytes (the object's chunks are missing from the store)`,
          0,
        );
      }
      if (next.done) return;
      received += next.value.length;
      yield next.value;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
}

export function snapshotBucket(replica: string): string {
  return `TALLY_SNAP_${replica.toUpperCase().replace(/-/g, "_")}`;
}

export class SnapshotStore {
  private readonly buckets = new Map<string, ObjectStore>();
  private readonly ctx: InboundContext;

  constructor(
    private readonly log: ReplicaLog,
    replicas: ReplicaSet,
    maxSlotValue: bigint,
    private readonly ownReplica: string,
  ) {
    this.ctx = inboundContext(replicas, { maxSlotValue });
  }

  /**
   * Opens the bucket of `replica`. Only the own bucket is created here: a
   * peer's is made by that peer's node (NATS permissions let a node create its
   * own streams only), so a missing peer bucket is an error naming it.
   */
  async bucket(replica: string): Promise<ObjectStore> {
    const open = this.buckets.get(replica);
    if (open !== undefined) return open;
    if (replica !== this.ownReplica && !(await this.log.streamExists(`OBJ_${snapshotBucket(replica)}`))) {
      throw new Error(`the snapshot bucket of ${replica} does not exist yet: it is created when ${replica}'s node starts`);
    }
    const store = await this.log.js.views
      .os(snapshotBucket(replica), {
        storage: StorageType.File,
        replicas: this.log.replicas,
        ...(this.log.options.placeByRegion ? { placement: { cluster: replica, tags: [] } } : {}),
      })
      .catch((error: unknown) => {
        throw explainReplicaRefusal(error, this.log.replicas, `OBJ_${snapshotBucket(replica)}`);
      });
    // Opening an existing bucket keeps its replica count: bring the own one to the configured count.
    if (replica === this.ownReplica) await this.log.ensureReplicas(`OBJ_${snapshotBucket(replica)}`);
    this.buckets.set(replica, store);
    return store;
  }

  /** Removes `replica`'s snapshot (operators and tests); true when there was one. */
  async remove(replica: string): Promise<boolean> {
    const store = await this.bucket(replica);
    return store.delete(OBJECT_NAME).then(
      (r) => r.success,
      () => false,
    );
  }

  async write(replica: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const store = await this.bucket(replica);
    const iterator = chunks[Symbol.asyncIterator]();
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await iterator.next();
        if (next.done === true) controller.close();
        else controller.enqueue(next.value);
      },
    });
    await store.put({ name: OBJECT_NAME }, stream);
  }

  /**
   * Reads `replica`'s latest snapshot, checked chunk by chunk (its cluster's
   * replica list, every value, its counts), calling `onChunk` for each.
   * Returns its header, or undefined when the replica has none yet; throws
   * when the snapshot is damaged or foreign.
   */
  async read(replica: string, onChunk: (chunk: SnapshotChunkValue) => void, options: SnapshotReadOptions = {}): Promise<SnapshotHeaderValue | undefined> {
    const store = await this.bucket(replica);
    const result = await store.get(OBJECT_NAME);
    if (result === null) return undefined;
    // The store's own digest check fails the stream (seen by boundedPieces); keep its promise from going unhandled.
    result.error.catch(() => undefined);
    let header: SnapshotHeaderValue | undefined;
    const pieces = boundedPieces(result.data, replica, options.idleTimeoutMs ?? DEFAULT_SNAPSHOT_IDLE_TIMEOUT_MS);
    for await (const chunk of readSnapshot(pieces, { ...this.ctx, expectedReplica: replica })) {
      if (chunk.header !== undefined) header = chunk.header;
      onChunk(chunk);
    }
    const error = await result.error.catch((e: unknown) => e);
    // Resolves to null or undefined on success, to an Error on a corrupt or cut read.
    if (error instanceof Error) throw new SnapshotDamagedError("undecodable", `snapshot of ${replica}: ${error.message}`, 0);
    if (header === undefined) throw new Error(`snapshot of ${replica} has no header`);
    return header;
  }
}
