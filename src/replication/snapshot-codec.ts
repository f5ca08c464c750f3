// Encodes a frozen replica state as length-prefixed SnapshotChunk messages
// (4-byte big-endian length, then the message), yielding to the event loop
// between chunks so a large snapshot never stalls the node; and decodes them.
// The header carries the writer's cluster identity. The guarded decoders
// (decodeSnapshotHeader, decodeSnapshotChunk) never throw; readSnapshot reads
// a whole stored snapshot through them and throws InboundRejectedError at the
// first refused chunk, so a caller never merges part of a foreign snapshot
// without being told.

import { SnapshotChunk, SnapshotHeader } from "../generated/tally/replication/v1/replication";
import { clusterIdentity } from "../core/cluster-identity";
import type { FrozenState } from "../core/replica-state";
import type { PolicyRecord, RequestRecord } from "../core/durable-write";
import { checkedPolicyFromWire, checkedRequestFromWire, policyToWire, requestToWire } from "./delta-codec";
import {
  checkAccountId,
  checkAppliedMap,
  checkIdentity,
  checkSequence,
  checkSlotValue,
  checkTimestamp,
  clusterToWire,
  guard,
  InboundRejectedError,
  knownReplica,
  limitsOf,
  reject,
  shown,
  type Decoded,
  type InboundContext,
} from "./inbound";

const ACCOUNTS_PER_CHUNK = 5_000;
const RECORDS_PER_CHUNK = 20_000;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function frame(chunk: SnapshotChunk): Uint8Array {
  const body = SnapshotChunk.encode(chunk).finish();
  const framed = new Uint8Array(4 + body.length);
  new DataView(framed.buffer).setUint32(0, body.length);
  framed.set(body, 4);
  return framed;
}

/** The header with its cluster identity filled in from its replica list. */
export function withCluster(header: SnapshotHeader): SnapshotHeader {
  return { ...header, cluster: clusterToWire(clusterIdentity(header.replicas)) };
}

/** Encodes a snapshot header on its own (e.g. the reply to a snapshot request), with its identity. */
export function encodeSnapshotHeader(header: SnapshotHeader): Uint8Array {
  return SnapshotHeader.encode(withCluster(header)).finish();
}

/** Encodes a frozen state; the header's cluster identity is derived from `header.replicas`, which must be the state's. */
export async function* encodeSnapshot(frozen: FrozenState, header: SnapshotHeader): AsyncGenerator<Uint8Array> {
  if (frozen.replicas.length !== header.replicas.length || frozen.replicas.some((name, k) => name !== header.replicas[k])) {
    throw new Error(`snapshot header lists [${header.replicas.join(",")}] but the state has [${frozen.replicas.join(",")}]`);
  }
  yield frame({ header: withCluster(header), accounts: [], requests: [], policies: [] });
  const { ids, slots, width } = frozen;
  for (let start = 0; start < ids.length; start += ACCOUNTS_PER_CHUNK) {
    const end = Math.min(ids.length, start + ACCOUNTS_PER_CHUNK);
    const accounts = [];
    for (let k = start; k < end; k++) {
      const base = k * width;
      accounts.push({ accountId: ids[k] ?? "", values: Array.from(slots.subarray(base, base + width)) });
    }
    yield frame({ header: undefined, accounts, requests: [], policies: [] });
    await yieldToEventLoop();
  }
  for (let start = 0; start < frozen.requests.length; start += RECORDS_PER_CHUNK) {
    const requests = frozen.requests.slice(start, start + RECORDS_PER_CHUNK).map(([requestId, r]) =>
      requestToWire({ requestId, fingerprint: r.fingerprint, answer: r.answer, answeredAtMs: r.answeredAtMs }),
    );
    yield frame({ header: undefined, accounts: [], requests, policies: [] });
    await yieldToEventLoop();
  }
  for (let start = 0; start < frozen.policies.length; start += RECORDS_PER_CHUNK) {
    const policies = frozen.policies.slice(start, start + RECORDS_PER_CHUNK).map(([accountId, write]) => policyToWire({ accountId, write }));
    yield frame({ header: undefined, accounts: [], requests: [], policies });
    await yieldToEventLoop();
  }
}

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
}

