// Start-up of a replica: its streams and snapshot buckets exist, then its own
// row comes back from the durable log (latest snapshot plus the stream tail)
// before it serves, so a restarted node never re-spends rights it gave away.

import { DebitOutcome } from "../core/answer";
import type { ReplicaState } from "../core/replica-state";
import { decodeDelta, decodeDeltaOrThrow, type DecodedDelta } from "../replication/delta-codec";
import { inboundContext, InboundRejectedError } from "../replication/inbound";
import type { SnapshotChunkValue, SnapshotHeaderValue } from "../replication/snapshot-decoder";
import { SNAPSHOT_FORMAT_SEALED } from "../replication/snapshot-seal";
import { isTransientNatsError, ReplayError, StreamReplicasError, type ReplicaLog } from "../replication/jetstream-log";
import type { SnapshotStore } from "../replication/snapshot-store";
import type { Logger } from "./logger";

/** How the own row came back. */
export type RecoverySource =
  /** Nothing stored yet, or no snapshot and the whole stream replayed. */
  | "stream"
  /** The latest snapshot plus the stream after it. */
  | "snapshot"
  /** The snapshot was damaged; the whole (unpurged) stream was replayed instead. */
  | "stream-after-damaged-snapshot";

export interface Recovered {
  /** Last sequence of the own stream. */
  readonly sequence: number;
  /** The snapshot recovered from; undefined when none was used. */
  readonly header: SnapshotHeaderValue | undefined;
  readonly source: RecoverySource;
}

/** The node must not serve: its durable state cannot be recovered as it is, or it disagrees with the cluster. */
export class RecoveryRefusedError extends Error {
  override readonly name = "RecoveryRefusedError";
  constructor(
    readonly region: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`region ${region} refuses to start: ${reason}`, options);
  }
}

export interface RecoveryOptions {
  readonly region: string;
  readonly state: ReplicaState;
  readonly log: ReplicaLog;
  readonly store: SnapshotStore;
  apply(delta: DecodedDelta): void;
  readonly logger: Logger;
  readonly clock: NodeClock;
  /** Longest wait for the next stream message or snapshot piece before giving up (default 10 s). */
  readonly idleTimeoutMs?: number;
}

/** Wall time (stamps carried on the wire) and local monotonic time (retention, timeouts). */
export interface NodeClock {
  now(): number;
  monotonic(): number;
}

/**
 * Merges one snapshot chunk (rows, remembered answers, policies) into `state`.
 * From a peer's snapshot (catching up past purged messages) refusals are
 * left out: they are remembered by the region that decided them only, and a
 * catch-up must leave the state the peer's stream would have.
 */
export function applySnapshotChunk(state: ReplicaState, chunk: SnapshotChunkValue, clock: NodeClock, origin: "own" | "peer"): void {
  for (const account of chunk.accounts) state.mergeAccount(account.accountId, account.values);
  const wallNowMs = clock.now();
  const nowMs = clock.monotonic();
  for (let k = 0; k < chunk.requests.length; k++) {
    const r = chunk.requests[k]!;
    if (origin === "peer" && r.answer.outcome === DebitOutcome.InsufficientCredit) continue;
    state.restoreRequest(r.requestId, r.fingerprint, r.answer, { stampMs: r.answeredAtMs, nowMs, wallNowMs }, r.origin);
  }
  for (const p of chunk.policies) state.applyPolicy(p.accountId, p.write);
  // Holds and refund tallies are decided by their own region alone: only its recovery reads them.
  if (origin === "own") {
    for (const hold of chunk.holds) state.holds.put(hold);
    for (const tally of chunk.refunds) state.refundTallies.put(tally);
  }
}

/**
 * Brings the own row back before the node serves: checks that the own and
 * every peer stream were written under this node's region list, merges the
 * latest own snapshot, then replays the own stream after it. Throws
 * RecoveryRefusedError (region and fault named) instead of serving a partial
 * row or waiting for messages that are gone. A damaged sealed snapshot falls
 * back to replaying the whole stream when nothing of it was purged: every
 * chunk merged before the damage was found passed its seal, so it is genuine
 * content that the replay can only raise to the truth.
 */
