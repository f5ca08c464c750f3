// The state one replica holds: every account's escrow counter (all rows, its
// own authoritative, the others merged from peers), policies, per-row digests
// and remembered request answers. Pure: no I/O, time is passed in. The local
// writes, bound checks, counter export and policy writes are sibling modules.

import { AccountTable } from "./account-table";
import type { Answer } from "./answer";
import { maxRegionDebitTotal, maxRegionGrantTotal, maxRegionTransferTotal } from "./bounds";
import { checkGrantTotal, checkMergedSlot } from "./bound-checks";
import { exportAccount, otherRows, slotAt } from "./counter-export";
import { balanceOf, debitColumn, debited, granted, heldOf, legacySlotCount, refunded, rightsOf, slotCount, totalHeldOf, type SlotView } from "./escrow-counter";
import { HoldBook, type HoldPart, type HoldRecord } from "./hold-book";
import { LotIndex } from "./lot-index";
import { TransferRefusedError } from "./errors";
import { rowOwner } from "./lot-rows";
import { accountLots, liveBalance, localSpendable, lotDebit, lotHold, lotRefund, lotRelease, lotTransfer, type LotState } from "./lot-writes";
import {
  localDebit,
  localGrant,
  localHold,
  localRefund,
  localRelease,
  localTransfer,
  ownSlot,
  type DebitResult,
  type OwnRow,
} from "./local-writes";
import { RefundTallies, type RefundTally } from "./refund-tallies";
import { overdraftAllowance, STRICT_DEFAULT, validatePolicy, type Policy, type PolicyWrite } from "./policy";
import { PolicyStore } from "./policy-store";
import {
  RequestLog,
  type FrozenAnswer,
  type FrozenRequests,
  type RequestLogFill,
  type RequestLogLimits,
  type RequestTime,
  type RestoreTime,
} from "./request-log";
import type { ReplicaSet } from "./replica-set";
import { slotHash } from "./row-digest";
import type { SlotChange } from "./slot-change";

export { DebitOutcome, type Answer } from "./answer";
export type { DebitResult } from "./local-writes";
export type { FrozenAnswer, FrozenRequests, RequestLogFill, RequestTime, RestoreTime } from "./request-log";
export type { HoldRecord } from "./hold-book";
export type { RefundTally } from "./refund-tallies";
export type { SlotChange } from "./slot-change";

export interface Contribution {
  readonly replica: string;
  readonly granted: bigint;
  readonly debited: bigint;
  readonly rights: bigint;
  /** Held for this region's open holds (HA − HR). */
  readonly held: bigint;
  /** Cumulative refunds given at this region (RF). */
  readonly refunded: bigint;
}

export interface FrozenState {
  readonly replicas: readonly string[];
  /** Slots per account (n*n + 4n); account k's slots start at k * width. */
  readonly width: number;
  readonly ids: readonly string[];
  readonly slots: BigUint64Array;
  /** Remembered answers, copied column-wise (no object per answer until read). */
  readonly requests: FrozenRequests;
  readonly policies: ReadonlyArray<readonly [string, PolicyWrite]>;
  /** This replica's holds (pending, and resolved ones still remembered). */
  readonly holds: readonly HoldRecord[];
  /** Refund totals of this replica's refunded debits. */
  readonly refunds: readonly RefundTally[];
}

export interface ReplicaStateOptions {
  readonly replicas: ReplicaSet;
  readonly self: string;
  readonly defaultPolicy?: Policy;
  readonly requestLog?: RequestLogLimits;
  readonly initialAccounts?: number;
  /** Lots stop being spendable this long before their expiry (DEFAULT_LOT_GUARD_MS when unset). */
  readonly lotGuardMs?: number;
}

/**
 * Default expiry guard: NTP keeps clocks within milliseconds, so 5 s covers a
 * clock that drifted badly or stepped, and it is negligible beside a lot's life
 * (hours to months). A clock further behind than the guard could spend a lot
 * past its real expiry; raise the guard where clocks are worse.
 */
export const DEFAULT_LOT_GUARD_MS = 5_000;

