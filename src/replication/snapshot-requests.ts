// Settlement asks every region for a fresh snapshot over core NATS request/
// reply on `tally.snapshot.<region>`; the region answers with its header.

import type { NatsConnection } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import { inboundContext } from "./inbound";
import { decodeSnapshotHeader, type SnapshotHeaderValue } from "./snapshot-decoder";
import { encodeSnapshotHeader, headerToWire } from "./snapshot-encoder";
import { snapshotSubject } from "./subjects";

/** Serves this region's snapshot requests until the returned function is called. */
export function serveSnapshotRequests(
  connection: NatsConnection,
  region: string,
  take: () => Promise<SnapshotHeaderValue>,
  onError: (error: unknown) => void,
): () => void {
  const subscription = connection.subscribe(snapshotSubject(region), {
    callback: (error, message) => {
      if (error !== null) return;
      take().then(
        (header) => {
          if (message.reply !== undefined && message.reply !== "") message.respond(encodeSnapshotHeader(headerToWire(header)));
        },
        onError,
      );
    },
  });
  return () => subscription.unsubscribe();
}

/**
 * Asks `region` to snapshot now; resolves when it answered (its snapshot is
 * stored) with the header it answered: its `takenAtMs` says when the stored
 * state was last found current (it may be later than the stored header's).
 */
export async function requestSnapshot(connection: NatsConnection, replicas: ReplicaSet, region: string, timeoutMs: number): Promise<SnapshotHeaderValue> {
  const reply = await connection.request(snapshotSubject(region), new Uint8Array(0), { timeout: timeoutMs });
  const header = decodeSnapshotHeader(reply.data, { ...inboundContext(replicas), expectedReplica: region });
  if (!header.ok) throw new Error(`snapshot reply of ${region} refused: ${header.reason}`);
  return header.value;
}
