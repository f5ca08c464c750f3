// Decodes snapshot chunks. The guarded decoders (decodeSnapshotHeader,
// decodeSnapshotChunk) check every value against this node's layout, identity
// and limits and never throw; readSnapshot (snapshot-reader.ts) reads a whole
// stored snapshot through them. decodeSnapshot is the older unchecked reader.

import { SnapshotChunk, SnapshotHeader, type SnapshotTrailer } from "../generated/tally/replication/v1/replication";
import { clusterIdentity } from "../core/cluster-identity";
import type { PolicyRecord, RequestRecord } from "../core/durable-write";
import { legacySlotCount, slotCount } from "../core/escrow-counter";
import type { HoldRecord } from "../core/hold-book";
import type { RefundTally } from "../core/refund-tallies";
import { checkedPolicyFromWire, checkedRequestFromWire } from "./delta-codec";
import { checkedHoldFromWire, checkedRefundFromWire } from "./hold-codec";
import {
  checkAccountId,
  checkAppliedMap,
  checkIdentity,
  checkSequence,
  checkSlotValue,
  checkTimestamp,
  guard,
  knownReplica,
  limitsOf,
  reject,
  shown,
  type Decoded,
  type InboundContext,
} from "./inbound";
import { SNAPSHOT_FORMAT_SEALED } from "./snapshot-seal";

/**
 * Reads length-prefixed chunks from a byte stream, unchecked.
 * @deprecated reads foreign layouts and bad values as they are; use readSnapshot.
 */
export async function* decodeSnapshot(data: AsyncIterable<Uint8Array>): AsyncGenerator<SnapshotChunk> {
  let buffer = new Uint8Array(0);
  for await (const piece of data) {
    const joined = new Uint8Array(buffer.length + piece.length);
    joined.set(buffer);
    joined.set(piece, buffer.length);
    buffer = joined;
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const length = new DataView(buffer.buffer, buffer.byteOffset + offset, 4).getUint32(0);
      if (buffer.length - offset - 4 < length) break;
      yield SnapshotChunk.decode(buffer.subarray(offset + 4, offset + 4 + length));
      offset += 4 + length;
    }
    buffer = buffer.slice(offset);
  }
  if (buffer.length !== 0) throw new Error(`snapshot ends with ${buffer.length} stray bytes`);
}

// ---- guarded decoding ------------------------------------------------------

export interface SnapshotHeaderValue {
  /** Replica that took the snapshot. */
  readonly replica: string;
  /** Replica list in index order (equal to this node's). */
  readonly replicas: readonly string[];
  readonly replayFrom: number;
  readonly durableSequence: number;
  /** Applied sequence of every other replica's stream. */
  readonly applied: Readonly<Record<string, number>>;
  readonly takenAtMs: number;
  readonly accounts: number;
  /** Remembered requests in the snapshot (0 in an unsealed one: not counted then). */
  readonly requests: number;
  /** Explicit policies in the snapshot (0 in an unsealed one: not counted then). */
  readonly policies: number;
  /** Layout version: SNAPSHOT_FORMAT_SEALED, or 0 for one written before seals. */
  readonly format: number;
  /** Hold records in the snapshot (0 in one written before holds). */
  readonly holds: number;
  /** Refund tallies in the snapshot (0 in one written before refunds). */
  readonly refunds: number;
}

export interface SnapshotTrailerValue {
  readonly accounts: number;
  readonly requests: number;
  readonly policies: number;
  /** Chunks before the trailer, the header chunk included. */
  readonly chunks: number;
  readonly holds: number;
  readonly refunds: number;
}

export interface SnapshotAccount {
  readonly accountId: string;
  /** n*n + 4n slot values: P row-major, then D, HA, HR, RF (n*n + n, P and D only, before holds). */
  readonly values: readonly bigint[];
}

export interface SnapshotChunkValue {
  /** Present on the first chunk only. */
  readonly header: SnapshotHeaderValue | undefined;
  readonly accounts: readonly SnapshotAccount[];
  readonly requests: readonly RequestRecord[];
  readonly policies: readonly PolicyRecord[];
  /** The snapshot writer's hold records. */
  readonly holds: readonly HoldRecord[];
  /** The snapshot writer's refund tallies. */
  readonly refunds: readonly RefundTally[];
  /** Present on the last chunk of a sealed snapshot only. */
  readonly trailer: SnapshotTrailerValue | undefined;
}

export interface SnapshotContext extends InboundContext {
  /** The replica whose snapshot this is (the bucket's owner, or the region asked). */
  readonly expectedReplica: string;
}

