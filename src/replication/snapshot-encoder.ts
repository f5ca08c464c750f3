// Encodes a frozen replica state as a sealed snapshot: length-prefixed
// SnapshotChunk messages (see snapshot-seal.ts), yielding to the event loop
// between chunks so a large snapshot never stalls the node. The header carries
// the writer's cluster identity.

import { SnapshotHeader, type SnapshotChunk, type SnapshotTrailer } from "../generated/tally/replication/v1/replication";
import { clusterIdentity } from "../core/cluster-identity";
import type { FrozenState } from "../core/replica-state";
import { policyToWire, requestToWire } from "./delta-codec";
import { holdToWire, refundToWire } from "./hold-codec";
import { clusterToWire } from "./inbound";
import type { SnapshotHeaderValue } from "./snapshot-decoder";
import { NO_SEAL, SNAPSHOT_FORMAT_SEALED, sealedFrame } from "./snapshot-seal";

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

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function emptyChunk(): SnapshotChunk {
  return { header: undefined, accounts: [], requests: [], policies: [], trailer: undefined, seal: Buffer.alloc(0), holds: [], refunds: [] };
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
  const counts = {
    accounts: frozen.ids.length,
    requests: frozen.requests.size,
    policies: frozen.policies.length,
    holds: frozen.holds.length,
    refunds: frozen.refunds.length,
  };
  const sealedHeader: SnapshotHeader = {
    ...withCluster(header),
    accounts: BigInt(counts.accounts),
    requests: BigInt(counts.requests),
    policies: BigInt(counts.policies),
    holds: BigInt(counts.holds),
    refunds: BigInt(counts.refunds),
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
  for (let start = 0; start < frozen.holds.length; start += RECORDS_PER_CHUNK) {
    yield emit({ ...emptyChunk(), holds: frozen.holds.slice(start, start + RECORDS_PER_CHUNK).map(holdToWire) });
    await pause();
  }
  for (let start = 0; start < frozen.refunds.length; start += RECORDS_PER_CHUNK) {
    yield emit({ ...emptyChunk(), refunds: frozen.refunds.slice(start, start + RECORDS_PER_CHUNK).map(refundToWire) });
    await pause();
  }
  const trailer: SnapshotTrailer = {
    accounts: BigInt(counts.accounts),
    requests: BigInt(counts.requests),
    policies: BigInt(counts.policies),
    chunks: BigInt(chunks),
    holds: BigInt(counts.holds),
    refunds: BigInt(counts.refunds),
  };
  yield emit({ ...emptyChunk(), trailer });
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
    holds: BigInt(header.holds),
    refunds: BigInt(header.refunds),
  });
}
