// Converts a group commit to and from the ReplicaDelta wire message
// (proto/tally/replication/v1). Request answers reuse the public DebitResponse
// encoding so every language can read them. Every delta carries the writer's
// cluster identity; decodeDelta is guarded: it never throws and refuses a
// delta from another cluster layout, another writer, or with a bad field.

import {
  ReplicaDelta,
  type PolicyValue,
  type RequestRecord as WireRequestRecord,
} from "../generated/tally/replication/v1/replication";
import { DebitOutcome as WireOutcome } from "../generated/tally/v1/balances";
import { DebitOutcome, type Answer } from "../core/replica-state";
import { Mode, validatePolicy } from "../core/policy";
import type { ReplicaSet } from "../core/replica-set";
import { validateRequestId } from "../core/validation";
import type { CommitBatch, PolicyRecord, RequestRecord } from "../core/durable-write";
import { lastColumn } from "../core/escrow-counter";
import type { HoldRecord } from "../core/hold-book";
import type { RefundTally } from "../core/refund-tallies";
import { checkedHoldFromWire, checkedRefundFromWire, holdToWire, refundToWire } from "./hold-codec";
import type { SlotChange } from "../core/replica-state";
import {
  checkAccountId,
  checkDigest,
  checkIdentity,
  checkSlotValue,
  checkTimestamp,
  clusterIdentityOf,
  clusterToWire,
  guard,
  inboundContext,
  InboundRejectedError,
  knownReplica,
  limitsOf,
  reject,
  shown,
  type Decoded,
  type InboundContext,
  type InboundLimits,
} from "./inbound";

export interface DecodedDelta {
  readonly writer: number;
  readonly publishedAtMs: number;
  readonly slots: SlotChange[];
  readonly requests: RequestRecord[];
  readonly policies: PolicyRecord[];
  readonly rowDigest: string;
  /** Other writers' slots of the changed accounts; merged before `slots`. */
  readonly context: SlotChange[];
  /** The writer's holds placed or resolved in this commit. */
  readonly holds: HoldRecord[];
  /** The writer's refund tallies changed in this commit. */
  readonly refunds: RefundTally[];
}

/** How a stream message is judged: this node's cluster, and whose stream it was read from. */
export interface DeltaContext extends InboundContext {
  /** The stream's owner: the only replica that may have written the message. */
  readonly expectedWriter: string;
  /**
   * Accept a delta without a cluster identity (written before identities
   * existed). Off by default: such a delta cannot prove its slot layout.
   * Only for replaying a stream known to predate the upgrade.
   */
  readonly acceptMissingIdentity?: boolean;
}

/** Encodes one group commit of `writer`, with the cluster identity of `replicas`. */
export function encodeDelta(
  replicas: ReplicaSet,
  writer: number,
  batch: CommitBatch,
  publishedAtMs: number,
  rowDigest: string,
): Uint8Array {
  return ReplicaDelta.encode({
    replica: replicas.nameOf(writer),
    publishedAtMs: BigInt(publishedAtMs),
    slots: batch.slots.map((s) => ({ accountId: s.accountId, column: s.column, value: s.value })),
    requests: batch.requests.map(requestToWire),
    policies: batch.policies.map(policyToWire),
    rowDigest,
    cluster: clusterToWire(clusterIdentityOf(replicas)),
    context: (batch.context ?? []).map((c) => ({ accountId: c.accountId, writer: c.writer, column: c.column, value: c.value })),
    holds: (batch.holds ?? []).map(holdToWire),
    refunds: (batch.refunds ?? []).map(refundToWire),
  }).finish();
}

/**
 * Decodes and checks a stream message. Never throws. Refuses: bytes that are
 * not a ReplicaDelta; a missing or different cluster identity; a writer that
 * is unknown or not the stream's owner; slot columns beyond the layout; slot
 * values above limits.maxSlotValue (int64 max by default); invalid account or
 * request ids; unknown outcomes; policies with an unknown mode, out-of-range
 * limits or another writer; timestamps outside the limits.
 */
