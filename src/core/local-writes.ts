// A replica's local writes (debit, grant, transfer): each changes only the
// replica's own row of an account's counter, and checks every bound before
// anything changes, so a refused write leaves the state as it was.

import type { AccountTable } from "./account-table";
import { DebitOutcome, type Answer } from "./answer";
import { checkDebitTotal, checkGrantTotal, checkTransferTotal, requirePositive } from "./bound-checks";
import { balanceOf, debitColumn, heldColumn, refundColumn, releasedColumn, rightsOf } from "./escrow-counter";
import { TransferRefusedError } from "./errors";
import type { SlotChange } from "./slot-change";

export interface DebitResult {
  readonly answer: Answer;
  /** Empty when nothing was spent. */
  readonly changes: SlotChange[];
  /** The global balance (as known here) could have covered a refused debit. */
  readonly globallyCoverable: boolean;
}

/** What the local writes need of a replica's state. */
export interface OwnRow {
  readonly table: AccountTable;
  /** Index of this replica: the row it writes. */
  readonly self: number;
  /** Sets slot `column` of the own row of the account at `base`, keeping the row's digest. */
  write(accountId: string, base: number, column: number, value: bigint): void;
}

/** This replica's own slot `column` of an account (0 when the account is unknown). */
export function ownSlot(row: OwnRow, base: number | undefined, column: number): bigint {
  return base === undefined ? 0n : row.table.read(base, row.self, column);
}

/**
 * Spends `amount` from this replica's rights, which may go down to −`overdraft`
 * (0 unless the policy and the caller allow overdraft).
 */
/** A spend this replica's rights cannot cover: nothing changes; the answer says whether the whole balance could. */
function refused(row: OwnRow, existing: number | undefined, rights: bigint, amount: bigint): DebitResult {
  const balance = existing === undefined ? 0n : balanceOf(row.table.view(existing));
  return {
    answer: { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance, localRights: rights },
    changes: [],
    globallyCoverable: balance >= amount,
  };
}

/** Raises one grow-only slot of the own row by `amount` (bounds checked first); returns the account's base and the new value. */
function raiseOwn(row: OwnRow, accountId: string, existing: number | undefined, column: number, amount: bigint): { base: number; next: bigint } {
  const next = ownSlot(row, existing, column) + amount;
  checkDebitTotal(row.table.n, accountId, next, amount);
  const base = existing ?? row.table.ensure(accountId);
  row.write(accountId, base, column, next);
  return { base, next };
}

export function localDebit(row: OwnRow, accountId: string, amount: bigint, overdraft: bigint): DebitResult {
  requirePositive(amount);
  const { table, self } = row;
  const existing = table.baseOf(accountId);
  const rights = existing === undefined ? 0n : rightsOf(table.view(existing), self);
  // Overdraft may be used before any grant reached this replica.
  if (rights - amount < -overdraft) return refused(row, existing, rights, amount);
  const column = debitColumn(table.n);
  const { base, next } = raiseOwn(row, accountId, existing, column, amount);
  const outcome = rights - amount < 0n ? DebitOutcome.ApprovedWithOverdraft : DebitOutcome.Approved;
  const view = table.view(base);
  return {
    answer: { kind: "debit", outcome, balance: balanceOf(view), localRights: rights - amount },
    changes: [{ accountId, writer: self, column, value: next }],
    globallyCoverable: true,
  };
}

/**
 * Adds credits granted at this replica; they become this replica's rights.
 * With `spread` (and more than one replica), ⌊amount / n⌋ of them is at once
 * transferred to each other replica, atomically with the grant.
 */
export function localGrant(row: OwnRow, accountId: string, amount: bigint, spread: boolean): { answer: Answer; changes: SlotChange[] } {
  requirePositive(amount);
  const { table, self } = row;
  const n = table.n;
  const existing = table.baseOf(accountId);
  const next = ownSlot(row, existing, self) + amount;
  checkGrantTotal(n, accountId, next, amount);
  const share = spread && n > 1 ? amount / BigInt(n) : 0n;
  const moves: [number, bigint][] = [];
  if (share > 0n) {
    for (let peer = 0; peer < n; peer++) {
      if (peer === self) continue;
      const moved = ownSlot(row, existing, peer) + share;
      checkTransferTotal(n, accountId, moved, share);
      moves.push([peer, moved]);
    }
  }
  const base = existing ?? table.ensure(accountId);
  row.write(accountId, base, self, next);
  const changes: SlotChange[] = [{ accountId, writer: self, column: self, value: next }];
  for (const [peer, moved] of moves) {
    row.write(accountId, base, peer, moved);
    changes.push({ accountId, writer: self, column: peer, value: moved });
  }
  const view = table.view(base);
  return {
    answer: {
      kind: "grant",
      outcome: DebitOutcome.Approved,
      balance: balanceOf(view),
      localRights: rightsOf(view, self),
    },
    changes,
  };
}