export interface SnapshotAccount {
  readonly accountId: string;
  /** n*n + n slot values: P row-major, then D. */
  readonly values: readonly bigint[];
}

export interface SnapshotChunkValue {
  /** Present on the first chunk only. */
  readonly header: SnapshotHeaderValue | undefined;
  readonly accounts: readonly SnapshotAccount[];
  readonly requests: readonly RequestRecord[];
  readonly policies: readonly PolicyRecord[];
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
    const width = n * n + n;
    const accounts = chunk.accounts.map((a, k) => {
      const accountId = checkAccountId(a.accountId, `accounts[${k}].account_id`);
      if (a.values.length !== width) reject("field", `accounts[${k}] has ${a.values.length} values; the layout of ${n} replicas needs ${width}`);
      a.values.forEach((value, j) => checkSlotValue(limits, value, `accounts[${k}].values[${j}]`));
      return { accountId, values: a.values };
    });
    return {
      header,
      accounts,
      requests: chunk.requests.map((r, k) => checkedRequestFromWire(r, limits, `requests[${k}]`)),
      policies: chunk.policies.map((p, k) => checkedPolicyFromWire(ctx, p, limits, `policies[${k}]`)),
    };
  });
}

/** Largest chunk body accepted (the encoder writes a few MB at most). */
const MAX_CHUNK_BYTES = 256 * 1024 * 1024;

/**
 * Reads a stored snapshot through the guarded decoders. Yields checked chunks
 * (the first carries the header). Throws InboundRejectedError when a chunk is
 * refused, the framing is broken, or the account count differs from the
 * header's, so the caller can refuse the whole snapshot.
 */
export async function* readSnapshot(data: AsyncIterable<Uint8Array>, ctx: SnapshotContext): AsyncGenerator<SnapshotChunkValue> {
  let buffer = new Uint8Array(0);
  let index = 0;
  let expectedAccounts = 0;
  let accounts = 0;
  for await (const piece of data) {
    const joined = new Uint8Array(buffer.length + piece.length);
    joined.set(buffer);
    joined.set(piece, buffer.length);
    buffer = joined;
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const length = new DataView(buffer.buffer, buffer.byteOffset + offset, 4).getUint32(0);
      if (length > MAX_CHUNK_BYTES) {
        throw new InboundRejectedError("undecodable", `snapshot of ${ctx.expectedReplica}: chunk ${index} claims ${length} bytes`);
      }
      if (buffer.length - offset - 4 < length) break;
      const decoded = decodeSnapshotChunk(buffer.subarray(offset + 4, offset + 4 + length), ctx, index === 0);
      if (!decoded.ok) throw new InboundRejectedError(decoded.code, `snapshot of ${ctx.expectedReplica}, chunk ${index}: ${decoded.reason}`);
      if (decoded.value.header !== undefined) expectedAccounts = decoded.value.header.accounts;
      accounts += decoded.value.accounts.length;
      index++;
      offset += 4 + length;
      yield decoded.value;
    }
    buffer = buffer.slice(offset);
  }
  if (buffer.length !== 0) {
    throw new InboundRejectedError("undecodable", `snapshot of ${ctx.expectedReplica} ends with ${buffer.length} stray bytes`);
  }
  if (index === 0) throw new InboundRejectedError("undecodable", `snapshot of ${ctx.expectedReplica} is empty`);
  if (accounts !== expectedAccounts) {
    throw new InboundRejectedError("field", `snapshot of ${ctx.expectedReplica} holds ${accounts} accounts, its header says ${expectedAccounts}`);
  }
}

/** The wire header of a checked header value (with its cluster identity). */
export function headerToWire(header: SnapshotHeaderValue): SnapshotHeader {
  const applied: Record<string, bigint> = {};
  for (const [replica, sequence] of Object.entries(header.applied)) applied[replica] = BigInt(sequence);
  return withCluster({
    replica: header.replica,
    replicas: [...header.replicas],
    replayFrom: BigInt(header.replayFrom),
    durableSequence: BigInt(header.durableSequence),
    applied,
    takenAtMs: BigInt(header.takenAtMs),
    accounts: BigInt(header.accounts),
    cluster: undefined,
  });
}
