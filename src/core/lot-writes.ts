// An account's credit lots as one region sees them, and a debit of an account
// that has lots: planBurn over this region's spendable lots, then one D raise
// per lot burnt, all decided before anything changes so that the changes go
// out in one group commit under the debit's one request id. Pure: the clock
// reading and the expiry guard are passed in.

import type { AccountTable } from "./account-table";
import { DebitOutcome } from "./answer";
import { checkDebitTotal, checkTransferTotal, requirePositive } from "./bound-checks";
import { TransferRefusedError } from "./errors";
import { balanceOf, debitColumn, heldColumn, refundColumn, releasedColumn, rightsOf } from "./escrow-counter";
import { captureSplit, type HoldPart } from "./hold-book";
import type { LotIndex } from "./lot-index";
import { BASE_LOT_KEY, LOT_SEPARATOR } from "./lot-rows";
import { BASE_TERMS, burnsBefore, isSpendable, lotKey, NO_EXPIRY, planBurn, planDonation, planHold, planRefund, type LotTake, type LotTerms } from "./lots";
import { ownSlot, type DebitResult, type OwnRow } from "./local-writes";
import type { Answer } from "./answer";
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
  return {
    answer: accountAnswer(reader, accountId, clockMs, guardMs, outcome),
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
    return { rowId, column, next };
  });
  return writeOwn(row, raises);
}

/**
 * Holds `amount` of an account that has lots: from this region's rights in
 * the lots it would burn, in burn order, all or nothing, never overdrawn.
 * Only lots that stay spendable past the hold's timeout (`untilMs`, on this
 * region's clock) are eligible: every hold on a lot then resolves before the
 * lot expires here, so a capture never spends a dead lot and the breakage
 * settlement records for a lot never changes afterwards.
 */
export function lotHold(
  row: OwnRow,
  index: LotIndex,
  accountId: string,
  amount: bigint,
  clockMs: number,
  untilMs: number,
  guardMs: number,
): DebitResult & { readonly parts: readonly HoldPart[] } {
  requirePositive(amount);
  const reader: LotReader = { table: row.table, index, self: row.self };
  const lots = accountLots(reader, accountId, clockMs, guardMs);
  const plan = planHold(lots, amount, clockMs, untilMs, guardMs);
  if (plan.kind === "insufficient") {
    return {
      answer: { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance: liveBalance(lots), localRights: localSpendable(lots) },
      changes: [],
      globallyCoverable: liveBalance(lots) >= amount,
      parts: [],
    };
  }
  const { table } = row;
  const column = heldColumn(table.n);
  const raises = plan.takes.map((take) => {
    const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
    const next = ownSlot(row, table.baseOf(rowId), column) + take.amount;
    checkDebitTotal(table.n, rowId, next, take.amount);
    return { rowId, column, next, amount: take.amount };
  });
  const changes = writeOwn(row, raises);
  return {
    answer: accountAnswer(reader, accountId, clockMs, guardMs, DebitOutcome.Approved),
    changes,
    globallyCoverable: true,
    parts: raises.map(({ rowId, amount: part }) => ({ rowId, amount: part })),
  };
}

/**
 * Resolves a hold placed in `parts`: each part is released whole (HR grows)
 * and `captured` is debited from the parts in order (D grows). Every bound,
 * the account-wide debit cap included, is checked before the first write.
 */
export function lotRelease(
  row: OwnRow,
  index: LotIndex,
  accountId: string,
  parts: readonly HoldPart[],
  captured: bigint,
  clockMs: number,
  guardMs: number,
): { answer: Answer; changes: SlotChange[] } {
  const { table } = row;
  const n = table.n;
  const reader: LotReader = { table, index, self: row.self };
  const split = captureSplit(parts, captured);
  if (parts.some((part) => table.baseOf(part.rowId) === undefined)) {
    throw new TransferRefusedError(accountId, `cannot release a hold on rows this region holds nothing of`);
  }
  if (captured > 0n) {
    let debitedHere = 0n;
    for (const lot of accountLots(reader, accountId, clockMs, guardMs)) debitedHere += ownSlot(row, table.baseOf(lot.rowId), debitColumn(n));
    checkDebitTotal(n, accountId, debitedHere + captured, captured);
  }
  const writes: Array<{ rowId: string; column: number; next: bigint }> = [];
  parts.forEach((part, i) => {
    const base = table.baseOf(part.rowId);
    const released = ownSlot(row, base, releasedColumn(n)) + part.amount;
    checkDebitTotal(n, part.rowId, released, part.amount);
    writes.push({ rowId: part.rowId, column: releasedColumn(n), next: released });
    const take = split[i]!;
    if (take > 0n) {
      const debited = ownSlot(row, base, debitColumn(n)) + take;
      checkDebitTotal(n, part.rowId, debited, take);
      writes.push({ rowId: part.rowId, column: debitColumn(n), next: debited });
    }
  });
  const changes = writeOwn(row, writes);
  return { answer: accountAnswer(reader, accountId, clockMs, guardMs, DebitOutcome.Approved), changes };
}

