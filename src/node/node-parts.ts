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
import { PeerSet } from "./peer-set";
import { REAL_CLOCK, RightsBroker, type RightsEvents, type RightsHost } from "./rights-broker";
import { perReplicaShare } from "../core/bounds";
import type { DecodedDelta } from "../replication/delta-codec";
import { Snapshotter } from "./snapshotter";

export interface PartsContext {
  readonly config: NodeConfig;
  readonly state: ReplicaState;
  readonly transports: NodeTransports;
  readonly metrics: TallyMetrics;
  readonly logger: Logger;
  readonly now: () => number;
  readonly monotonic: () => number;
}

export function createWriter(
  ctx: PartsContext,
  startSequence: number,
  onFenced: (error: WriterFencedError) => void,
  onForeign: (sequences: readonly number[]) => void,
): ReplicaWriter {
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
      context: (accountIds) => state.otherRows(accountIds),
      onFenced,
      onForeign: (sequences, reason) => {
        metrics.badMessages.inc({ source: "own_stream" }, sequences.length);
        logger.error("messages this node did not write are in its own stream; stepped over them (restrict who may publish to it)", {
          sequences: sequences.join(","),
          reason,
        });
        onForeign(sequences);
      },
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
    batch: (role, size) => metrics.rightsBatchSize.observe({ role }, size),
    donorQueue: (depth) => metrics.rightsDonorQueueDepth.set(depth),
    giftRejected: (donor, error) => {
      metrics.badMessages.inc({ source: "rights_reply" });
      logger.warn("rights gift refused", { donor, error: String(error) });
    },
  };
}

/** The followers of every peer stream, refusing what no writer could have produced. */
export function createPeerSet(
  ctx: PartsContext,
  node: { apply(delta: DecodedDelta): void; catchUpFromSnapshot(replica: string): Promise<number> },
): PeerSet {
  const { config, metrics, logger } = ctx;
  return new PeerSet({
    region: config.region,
    state: ctx.state,
    log: ctx.transports.log,
    apply: (delta) => node.apply(delta),
    catchUpFromSnapshot: (replica) => node.catchUpFromSnapshot(replica),
    onError: (peer, error) => logger.warn("follow failed, retrying", { peer, error: String(error) }),
    refused: (peer, sequence, reason) => {
      metrics.badMessages.inc({ source: "stream" });
      logger.error("a message in a peer's stream was refused; waiting for its snapshot to cover it", { peer, sequence, reason });
    },
    maxSlotValue: perReplicaShare(config.regions.length),
    // Heard-ago and lag on the monotonic clock: a stepped wall clock must not move them.
    now: ctx.monotonic,
  });
}

export function createRightsBroker(ctx: PartsContext, host: RightsHost): RightsBroker {
  return new RightsBroker(host, ctx.transports.rights, rightsEvents(ctx.metrics, ctx.logger), REAL_CLOCK, ctx.config.maxRightsWaitMs);
}