export class ReplicaState {
  readonly replicas: ReplicaSet;
  readonly self: number;
  readonly defaultPolicy: Policy;
  readonly lotGuardMs: number;
  /** Each account's lot rows (rows appear here however they arrive). */
  readonly lots = new LotIndex();
  private readonly table: AccountTable;
  private readonly policies: PolicyStore;
  private readonly requests: RequestLog;
  private readonly digests: bigint[];
  /** This replica's own holds (only the holding region decides them). */
  readonly holds = new HoldBook();
  /** Refund totals of this replica's own debits. */
  readonly refundTallies = new RefundTallies();
  /** This replica's row, as the local writes see it. */
  private readonly own: OwnRow;

  constructor(options: ReplicaStateOptions) {
    this.replicas = options.replicas;
    this.self = options.replicas.indexOf(options.self);
    this.defaultPolicy = validatePolicy(options.defaultPolicy ?? STRICT_DEFAULT, "default_policy", options.replicas.size);
    this.lotGuardMs = options.lotGuardMs ?? DEFAULT_LOT_GUARD_MS;
    this.table = new AccountTable(options.replicas.size, options.initialAccounts, (rowId) => this.lots.noteRow(rowId));
    this.policies = new PolicyStore(options.replicas, this.self);
    this.requests = new RequestLog(options.requestLog ?? { retentionMs: 15 * 60_000, maxEntries: 2_000_000 });
    this.digests = options.replicas.names.map(() => 0n);
    this.own = { table: this.table, self: this.self, write: (id, base, column, value) => this.writeOwn(id, base, column, value) };
  }

  get accountCount(): number {
    return this.table.size;
  }

  get rememberedRequests(): number {
    return this.requests.size;
  }

  /** How full the request log is; `local / capacity` reaching 1 refuses new requests. */
  get requestLogFill(): RequestLogFill {
    return this.requests.fill;
  }

  // ---- reads -------------------------------------------------------------

  balance(accountId: string): bigint {
    const base = this.table.baseOf(accountId);
    return base === undefined ? 0n : balanceOf(this.table.view(base));
  }

  rights(accountId: string, replica: number = this.self): bigint {
    const base = this.table.baseOf(accountId);
    return base === undefined ? 0n : rightsOf(this.table.view(base), replica);
  }

  /** What `replica` holds for its open holds on the account (HA − HR). */
  held(accountId: string, replica: number = this.self): bigint {
    const base = this.table.baseOf(accountId);
    return base === undefined ? 0n : heldOf(this.table.view(base), replica);
  }

  /** Σ held over every region and, with lots, over the account's lot rows: part of the balance, in no region's rights. */
  totalHeld(accountId: string): bigint {
    let total = 0n;
    for (const rowId of this.rowsOf(accountId)) {
      const base = this.table.baseOf(rowId);
      if (base !== undefined) total += totalHeldOf(this.table.view(base));
    }
    return total;
  }

  /** The account's rows: its plain row (the base lot), then its lot rows. */
  private rowsOf(accountId: string): string[] {
    return this.lots.hasLots(accountId) ? [accountId, ...this.lots.lotsOf(accountId).map((lot) => lot.rowId)] : [accountId];
  }

  contributions(accountId: string): Contribution[] {
    // With lots, each region's figures add up over the account's rows (the base
    // lot and every lot row): cumulative totals, expired lots included.
    const rows = this.rowsOf(accountId);
    const views = rows.flatMap((row) => {
      const base = this.table.baseOf(row);
      return base === undefined ? [] : [this.table.view(base)];
    });
    return this.replicas.names.map((replica, i) => {
      const sum = { replica, granted: 0n, debited: 0n, rights: 0n, held: 0n, refunded: 0n };
      for (const view of views) {
        sum.granted += granted(view, i);
        sum.debited += debited(view, i);
        sum.rights += rightsOf(view, i);
        sum.held += heldOf(view, i);
        sum.refunded += refunded(view, i);
      }
      return sum;
    });
  }

  /** The account's lots in this region's burn order, the base lot (its plain row) included, judged by `clockMs`. */
  accountLots(accountId: string, clockMs: number): LotState[] {
    return accountLots({ table: this.table, index: this.lots, self: this.self }, accountId, clockMs, this.lotGuardMs);
  }

