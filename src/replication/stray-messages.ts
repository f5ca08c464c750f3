// Messages in a replica's own stream that its writer did not write: a stray
// publisher's garbage, or another cluster's deltas. Told apart from a second
// writer of the same replica (whose deltas decode as this replica's).

import type { ReplicaSet } from "../core/replica-set";
import { decodeDelta } from "./delta-codec";
import { inboundContext } from "./inbound";

export interface StreamReader {
  /** The messages after `afterSeq` (to tell a second writer from a stray publisher). */
  messagesAfter?(replica: string, afterSeq: number): Promise<Array<{ seq: number; data: Uint8Array }>>;
}

/**
 * The messages after `afterSeq` when every one of them is stray (none is a
 * delta of `region`), with why each was refused; undefined when there are none,
 * they cannot be read, or one is a real delta of this replica (a second writer).
 */
export async function findStrayMessages(
  log: StreamReader,
  region: string,
  replicas: ReplicaSet,
  afterSeq: number,
): Promise<{ sequences: number[]; reason: string } | undefined> {
  if (log.messagesAfter === undefined) return undefined;
  let messages: Array<{ seq: number; data: Uint8Array }>;
  try {
    messages = await log.messagesAfter(region, afterSeq);
  } catch {
    return undefined;
  }
  if (messages.length === 0) return undefined;
  const ctx = { ...inboundContext(replicas), expectedWriter: region };
  const reasons: string[] = [];
  for (const message of messages) {
    const decoded = decodeDelta(message.data, ctx);
    if (decoded.ok) return undefined;
    reasons.push(`${message.seq}: ${decoded.reason}`);
  }
  return { sequences: messages.map((m) => m.seq), reason: reasons.join("; ") };
}