function checkHeader(wire: SnapshotHeader, ctx: SnapshotContext): SnapshotHeaderValue {
  // `replicas` has always been written; `cluster` only since identities exist.
  checkIdentity(ctx, wire.cluster, true);
  const ours = ctx.identity.replicas;
  if (wire.replicas.length !== ours.length || wire.replicas.some((name, k) => name !== ours[k])) {
    checkIdentity(ctx, { hash: clusterIdentity(wire.replicas.slice(0, 64)).hash, replicas: wire.replicas });
  }
  knownReplica(ctx, wire.replica, "replica");
  if (wire.replica !== ctx.expectedReplica) {
    reject("sender", `snapshot taken by ${shown(wire.replica)}, expected "${ctx.expectedReplica}"`);
  }
  const replayFrom = checkSequence(wire.replayFrom, "replay_from");
  const durableSequence = checkSequence(wire.durableSequence, "durable_sequence");
  if (replayFrom < 1 || replayFrom > durableSequence + 1) {
    reject("field", `replay_from ${replayFrom} must be within 1..durable_sequence+1 (${durableSequence + 1})`);
  }
  return {
    replica: wire.replica,
    replicas: [...wire.replicas],
    replayFrom,
    durableSequence,
    applied: checkAppliedMap(ctx, wire.applied, "applied"),
    takenAtMs: checkTimestamp(limitsOf(ctx), wire.takenAtMs, "taken_at_ms"),
    accounts: checkSequence(wire.accounts, "accounts"),
    requests: checkSequence(wire.requests, "requests"),
    policies: checkSequence(wire.policies, "policies"),
    format: checkFormat(wire.format),
    holds: checkSequence(wire.holds, "holds"),
    refunds: checkSequence(wire.refunds, "refunds"),
  };
}

function checkFormat(format: number): number {
  if (format !== 0 && format !== SNAPSHOT_FORMAT_SEALED) {
    reject("field", `format ${format} is not a snapshot layout this node reads (0 or ${SNAPSHOT_FORMAT_SEALED})`);
  }
  return format;
}

function checkTrailer(wire: SnapshotTrailer): SnapshotTrailerValue {
  return {
    accounts: checkSequence(wire.accounts, "trailer.accounts"),
    requests: checkSequence(wire.requests, "trailer.requests"),
    policies: checkSequence(wire.policies, "trailer.policies"),
    chunks: checkSequence(wire.chunks, "trailer.chunks"),
    holds: checkSequence(wire.holds, "trailer.holds"),
    refunds: checkSequence(wire.refunds, "trailer.refunds"),
  };
}

/** Decodes and checks a lone snapshot header (the reply to a snapshot request). Never throws. */
export function decodeSnapshotHeader(bytes: Uint8Array, ctx: SnapshotContext): Decoded<SnapshotHeaderValue> {
  return guard("SnapshotHeader", () => checkHeader(SnapshotHeader.decode(bytes), ctx));
}

/**
 * Decodes and checks one chunk body (without its length prefix). The first
 * chunk must carry the header, later ones must not. Never throws.
 */
export function decodeSnapshotChunk(bytes: Uint8Array, ctx: SnapshotContext, first: boolean): Decoded<SnapshotChunkValue> {
  return guard("SnapshotChunk", () => {
    const chunk = SnapshotChunk.decode(bytes);
    if (first && chunk.header === undefined) reject("field", "the first chunk has no header");
    if (!first && chunk.header !== undefined) reject("field", "a header after the first chunk");
    const header = chunk.header === undefined ? undefined : checkHeader(chunk.header, ctx);
    const limits = limitsOf(ctx);
    const n = ctx.replicas.size;
    const width = slotCount(n);
    const legacy = legacySlotCount(n);
    const accounts = chunk.accounts.map((a, k) => {
      const accountId = checkAccountId(a.accountId, `accounts[${k}].account_id`);
      if (a.values.length !== width && a.values.length !== legacy) {
        reject("field", `accounts[${k}] has ${a.values.length} values; the layout of ${n} replicas needs ${width} (or ${legacy} before holds)`);
      }
      a.values.forEach((value, j) => checkSlotValue(limits, value, `accounts[${k}].values[${j}]`));
      return { accountId, values: a.values };
    });
    return {
      header,
      accounts,
      requests: chunk.requests.map((r, k) => {
        if (r.origin > n) reject("field", `requests[${k}].origin ${r.origin} is beyond the replica list`);
        return checkedRequestFromWire(r, limits, `requests[${k}]`);
      }),
      policies: chunk.policies.map((p, k) => checkedPolicyFromWire(ctx, p, limits, `policies[${k}]`)),
      holds: chunk.holds.map((h, k) => checkedHoldFromWire(h, ctx.expectedReplica, limits, `holds[${k}]`)),
      refunds: chunk.refunds.map((t, k) => checkedRefundFromWire(t, `refunds[${k}]`)),
      trailer: chunk.trailer === undefined ? undefined : checkTrailer(chunk.trailer),
    };
  });
}