  /** The account's balance: the plain row's, or with lots Σ remaining over the lots not expired by `clockMs`. */
  accountBalance(accountId: string, clockMs: number): bigint {
    return this.lots.hasLots(accountId) ? liveBalance(this.accountLots(accountId, clockMs)) : this.balance(accountId);
  }

  /** What this region may spend on the account now (rights of the plain row, or over its spendable lots). */
  spendableRights(accountId: string, clockMs: number): bigint {
    return this.lots.hasLots(accountId) ? localSpendable(this.accountLots(accountId, clockMs)) : this.rights(accountId);
  }

  /** Slot value P[writer][column] (column = n for D[writer]). */
  slot(accountId: string, writer: number, column: number): bigint {
    const base = this.table.baseOf(accountId);
    return base === undefined ? 0n : this.table.read(base, writer, column);
  }

  /** How much more this replica may still grant on the account (maxRegionGrantTotal − P[self][self]). */
  grantHeadroom(accountId: string): bigint {
    return maxRegionGrantTotal(this.replicas.size) - ownSlot(this.own, this.table.baseOf(accountId), this.self);
  }

  /** How much more this replica may still debit on the account (maxRegionDebitTotal − D[self]), rights aside. */
  debitHeadroom(accountId: string): bigint {
    const n = this.replicas.size;
    return maxRegionDebitTotal(n) - ownSlot(this.own, this.table.baseOf(accountId), debitColumn(n));
  }

  /** How much more this replica may still transfer to `to` on the account (maxRegionTransferTotal − P[self][to]), rights aside. */
  transferHeadroom(accountId: string, to: number): bigint {
    return maxRegionTransferTotal(this.replicas.size) - ownSlot(this.own, this.table.baseOf(accountId), to);
  }

  policy(accountId: string): Policy {
    return this.policies.get(accountId) ?? this.defaultPolicy;
  }

  policyWrite(accountId: string): PolicyWrite | undefined {
    return this.policies.get(accountId);
  }

  rowDigest(replica: number): bigint {
    return this.digests[replica] ?? 0n;
  }

  /** Iterates every account with a read-only view of its counter. */
  *accounts(): Generator<[string, SlotView]> {
    for (const [accountId, base] of this.table.accounts()) yield [accountId, this.table.view(base)];
  }

  /**
   * A consistent copy of everything this replica holds, for a snapshot. Taken
   * synchronously, so it reflects one instant.
   */
  freeze(): FrozenState {
    const { ids, slots } = this.table.copy();
    return {
      replicas: this.replicas.names,
      width: this.table.width,
      ids,
      slots,
      requests: this.requests.freeze(),
      policies: this.policies.entries(),
      holds: this.holds.entries(),
      refunds: this.refundTallies.entries(),
    };
  }

  // ---- idempotency -------------------------------------------------------

  /** The earlier answer for this request, or undefined. Throws RequestConflictError on a mismatch. */
  recall(requestId: string, fingerprint: string): Answer | undefined {
    return this.requests.lookup(requestId, fingerprint);
  }

  /**
   * Throws RequestLogFullError unless `count` new local requests can be
   * remembered; `nowMs` is the local monotonic time. Call before deciding, so a
   * refused request (or whole batch) changes nothing.
   */
  assertRequestRoom(count: number, nowMs: number): void {
    this.requests.assertRoom(count, nowMs);
  }

  /** Forgets remembered answers whose window ended by `nowMs` (local monotonic time). */
  expireRequests(nowMs: number): void {
    this.requests.expire(nowMs);
  }

  /** Remembers the answer to a request decided here (counted against the log's capacity). */
  remember(requestId: string, fingerprint: string, answer: Answer, time: RequestTime): void {
    this.requests.remember(requestId, fingerprint, answer, time, this.self);
  }

  /** Remembers an answer replicated from a region's stream (`origin` decided it); always accepted, kept a full window from now. */
  rememberReplicated(requestId: string, fingerprint: string, answer: Answer, time: RequestTime, origin?: number): void {
    this.requests.rememberReplicated(requestId, fingerprint, answer, time, origin);
  }

  /** Remembers an answer from a snapshot; always accepted, kept for what is left of its window. */
  restoreRequest(requestId: string, fingerprint: string, answer: Answer, time: RestoreTime, origin?: number): void {
    this.requests.restore(requestId, fingerprint, answer, time, origin);
  }

