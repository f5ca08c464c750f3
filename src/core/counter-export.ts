// An account's counter read out of the table for peers: whole, in slot layout
// (mapped back to slots by slotAt when merged), or as the non-zero slots of
// every row but the reader's own (a message's causal context).

import type { AccountTable } from "./account-table";
import { lastColumn, slotCount } from "./escrow-counter";
import type { SlotChange } from "./slot-change";

/**
 * The account's whole counter in slot layout (P row-major, then D, HA, HR, RF
 * blocks of n); empty if unknown. `width` may be the legacy n*n + n (P and D
 * only) for a reader that predates holds.
 */
export function exportAccount(table: AccountTable, accountId: string, width = slotCount(table.n)): bigint[] {
  const base = table.baseOf(accountId);
  if (base === undefined) return [];
  const n = table.n;
  const values: bigint[] = [];
  for (let k = 0; k < width; k++) values.push(table.read(base, ...slotAt(n, k)));
  return values;
}

/** The (writer, column) of value `k` of an exported n-replica counter (columns n.. are D, HA, HR, RF). */
export function slotAt(n: number, k: number): [number, number] {
  if (k < n * n) return [Math.floor(k / n), k % n];
  const rest = k - n * n;
  return [rest % n, n + Math.floor(rest / n)];
}

/** The non-zero slots of every row but `self`'s own, for these accounts (a message's causal context). */
export function otherRows(table: AccountTable, self: number, accountIds: Iterable<string>): SlotChange[] {
  const n = table.n;
  const out: SlotChange[] = [];
  for (const accountId of accountIds) {
    const base = table.baseOf(accountId);
    if (base === undefined) continue;
    for (let writer = 0; writer < n; writer++) {
      if (writer === self) continue;
      for (let column = 0; column <= lastColumn(n); column++) {
        const value = table.read(base, writer, column);
        if (value !== 0n) out.push({ accountId, writer, column, value });
      }
    }
  }
  return out;
}
