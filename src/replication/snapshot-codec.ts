// Encodes a frozen replica state as length-prefixed SnapshotChunk messages
// (4-byte big-endian length, then the message), yielding to the event loop
// between chunks so a large snapshot never stalls the node; and decodes them.

import { SnapshotChunk, type SnapshotHeader } from "../generated/tally/replication/v1/replication";
import type { FrozenState } from "../core/replica-state";
import { policyToWire, requestToWire } from "./delta-codec";

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

export async function* encodeSnapshot(frozen: FrozenState, header: SnapshotHeader): AsyncGenerator<Uint8Array> {
  yield frame({ header, accounts: [], requests: [], policies: [] });
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

/** Reads length-prefixed chunks from a byte stream. */
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
