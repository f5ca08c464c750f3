// Turns wire requests into checked domain values; every failure names the
// field as the client sees it. Nothing here touches state.

import { InvalidArgumentError } from "../core/errors";
import { validateAccountId, validateAmount, validateRequestId } from "../core/validation";
import type { DebitItem } from "../core/write-path";
import type { DebitRequest } from "../generated/tally/v1/balances";
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