/** Gives `amount` of this replica's own (non-overdraft) rights to replica `to`. */
export function localTransfer(row: OwnRow, accountId: string, to: number, amount: bigint): SlotChange[] {
  const { table, self } = row;
  if (to === self) throw new TransferRefusedError(accountId, "cannot transfer to the same region");
  const base = table.baseOf(accountId);
  const rights = base === undefined ? 0n : rightsOf(table.view(base), self);
  if (base === undefined || amount <= 0n || rights < amount) {
    throw new TransferRefusedError(accountId, `needs ${amount} spare rights, region has ${rights}`);
  }
  const next = table.read(base, self, to) + amount;
  checkTransferTotal(table.n, accountId, next, amount);
  row.write(accountId, base, to, next);
  return [{ accountId, writer: self, column: to, value: next }];
}

/**
 * Sets `amount` of this replica's rights aside for a hold (HA grows), if its
 * own rights cover it: no overdraft, so a hold never takes rights below zero.
 */
export function localHold(row: OwnRow, accountId: string, amount: bigint): DebitResult {
  requirePositive(amount);
  const { table, self } = row;
  const existing = table.baseOf(accountId);
  const rights = existing === undefined ? 0n : rightsOf(table.view(existing), self);
  if (rights < amount) return refused(row, existing, rights, amount);
  const column = heldColumn(table.n);
  const { base, next } = raiseOwn(row, accountId, existing, column, amount);
  const view = table.view(base);
  return {
    answer: { kind: "debit", outcome: DebitOutcome.Approved, balance: balanceOf(view), localRights: rights - amount },
    changes: [{ accountId, writer: self, column, value: next }],
    globallyCoverable: true,
  };
}

/**
 * Resolves a hold of `held`: all of it is released (HR grows) and `captured`
 * of it (≤ held) is debited (D grows) in the same step. Bounds are checked
 * before anything changes.
 */
export function localRelease(row: OwnRow, accountId: string, held: bigint, captured: bigint): { answer: Answer; changes: SlotChange[] } {
  requirePositive(held);
  const { table, self } = row;
  const base = table.baseOf(accountId);
  const n = table.n;
  if (base === undefined || captured < 0n || captured > held) {
    throw new TransferRefusedError(accountId, `cannot release ${held} (capturing ${captured}) on an account this region holds nothing of`);
  }
  const released = table.read(base, self, releasedColumn(n)) + held;
  checkDebitTotal(n, accountId, released, held);
  const debitedNext = table.read(base, self, debitColumn(n)) + captured;
  if (captured > 0n) checkDebitTotal(n, accountId, debitedNext, captured);
  row.write(accountId, base, releasedColumn(n), released);
  const changes: SlotChange[] = [{ accountId, writer: self, column: releasedColumn(n), value: released }];
  if (captured > 0n) {
    row.write(accountId, base, debitColumn(n), debitedNext);
    changes.push({ accountId, writer: self, column: debitColumn(n), value: debitedNext });
  }
  const view = table.view(base);
  return { answer: { kind: "debit", outcome: DebitOutcome.Approved, balance: balanceOf(view), localRights: rightsOf(view, self) }, changes };
}

/** Gives `amount` back as this replica's rights (RF grows): a refund of a debit decided here. */
export function localRefund(row: OwnRow, accountId: string, amount: bigint): { answer: Answer; changes: SlotChange[] } {
  requirePositive(amount);
  const { table, self } = row;
  const n = table.n;
  const existing = table.baseOf(accountId);
  const next = ownSlot(row, existing, refundColumn(n)) + amount;
  checkDebitTotal(n, accountId, next, amount);
  const base = existing ?? table.ensure(accountId);
  row.write(accountId, base, refundColumn(n), next);
  const view = table.view(base);
  return {
    answer: { kind: "debit", outcome: DebitOutcome.Approved, balance: balanceOf(view), localRights: rightsOf(view, self) },
    changes: [{ accountId, writer: self, column: refundColumn(n), value: next }],
  };
}
