// The checks that hold a replica to the per-slot bounds of bounds.ts: a local
// write past its cap is refused (BoundExceededError), and a merged value no
// legitimate writer could produce is rejected (ReplicaDataRejectedError).

import { UINT64_MAX } from "./amounts";
import { describeShare, maxRegionDebitTotal, maxRegionGrantTotal, maxRegionTransferTotal, maxSlotValue, slotKindOf } from "./bounds";
import { BoundExceededError, InvalidArgumentError, ReplicaDataRejectedError } from "./errors";
import { lastColumn } from "./escrow-counter";

export function requirePositive(amount: bigint): void {
  if (amount <= 0n) throw new InvalidArgumentError("amount", `must be a positive integer of minor units; got ${amount}`);
}

/** Throws unless the region's cumulative grants `total` (after adding `amount`) stay within maxRegionGrantTotal. */
export function checkGrantTotal(n: number, accountId: string, total: bigint, amount: bigint): void {
  const cap = maxRegionGrantTotal(n);
  if (total > cap) {
    throw new BoundExceededError(
      "amount",
      cap,
      `the region's cumulative grants for account "${accountId}" would exceed ${describeShare(n)}, ` +
        `the cap that keeps the account's balance and totals within int64 whatever the other regions do ` +
        `(granted here so far: ${total - amount})`,
    );
  }
}

/** Throws unless the region's cumulative debits `total` (after adding `amount`) stay within maxRegionDebitTotal. */
export function checkDebitTotal(n: number, accountId: string, total: bigint, amount: bigint): void {
  const cap = maxRegionDebitTotal(n);
  if (total > cap) {
    throw new BoundExceededError(
      "amount",
      cap,
      `the region's cumulative debits for account "${accountId}" would exceed ${describeShare(n)}, ` +
        `the cap that keeps the account's totals within int64 whatever the other regions do ` +
        `(debited here so far: ${total - amount})`,
    );
  }
}

/** Throws unless the region's cumulative transfers to one region `total` (after adding `amount`) stay within maxRegionTransferTotal. */
export function checkTransferTotal(n: number, accountId: string, total: bigint, amount: bigint): void {
  const cap = maxRegionTransferTotal(n);
  if (total > cap) {
    throw new BoundExceededError(
      "amount",
      cap,
      `the region's cumulative transfers to one region for account "${accountId}" would exceed ${describeShare(n)}, ` +
        `the cap that keeps every region's rights within int64 whatever the regions do ` +
        `(transferred there so far: ${total - amount})`,
    );
  }
}

/**
 * Throws unless (writer, column) is a slot of an n-replica counter and `value`
 * is one a legitimate writer could have produced (at most maxSlotValue).
 */
export function checkMergedSlot(n: number, accountId: string, writer: number, column: number, value: bigint): void {
  if (!Number.isInteger(writer) || writer < 0 || writer >= n) throw new InvalidArgumentError("writer", `must be in 0..${n - 1}; got ${writer}`);
  const last = lastColumn(n);
  if (!Number.isInteger(column) || column < 0 || column > last) throw new InvalidArgumentError("column", `must be in 0..${last}; got ${column}`);
  if (value < 0n || value > UINT64_MAX) throw new InvalidArgumentError("value", "must fit in uint64");
  const kind = slotKindOf(n, writer, column);
  if (value > maxSlotValue(n, kind)) {
    const slot = column >= n ? `${["D", "HA", "HR", "RF"][column - n] ?? "?"}[${writer}]` : `P[${writer}][${column}]`;
    throw new ReplicaDataRejectedError(
      accountId,
      `slot ${slot} (${kind})`,
      `value ${value} exceeds ${describeShare(n)}, the most a legitimate writer can produce`,
    );
  }
}