export function decodeDelta(bytes: Uint8Array, ctx: DeltaContext): Decoded<DecodedDelta> {
  return guard("ReplicaDelta", () => {
    const delta = ReplicaDelta.decode(bytes);
    checkIdentity(ctx, delta.cluster, ctx.acceptMissingIdentity === true);
    const expected = knownReplica(ctx, ctx.expectedWriter, "expected writer");
    if (delta.replica !== ctx.expectedWriter) {
      reject("sender", `written by ${shown(delta.replica)} but read from the stream of "${ctx.expectedWriter}"`);
    }
    const writer = expected;
    const limits = limitsOf(ctx);
    // Columns n..n+3 are D, HA, HR and RF; messages written before holds use 0..n only.
    const last = lastColumn(ctx.replicas.size);
    const slots: SlotChange[] = delta.slots.map((s, k) => {
      const accountId = checkAccountId(s.accountId, `slots[${k}].account_id`);
      if (s.column > last) reject("field", `slots[${k}].column ${s.column} is beyond the layout (0..${last})`);
      const value = checkSlotValue(limits, s.value, `slots[${k}].value`);
      return { accountId, writer, column: s.column, value };
    });
    const context: SlotChange[] = delta.context.map((c, k) => {
      const accountId = checkAccountId(c.accountId, `context[${k}].account_id`);
      if (c.writer >= ctx.replicas.size) reject("field", `context[${k}].writer ${c.writer} is beyond the replica list`);
      // A writer's own row travels only in its own slots.
      if (c.writer === writer) reject("field", `context[${k}] is the writer's own row`);
      if (c.column > last) reject("field", `context[${k}].column ${c.column} is beyond the layout (0..${last})`);
      return { accountId, writer: c.writer, column: c.column, value: checkSlotValue(limits, c.value, `context[${k}].value`) };
    });
    return {
      writer,
      context,
      publishedAtMs: checkTimestamp(limits, delta.publishedAtMs, "published_at_ms"),
      rowDigest: checkDigest(delta.rowDigest, "row_digest"),
      slots,
      requests: delta.requests.map((r, k) => checkedRequestFromWire(r, limits, `requests[${k}]`)),
      policies: delta.policies.map((p, k) => checkedPolicyFromWire(ctx, p, limits, `policies[${k}]`, ctx.expectedWriter)),
      holds: delta.holds.map((h, k) => checkedHoldFromWire(h, ctx.expectedWriter, limits, `holds[${k}]`)),
      refunds: delta.refunds.map((t, k) => checkedRefundFromWire(t, `refunds[${k}]`)),
    };
  });
}

/**
 * The throwing form of decodeDelta for callers that still expect an exception
 * (InboundRejectedError) on a refused message.
 */
export function decodeDeltaOrThrow(replicas: ReplicaSet, bytes: Uint8Array, expectedWriter: string): DecodedDelta {
  const decoded = decodeDelta(bytes, { ...inboundContext(replicas), expectedWriter });
  if (!decoded.ok) throw new InboundRejectedError(decoded.code, decoded.reason);
  return decoded.value;
}

/** Origins are replica index + 1 in one byte. */
const MAX_REPLICAS = 254;

const KNOWN_MODES: ReadonlySet<number> = new Set<number>([Mode.Strict, Mode.Overdraft]);

/** A remembered request from the wire, checked: request id, fingerprint, known outcome, time. */
export function checkedRequestFromWire(r: WireRequestRecord, limits: InboundLimits, field: string): RequestRecord {
  try {
    validateRequestId(r.requestId, `${field}.request_id`);
  } catch (error) {
    reject("field", error instanceof Error ? error.message : `${field}.request_id: invalid`);
  }
  if (!/^[\x20-\x7e]{1,512}$/.test(r.fingerprint)) reject("field", `${field}.fingerprint must be 1..512 printable ASCII characters`);
  if (fromWireOutcome(r.outcome) === undefined) reject("field", `${field}.outcome ${r.outcome} is not a known DebitOutcome`);
  checkTimestamp(limits, r.answeredAtMs, `${field}.answered_at_ms`);
  if (r.origin > MAX_REPLICAS) reject("field", `${field}.origin ${r.origin} is beyond any replica list`);
  return requestFromWire(r);
}

