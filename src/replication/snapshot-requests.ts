// Settlement asks every region for a fresh snapshot over core NATS request/
// reply on `tally.snapshot.<region>`; the region answers with its header.

import type { NatsConnection } from "nats";
import { SnapshotHeader } from "../generated/tally/replication/v1/replication";
import { snapshotSubject } from "./subjects";

/** Serves this region's snapshot requests until the returned function is called. */
export function serveSnapshotRequests(
  connection: NatsConnection,
  region: string,
  take: () => Promise<SnapshotHeader>,
  onError: (error: unknown) => void,
): () => void {
  const subscription = connection.subscribe(snapshotSubject(region), {
    callback: (error, message) => {
      if (error !== null) return;
      take().then(
        (header) => {
          if (message.reply !== undefined && message.reply !== "") message.respond(SnapshotHeader.encode(header).finish());
        },
        onError,
      );
    },
  });
  return () => subscription.unsubscribe();
}

/** Asks `region` to snapshot now; resolves when it answered (its snapshot is stored). */
export async function requestSnapshot(connection: NatsConnection, region: string, timeoutMs: number): Promise<void> {
  const reply = await connection.request(snapshotSubject(region), new Uint8Array(0), { timeout: timeoutMs });
  SnapshotHeader.decode(reply.data);
}
