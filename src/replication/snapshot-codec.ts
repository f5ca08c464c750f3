// Encodes a frozen replica state as length-prefixed SnapshotChunk messages
// (4-byte big-endian length, then the message), yielding to the event loop
// between chunks so a large snapshot never stalls the node; and decodes them.
// The header carries the writer's cluster identity. The guarded decoders
// (decodeSnapshotHeader, decodeSnapshotChunk) never throw; readSnapshot reads
// a whole stored snapshot through them and throws InboundRejectedError at the
// first refused chunk, so a caller never merges part of a foreign snapshot
// without being told.

import { createHash } from "node:crypto";
import { SnapshotChunk, SnapshotHeader, type SnapshotTrailer } from "../generated/tally/replication/v1/replication";
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

/** Header `format` of a sealed snapshot (chained seals, trailer, counts of everything). */
export const SNAPSHOT_FORMAT_SEALED = 2;

const ACCOUNTS_PER_CHUNK = 1_000;
const RECORDS_PER_CHUNK = 2_000;
/**
 * How hard encoding may use the event loop: it runs in slices of about
 * `sliceMs`, then rests so that it takes at most `duty` of the thread. The
 * request path shares the thread, so a snapshot that takes it all (yielding
 * only between chunks) multiplied Debit latency several times over while it ran.
 */
export interface SnapshotPace {
  readonly sliceMs: number;
  /** Share of the thread, in (0, 1]; 1 yields with setImmediate only. */
  readonly duty: number;
}

export const DEFAULT_SNAPSHOT_PACE: SnapshotPace = { sliceMs: 2, duty: 0.25 };

const SEAL_BYTES = 32;
/** Field 6 (`seal`), wire type 2, then a one-byte length of 32. */
const SEAL_TAG = (6 << 3) | 2;
const SEAL_SUFFIX = 2 + SEAL_BYTES;
const NO_SEAL = new Uint8Array(SEAL_BYTES);

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** SHA-256 over the previous seal and this chunk's body without its seal. */
function sealOf(previous: Uint8Array, body: Uint8Array): Uint8Array {
  return createHash("sha256").update(previous).update(body).digest();
}

/** A chunk framed (4-byte big-endian length) with its seal appended as the last field. */
function sealedFrame(chunk: SnapshotChunk, previous: Uint8Array): { framed: Uint8Array; seal: Uint8Array } {
  const body = SnapshotChunk.encode(chunk).finish();
  const seal = sealOf(previous, body);
  const length = body.length + SEAL_SUFFIX;
  const framed = new Uint8Array(4 + length);
  new DataView(framed.buffer).setUint32(0, length);
  framed.set(body, 4);
  framed[4 + body.length] = SEAL_TAG;
  framed[5 + body.length] = SEAL_BYTES;
  framed.set(seal, 6 + body.length);
  return { framed, seal };
}

function emptyChunk(): SnapshotChunk {
  return { header: undefined, accounts: [], requests: [], policies: [], trailer: undefined, seal: Buffer.alloc(0) };
}

/** The header with its cluster identity filled in from its replica list. */
export function withCluster(header: SnapshotHeader): SnapshotHeader {
  return { ...header, cluster: clusterToWire(clusterIdentity(header.replicas)) };
}

/** Encodes a snapshot header on its own (e.g. the reply to a snapshot request), with its identity. */
export function encodeSnapshotHeader(header: SnapshotHeader): Uint8Array {
  return SnapshotHeader.encode(withCluster(header)).finish();
}

/**
 * Encodes a frozen state as a sealed snapshot: a header chunk (identity, and
 * the counts of accounts, requests and policies, which it sets from the state),
 * the content chunks, then a trailer chunk; each chunk ends with a seal chained
 * over every chunk before it. Work runs in slices paced by `pace` (see
 * SnapshotPace). `header.replicas` must be the state's.
 */
