// Turns wire requests into checked domain values; every failure names the
// field as the client sees it. Nothing here touches state.

import { InvalidArgumentError } from "../core/errors";
import { validateAccountId, validateAmount, validateRequestId } from "../core/validation";
import type { DebitItem } from "../core/write-path";
import { MAX_HOLD_TIMEOUT_MS, parseHoldId } from "../core/hold-book";
import type { CaptureHoldRequest, DebitRequest, GrantRequest, HoldRequest, RefundRequest, VoidHoldRequest } from "../generated/tally/v1/balances";
import { NO_EXPIRY, validateLotTerms, type LotTerms } from "../core/lots";
import { LimitExceededError } from "./status-mapping";

export const MAX_BATCH_ITEMS = 10_000;

export function debitItem(request: DebitRequest, prefix = ""): DebitItem {
  return {
    accountId: validateAccountId(request.accountId, `${prefix}account_id`),
    amount: validateAmount(request.amount, `${prefix}amount`),
    requestId: validateRequestId(request.requestId, `${prefix}request_id`),
  };
}

export function batchItems(debits: readonly DebitRequest[]): DebitItem[] {
  if (debits.length === 0) throw new InvalidArgumentError("debits", "must hold at least one debit");
  if (debits.length > MAX_BATCH_ITEMS) {
    throw new LimitExceededError(`debits: ${debits.length} items; at most ${MAX_BATCH_ITEMS} per batch`);
  }
  return debits.map((d, i) => debitItem(d, `debits[${i}].`));
}

export function waitMs(requested: number, defaultMs: number, maxMs: number, deadline: Date | number): number {
  const wanted = requested === 0 ? defaultMs : Math.min(requested, maxMs);
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(deadlineMs)) return wanted;
  // Leave room to answer before the client's deadline.
  return Math.max(0, Math.min(wanted, deadlineMs - Date.now() - 5));
}

export interface HoldInputs {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly timeoutMs: number;
  /** As asked (0 = the node's default); waitMs() caps it. */
  readonly maxWaitMs: number;
}

export function holdInputs(request: HoldRequest): HoldInputs {
  const accountId = validateAccountId(request.accountId);
  const amount = validateAmount(request.amount);
  const requestId = validateRequestId(request.requestId);
  if (request.timeoutMs < 1n || request.timeoutMs > BigInt(MAX_HOLD_TIMEOUT_MS)) {
    throw new InvalidArgumentError("timeout_ms", `must be 1 to ${MAX_HOLD_TIMEOUT_MS} (30 days); got ${request.timeoutMs}`);
  }
  return { accountId, amount, requestId, timeoutMs: Number(request.timeoutMs), maxWaitMs: request.maxWaitMs };
}

export interface GrantInputs {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
  /** Undefined when the request carries no lot (a base-lot grant). */
  readonly lot: LotTerms | undefined;
}

/** The wire names of the lot terms, as validateLotTerms' fields map to them. */
const LOT_FIELDS: Readonly<Record<string, string>> = { priority: "lot.priority", effective_at: "lot.effective_at_ms", expires_at: "lot.expires_at_ms" };

/** A wire time in ms that must be an exact JavaScript integer (0 stays 0). */
function lotTime(value: bigint, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER) - 1n) throw new InvalidArgumentError(field, `must be 0 to ${Number.MAX_SAFE_INTEGER - 1} ms since the epoch; got ${value}`);
  return Number(value);
}

export function grantInputs(request: GrantRequest, guardMs: number): GrantInputs {
  const accountId = validateAccountId(request.accountId);
  const amount = validateAmount(request.amount);
  const requestId = validateRequestId(request.requestId);
  const lot = request.lot;
  if (lot === undefined) return { accountId, amount, requestId, lot: undefined };
  const expires = lotTime(lot.expiresAtMs, "lot.expires_at_ms");
  const terms: LotTerms = {
    priority: lot.priority,
    effectiveAtMs: lotTime(lot.effectiveAtMs, "lot.effective_at_ms"),
    expiresAtMs: expires === 0 ? NO_EXPIRY : expires,
  };
  try {
    return { accountId, amount, requestId, lot: validateLotTerms(terms, guardMs) };
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw new InvalidArgumentError(LOT_FIELDS[error.field] ?? error.field, error.reason);
    throw error;
  }
}

/** An optional account id: undefined when empty, else checked. */
export function optionalAccountId(value: string): string | undefined {
  return value === "" ? undefined : validateAccountId(value);
}

export function captureInputs(request: CaptureHoldRequest): { holdId: string; amount: bigint; requestId: string; accountId: string | undefined } {
  const holdId = request.holdId;
  parseHoldId(holdId);
  return {
    holdId,
    amount: validateAmount(request.amount),
    requestId: validateRequestId(request.requestId),
    accountId: optionalAccountId(request.accountId),
  };
}

export function voidInputs(request: VoidHoldRequest): { holdId: string; requestId: string; accountId: string | undefined } {
  const holdId = request.holdId;
  parseHoldId(holdId);
  return { holdId, requestId: validateRequestId(request.requestId), accountId: optionalAccountId(request.accountId) };
}

export function refundInputs(request: RefundRequest): { debitRequestId: string; amount: bigint; requestId: string; accountId: string | undefined } {
  return {
    debitRequestId: validateRequestId(request.debitRequestId, "debit_request_id"),
    amount: validateAmount(request.amount),
    requestId: validateRequestId(request.requestId),
    accountId: optionalAccountId(request.accountId),
  };
}