  /** The remembered record of a request whatever its parameters (with the region that decided it, when known). */
  requestRecord(requestId: string): FrozenAnswer | undefined {
    return this.requests.record(requestId);
  }

  /** Drops refund tallies whose debit's record left the request log (the refund window ended). */
  expireRefundTallies(): number {
    return this.refundTallies.forgetUnless((id) => this.requests.hasAcknowledged(id));
  }

  // ---- local writes (own row only; see local-writes.ts) --------------------

  /**
   * Spends `amount` from this replica's rights. Under OVERDRAFT (and when the
   * caller allows it, i.e. after waiting for rights) rights may go down to
   * −overdraft_limit.
   */
  /**
   * An account with lots burns them in order (lot-writes.ts); `clockMs` is
   * this region's wall clock, which alone judges whether a lot is spendable.
   * Without a clock only lots that started at the epoch and never expire
   * (the base lot) can be spent, which is never more than is allowed.
   */
  debit(accountId: string, amount: bigint, allowOverdraft: boolean, clockMs = 0): DebitResult {
    const overdraft = allowOverdraft ? overdraftAllowance(this.policy(accountId)) : 0n;
    if (this.lots.hasLots(accountId)) return lotDebit(this.own, this.lots, accountId, amount, overdraft, clockMs, this.lotGuardMs);
    return localDebit(this.own, accountId, amount, overdraft);
  }

  /**
   * Adds credits granted at this replica; they become this replica's rights.
   * With `spread` (and more than one replica), ⌊amount / n⌋ of them is at once
   * transferred to each other replica, atomically with the grant: every bound
   * is checked before anything changes.
   */
  grant(accountId: string, amount: bigint, spread = false): { answer: Answer; changes: SlotChange[] } {
    // The per-region grant cap holds for the account as a whole, not per lot
    // row: the balance and the per-region totals add up the lot rows, and only
    // an account-wide cap keeps those sums inside int64 (src/core/bounds.ts).
    const account = rowOwner(accountId)?.accountId ?? accountId;
    if (account !== accountId || this.lots.hasLots(account)) {
      const grantedHere = this.contributions(account)[this.self]?.granted ?? 0n;
      checkGrantTotal(this.replicas.size, account, grantedHere + amount, amount);
    }
    return localGrant(this.own, accountId, amount, spread);
  }

  /**
   * Gives `amount` of this replica's own (non-overdraft) rights to replica
   * `to`. With a clock, an account that has lots gives from its spendable
   * lots in burn order (lotTransfer); without one, or for a lot row named
   * directly, the row itself gives.
   */
  transfer(accountId: string, to: number, amount: bigint, clockMs?: number): SlotChange[] {
    if (clockMs !== undefined && this.lots.hasLots(accountId)) return lotTransfer(this.own, this.lots, accountId, to, amount, clockMs, this.lotGuardMs);
    return localTransfer(this.own, accountId, to, amount);
  }

  /**
   * Moves `amount` of this replica's own rights into held (no overdraft). An
   * account with lots holds from the lots it would burn that stay spendable
   * until the hold times out (`timeoutMs` after `clockMs`): `parts` says
   * where; it is undefined for an account without lots (its plain row).
   */
  hold(accountId: string, amount: bigint, clockMs?: number, timeoutMs = 0): DebitResult & { readonly parts?: readonly HoldPart[] } {
    if (clockMs !== undefined && this.lots.hasLots(accountId)) {
      const result = lotHold(this.own, this.lots, accountId, amount, clockMs, clockMs + timeoutMs, this.lotGuardMs);
      const plainOnly = result.parts.length === 1 && result.parts[0]!.rowId === accountId;
      return plainOnly ? { ...result, parts: undefined } : result;
    }
    return this.withAccountBalance(accountId, localHold(this.own, accountId, amount), clockMs);
  }

  /** Releases the hold `record` describes, debiting `captured` (≤ its amount) of it, in one step. */
  release(record: Pick<HoldRecord, "accountId" | "amount" | "parts">, captured: bigint, clockMs?: number): { answer: Answer; changes: SlotChange[] } {
    if (captured < 0n || captured > record.amount) {
      throw new TransferRefusedError(record.accountId, `cannot capture ${captured} of a hold of ${record.amount}`);
    }
    if (record.parts !== undefined) {
      return lotRelease(this.own, this.lots, record.accountId, record.parts, captured, clockMs ?? 0, this.lotGuardMs);
    }
    return this.withAccountBalance(record.accountId, localRelease(this.own, record.accountId, record.amount, captured), clockMs);
  }

