// An account's counter read out of the table for peers: whole, in slot layout
// (mapped back to slots by slotAt when merged), or as the non-zero slots of
// every row but the reader's own (a message's causal context).

import type { AccountTable } from "./account-table";
import type { SlotChange } from "./slot-change";

/** The account's whole counter in slot layout (P row-major, then D); empty if unknown. */
export function exportAccount(table: AccountTable, accountId: string): bigint[] {
  const base = table.baseOf(accountId);
  if (base === undefined) return [];
  const n = table.n;
  const values: bigint[] = [];
  for (let writer = 0; writer < n; writer++) for (let column = 0; column < n; column++) values.push(table.read(base, writer, column));
  for (let writer = 0; writer < n; writer++) values.push(table.read(base, writer, n));
  return values;
}

/** The (writer, column) of value `k` of an exported n-replica counter (column n is D[writer]). */
export function slotAt(n: number, k: number): [number, number] {
  return k < n * n ? [Math.floor(k / n), k % n] : [k - n * n, n];
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
      for (let column = 0; column <= n; column++) {
        const value = table.read(base, writer, column);
        if (value !== 0n) out.push({ accountId, writer, column, value });
      }
    }
  }
  return out;
}
