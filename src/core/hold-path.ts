// The rules of holds and refunds at one replica, pure (spec/holds.qnt):
// placing a hold, resolving it exactly once (capture, void, timeout judged on
// the holding region's clock), and refunding a debit decided here. Each
// returns what must be durable before its answer; admission (idempotency) is
// WritePath's, as for debits. No I/O and no clock: time is passed in.

import { DebitOutcome, type Answer } from "./answer";
import type { DurableWrite, RequestRecord } from "./durable-write";
import { DebitRecordNotFoundError, HoldNotFoundError, HoldStateError, InvalidArgumentError, RefundRefusedError, RequestConflictError, WrongRegionError } from "./errors";
import { holdIdOf, HoldStatus, statusName, type HoldRecord } from "./hold-book";
import type { ReplicaState } from "./replica-state";
import type { RefundTally } from "./refund-tallies";
import type { RequestTime } from "./request-log";

export function holdFingerprint(accountId: string, amount: bigint, timeoutMs: number): string {
  return `h|${accountId}|${amount}|${timeoutMs}`;
}

export function captureFingerprint(holdId: string, amount: bigint): string {
  return `c|${holdId}|${amount}`;
}

export function voidFingerprint(holdId: string): string {
  return `v|${holdId}`;
}

export function refundFingerprint(debitRequestId: string, amount: bigint): string {
  return `r|${debitRequestId}|${amount}`;
}

export interface HoldInput {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly timeoutMs: number;
  readonly time: RequestTime;
}

export interface HoldDecision {
  readonly answer: Answer;
  /** The hold placed; undefined when refused (insufficient credit). */
  readonly record: HoldRecord | undefined;
  /** What must be durable before the answer; undefined for a refusal (nothing changed). */
  readonly write: DurableWrite | undefined;
}

/**
 * The earlier hold placed by this request id, when its record outlived the
 * request log's memory of the call: a retry still gets that hold, and the id
 * used with other parameters is refused. Undefined when there is none.
 */
export function recallHold(state: ReplicaState, input: Omit<HoldInput, "time">): HoldRecord | undefined {
  const record = state.holds.get(holdIdOf(state.replicas.nameOf(state.self), input.requestId));
  if (record === undefined) return undefined;
  const same = record.accountId === input.accountId && record.amount === input.amount && record.expiresAtMs - record.createdAtMs === input.timeoutMs;
  if (!same) throw new RequestConflictError(input.requestId);
  return record;
}

/** Places a hold of `amount` on this region's rights (no overdraft, no wait). Changes memory; the caller makes `write` durable. */
export function placeHold(state: ReplicaState, input: HoldInput): HoldDecision {
  const { accountId, amount, requestId, timeoutMs, time } = input;
  const fingerprint = holdFingerprint(accountId, amount, timeoutMs);
  const result = state.hold(accountId, amount, time.stampMs, timeoutMs);
  const { answer } = result;
  if (answer.outcome === DebitOutcome.InsufficientCredit) {
    state.remember(requestId, fingerprint, answer, time);
    return { answer, record: undefined, write: undefined };
  }
  const record: HoldRecord = {
    holdId: holdIdOf(state.replicas.nameOf(state.self), requestId),
    accountId,
    amount,
    ...(result.parts === undefined ? {} : { parts: result.parts }),
    expiresAtMs: time.stampMs + timeoutMs,
    status: HoldStatus.Pending,
    captured: 0n,
    createdAtMs: time.stampMs,
    resolvedAtMs: 0,
  };
  state.holds.put(record);
  state.remember(requestId, fingerprint, answer, time);
  return { answer, record, write: { slots: result.changes, requests: [requestRecord(state, requestId, fingerprint, answer, time)], holds: [record] } };
}

export type ResolutionKind = "capture" | "void" | "timeout";

