// The NodeStatus broadcast (tally.status.<region>) to and from the wire. The
// encoder adds the cluster identity; the guarded decoder never throws and
// refuses a status from this node itself, an unknown sender, another cluster
// layout, or with sequences that are not non-negative safe integers (a status
// claiming 2^64-1 would otherwise make the pending count absurd).

import type { ClusterIdentity } from "../core/cluster-identity";
import { NodeStatus } from "../generated/tally/replication/v1/replication";
import {
  checkAppliedMap,
  checkDigest,
  checkIdentity,
  checkSequence,
  checkTimestamp,
  clusterToWire,
  guard,
  knownReplica,
  limitsOf,
  reject,
  type Decoded,
  type InboundContext,
} from "./inbound";

/** A node's status: its own stream's newest sequence and digest, and what it applied of every stream. */
export interface NodeStatusValue {
  readonly replica: string;
  readonly ownSequence: number;
  readonly ownDigest: string;
  /** Applied sequence per replica name (the sender's own entry included when it sends one). */
  readonly applied: Readonly<Record<string, number>>;
  readonly sentAtMs: number;
}

export interface StatusContext extends InboundContext {
  /** This node's replica name: a status claiming to come from it is refused. */
  readonly self: string;
}

/** Encodes a status with the sender's cluster identity. Sequences must be non-negative safe integers. */
export function encodeNodeStatus(status: NodeStatusValue, identity: ClusterIdentity): Uint8Array {
  const applied: Record<string, bigint> = {};
  for (const [replica, sequence] of Object.entries(status.applied)) applied[replica] = BigInt(sequence);
  return NodeStatus.encode({
    replica: status.replica,
    ownSequence: BigInt(status.ownSequence),
    ownDigest: status.ownDigest,
    applied,
    sentAtMs: BigInt(status.sentAtMs),
    cluster: clusterToWire(identity),
  }).finish();
}

/** Decodes and checks a peer's status. Never throws. */
export function decodeNodeStatus(bytes: Uint8Array, ctx: StatusContext): Decoded<NodeStatusValue> {
  return guard("NodeStatus", () => {
    const status = NodeStatus.decode(bytes);
    checkIdentity(ctx, status.cluster);
    knownReplica(ctx, status.replica, "sender");
    if (status.replica === ctx.self) reject("sender", `status claims to come from this node ("${ctx.self}")`);
    const limits = limitsOf(ctx);
    return {
      replica: status.replica,
      ownSequence: checkSequence(status.ownSequence, "own_sequence"),
      ownDigest: checkDigest(status.ownDigest, "own_digest"),
      applied: checkAppliedMap(ctx, status.applied, "applied"),
      sentAtMs: checkTimestamp(limits, status.sentAtMs, "sent_at_ms"),
    };
  });
}
