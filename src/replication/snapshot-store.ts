// Full-state snapshots of each replica in a JetStream object store bucket per
// replica (placed in its region). A snapshot bounds recovery time — restart
// = snapshot + tail of the own stream — lets the stream be purged, and gives
// settlement a durable, causally closed state of every replica.

import { StorageType, type ObjectStore } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import type { ReplicaLog } from "./jetstream-log";
import { inboundContext, type InboundContext } from "./inbound";
import { readSnapshot, type SnapshotChunkValue, type SnapshotHeaderValue } from "./snapshot-codec";

const OBJECT_NAME = "state";

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
  ) {
    this.ctx = inboundContext(replicas, { maxSlotValue });
  }

  /** Opens (creating at start-up if needed) the bucket of `replica`. */
  async bucket(replica: string): Promise<ObjectStore> {
    const open = this.buckets.get(replica);
    if (open !== undefined) return open;
    const store = await this.log.js.views.os(snapshotBucket(replica), {
      storage: StorageType.File,
      replicas: 1,
      ...(this.log.options.placeByRegion ? { placement: { cluster: replica, tags: [] } } : {}),
    });
    this.buckets.set(replica, store);
    return store;
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
  async read(replica: string, onChunk: (chunk: SnapshotChunkValue) => void): Promise<SnapshotHeaderValue | undefined> {
    const store = await this.bucket(replica);
    const result = await store.get(OBJECT_NAME);
    if (result === null) return undefined;
    let header: SnapshotHeaderValue | undefined;
    for await (const chunk of readSnapshot(result.data, { ...this.ctx, expectedReplica: replica })) {
      if (chunk.header !== undefined) header = chunk.header;
      onChunk(chunk);
    }
    const error = await result.error;
    // Resolves to null or undefined on success, to an Error on a corrupt or cut read.
    if (error instanceof Error) throw error;
    if (header === undefined) throw new Error(`snapshot of ${replica} has no header`);
    return header;
  }
}
