// Start-up of a replica: its streams and snapshot buckets exist, then its own
// row comes back from the durable log (latest snapshot plus the stream tail)
// before it serves, so a restarted node never re-spends rights it gave away.

import type { ReplicaState } from "../core/replica-state";
import { decodeDeltaOrThrow, type DecodedDelta } from "../replication/delta-codec";
import type { SnapshotChunkValue, SnapshotHeaderValue } from "../replication/snapshot-codec";
import type { ReplicaLog } from "../replication/jetstream-log";
import type { SnapshotStore } from "../replication/snapshot-store";
import type { Logger } from "./logger";

export interface Recovered {
  /** Last sequence of the own stream. */
  readonly sequence: number;
  readonly header: SnapshotHeaderValue | undefined;
}

export interface RecoveryOptions {
  readonly region: string;
  readonly state: ReplicaState;
  readonly log: ReplicaLog;
  readonly store: SnapshotStore;
  apply(delta: DecodedDelta): void;
  readonly logger: Logger;
  readonly clock: NodeClock;
}

/** Wall time (stamps carried on the wire) and local monotonic time (retention, timeouts). */
export interface NodeClock {
  now(): number;
  monotonic(): number;
}

/** Merges one snapshot chunk (rows, remembered answers, policies) into `state`. */
export function applySnapshotChunk(state: ReplicaState, chunk: SnapshotChunkValue, clock: NodeClock): void {
  for (const account of chunk.accounts) state.mergeAccount(account.accountId, account.values);
  const wallNowMs = clock.now();
  const nowMs = clock.monotonic();
  for (const r of chunk.requests) state.restoreRequest(r.requestId, r.fingerprint, r.answer, { stampMs: r.answeredAtMs, nowMs, wallNowMs });
  for (const p of chunk.policies) state.applyPolicy(p.accountId, p.write);
}

export async function recoverOwnRow(options: RecoveryOptions): Promise<Recovered> {
  const { region, state, log, store, logger, clock } = options;
  const now = (): number => clock.now();
  await ensureStreams(options);
  const started = now();
  const header = await store.read(region, (chunk) => applySnapshotChunk(state, chunk, clock));
  const replayFrom = header === undefined ? 1 : header.replayFrom;
  const bounds = await log.bounds(region);
  if (bounds.first > replayFrom && bounds.last >= bounds.first) {
    throw new Error(`stream of ${region} starts at ${bounds.first} but the snapshot needs ${replayFrom}: refusing to serve a partial row`);
  }
  const replayed = await log.replay(region, replayFrom, (m) => options.apply(decodeDeltaOrThrow(state.replicas, m.data, region)));
  const sequence = Math.max(header === undefined ? 0 : header.durableSequence, replayed);
  logger.info("own row recovered", {
    sequence,
    fromSnapshot: header !== undefined,
    replayedFrom: replayFrom,
    accounts: state.accountCount,
    ms: now() - started,
  });
  return { sequence, header };
}

/** Creates every replica's stream and bucket; this node's own must exist, the others are retried for a while. */
async function ensureStreams({ region, state, log, store }: RecoveryOptions): Promise<void> {
  const ensure = async (replica: string): Promise<void> => {
    await log.ensureStream(replica);
    await store.bucket(replica);
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await ensure(region);
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  await Promise.all(
    state.replicas.names
      .filter((r) => r !== region)
      .map(async (replica) => {
        for (let attempt = 0; attempt < 40; attempt++) {
          try {
            await ensure(replica);
            return;
          } catch {
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      }),
  );
}