/**
 * A policy from the wire, checked before policyFromWire builds it: a known
 * mode, limits as validatePolicy requires, a valid account, a sane write time
 * and a known writer (`writer`, when given, must be it).
 */
export function checkedPolicyFromWire(
  ctx: InboundContext,
  p: PolicyValue,
  limits: InboundLimits,
  field: string,
  writer?: string,
): PolicyRecord {
  checkAccountId(p.accountId, `${field}.account_id`);
  if (!KNOWN_MODES.has(p.mode)) reject("field", `${field}.mode ${p.mode} is not a known policy mode`);
  try {
    validatePolicy({ mode: p.mode, overdraftLimit: p.overdraftLimit, lowWaterMark: p.lowWaterMark }, field);
  } catch (error) {
    reject("field", error instanceof Error ? error.message : `${field}: invalid`);
  }
  checkTimestamp(limits, p.writtenAtMs, `${field}.written_at_ms`);
  knownReplica(ctx, p.replica, `${field}.replica`);
  if (writer !== undefined && p.replica !== writer) {
    reject("sender", `${field}.replica ${shown(p.replica)} differs from the writer "${writer}"`);
  }
  return policyFromWire(p);
}

export function requestToWire(r: RequestRecord): WireRequestRecord {
  return {
    requestId: r.requestId,
    fingerprint: r.fingerprint,
    answeredAtMs: BigInt(r.answeredAtMs),
    outcome: r.answer.outcome,
    balance: r.answer.balance,
    localRights: r.answer.localRights,
    origin: r.origin === undefined ? 0 : r.origin + 1,
  };
}

/** Builds a remembered request; throws InboundRejectedError on an unknown outcome (never reads it as approved). */
export function requestFromWire(r: WireRequestRecord): RequestRecord {
  const outcome = fromWireOutcome(r.outcome);
  if (outcome === undefined) {
    throw new InboundRejectedError("field", `request ${shown(r.requestId)}: outcome ${r.outcome} is not a known DebitOutcome`);
  }
  const answer: Answer = {
    kind: r.fingerprint.startsWith("g|") ? "grant" : "debit",
    outcome,
    balance: r.balance,
    localRights: r.localRights,
  };
  const record = { requestId: r.requestId, fingerprint: r.fingerprint, answer, answeredAtMs: Number(r.answeredAtMs) };
  return r.origin === 0 ? record : { ...record, origin: r.origin - 1 };
}

export function policyToWire(p: PolicyRecord): PolicyValue {
  return {
    accountId: p.accountId,
    mode: p.write.mode,
    overdraftLimit: p.write.overdraftLimit,
    lowWaterMark: p.write.lowWaterMark,
    writtenAtMs: BigInt(p.write.writtenAtMs),
    replica: p.write.replica,
    logical: BigInt(p.write.logical),
  };
}

export function policyFromWire(p: PolicyValue): PolicyRecord {
  return {
    accountId: p.accountId,
    write: {
      mode: p.mode === 2 ? Mode.Overdraft : Mode.Strict,
      overdraftLimit: p.overdraftLimit,
      lowWaterMark: p.lowWaterMark,
      writtenAtMs: Number(p.writtenAtMs),
      // Absent in writes from nodes that predate the hybrid logical clock: 0.
      // Beyond 2^53 it stops being a safe integer and ReplicaState refuses it.
      logical: Number(p.logical),
      replica: p.replica,
    },
  };
}

export function toWireOutcome(outcome: DebitOutcome): WireOutcome {
  switch (outcome) {
    case DebitOutcome.Approved:
      return WireOutcome.DEBIT_OUTCOME_APPROVED;
    case DebitOutcome.InsufficientCredit:
      return WireOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT;
    case DebitOutcome.ApprovedWithOverdraft:
      return WireOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT;
  }
}

/** The outcome a wire value names, or undefined for any value that is not a known outcome. */
export function fromWireOutcome(outcome: number): DebitOutcome | undefined {
  switch (outcome) {
    case 1:
      return DebitOutcome.Approved;
    case 2:
      return DebitOutcome.InsufficientCredit;
    case 3:
      return DebitOutcome.ApprovedWithOverdraft;
    default:
      return undefined;
  }
}