export async function* encodeSnapshot(frozen: FrozenState, header: SnapshotHeader, pace: SnapshotPace = DEFAULT_SNAPSHOT_PACE): AsyncGenerator<Uint8Array> {
  if (frozen.replicas.length !== header.replicas.length || frozen.replicas.some((name, k) => name !== header.replicas[k])) {
    throw new Error(`snapshot header lists [${header.replicas.join(",")}] but the state has [${frozen.replicas.join(",")}]`);
  }
  const counts = { accounts: frozen.ids.length, requests: frozen.requests.size, policies: frozen.policies.length };
  const sealedHeader: SnapshotHeader = {
    ...withCluster(header),
    accounts: BigInt(counts.accounts),
    requests: BigInt(counts.requests),
    policies: BigInt(counts.policies),
    format: SNAPSHOT_FORMAT_SEALED,
  };
  let previous: Uint8Array = NO_SEAL;
  let chunks = 0;
  let sliceStarted = performance.now();
  const emit = (chunk: SnapshotChunk): Uint8Array => {
    const { framed, seal } = sealedFrame(chunk, previous);
    previous = seal;
    chunks++;
    return framed;
  };
  const duty = Math.min(1, Math.max(0.01, pace.duty));
  // Once the current slice has run sliceMs: rests for its share, or just yields at duty 1.
  const pause = async (): Promise<void> => {
    const ran = performance.now() - sliceStarted;
    if (ran < pace.sliceMs) return;
    if (duty >= 1) await yieldToEventLoop();
    else await new Promise((resolve) => setTimeout(resolve, Math.ceil((ran * (1 - duty)) / duty)));
    sliceStarted = performance.now();
  };
  yield emit({ ...emptyChunk(), header: sealedHeader });
  const { ids, slots, width } = frozen;
  for (let start = 0; start < ids.length; start += ACCOUNTS_PER_CHUNK) {
    const end = Math.min(ids.length, start + ACCOUNTS_PER_CHUNK);
    const accounts = [];
    for (let k = start; k < end; k++) {
      const base = k * width;
      accounts.push({ accountId: ids[k] ?? "", values: Array.from(slots.subarray(base, base + width)) });
    }
    yield emit({ ...emptyChunk(), accounts });
    await pause();
  }
  const { requests } = frozen;
  for (let start = 0; start < requests.size; start += RECORDS_PER_CHUNK) {
    const end = Math.min(requests.size, start + RECORDS_PER_CHUNK);
    const records = [];
    for (let k = start; k < end; k++) records.push(requestToWire(requests.record(k)));
    yield emit({ ...emptyChunk(), requests: records });
    await pause();
  }
  for (let start = 0; start < frozen.policies.length; start += RECORDS_PER_CHUNK) {
    const policies = frozen.policies.slice(start, start + RECORDS_PER_CHUNK).map(([accountId, write]) => policyToWire({ accountId, write }));
    yield emit({ ...emptyChunk(), policies });
    await pause();
  }
  const trailer: SnapshotTrailer = {
    accounts: BigInt(counts.accounts),
    requests: BigInt(counts.requests),
    policies: BigInt(counts.policies),
    chunks: BigInt(chunks),
  };
  yield emit({ ...emptyChunk(), trailer });
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
  /** Remembered requests in the snapshot (0 in an unsealed one: not counted then). */
  readonly requests: number;
  /** Explicit policies in the snapshot (0 in an unsealed one: not counted then). */
  readonly policies: number;
  /** Layout version: SNAPSHOT_FORMAT_SEALED, or 0 for one written before seals. */
  readonly format: number;
}

export interface SnapshotTrailerValue {
  readonly accounts: number;
  readonly requests: number;
  readonly policies: number;
  /** Chunks before the trailer, the header chunk included. */
  readonly chunks: number;
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
      trailer: chunk.trailer === undefined ? undefined : checkTrailer(chunk.trailer),
    };
  });
}

/** Largest chunk body accepted (the encoder writes well under a MB). */
const MAX_CHUNK_BYTES = 256 * 1024 * 1024;

/** Why a snapshot was refused as a whole; `reason` names the replica and what is wrong. */
export class SnapshotDamagedError extends InboundRejectedError {
  constructor(
    code: ConstructorParameters<typeof InboundRejectedError>[0],
    reason: string,
    /** Chunks that passed every check (and were yielded) before the refusal. */
    readonly verifiedChunks: number,
  ) {
    super(code, reason);
  }
}

/** True when `body` ends with a seal field (tag and length); does not check its value. */
function endsWithSeal(body: Uint8Array): boolean {
  return body.length >= SEAL_SUFFIX && body[body.length - SEAL_SUFFIX] === SEAL_TAG && body[body.length - SEAL_SUFFIX + 1] === SEAL_BYTES;
}

function sealMatches(body: Uint8Array, previous: Uint8Array): Uint8Array | undefined {
  if (!endsWithSeal(body)) return undefined;
  const content = body.subarray(0, body.length - SEAL_SUFFIX);
  const seal = sealOf(previous, content);
  const stored = body.subarray(body.length - SEAL_BYTES);
  return Buffer.from(seal).equals(stored) ? seal : undefined;
}

/**
 * Reads a stored snapshot through the guarded decoders and yields checked
 * chunks (the first carries the header). A sealed snapshot (header format 2)
 * is checked chunk by chunk before a chunk is yielded: its seal must chain on
 * the previous one, so an altered, reordered or missing chunk is refused
 * before anything of it is used; and it must end with its trailer, whose
 * counts (and the header's) must equal what was read. An unsealed one (older
 * writers) is checked for its account count only. Throws SnapshotDamagedError
 * (an InboundRejectedError) naming the replica and the fault; what was yielded
 * before is genuine content of that snapshot, but not all of it.
 */
