// The state one replica holds: every account's escrow counter (all rows, its
// own authoritative, the others merged from peers), policies, per-row digests
// and remembered request answers. Pure: no I/O, time is passed in.

import { AccountTable } from "./account-table";
import { DebitOutcome, type Answer } from "./answer";
import { UINT64_MAX } from "./amounts";
import {
  describeShare,
  maxRegionDebitTotal,
  maxRegionGrantTotal,
  maxRegionTransferTotal,
  maxSlotValue,
  slotKindOf,
} from "./bounds";
import { balanceOf, debitColumn, debited, granted, rightsOf, type SlotView } from "./escrow-counter";
import { BoundExceededError, InvalidArgumentError, ReplicaDataRejectedError, TransferRefusedError } from "./errors";
import {
  nextPolicyStamp,
  overdraftAllowance,
  policyWriteProblem,
  policyWriteWins,
  STRICT_DEFAULT,
  validatePolicy,
  type Policy,
  type PolicyWrite,
} from "./policy";
import {
  RequestLog,
  type FrozenRequests,
  type RequestLogFill,
  type RequestLogLimits,
  type RequestTime,
  type RestoreTime,
} from "./request-log";
import type { ReplicaSet } from "./replica-set";
import { slotHash } from "./row-digest";

export { DebitOutcome, type Answer } from "./answer";
export type { FrozenAnswer, FrozenRequests, RequestLogFill, RequestTime, RestoreTime } from "./request-log";

/** The absolute new value of one slot in the row of `writer`. */
export interface SlotChange {
  readonly accountId: string;
  readonly writer: number;
  readonly column: number;
  readonly value: bigint;
}

export interface DebitResult {
  readonly answer: Answer;
  /** Empty when nothing was spent. */
  readonly changes: SlotChange[];
  /** The global balance (as known here) could have covered a refused debit. */
  readonly globallyCoverable: boolean;
}

export interface Contribution {
  readonly replica: string;
  readonly granted: bigint;
  readonly debited: bigint;
  readonly rights: bigint;
}

export interface FrozenState {
  readonly replicas: readonly string[];
  /** Slots per account (n*n + n); account k's slots start at k * width. */
  readonly width: number;
  readonly ids: readonly string[];
  readonly slots: BigUint64Array;
  /** Remembered answers, copied column-wise (no object per answer until read). */
  readonly requests: FrozenRequests;
  readonly policies: ReadonlyArray<readonly [string, PolicyWrite]>;
}

export interface ReplicaStateOptions {
  readonly replicas: ReplicaSet;
  readonly self: string;
  readonly defaultPolicy?: Policy;
  readonly requestLog?: RequestLogLimits;
  readonly initialAccounts?: number;
}

export class ReplicaState {
  readonly replicas: ReplicaSet;
  readonly self: number;
  readonly defaultPolicy: Policy;
  private readonly table: AccountTable;
  private readonly policies = new Map<string, PolicyWrite>();
  private readonly requests: RequestLog;
  private readonly digests: bigint[];