export interface ResolveInput {
  readonly holdId: string;
  readonly kind: ResolutionKind;
  /** Amount to capture (capture only): 1..held. */
  readonly amount: bigint;
  /** The call's request id; undefined for a timeout found by the node's sweep. */
  readonly requestId: string | undefined;
  /** `stampMs` is the holding region's wall clock: it judges the timeout. */
  readonly time: RequestTime;
}

export type ResolveStep =
  /** Resolved by this call as asked. */
  | { readonly kind: "resolved"; readonly record: HoldRecord; readonly answer: Answer; readonly write: DurableWrite }
  /** The hold had timed out: the expiry is written (`write`), and the capture or void is refused. */
  | { readonly kind: "expired"; readonly record: HoldRecord; readonly answer: Answer; readonly write: DurableWrite }
  /** Resolved before; nothing changes. */
  | { readonly kind: "already"; readonly record: HoldRecord };

/**
 * Resolves a pending hold of this region once: a capture debits up to the
 * held amount and releases all of it, a void or timeout releases it. A
 * capture or void at or after the hold's timeout (on this region's clock)
 * expires it instead. A hold resolved before is reported as it is ("already").
 */
export function resolveHold(state: ReplicaState, input: ResolveInput): ResolveStep {
  const { holdId, kind, amount, time } = input;
  const record = state.holds.get(holdId);
  if (record === undefined) {
    throw new HoldNotFoundError(holdId, "never placed at this region, or resolved longer ago than resolved holds are remembered");
  }
  if (record.status !== HoldStatus.Pending) return { kind: "already", record };
  if (kind === "capture" && (amount <= 0n || amount > record.amount)) {
    throw new InvalidArgumentError("amount", `must be 1 to the held amount ${record.amount}; got ${amount}`);
  }
  const timedOut = time.stampMs >= record.expiresAtMs;
  if (kind === "timeout" && !timedOut) throw new HoldStateError(holdId, "pending", `it times out at ${record.expiresAtMs}, not yet`);
  const status = kind === "timeout" || timedOut ? HoldStatus.Expired : kind === "void" ? HoldStatus.Voided : HoldStatus.Captured;
  const captured = status === HoldStatus.Captured ? amount : 0n;
  const released = state.release(record, captured, time.stampMs);
  const resolved: HoldRecord = { ...record, status, captured, resolvedAtMs: time.stampMs };
  state.holds.put(resolved);
  const requests: RequestRecord[] = [];
  // A refused call (the hold had expired) is not remembered: a retry finds the expiry again.
  if (input.requestId !== undefined && status !== HoldStatus.Expired) {
    const fingerprint = kind === "capture" ? captureFingerprint(holdId, amount) : voidFingerprint(holdId);
    state.remember(input.requestId, fingerprint, released.answer, time);
    requests.push(requestRecord(state, input.requestId, fingerprint, released.answer, time));
  }
  const write: DurableWrite = { slots: released.changes, requests, holds: [resolved] };
  if (status === HoldStatus.Expired && kind !== "timeout") return { kind: "expired", record: resolved, answer: released.answer, write };
  return { kind: "resolved", record: resolved, answer: released.answer, write };
}

/**
 * The answer to a capture or void of a hold resolved before: the same
 * resolution again (a retry under a new request id), or HoldStateError naming
 * the state when it was resolved another way.
 */
export function checkEarlierResolution(record: HoldRecord, kind: "capture" | "void", amount: bigint): HoldRecord {
  const state = statusName(record.status);
  if (kind === "capture" && record.status === HoldStatus.Captured) {
    if (record.captured === amount) return record;
    throw new HoldStateError(record.holdId, state, `it was captured with ${record.captured}, not ${amount}; a hold resolves once`);
  }
  if (kind === "void" && record.status === HoldStatus.Voided) return record;
  throw resolutionRefusal(record, kind);
}