/**
 * Refunds `amount` of a debit decided here to an account that has lots. The
 * per-debit split over lots is not kept, so the refund goes back to the lots
 * this region debited (its D − RF above 0) that are not expired here, in burn
 * order: debits burn lots in that order, so these are the lots the refunded
 * debit most likely took from, and a refund never revives a dead lot (whose
 * breakage settlement may have recorded). An overdraft of the base lot is
 * paid back first; then the base lot is one of them in its place in that
 * order, and takes what the others cannot. Every bound is checked before the first write.
 */
export function lotRefund(row: OwnRow, index: LotIndex, accountId: string, amount: bigint, clockMs: number, guardMs: number): { answer: Answer; changes: SlotChange[] } {
  requirePositive(amount);
  const { table } = row;
  const n = table.n;
  const reader: LotReader = { table, index, self: row.self };
  const lots = accountLots(reader, accountId, clockMs, guardMs);
  // An overdraft is charged to the base lot after every spendable lot is
  // burnt, so the latest debits took it: a refund pays it back first.
  const baseLot = lots.find((lot) => lot.rowId === accountId)!;
  const baseRow = table.baseOf(accountId);
  const baseRoom = ownSlot(row, baseRow, debitColumn(n)) - ownSlot(row, baseRow, refundColumn(n));
  const overdrawn = baseLot.rights < 0n ? -baseLot.rights : 0n;
  let toBase = overdrawn < amount ? overdrawn : amount;
  if (toBase > baseRoom) toBase = baseRoom > 0n ? baseRoom : 0n;
  const rooms = lots.map((lot) => {
    const base = table.baseOf(lot.rowId);
    const room = ownSlot(row, base, debitColumn(n)) - ownSlot(row, base, refundColumn(n));
    return { key: lot.key, terms: lot.terms, room: lot === baseLot ? room - toBase : room };
  });
  const plan = planRefund(rooms, amount - toBase, clockMs, guardMs);
  const parts = new Map<string, bigint>(toBase > 0n ? [[accountId, toBase]] : []);
  for (const take of plan.takes) {
    const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
    parts.set(rowId, (parts.get(rowId) ?? 0n) + take.amount);
  }
  if (plan.rest > 0n) parts.set(accountId, (parts.get(accountId) ?? 0n) + plan.rest);
  const writes = [...parts].map(([rowId, part]) => ({ rowId, column: refundColumn(n), amount: part, next: ownSlot(row, table.baseOf(rowId), refundColumn(n)) + part }));
  for (const w of writes) checkDebitTotal(n, w.rowId, w.next, w.amount);
  const changes = writeOwn(row, writes);
  return { answer: accountAnswer(reader, accountId, clockMs, guardMs, DebitOutcome.Approved), changes };
}

/**
 * Gives `amount` of this region's rights in an account that has lots to
 * region `to` (an operator's TransferAllowance): from its spendable lots in
 * burn order, as a donor gives (planDonation), never from a dead lot, all or
 * nothing. Every bound is checked before the first write.
 */
export function lotTransfer(row: OwnRow, index: LotIndex, accountId: string, to: number, amount: bigint, clockMs: number, guardMs: number): SlotChange[] {
  requirePositive(amount);
  const { table } = row;
  if (to === row.self) throw new TransferRefusedError(accountId, "cannot transfer to the same region");
  const lots = accountLots({ table, index, self: row.self }, accountId, clockMs, guardMs);
  const takes = planDonation(lots, amount, clockMs, guardMs);
  let given = 0n;
  for (const take of takes) given += take.amount;
  if (given < amount) {
    throw new TransferRefusedError(accountId, `needs ${amount} spare rights in lots spendable now, region has ${localSpendable(lots)}`);
  }
  const writes = takes.map((take) => {
    const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
    const next = ownSlot(row, table.baseOf(rowId), to) + take.amount;
    checkTransferTotal(table.n, rowId, next, take.amount);
    return { rowId, column: to, next };
  });
  return writeOwn(row, writes);
}

/** Writes own-row values whose bounds were all checked before, as the changes to replicate. */
function writeOwn(row: OwnRow, writes: ReadonlyArray<{ readonly rowId: string; readonly column: number; readonly next: bigint }>): SlotChange[] {
  return writes.map(({ rowId, column, next }) => {
    row.write(rowId, row.table.ensure(rowId), column, next);
    return { accountId: rowId, writer: row.self, column, value: next };
  });
}

/** An approved write's answer: the account's balance over its live lots and this region's spendable rights, after it. */
function accountAnswer(reader: LotReader, accountId: string, clockMs: number, guardMs: number, outcome: DebitOutcome): Answer {
  const after = accountLots(reader, accountId, clockMs, guardMs);
  return { kind: "debit", outcome, balance: liveBalance(after), localRights: localSpendable(after) };
}
