// Reads a whole stored snapshot through the guarded decoders, checking seals,
// trailer and counts, and throws InboundRejectedError at the first refused
// chunk, so a caller never merges part of a foreign snapshot without being told.

import { InboundRejectedError } from "./inbound";
import { decodeSnapshotChunk, type SnapshotChunkValue, type SnapshotContext, type SnapshotHeaderValue, type SnapshotTrailerValue } from "./snapshot-decoder";
import { endsWithSeal, NO_SEAL, SNAPSHOT_FORMAT_SEALED, sealMatches } from "./snapshot-seal";

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
  const counted = { accounts: 0, requests: 0, policies: 0, holds: 0, refunds: 0 };
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
        if (chunk.accounts.length + chunk.requests.length + chunk.policies.length + chunk.holds.length + chunk.refunds.length > 0) {
          fail("field", "the trailer chunk carries content");
        }
        trailer = chunk.trailer;
        if (trailer.chunks !== index) fail("field", `the trailer counts ${trailer.chunks} chunks before it, ${index} were read`);
      }
      counted.accounts += chunk.accounts.length;
      counted.requests += chunk.requests.length;
      counted.policies += chunk.policies.length;
      counted.holds += chunk.holds.length;
      counted.refunds += chunk.refunds.length;
      index++;
      offset += 4 + length;
      yield chunk;
    }
    buffer = buffer.slice(offset);
  }
  if (buffer.length !== 0) fail("undecodable", `ends with ${buffer.length} stray bytes after chunk ${index - 1} (cut mid-chunk)`);
  if (header === undefined) return fail("undecodable", "is empty");
  const describe = (c: { accounts: number; requests: number; policies: number; holds: number; refunds: number }): string =>
    `${c.accounts} accounts, ${c.requests} requests, ${c.policies} policies, ${c.holds} holds, ${c.refunds} refund tallies`;
  const expected = describe(header);
  const read = describe(counted);
  if (!sealed) {
    if (counted.accounts !== header.accounts) fail("field", `holds ${counted.accounts} accounts, its header says ${header.accounts}`);
    return;
  }
  if (trailer === undefined) fail("field", `ends after chunk ${index - 1} without its trailer (truncated); read ${read} of ${expected}`);
  const same = (c: { accounts: number; requests: number; policies: number; holds: number; refunds: number }): boolean =>
    c.accounts === header.accounts && c.requests === header.requests && c.policies === header.policies && c.holds === header.holds && c.refunds === header.refunds;
  if (!same(counted)) fail("field", `holds ${read}, its header says ${expected}`);
  const t = trailer as SnapshotTrailerValue;
  if (!same(t)) fail("field", `its trailer says ${describe(t)}, its header says ${expected}`);
}