export async function* readSnapshot(data: AsyncIterable<Uint8Array>, ctx: SnapshotContext): AsyncGenerator<SnapshotChunkValue> {
  const who = `snapshot of ${ctx.expectedReplica}`;
  let buffer = new Uint8Array(0);
  let index = 0;
  let header: SnapshotHeaderValue | undefined;
  let sealed = false;
  let previous: Uint8Array = NO_SEAL;
  let trailer: SnapshotTrailerValue | undefined;
  const counted = { accounts: 0, requests: 0, policies: 0 };
  const fail = (code: ConstructorParameters<typeof InboundRejectedError>[0], reason: string): never => {
    throw new SnapshotDamagedError(code, `${who}: ${reason}`, index);
  };
  for await (const piece of data) {
    const joined = new Uint8Array(buffer.length + piece.length);
    joined.set(buffer);
    joined.set(piece, buffer.length);
    buffer = joined;
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const length = new DataView(buffer.buffer, buffer.byteOffset + offset, 4).getUint32(0);
      if (length > MAX_CHUNK_BYTES) fail("undecodable", `chunk ${index} claims ${length} bytes (broken framing)`);
      if (buffer.length - offset - 4 < length) break;
      const body = buffer.subarray(offset + 4, offset + 4 + length);
      if (trailer !== undefined) fail("field", `bytes after the trailer (chunk ${index})`);
      if (index === 0 || sealed) {
        const seal = sealMatches(body, previous);
        if (seal !== undefined) {
          sealed = true;
          previous = seal;
        } else if (sealed || endsWithSeal(body)) {
          // A chunk that carries a seal must match it; only a chunk of an older,
          // unsealed snapshot has none.
          fail("field", `chunk ${index} fails its seal (altered, reordered, or a chunk before it is missing)`);
        }
      }
      const decoded = decodeSnapshotChunk(body, ctx, index === 0);
      if (!decoded.ok) fail(decoded.code, `chunk ${index}: ${decoded.reason}`);
      const chunk = (decoded as { ok: true; value: SnapshotChunkValue }).value;
      if (chunk.header !== undefined) {
        header = chunk.header;
        if (!sealed && header.format === SNAPSHOT_FORMAT_SEALED) fail("field", "the header chunk fails its seal (altered)");
        if (sealed && header.format !== SNAPSHOT_FORMAT_SEALED) fail("field", `sealed chunks under a header of format ${header.format}`);
      }
      if (chunk.trailer !== undefined) {
        if (!sealed) fail("field", `a trailer in an unsealed snapshot (chunk ${index})`);
        if (chunk.accounts.length + chunk.requests.length + chunk.policies.length > 0) fail("field", "the trailer chunk carries content");
        trailer = chunk.trailer;
        if (trailer.chunks !== index) fail("field", `the trailer counts ${trailer.chunks} chunks before it, ${index} were read`);
      }
      counted.accounts += chunk.accounts.length;
      counted.requests += chunk.requests.length;
      counted.policies += chunk.policies.length;
      index++;
      offset += 4 + length;
      yield chunk;
    }
    buffer = buffer.slice(offset);
  }
  if (buffer.length !== 0) fail("undecodable", `ends with ${buffer.length} stray bytes after chunk ${index - 1} (cut mid-chunk)`);
  if (header === undefined) return fail("undecodable", "is empty");
  const expected = `${header.accounts} accounts, ${header.requests} requests, ${header.policies} policies`;
  const read = `${counted.accounts} accounts, ${counted.requests} requests, ${counted.policies} policies`;
  if (!sealed) {
    if (counted.accounts !== header.accounts) fail("field", `holds ${counted.accounts} accounts, its header says ${header.accounts}`);
    return;
  }
  if (trailer === undefined) fail("field", `ends after chunk ${index - 1} without its trailer (truncated); read ${read} of ${expected}`);
  if (counted.accounts !== header.accounts || counted.requests !== header.requests || counted.policies !== header.policies) {
    fail("field", `holds ${read}, its header says ${expected}`);
  }
  const t = trailer as SnapshotTrailerValue;
  if (t.accounts !== header.accounts || t.requests !== header.requests || t.policies !== header.policies) {
    fail("field", `its trailer says ${t.accounts} accounts, ${t.requests} requests, ${t.policies} policies, its header says ${expected}`);
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
    requests: BigInt(header.requests),
    policies: BigInt(header.policies),
    format: header.format,
  });
}