/** Why a capture or void of a hold resolved otherwise (timed out, or resolved another way) is refused. */
export function resolutionRefusal(record: HoldRecord, kind: "capture" | "void"): HoldStateError {
  const state = statusName(record.status);
  const verb = kind === "capture" ? "captured" : "voided";
  if (record.status === HoldStatus.Expired) {
    return new HoldStateError(record.holdId, state, `it timed out at ${record.expiresAtMs} (holding region's clock) and was released; nothing was ${verb}`);
  }
  return new HoldStateError(record.holdId, state, `a hold resolves once; it cannot be ${verb} now`);
}

/** What a remembered request debited: its account (when known) and amount; undefined for a request that debits nothing. */
export function debitedBy(state: ReplicaState, fingerprint: string): { accountId: string | undefined; amount: bigint; kind: "debit" | "capture" } | undefined {
  const last = fingerprint.lastIndexOf("|");
  if (last < 2) return undefined;
  const amountText = fingerprint.slice(last + 1);
  if (!/^\d{1,19}$/.test(amountText)) return undefined;
  const middle = fingerprint.slice(2, last);
  if (fingerprint.startsWith("d|")) return { accountId: middle, amount: BigInt(amountText), kind: "debit" };
  if (fingerprint.startsWith("c|")) return { accountId: state.holds.get(middle)?.accountId, amount: BigInt(amountText), kind: "capture" };
  return undefined;
}

export interface RefundInput {
  readonly debitRequestId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly time: RequestTime;
}

export interface RefundDecision {
  readonly answer: Answer;
  readonly tally: RefundTally;
  readonly write: DurableWrite;
}

/**
 * Gives back `amount` of a debit (or capture) decided by this region, within
 * what is left of it. The debit's remembered answer is its record: kept for
 * the request-id window (the refund window).
 */
export function refundDebit(state: ReplicaState, input: RefundInput, retentionNote: string): RefundDecision {
  const { debitRequestId, amount, requestId, time } = input;
  const record = state.requestRecord(debitRequestId);
  if (record === undefined) throw new DebitRecordNotFoundError(debitRequestId, `unknown, or past the refund window (${retentionNote})`);
  const debited = debitedBy(state, record.fingerprint);
  if (debited === undefined) {
    throw new InvalidArgumentError("debit_request_id", `"${debitRequestId}" names a request that debited nothing (only a Debit or a CaptureHold can be refunded)`);
  }
  if (record.origin === undefined) {
    throw new RefundRefusedError(debitRequestId, "the region that decided it is not known here (recorded before refunds existed)");
  }
  if (record.origin !== state.self) {
    throw new WrongRegionError(state.replicas.nameOf(record.origin), `debit "${debitRequestId}" was decided by region "${state.replicas.nameOf(record.origin)}", which alone refunds it`);
  }
  if (record.answer.outcome === DebitOutcome.InsufficientCredit) throw new RefundRefusedError(debitRequestId, "the debit was refused (insufficient credit); nothing to refund");
  if (debited.accountId === undefined) throw new DebitRecordNotFoundError(debitRequestId, "the captured hold is no longer remembered");
  const before = state.refundTallies.get(debitRequestId)?.refunded ?? 0n;
  if (before + amount > debited.amount) {
    throw new RefundRefusedError(
      debitRequestId,
      `refunds would reach ${before + amount}, above the ${debited.amount} it took (refunded so far ${before}, left ${debited.amount - before})`,
    );
  }
  const refunded = state.refund(debited.accountId, amount, time.stampMs);
  const tally: RefundTally = { debitRequestId, accountId: debited.accountId, debitAmount: debited.amount, refunded: before + amount };
  state.refundTallies.put(tally);
  const fingerprint = refundFingerprint(debitRequestId, amount);
  state.remember(requestId, fingerprint, refunded.answer, time);
  return {
    answer: refunded.answer,
    tally,
    write: { slots: refunded.changes, requests: [requestRecord(state, requestId, fingerprint, refunded.answer, time)], refunds: [tally] },
  };
}

function requestRecord(state: ReplicaState, requestId: string, fingerprint: string, answer: Answer, time: RequestTime): RequestRecord {
  return { requestId, fingerprint, answer, answeredAtMs: time.stampMs, origin: state.self };
}
