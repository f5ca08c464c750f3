// Builds the parts of a node from its configuration, with their hooks wired
// to the node's metrics and log: the replica writer, the snapshotter and the
// rights broker's events. Kept apart so TallyNode reads as the write path.

import { digestHex } from "../core/row-digest";
import type { ReplicaState } from "../core/replica-state";
import type { TallyMetrics } from "../metrics/tally-metrics";
import { ReplicaWriter, type WriterFencedError } from "../replication/replica-writer";
import type { Logger } from "./logger";
import type { NodeConfig } from "./node-config";
import type { NodeTransports } from "./node-transports";
import type { PeerSet } from "./peer-set";
import type { RightsEvents } from "./rights-broker";
import { Snapshotter } from "./snapshotter";

export interface PartsContext {
  readonly config: NodeConfig;
  readonly state: ReplicaState;
  readonly transports: NodeTransports;
  readonly metrics: TallyMetrics;
  readonly logger: Logger;
  readonly now: () => number;
}

export function createWriter(ctx: PartsContext, startSequence: number, onFenced: (error: WriterFencedError) => void): ReplicaWriter {
  const { config, state, metrics, logger, now } = ctx;
  return new ReplicaWriter(
    ctx.transports.log,
    {
      region: config.region,
      replicas: state.replicas,
      startSequence,
      maxBatchSlots: config.maxCommitSlots,
      retryDelayMs: config.commitRetryDelayMs,
      instanceId: `${process.pid.toString(36)}${Date.now().toString(36)}`,
      now,
    },
    {
      rowDigest: () => digestHex(state.rowDigest(state.self)),
      onFenced,
      onCommitted: (slots, seconds) => {
        metrics.commits.inc();
        metrics.commitSlots.observe(slots);
        metrics.commitDuration.observe(seconds);
      },
      onError: (error) => {
        metrics.commitErrors.inc();
        logger.warn("commit failed, retrying", { error: String(error) });
      },
    },
  );
}

export function createSnapshotter(ctx: PartsContext, writer: ReplicaWriter, peers: PeerSet): Snapshotter {
  const { config, state, metrics, logger, now } = ctx;
  return new Snapshotter({
    region: config.region,
    state,
    writer,
    store: ctx.transports.snapshots,
    log: ctx.transports.log,
    peers,
    intervalMs: config.snapshotIntervalMs,
    maxRetainedMessages: config.maxRetainedMessages,
    logger,
    now,
    onWritten: (seconds, bytes) => {
      metrics.snapshots.inc();
      metrics.snapshotDuration.observe(seconds);
      metrics.snapshotBytes.set(bytes);
    },
  });
}

export function rightsEvents(metrics: TallyMetrics, logger: Logger): RightsEvents {
  return {
    asked: (result) => metrics.rightsRequests.inc({ result }),
    transferred: (direction, amount) => {
      metrics.rightsTransfers.inc({ direction });
      metrics.rightsTransferred.inc({ direction }, Number(amount));
    },
    donationFailed: (error) => logger.warn("rights donation failed", { error: String(error) }),
    giftRejected: (donor, error) => {
      metrics.badMessages.inc({ source: "rights_reply" });
      logger.warn("rights gift refused", { donor, error: String(error) });
    },
  };
}
