// Hold records and refund tallies to and from the replication wire messages
// (ReplicaDelta.holds/refunds, SnapshotChunk.holds/refunds). The checked
// decoders refuse a record whose hold id does not name the writer, an unknown
// status or amounts out of range (InboundRejectedError via `reject`).

import type { HoldPart as WireHoldPart, HoldRecord as WireHoldRecord, RefundTally as WireRefundTally } from "../generated/tally/replication/v1/replication";
import { HoldStatus, isHoldStatus, parseHoldId, type HoldPart, type HoldRecord } from "../core/hold-book";
import { rowOwner } from "../core/lot-rows";
import type { RefundTally } from "../core/refund-tallies";
import { validateRequestId } from "../core/validation";
import { checkAccountId, checkAmount, checkTimestamp, reject, shown, type InboundLimits } from "./inbound";

export function holdToWire(h: HoldRecord): WireHoldRecord {
  return {
    holdId: h.holdId,
    accountId: h.accountId,
    amount: h.amount,
    expiresAtMs: BigInt(h.expiresAtMs),
    status: h.status,
    captured: h.captured,
    createdAtMs: BigInt(h.createdAtMs),
    resolvedAtMs: BigInt(h.resolvedAtMs),
    parts: (h.parts ?? []).map((part) => ({ rowId: part.rowId, amount: part.amount })),
  };
}

/** A hold record from the wire, checked: its id names `writer`, a known status, captured ≤ amount. */
export function checkedHoldFromWire(w: WireHoldRecord, writer: string, limits: InboundLimits, field: string): HoldRecord {
  let region: string;
  try {
    region = parseHoldId(w.holdId, `${field}.hold_id`).region;
  } catch (error) {
    return reject("field", error instanceof Error ? error.message : `${field}.hold_id: invalid`);
  }
  if (region !== writer) reject("sender", `${field}.hold_id ${shown(w.holdId)} is not a hold of the writer "${writer}"`);
  if (!isHoldStatus(w.status)) reject("field", `${field}.status ${w.status} is not a known hold status`);
  const amount = checkAmount(w.amount, `${field}.amount`, true);
  const captured = checkAmount(w.captured, `${field}.captured`, false);
  if (captured > amount) reject("field", `${field}.captured ${captured} exceeds its amount ${amount}`);
  if (captured > 0n && w.status !== HoldStatus.Captured) reject("field", `${field}.captured is set on a hold that is not captured`);
  const resolvedAtMs = w.status === HoldStatus.Pending ? 0 : checkTimestamp(limits, w.resolvedAtMs, `${field}.resolved_at_ms`);
  const accountId = checkAccountId(w.accountId, `${field}.account_id`);
  const parts = checkedParts(w.parts, accountId, amount, field);
  return {
    holdId: w.holdId,
    accountId,
    amount,
    ...(parts === undefined ? {} : { parts }),
    expiresAtMs: checkTimestamp(limits, w.expiresAtMs, `${field}.expires_at_ms`),
    status: w.status,
    captured,
    createdAtMs: checkTimestamp(limits, w.createdAtMs, `${field}.created_at_ms`),
    resolvedAtMs,
  };
}

/** A hold's parts, checked: rows of its own account, each once, each above 0, summing to its amount. */
function checkedParts(wire: readonly WireHoldPart[], accountId: string, amount: bigint, field: string): HoldPart[] | undefined {
  if (wire.length === 0) return undefined;
  const seen = new Set<string>();
  let total = 0n;
  const parts = wire.map((w, i) => {
    const rowId = checkAccountId(w.rowId, `${field}.parts[${i}].row_id`);
    if (rowId !== accountId && rowOwner(rowId)?.accountId !== accountId) {
      reject("field", `${field}.parts[${i}].row_id ${shown(rowId)} is not a row of account ${shown(accountId)}`);
    }
    if (seen.has(rowId)) reject("field", `${field}.parts[${i}].row_id ${shown(rowId)} appears twice`);
    seen.add(rowId);
    const part = checkAmount(w.amount, `${field}.parts[${i}].amount`, true);
    total += part;
    return { rowId, amount: part };
  });
  if (total !== amount) reject("field", `${field}.parts sum to ${total}, not the hold's amount ${amount}`);
  return parts;
}

export function refundToWire(t: RefundTally): WireRefundTally {
  return { debitRequestId: t.debitRequestId, accountId: t.accountId, debitAmount: t.debitAmount, refunded: t.refunded };
}

/** A refund tally from the wire, checked: ids valid, 0 < refunded ≤ debit_amount. */
export function checkedRefundFromWire(w: WireRefundTally, field: string): RefundTally {
  try {
    validateRequestId(w.debitRequestId, `${field}.debit_request_id`);
  } catch (error) {
    reject("field", error instanceof Error ? error.message : `${field}.debit_request_id: invalid`);
  }
  const debitAmount = checkAmount(w.debitAmount, `${field}.debit_amount`, true);
  const refunded = checkAmount(w.refunded, `${field}.refunded`, true);
  if (refunded > debitAmount) reject("field", `${field}.refunded ${refunded} exceeds the debit's amount ${debitAmount}`);
  return { debitRequestId: w.debitRequestId, accountId: checkAccountId(w.accountId, `${field}.account_id`), debitAmount, refunded };
}