export async function recoverOwnRow(options: RecoveryOptions): Promise<Recovered> {
  // A supercluster that is still starting (a gateway connecting, a leader being
  // elected) times requests out for a while. Recovery only merges (pointwise
  // max, answers kept once), so running it again from the start is safe.
  const deadline = Date.now() + RECOVERY_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await recoverOnce(options);
    } catch (error) {
      if (!isTransientNatsError(error) || Date.now() > deadline) throw error;
      options.logger.warn("recovery: NATS did not answer in time; starting recovery again", { attempt, error: String(error) });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** How long start-up keeps retrying recovery through NATS timeouts. */
const RECOVERY_RETRY_MS = 60_000;

async function recoverOnce(options: RecoveryOptions): Promise<Recovered> {
  const { region, state, log, store, logger, clock } = options;
  const now = (): number => clock.now();
  await ensureStreams(options);
  await checkStreamLayouts(options);
  const started = now();
  let source: RecoverySource = "snapshot";
  let seen: SnapshotHeaderValue | undefined;
  let header: SnapshotHeaderValue | undefined;
  try {
    const readOptions = options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs };
    header = await store.read(
      region,
      (chunk) => {
        if (chunk.header !== undefined) seen = chunk.header;
        applySnapshotChunk(state, chunk, clock, "own");
      },
      readOptions,
    );
  } catch (error) {
    if (!(error instanceof InboundRejectedError)) throw error;
    if (error.code === "identity") throw new RecoveryRefusedError(region, `its snapshot was written under another region list: ${error.reason}`, { cause: error });
    const bounds = await log.bounds(region);
    const whole = bounds.first <= 1;
    // Unsealed chunks merged before the fault were not checked: they may hold altered values.
    const verified = seen === undefined || seen.format === SNAPSHOT_FORMAT_SEALED;
    if (!whole || !verified) {
      throw new RecoveryRefusedError(
        region,
        `its snapshot is damaged (${error.reason}) and ` +
          (whole ? "was written without seals, so what was read of it cannot be trusted" : `its stream was purged below ${bounds.first}, so the row cannot be rebuilt`) +
          `; restore the snapshot object of ${region}, or start this region under a fresh replica id`,
        { cause: error },
      );
    }
    logger.warn("own snapshot damaged; rebuilding the own row from the whole stream", { reason: error.reason, streamLast: bounds.last });
    source = "stream-after-damaged-snapshot";
  }
  if (header === undefined && source === "snapshot") source = "stream";
  const replayFrom = header === undefined ? 1 : header.replayFrom;
  const bounds = await log.bounds(region);
  if (bounds.first > replayFrom) {
    throw new RecoveryRefusedError(
      region,
      header === undefined
        ? `it has no usable snapshot and its stream was purged below ${bounds.first} (it holds ${bounds.first}..${bounds.last}): ` +
            `messages 1..${bounds.first - 1} exist nowhere else; restore the snapshot object of ${region}, or start this region under a fresh replica id`
        : `its stream starts at ${bounds.first} but its snapshot needs ${replayFrom} on: messages ${replayFrom}..${bounds.first - 1} are gone; refusing to serve a partial row`,
    );
  }
  let replayed: number;
  try {
    const replayOptions = options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs };
    replayed = await log.replay(region, replayFrom, (m) => options.apply(decodeDeltaOrThrow(state.replicas, m.data, region)), replayOptions);
  } catch (error) {
    if (error instanceof ReplayError) throw new RecoveryRefusedError(region, `its stream cannot be replayed: ${error.message}`, { cause: error });
    if (error instanceof InboundRejectedError) {
      throw new RecoveryRefusedError(region, `a message of its own stream was refused: ${error.reason}`, { cause: error });
    }
    throw error;
  }
  const sequence = Math.max(header === undefined ? 0 : header.durableSequence, replayed);
  logger.info("own row recovered", {
    sequence,
    source,
    fromSnapshot: header !== undefined,
    replayedFrom: replayFrom,
    accounts: state.accountCount,
    ms: now() - started,
  });
  return { sequence, header, source };
}

/**
 * The last message of the own stream and of every peer's must carry this
 * node's region list: a node started with the regions in another order (or
 * another set) would write its slots into the wrong rows. Streams that hold
 * nothing, or cannot be read now, tell nothing and are passed over.
 */
async function checkStreamLayouts({ region, state, log, logger }: RecoveryOptions): Promise<void> {
  const ctx = inboundContext(state.replicas);
  const problems = await Promise.all(
    state.replicas.names.map(async (replica): Promise<string | undefined> => {
      let last: { seq: number; data: Uint8Array } | undefined;
      try {
        last = await log.lastMessage(replica);
      } catch (error) {
        logger.warn("could not read a stream's last message to check its region list", { stream: replica, error: String(error) });
        return undefined;
      }
      if (last === undefined) return undefined;
      const decoded = decodeDelta(last.data, { ...ctx, expectedWriter: replica });
      if (decoded.ok || decoded.code !== "identity") return undefined;
      return `the last message of ${replica === region ? "its own" : `${replica}'s`} stream (sequence ${last.seq}) was written under another region list: ${decoded.reason}`;
    }),
  );
  const first = problems.find((p) => p !== undefined);
  if (first !== undefined) throw new RecoveryRefusedError(region, first);
}

/**
 * Creates this node's own stream and snapshot bucket (retried while JetStream
 * elects its meta leader). Peers' streams are made by their own nodes: a node
 * may create only its own (deploy/nats/auth.conf), and a peer that has not
 * started yet has written nothing to catch up on.
 */
async function ensureStreams({ region, log, store }: RecoveryOptions): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await log.ensureStream(region);
      await store.bucket(region);
      return;
    } catch (error) {
      // A replica count the servers cannot keep is an answer, not a delay.
      if (error instanceof StreamReplicasError || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
