// Which lot rows each account has, so a debit or a balance read finds them
// without scanning the table. Rows only ever appear (a counter is never
// removed), so the index only grows; it is fed by the account table whenever
// a row appears, whether written here, replicated or restored from a snapshot.

import { rowOwner } from "./lot-rows";
import type { LotTerms } from "./lots";

/** One lot row of an account. */
export interface LotRow {
  readonly rowId: string;
  readonly key: string;
  readonly terms: LotTerms;
}

export class LotIndex {
  private readonly byAccount = new Map<string, LotRow[]>();

  /** Records a row that just appeared in the table; plain account rows are not indexed. */
  noteRow(rowId: string): void {
    const owner = rowOwner(rowId);
    if (owner?.lot === undefined) return;
    const rows = this.byAccount.get(owner.accountId);
    const row: LotRow = { rowId, key: owner.lot.key, terms: owner.lot.terms };
    if (rows === undefined) this.byAccount.set(owner.accountId, [row]);
    else if (!rows.some((r) => r.rowId === rowId)) rows.push(row);
  }

  /** The account's lot rows (the base lot, its plain row, is not among them). */
  lotsOf(accountId: string): readonly LotRow[] {
    return this.byAccount.get(accountId) ?? [];
  }

  hasLots(accountId: string): boolean {
    return this.byAccount.has(accountId);
  }

  /** Every lot row of every account. */
  *rows(): Generator<LotRow & { readonly accountId: string }> {
    for (const [accountId, rows] of this.byAccount) for (const row of rows) yield { ...row, accountId };
  }

  /** Accounts with at least one lot row. */
  get accountCount(): number {
    return this.byAccount.size;
  }
}
