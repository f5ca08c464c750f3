// An account's credit lots as one region sees them, and a debit of an account
// that has lots: planBurn over this region's spendable lots, then one D raise
// per lot burnt, all decided before anything changes so that the changes go
// out in one group commit under the debit's one request id. Pure: the clock
// reading and the expiry guard are passed in.

import type { AccountTable } from "./account-table";
import { DebitOutcome } from "./answer";
import { checkDebitTotal, requirePositive } from "./bound-checks";
import { balanceOf, debitColumn, rightsOf } from "./escrow-counter";
import type { LotIndex } from "./lot-index";
import { BASE_LOT_KEY, LOT_SEPARATOR } from "./lot-rows";
import { BASE_TERMS, burnsBefore, isSpendable, lotKey, NO_EXPIRY, planBurn, type LotTake, type LotTerms } from "./lots";
import { ownSlot, type DebitResult, type OwnRow } from "./local-writes";
import type { SlotChange } from "./slot-change";

/** One lot of an account as this region sees it. */
export interface LotState {
  /** The row holding the lot's counter (the account id itself for the base lot). */
  readonly rowId: string;
  /** lotKey(terms); the base lot's is lotKey(BASE_TERMS). */
  readonly key: string;
  readonly terms: LotTerms;
  /** Granted minus debited over every region known here. */
  readonly remaining: bigint;
  /** This region's rights in the lot (negative only for the base lot after an overdraft). */
  readonly rights: bigint;
  readonly spendable: boolean;
  /** Past expires_at − guard by this region's clock: its remaining part is breakage, not balance. */
  readonly expired: boolean;
}

/** How a lot is named to clients: the base lot as "base", others by key. */
export function publicLotKey(lot: LotState): string {
  return lot.rowId.includes(LOT_SEPARATOR) ? lot.key : BASE_LOT_KEY;
}

export function isExpired(terms: LotTerms, clockMs: number, guardMs: number): boolean {
  return terms.expiresAtMs !== NO_EXPIRY && clockMs >= terms.expiresAtMs - guardMs;
}

/** Reads what a lot view needs of the table and this region. */
export interface LotReader {
  readonly table: AccountTable;
  readonly index: LotIndex;
  readonly self: number;
}

/** The account's lots in burn order, the base lot (its plain row) included. */
export function accountLots(reader: LotReader, accountId: string, clockMs: number, guardMs: number): LotState[] {
  const { table, index, self } = reader;
  const rows = [{ rowId: accountId, key: lotKey(BASE_TERMS), terms: BASE_TERMS }, ...index.lotsOf(accountId)];
  return rows
    .map((row) => {
      const base = table.baseOf(row.rowId);
      const view = base === undefined ? undefined : table.view(base);
      return {
        ...row,
        remaining: view === undefined ? 0n : balanceOf(view),
        rights: view === undefined ? 0n : rightsOf(view, self),
        spendable: isSpendable(row.terms, clockMs, guardMs),
        expired: isExpired(row.terms, clockMs, guardMs),
      };
    })
    .sort(burnsBefore);
}

/** The balance over lots: the remaining amounts of every lot not expired here (lots yet to start count). */
export function liveBalance(lots: readonly LotState[]): bigint {
  let total = 0n;
  for (const lot of lots) if (!lot.expired) total += lot.remaining;
  return total;
}

/**
 * What this region may spend now: its positive rights in spendable lots, less
 * an overdraft already taken on the base lot (which is the only lot that can
 * go below zero).
 */
export function localSpendable(lots: readonly LotState[]): bigint {
  let total = 0n;
  for (const lot of lots) {
    if (lot.rights > 0n && lot.spendable) total += lot.rights;
    else if (lot.rights < 0n) total += lot.rights;
  }
  return total;
}

/**
 * Debits an account that has lots. STRICT (overdraft 0): planBurn, all or
 * nothing. With an overdraft allowance, a shortfall burns every spendable lot
 * whole and charges the rest to the base lot, whose rights may go down to
 * −overdraft: the overdraft never draws on a lot that could expire or start
 * later, and the bound Σ limits per region is the same as without lots.
 */
export function lotDebit(row: OwnRow, index: LotIndex, accountId: string, amount: bigint, overdraft: bigint, clockMs: number, guardMs: number): DebitResult {
  requirePositive(amount);
  const reader: LotReader = { table: row.table, index, self: row.self };
  const lots = accountLots(reader, accountId, clockMs, guardMs);
  const plan = planBurn(lots, amount, clockMs, guardMs);
  let takes: readonly LotTake[];
  let outcome = DebitOutcome.Approved;
  if (plan.kind === "burn") {
    takes = plan.takes;
  } else {
    const baseLot = lots.find((lot) => lot.rowId === accountId)!;
    const others = lots.filter((lot) => lot !== baseLot && lot.spendable && lot.rights > 0n);
    let fromOthers = 0n;
    for (const lot of others) fromOthers += lot.rights;
    const fromBase = amount - fromOthers;
    if (overdraft <= 0n || baseLot.rights - fromBase < -overdraft) {
      return {
        answer: { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance: liveBalance(lots), localRights: localSpendable(lots) },
        changes: [],
        globallyCoverable: liveBalance(lots) >= amount,
      };
    }
    takes = [...others.map((lot) => ({ key: lot.key, amount: lot.rights })), { key: baseLot.key, amount: fromBase }];
    outcome = DebitOutcome.ApprovedWithOverdraft;
  }
  const changes = applyTakes(row, accountId, lots, takes);
  const after = accountLots(reader, accountId, clockMs, guardMs);
  return {
    answer: { kind: "debit", outcome, balance: liveBalance(after), localRights: localSpendable(after) },
    changes,
    globallyCoverable: true,
  };
}

/**
 * Raises D of every lot taken from; every bound is checked before the first
 * write. The debit cap holds per row and for the account as a whole (its
 * per-region `debited` adds the rows up: src/core/bounds.ts).
 */
function applyTakes(row: OwnRow, accountId: string, lots: readonly LotState[], takes: readonly LotTake[]): SlotChange[] {
  const { table } = row;
  const column = debitColumn(table.n);
  let debitedHere = 0n;
  for (const lot of lots) debitedHere += ownSlot(row, table.baseOf(lot.rowId), column);
  let amount = 0n;
  for (const take of takes) amount += take.amount;
  checkDebitTotal(table.n, accountId, debitedHere + amount, amount);
  const raises = takes.map((take) => {
    const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
    const next = ownSlot(row, table.baseOf(rowId), column) + take.amount;
    checkDebitTotal(table.n, rowId, next, take.amount);
    return { rowId, next };
  });
  return raises.map(({ rowId, next }) => {
    row.write(rowId, table.ensure(rowId), column, next);
    return { accountId: rowId, writer: row.self, column, value: next };
  });
}
