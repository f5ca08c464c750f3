// The sealed snapshot layout: each chunk is framed with a 4-byte big-endian
// length and ends with a seal, SHA-256 chained over every chunk before it, so
// a reader can tell an altered, reordered or missing chunk before using it.

import { createHash } from "node:crypto";
import { SnapshotChunk } from "../generated/tally/replication/v1/replication";

/** Header `format` of a sealed snapshot (chained seals, trailer, counts of everything). */
export const SNAPSHOT_FORMAT_SEALED = 2;

const SEAL_BYTES = 32;
/** Field 6 (`seal`), wire type 2, then a one-byte length of 32. */
const SEAL_TAG = (6 << 3) | 2;
const SEAL_SUFFIX = 2 + SEAL_BYTES;
export const NO_SEAL = new Uint8Array(SEAL_BYTES);

/** SHA-256 over the previous seal and this chunk's body without its seal. */
function sealOf(previous: Uint8Array, body: Uint8Array): Uint8Array {
  return createHash("sha256").update(previous).update(body).digest();
}

/** A chunk framed (4-byte big-endian length) with its seal appended as the last field. */
export function sealedFrame(chunk: SnapshotChunk, previous: Uint8Array): { framed: Uint8Array; seal: Uint8Array } {
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

/** True when `body` ends with a seal field (tag and length); does not check its value. */
export function endsWithSeal(body: Uint8Array): boolean {
  return body.length >= SEAL_SUFFIX && body[body.length - SEAL_SUFFIX] === SEAL_TAG && body[body.length - SEAL_SUFFIX + 1] === SEAL_BYTES;
}

/** The seal of `body` when it ends with one chained on `previous`, else undefined. */
export function sealMatches(body: Uint8Array, previous: Uint8Array): Uint8Array | undefined {
  if (!endsWithSeal(body)) return undefined;
  const content = body.subarray(0, body.length - SEAL_SUFFIX);
  const seal = sealOf(previous, content);
  const stored = body.subarray(body.length - SEAL_BYTES);
  return Buffer.from(seal).equals(stored) ? seal : undefined;
}