  constructor(options: ReplicaStateOptions) {
    this.replicas = options.replicas;
    this.self = options.replicas.indexOf(options.self);
    this.defaultPolicy = validatePolicy(options.defaultPolicy ?? STRICT_DEFAULT, "default_policy", options.replicas.size);
    this.table = new AccountTable(options.replicas.size, options.initialAccounts);
    this.requests = new RequestLog(options.requestLog ?? { retentionMs: 15 * 60_000, maxEntries: 2_000_000 });
    this.digests = options.replicas.names.map(() => 0n);
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

  contributions(accountId: string): Contribution[] {
    const base = this.table.baseOf(accountId);
    return this.replicas.names.map((replica, i) => {
      if (base === undefined) return { replica, granted: 0n, debited: 0n, rights: 0n };
      const view = this.table.view(base);
      return { replica, granted: granted(view, i), debited: debited(view, i), rights: rightsOf(view, i) };
    });
  }

  /** Slot value P[writer][column] (column = n for D[writer]). */
  slot(accountId: string, writer: number, column: number): bigint {
    const base = this.table.baseOf(accountId);
    return base === undefined ? 0n : this.table.read(base, writer, column);
  }

  /** How much more this replica may still grant on the account (maxRegionGrantTotal − P[self][self]). */
  grantHeadroom(accountId: string): bigint {
    return maxRegionGrantTotal(this.replicas.size) - this.ownSlot(this.table.baseOf(accountId), this.self);
  }

  /** How much more this replica may still debit on the account (maxRegionDebitTotal − D[self]), rights aside. */
  debitHeadroom(accountId: string): bigint {
    const n = this.replicas.size;
    return maxRegionDebitTotal(n) - this.ownSlot(this.table.baseOf(accountId), debitColumn(n));
  }

  /** How much more this replica may still transfer to `to` on the account (maxRegionTransferTotal − P[self][to]), rights aside. */
  transferHeadroom(accountId: string, to: number): bigint {
    return maxRegionTransferTotal(this.replicas.size) - this.ownSlot(this.table.baseOf(accountId), to);
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
      policies: [...this.policies.entries()],
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
    this.requests.remember(requestId, fingerprint, answer, time);
  }

  /** Remembers an answer replicated from a region's stream; always accepted, kept a full window from now. */
  rememberReplicated(requestId: string, fingerprint: string, answer: Answer, time: RequestTime): void {
    this.requests.rememberReplicated(requestId, fingerprint, answer, time);
  }

  /** Remembers an answer from a snapshot; always accepted, kept for what is left of its window. */
  restoreRequest(requestId: string, fingerprint: string, answer: Answer, time: RestoreTime): void {
    this.requests.restore(requestId, fingerprint, answer, time);
  }

  // ---- local writes (own row only) -----------------------------------------

  /**
   * Spends `amount` from this replica's rights. Under OVERDRAFT (and when the
   * caller allows it, i.e. after waiting for rights) rights may go down to
   * −overdraft_limit.
   */
  debit(accountId: string, amount: bigint, allowOverdraft: boolean): DebitResult {
    requirePositive(amount);
    const existing = this.table.baseOf(accountId);
    const rights = existing === undefined ? 0n : rightsOf(this.table.view(existing), this.self);
    const floor = allowOverdraft ? -overdraftAllowance(this.policy(accountId)) : 0n;
    // Overdraft may be used before any grant reached this replica.
    if (rights - amount < floor) {
      const balance = existing === undefined ? 0n : balanceOf(this.table.view(existing));
      return {
        answer: { kind: "debit", outcome: DebitOutcome.InsufficientCredit, balance, localRights: rights },
        changes: [],
        globallyCoverable: balance >= amount,
      };
    }
    const n = this.replicas.size;
    const column = debitColumn(n);
    const next = this.ownSlot(existing, column) + amount;
    const cap = maxRegionDebitTotal(n);
    if (next > cap) {
      throw new BoundExceededError(
        "amount",
        cap,
        `the region's cumulative debits for account "${accountId}" would exceed ${describeShare(n)}, ` +
          `the cap that keeps the account's totals within int64 whatever the other regions do ` +
          `(debited here so far: ${next - amount})`,
      );
    }
    const base = existing ?? this.table.ensure(accountId);
    this.writeOwn(accountId, base, column, next);
    const outcome = rights - amount < 0n ? DebitOutcome.ApprovedWithOverdraft : DebitOutcome.Approved;
    const view = this.table.view(base);
    return {
      answer: { kind: "debit", outcome, balance: balanceOf(view), localRights: rights - amount },
      changes: [{ accountId, writer: this.self, column, value: next }],
      globallyCoverable: true,
    };
  }

  /**
   * Adds credits granted at this replica; they become this replica's rights.
   * With `spread` (and more than one replica), ⌊amount / n⌋ of them is at once
   * transferred to each other replica, atomically with the grant: every bound
   * is checked before anything changes.
   */
  grant(accountId: string, amount: bigint, spread = false): { answer: Answer; changes: SlotChange[] } {
    requirePositive(amount);
    const n = this.replicas.size;
    const existing = this.table.baseOf(accountId);
    const next = this.ownSlot(existing, this.self) + amount;
    const cap = maxRegionGrantTotal(n);
    if (next > cap) {
      throw new BoundExceededError(
        "amount",
        cap,
        `the region's cumulative grants for account "${accountId}" would exceed ${describeShare(n)}, ` +
          `the cap that keeps the account's balance and totals within int64 whatever the other regions do ` +
          `(granted here so far: ${next - amount})`,
      );
    }
    const share = spread && n > 1 ? amount / BigInt(n) : 0n;
    const moves: [number, bigint][] = [];
    if (share > 0n) {
      for (let peer = 0; peer < n; peer++) {
        if (peer === this.self) continue;
        const moved = this.ownSlot(existing, peer) + share;
        this.checkTransferTotal(accountId, moved, share);
        moves.push([peer, moved]);
      }
    }
    const base = existing ?? this.table.ensure(accountId);
    this.writeOwn(accountId, base, this.self, next);
    const changes: SlotChange[] = [{ accountId, writer: this.self, column: this.self, value: next }];
    for (const [peer, moved] of moves) {
      this.writeOwn(accountId, base, peer, moved);
      changes.push({ accountId, writer: this.self, column: peer, value: moved });
    }
    const view = this.table.view(base);
    return {
      answer: {
        kind: "grant",
        outcome: DebitOutcome.Approved,
        balance: balanceOf(view),
        localRights: rightsOf(view, this.self),
      },
      changes,
    };
  }

  /** Gives `amount` of this replica's own (non-overdraft) rights to replica `to`. */
  transfer(accountId: string, to: number, amount: bigint): SlotChange[] {
    if (to === this.self) throw new TransferRefusedError(accountId, "cannot transfer to the same region");
    const base = this.table.baseOf(accountId);
    const rights = base === undefined ? 0n : rightsOf(this.table.view(base), this.self);
    if (base === undefined || amount <= 0n || rights < amount) {
      throw new TransferRefusedError(accountId, `needs ${amount} spare rights, region has ${rights}`);
    }
    const next = this.table.read(base, this.self, to) + amount;
    this.checkTransferTotal(accountId, next, amount);
    this.writeOwn(accountId, base, to, next);
    return [{ accountId, writer: this.self, column: to, value: next }];
  }

  /**
   * A local policy write: validated (bounds included), stamped with the hybrid
   * logical clock after the account's current write, and applied. Returns the
   * write to replicate.
   */
  writePolicy(accountId: string, policy: Policy, nowMs: number): PolicyWrite {
    validatePolicy(policy, "policy", this.replicas.size);
    const stamp = nextPolicyStamp(this.policies.get(accountId), nowMs);
    const write: PolicyWrite = {
      mode: policy.mode,
      overdraftLimit: policy.overdraftLimit,
      lowWaterMark: policy.lowWaterMark,
      writtenAtMs: stamp.writtenAtMs,
      logical: stamp.logical,
      replica: this.replicas.nameOf(this.self),
    };
    this.policies.set(accountId, write);
    return write;
  }

  /**
   * Applies a policy write, local or replicated, if it orders after the current
   * one. Returns true if it took effect. Throws ReplicaDataRejectedError (and
   * changes nothing) for a write no legitimate writer could have made.
   */
  applyPolicy(accountId: string, write: PolicyWrite): boolean {
    const problem =
      policyWriteProblem(write, this.replicas.size) ??
      (this.replicas.has(write.replica) ? undefined : `writer "${write.replica}" is not a configured region`);
    if (problem !== undefined) throw new ReplicaDataRejectedError(accountId, "policy write", problem);
    if (!policyWriteWins(write, this.policies.get(accountId))) return false;
    this.policies.set(accountId, write);
    return true;
  }

  // ---- merging -----------------------------------------------------------

  /** The account's whole counter in slot layout (P row-major, then D); empty if unknown. */
  exportAccount(accountId: string): bigint[] {
    const base = this.table.baseOf(accountId);
    if (base === undefined) return [];
    const n = this.replicas.size;
    const values: bigint[] = [];
    for (let writer = 0; writer < n; writer++) for (let column = 0; column < n; column++) values.push(this.table.read(base, writer, column));
    for (let writer = 0; writer < n; writer++) values.push(this.table.read(base, writer, n));
    return values;
  }

  /** The non-zero slots of every row but this replica's own, for these accounts (a message's causal context). */
  otherRows(accountIds: Iterable<string>): SlotChange[] {
    const n = this.replicas.size;
    const out: SlotChange[] = [];
    for (const accountId of accountIds) {
      const base = this.table.baseOf(accountId);
      if (base === undefined) continue;
      for (let writer = 0; writer < n; writer++) {
        if (writer === this.self) continue;
        for (let column = 0; column <= n; column++) {
          const value = this.table.read(base, writer, column);
          if (value !== 0n) out.push({ accountId, writer, column, value });
        }
      }
    }
    return out;
  }

  /**
   * Merges a counter exported by exportAccount (pointwise max). Returns true if
   * anything grew. Every value is checked first: if any is out of bounds it
   * throws ReplicaDataRejectedError and nothing is merged.
   */
  mergeAccount(accountId: string, values: readonly bigint[]): boolean {
    const n = this.replicas.size;
    if (values.length !== n * n + n) return false;
    const at = (k: number): [number, number] => (k < n * n ? [Math.floor(k / n), k % n] : [k - n * n, n]);
    values.forEach((value, k) => this.checkSlotValue(accountId, ...at(k), value));
    let grew = false;
    values.forEach((value, k) => {
      if (this.merge(accountId, ...at(k), value)) grew = true;
    });
    return grew;
  }

  /**
   * Merges the absolute value of slot (writer, column) of an account: pointwise
   * max, so duplicates and reordering change nothing. Returns true if it grew.
   */
  merge(accountId: string, writer: number, column: number, value: bigint): boolean {
    this.checkSlotValue(accountId, writer, column, value);
    if (value === 0n) return false;
    const base = this.table.ensure(accountId);
    const current = this.table.read(base, writer, column);
    if (value <= current) return false;
    this.table.write(base, writer, column, value);
    this.digests[writer] = this.rowDigest(writer) ^ slotHash(accountId, column, current) ^ slotHash(accountId, column, value);
    return true;
  }

  /**
   * Throws unless (writer, column) is a slot and `value` is one a legitimate
   * writer could have produced (at most maxSlotValue; see src/core/bounds.ts).
   */
  private checkSlotValue(accountId: string, writer: number, column: number, value: bigint): void {
    const n = this.replicas.size;
    if (!Number.isInteger(writer) || writer < 0 || writer >= n) throw new InvalidArgumentError("writer", `must be in 0..${n - 1}; got ${writer}`);
    if (!Number.isInteger(column) || column < 0 || column > n) throw new InvalidArgumentError("column", `must be in 0..${n}; got ${column}`);
    if (value < 0n || value > UINT64_MAX) throw new InvalidArgumentError("value", "must fit in uint64");
    const kind = slotKindOf(n, writer, column);
    if (value > maxSlotValue(n, kind)) {
      const slot = column === n ? `D[${writer}]` : `P[${writer}][${column}]`;
      throw new ReplicaDataRejectedError(
        accountId,
        `slot ${slot} (${kind})`,
        `value ${value} exceeds ${describeShare(n)}, the most a legitimate writer can produce`,
      );
    }
  }

  private checkTransferTotal(accountId: string, total: bigint, amount: bigint): void {
    const n = this.replicas.size;
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

  /** This replica's own slot `column` of an account (0 when the account is unknown). */
  private ownSlot(base: number | undefined, column: number): bigint {
    return base === undefined ? 0n : this.table.read(base, this.self, column);
  }

  private writeOwn(accountId: string, base: number, column: number, value: bigint): void {
    const current = this.table.read(base, this.self, column);
    this.table.write(base, this.self, column, value);
    this.digests[this.self] =
      this.rowDigest(this.self) ^ slotHash(accountId, column, current) ^ slotHash(accountId, column, value);
  }
}

function requirePositive(amount: bigint): void {
  if (amount <= 0n) throw new InvalidArgumentError("amount", `must be a positive integer of minor units; got ${amount}`);
}
