// RightsRequest / RightsReply (tally.rights.<region>) to and from the wire.
// Encoders add the cluster identity; the guarded decoders never throw and
// refuse another cluster layout, unknown or self-naming peers, amounts
// outside int64, invalid account ids and malformed account counters.

import type { ClusterIdentity } from "../core/cluster-identity";
import { RightsReply, RightsRequest } from "../generated/tally/replication/v1/replication";
import {
  checkAccountId,
  checkAmount,
  checkIdentity,
  checkSlotValue,
  clusterToWire,
  guard,
  knownReplica,
  limitsOf,
  reject,
  shown,
  type Decoded,
  type InboundContext,
} from "./inbound";

export interface RightsRequestValue {
  readonly accountId: string;
  /** The asking replica. */
  readonly requester: string;
  /** Rights it is missing, 1..int64 max. */
  readonly deficit: bigint;
}

export interface RightsReplyValue {
  readonly donor: string;
  /** Rights given by this reply (0 = refused). */
  readonly granted: bigint;
  /** Absolute P[donor][requester] after the grant. */
  readonly transferredTotal: bigint;
  /** The donor's own rights after the grant (negative under overdraft). */
  readonly donorRights: bigint;
  /** The donor's view of the account's counter (P row-major, then D), or empty. */
  readonly accountCounter: readonly bigint[];
}

export interface RightsRequestContext extends InboundContext {
  /** This node (the donor asked). */
  readonly self: string;
}

export interface RightsReplyContext extends InboundContext {
  /** This node (the requester). */
  readonly self: string;
  /** The peer this node asked: only it may answer. */
  readonly expectedDonor: string;
}

export function encodeRightsRequest(request: RightsRequestValue, identity: ClusterIdentity): Uint8Array {
  return RightsRequest.encode({
    accountId: request.accountId,
    requester: request.requester,
    deficit: request.deficit,
    cluster: clusterToWire(identity),
  }).finish();
}

export function encodeRightsReply(reply: RightsReplyValue, identity: ClusterIdentity): Uint8Array {
  return RightsReply.encode({
    donor: reply.donor,
    granted: reply.granted,
    transferredTotal: reply.transferredTotal,
    donorRights: reply.donorRights,
    accountCounter: [...reply.accountCounter],
    cluster: clusterToWire(identity),
  }).finish();
}

/** Decodes and checks a request from a peer. Never throws. */
export function decodeRightsRequest(bytes: Uint8Array, ctx: RightsRequestContext): Decoded<RightsRequestValue> {
  return guard("RightsRequest", () => {
    const request = RightsRequest.decode(bytes);
    checkIdentity(ctx, request.cluster);
    knownReplica(ctx, request.requester, "requester");
    if (request.requester === ctx.self) reject("sender", `requester is this node ("${ctx.self}")`);
    return {
      accountId: checkAccountId(request.accountId, "account_id"),
      requester: request.requester,
      deficit: checkAmount(request.deficit, "deficit", true),
    };
  });
}

/**
 * Decodes and checks a donor's reply. Never throws. A grant must come with
 * the donor's whole counter (n*n+n values within limits.maxSlotValue) whose
 * P[donor][self] is at least transferred_total, and transferred_total must
 * cover the grant.
 */
export function decodeRightsReply(bytes: Uint8Array, ctx: RightsReplyContext): Decoded<RightsReplyValue> {
  return guard("RightsReply", () => {
    const reply = RightsReply.decode(bytes);
    checkIdentity(ctx, reply.cluster);
    const donor = knownReplica(ctx, reply.donor, "donor");
    if (reply.donor === ctx.self) reject("sender", `donor is this node ("${ctx.self}")`);
    if (reply.donor !== ctx.expectedDonor) reject("sender", `donor ${shown(reply.donor)} is not the peer asked ("${ctx.expectedDonor}")`);
    const self = knownReplica(ctx, ctx.self, "self");
    const limits = limitsOf(ctx);
    const granted = checkAmount(reply.granted, "granted", false);
    const transferredTotal = checkSlotValue(limits, reply.transferredTotal, "transferred_total");
    if (transferredTotal < granted) reject("field", `transferred_total ${transferredTotal} is below granted ${granted}`);
    const n = ctx.replicas.size;
    const width = n * n + n;
    const counter = reply.accountCounter;
    if (counter.length !== 0 && counter.length !== width) {
      reject("field", `account_counter has ${counter.length} values; the layout of ${n} replicas needs ${width}`);
    }
    if (granted > 0n && counter.length === 0) reject("field", "a grant must carry the donor's account_counter");
    counter.forEach((value, k) => checkSlotValue(limits, value, `account_counter[${k}]`));
    const transferredSeen = counter[donor * n + self];
    if (transferredSeen !== undefined && transferredSeen < transferredTotal) {
      reject("field", `account_counter holds P[${reply.donor}][${ctx.self}] = ${transferredSeen}, below transferred_total ${transferredTotal}`);
    }
    return { donor: reply.donor, granted, transferredTotal, donorRights: reply.donorRights, accountCounter: counter };
  });
}