  /**
   * Gives `amount` back to this replica's rights (a refund of a debit decided
   * here); an account with lots gets it back in the lots it was debited from
   * here that are still live (lotRefund).
   */
  refund(accountId: string, amount: bigint, clockMs?: number): { answer: Answer; changes: SlotChange[] } {
    if (clockMs !== undefined && this.lots.hasLots(accountId)) return lotRefund(this.own, this.lots, accountId, amount, clockMs, this.lotGuardMs);
    return this.withAccountBalance(accountId, localRefund(this.own, accountId, amount), clockMs);
  }

  /**
   * Writes on the plain row of an account without lots, answered with the
   * balance over live lots when a clock is given, as GetBalance does.
   */
  private withAccountBalance<T extends { readonly answer: Answer }>(accountId: string, result: T, clockMs: number | undefined): T {
    if (clockMs === undefined || !this.lots.hasLots(accountId)) return result;
    return { ...result, answer: { ...result.answer, balance: this.accountBalance(accountId, clockMs) } };
  }

  /**
   * A local policy write: validated (bounds included), stamped with the hybrid
   * logical clock after the account's current write, and applied. Returns the
   * write to replicate.
   */
  writePolicy(accountId: string, policy: Policy, nowMs: number): PolicyWrite {
    return this.policies.write(accountId, policy, nowMs);
  }

  /**
   * Applies a policy write, local or replicated, if it orders after the current
   * one. Returns true if it took effect. Throws ReplicaDataRejectedError (and
   * changes nothing) for a write no legitimate writer could have made.
   */
  applyPolicy(accountId: string, write: PolicyWrite): boolean {
    return this.policies.apply(accountId, write);
  }

  // ---- merging -----------------------------------------------------------

  /** The account's whole counter in slot layout (P row-major, then D); empty if unknown. */
  exportAccount(accountId: string): bigint[] {
    return exportAccount(this.table, accountId);
  }

  /** The non-zero slots of every row but this replica's own, for these accounts (a message's causal context). */
  otherRows(accountIds: Iterable<string>): SlotChange[] {
    return otherRows(this.table, this.self, accountIds);
  }

  /**
   * Merges a counter exported by exportAccount (pointwise max). Returns true if
   * anything grew. Every value is checked first: if any is out of bounds it
   * throws ReplicaDataRejectedError and nothing is merged.
   */
  mergeAccount(accountId: string, values: readonly bigint[]): boolean {
    const n = this.replicas.size;
    // A counter written before holds (P and D only) reads as zero holds and refunds.
    if (values.length !== slotCount(n) && values.length !== legacySlotCount(n)) return false;
    values.forEach((value, k) => checkMergedSlot(n, accountId, ...slotAt(n, k), value));
    let grew = false;
    values.forEach((value, k) => {
      if (this.merge(accountId, ...slotAt(n, k), value)) grew = true;
    });
    return grew;
  }

  /**
   * Merges the absolute value of slot (writer, column) of an account: pointwise
   * max, so duplicates and reordering change nothing. Returns true if it grew.
   * Throws (changing nothing) for a value no legitimate writer could produce.
   */
  merge(accountId: string, writer: number, column: number, value: bigint): boolean {
    checkMergedSlot(this.replicas.size, accountId, writer, column, value);
    if (value === 0n) return false;
    const base = this.table.ensure(accountId);
    const current = this.table.read(base, writer, column);
    if (value <= current) return false;
    this.table.write(base, writer, column, value);
    this.digests[writer] = this.rowDigest(writer) ^ slotHash(accountId, column, current) ^ slotHash(accountId, column, value);
    return true;
  }

  private writeOwn(accountId: string, base: number, column: number, value: bigint): void {
    const current = this.table.read(base, this.self, column);
    this.table.write(base, this.self, column, value);
    this.digests[this.self] =
      this.rowDigest(this.self) ^ slotHash(accountId, column, current) ^ slotHash(accountId, column, value);
  }
}
