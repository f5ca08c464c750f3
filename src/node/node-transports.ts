// What a node runs on, opened by the composition root (src/app): the replica
// log and snapshot store in JetStream, and the rights, status and snapshot
// request traffic over core NATS.

import type { LeaseTiming } from "../core/lease-clock";
import type { RightsTransport } from "../core/rights-messages";
import type { SnapshotHeaderValue } from "../replication/snapshot-decoder";
import type { ReplicaLog } from "../replication/jetstream-log";
import type { SnapshotStore } from "../replication/snapshot-store";
import type { WriterLease } from "../replication/writer-lease";
import type { PeerStatus, StatusSnapshot } from "../replication/status-exchange";

/** The NATS-backed parts a node runs on, opened by the composition root. */
export interface NodeTransports {
  readonly log: ReplicaLog;
  readonly snapshots: SnapshotStore;
  readonly rights: RightsTransport;
  /** Starts the status broadcast; returns its stop function. */
  startStatus(own: () => StatusSnapshot, onPeer: (replica: string, status: PeerStatus) => void): () => void;
  /** Answers settlement's snapshot requests for this region; returns its stop function. */
  serveSnapshotRequests(take: () => Promise<SnapshotHeaderValue>): () => void;
  /** Opens this region's writer lease (only with several nodes per region). */
  openLease?(timing: LeaseTiming): Promise<WriterLease>;
}

