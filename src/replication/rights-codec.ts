// RightsBatchRequest / RightsBatchReply (tally.rights.<region>) to and from
// the wire. Encoders add the cluster identity; the guarded decoders never
// throw and refuse a batch whole when anything in it is wrong: another
// cluster layout, unknown or self-naming peers, amounts outside int64,
// invalid or repeated account ids, too many entries, malformed counters, or
// a gift for an account that was not asked.

import { legacySlotCount, slotCount } from "../core/escrow-counter";
import { INT64_MAX } from "../core/amounts";
import type { ClusterIdentity } from "../core/cluster-identity";
import type { RightsAsk, RightsBatchAsk, RightsBatchGift, RightsGift } from "../core/rights-messages";
import { MAX_RIGHTS_BATCH } from "../core/rights-messages";
import { RightsBatchReply, RightsBatchRequest } from "../generated/tally/replication/v1/replication";
import { rowOwner } from "../core/lot-rows";
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

export function encodeRightsRequest(batch: RightsBatchAsk, identity: ClusterIdentity): Uint8Array {
  return RightsBatchRequest.encode({
    requester: batch.requester,
    asks: batch.asks.map((ask) => ({ accountId: ask.accountId, deficit: ask.deficit, urgent: ask.urgent })),
    cluster: clusterToWire(identity),
  }).finish();
}

export function encodeRightsReply(reply: RightsBatchGift, identity: ClusterIdentity): Uint8Array {
  return RightsBatchReply.encode({
    donor: reply.donor,
    gifts: reply.gifts.map((gift) => ({
      accountId: gift.accountId,
      granted: gift.granted,
      transferredTotal: gift.transferredTotal,
      donorRights: gift.donorRights,
      accountCounter: [...gift.accountCounter],
    })),
    cluster: clusterToWire(identity),
  }).finish();
}

/** Decodes and checks a batch of asks from a peer. Never throws. */
export function decodeRightsRequest(bytes: Uint8Array, ctx: RightsRequestContext): Decoded<RightsBatchAsk> {
  return guard("RightsBatchRequest", () => {
    const request = RightsBatchRequest.decode(bytes);
    checkIdentity(ctx, request.cluster);
    knownReplica(ctx, request.requester, "requester");
    if (request.requester === ctx.self) reject("sender", `requester is this node ("${ctx.self}")`);
    checkBatchSize(request.asks.length, "asks");
    const seen = new Set<string>();
    const asks = request.asks.map((entry, k): RightsAsk => {
      const accountId = checkAccountId(entry.accountId, `asks[${k}].account_id`);
      if (seen.has(accountId)) reject("field", `asks[${k}].account_id ${shown(accountId)} appears twice in the batch`);
      seen.add(accountId);
      return { accountId, deficit: checkAmount(entry.deficit, `asks[${k}].deficit`, true), urgent: entry.urgent };
    });
    return { requester: request.requester, asks };
  });
}

/**
 * Decodes and checks a donor's reply to `asked` (the account ids of the
 * batch sent). Never throws. Each grant must come with the donor's whole
 * counter (n*n+n values within limits.maxSlotValue) whose P[donor][self] is
 * at least transferred_total, and transferred_total must cover the grant.
 */
export function decodeRightsReply(bytes: Uint8Array, ctx: RightsReplyContext, asked: ReadonlySet<string>): Decoded<RightsBatchGift> {
  return guard("RightsBatchReply", () => {
    const reply = RightsBatchReply.decode(bytes);
    checkIdentity(ctx, reply.cluster);
    const donor = knownReplica(ctx, reply.donor, "donor");
    if (reply.donor === ctx.self) reject("sender", `donor is this node ("${ctx.self}")`);
    if (reply.donor !== ctx.expectedDonor) reject("sender", `donor ${shown(reply.donor)} is not the peer asked ("${ctx.expectedDonor}")`);
    const self = knownReplica(ctx, ctx.self, "self");
    checkBatchSize(reply.gifts.length, "gifts");
    const limits = limitsOf(ctx);
    const n = ctx.replicas.size;
    const width = slotCount(n);
    const legacy = legacySlotCount(n);
    const seen = new Set<string>();
    const gifts = reply.gifts.map((entry, k): RightsGift => {
      const at = `gifts[${k}]`;
      const accountId = checkAccountId(entry.accountId, `${at}.account_id`);
      // A gift of a credit lot names the lot's row; its account must have been asked.
      if (!asked.has(accountId) && !asked.has(rowOwner(accountId)?.accountId ?? accountId)) reject("field", `${at}.account_id ${shown(accountId)} was not asked`);
      if (seen.has(accountId)) reject("field", `${at}.account_id ${shown(accountId)} appears twice in the batch`);
      seen.add(accountId);
      const granted = checkAmount(entry.granted, `${at}.granted`, false);
      const transferredTotal = checkSlotValue(limits, entry.transferredTotal, `${at}.transferred_total`);
      if (transferredTotal < granted) reject("field", `${at}.transferred_total ${transferredTotal} is below granted ${granted}`);
      const counter = entry.accountCounter;
      if (counter.length !== 0 && counter.length !== width && counter.length !== legacy) {
        reject("field", `${at}.account_counter has ${counter.length} values; the layout of ${n} replicas needs ${width} (or ${legacy} before holds)`);
      }
      if (granted > 0n && counter.length === 0) reject("field", `${at}: a grant must carry the donor's account_counter`);
      counter.forEach((value, i) => checkSlotValue(limits, value, `${at}.account_counter[${i}]`));
      const transferredSeen = counter[donor * n + self];
      if (transferredSeen !== undefined && transferredSeen < transferredTotal) {
        reject("field", `${at}.account_counter holds P[${reply.donor}][${ctx.self}] = ${transferredSeen}, below transferred_total ${transferredTotal}`);
      }
      // Rights lie in [−n·Q, n·Q] ⊆ [−int64 max, int64 max] (core/bounds.ts); −2^63 cannot occur.
      if (entry.donorRights < -INT64_MAX) reject("field", `${at}.donor_rights ${entry.donorRights} is below −${INT64_MAX}`);
      return { accountId, granted, transferredTotal, donorRights: entry.donorRights, accountCounter: counter };
    });
    return { donor: reply.donor, gifts };
  });
}

function checkBatchSize(size: number, field: string): void {
  if (size === 0) reject("field", `${field} is empty`);
  if (size > MAX_RIGHTS_BATCH) reject("field", `${field} has ${size} entries; at most ${MAX_RIGHTS_BATCH} per batch`);
}
