// What a settlement consumes — the joined state of every replica at a cut — and
// its validation and encoding into Postgres array literals for bulk staging.

import { Mode } from "../core/policy";
import { UINT64_MAX } from "../core/amounts";
import { InvalidArgumentError } from "../core/errors";
import { ReplicaSet } from "../core/replica-set";
import { validateRowId } from "../core/lot-rows";

export const MODE_STRICT = Mode.Strict;
export const MODE_OVERDRAFT = Mode.Overdraft;

/** One account's settled counters; every array is indexed by replica index. */
export interface SettlementAccount {
  readonly accountId: string;
  /** P[i][i]: credits granted at replica i (uint64). */
  readonly granted: readonly bigint[];
  /** D[i]: debits at replica i (uint64). */
  readonly debited: readonly bigint[];
  /** 1 = STRICT, 2 = OVERDRAFT. */
  readonly mode: Mode;
  /** Replicas whose rights are below zero, i.e. that used overdraft. */
  readonly rightsBelowZero: readonly boolean[];
}

export type SettledHoldState = "PENDING" | "CAPTURED" | "VOIDED" | "EXPIRED";

/** A hold as its region's snapshot at the cut holds it: outstanding, or resolved. */
export interface SettlementHold {
  readonly holdId: string;
  readonly region: string;
  readonly accountId: string;
  readonly amount: bigint;
  readonly state: SettledHoldState;
  readonly captured: bigint;
  readonly expiresAtMs: number;
  /** 0 while pending. */
  readonly resolvedAtMs: number;
}

/** One refund given by `region`, as its request log remembers it. */
export interface SettlementRefund {
  readonly region: string;
  readonly refundRequestId: string;
  readonly debitRequestId: string;
  /** Undefined when the debit's refund tally is no longer kept. */
  readonly accountId: string | undefined;
  readonly amount: bigint;
  readonly refundedAtMs: number;
}

/** The unspent part of an expired credit lot, once every region's cut is past its expiry plus the guard. */
export interface SettlementBreakage {
  readonly accountId: string;
  readonly lotKey: string;
  readonly amount: bigint;
  readonly expiresAtMs: number;
}

export interface SettlementInput {
  /** Replica names in index order. */
  readonly replicas: readonly string[];
  /** The cut: per replica, the replication sequence included. */
  readonly cut: Readonly<Record<string, bigint>>;
  /** Each account at most once. May be lazy (a generator) so the input is never held twice. */
  readonly accounts: Iterable<SettlementAccount> | AsyncIterable<SettlementAccount>;
  /** Every region's holds at the cut (pending ones are recorded as outstanding, resolved ones once). */
  readonly holds?: readonly SettlementHold[];
  /** Refunds the regions remember at the cut (each recorded once). */
  readonly refunds?: readonly SettlementRefund[];
  /** Breakage of lots that died before every region's cut (each recorded once ever). */
  readonly breakage?: readonly SettlementBreakage[];
}

/** Checks the replicas and the cut; returns the cut in replica order. */
export function validateCut(input: SettlementInput): Map<string, bigint> {
  const replicas = new ReplicaSet(input.replicas);
  const cut = new Map<string, bigint>();
  for (const name of replicas.names) {
    const seq = input.cut[name];
    if (seq === undefined) throw new InvalidArgumentError(`cut.${name}`, "is missing: every replica needs a sequence");
    checkUint64(seq, `cut.${name}`);
    cut.set(name, seq);
  }
  for (const name of Object.keys(input.cut)) {
    if (!replicas.has(name)) throw new InvalidArgumentError(`cut.${name}`, "names a replica not in replicas");
  }
  return cut;
}

/** The cut as jsonb text with exact integer values (JSON numbers of any size are exact in jsonb). */
export function cutToJson(cut: ReadonlyMap<string, bigint>): string {
  const parts: string[] = [];
  for (const [name, seq] of cut) parts.push(`${JSON.stringify(name)}:${seq.toString()}`);
  return `{${parts.join(",")}}`;
}

function checkUint64(value: unknown, field: string): void {
  if (typeof value !== "bigint") throw new InvalidArgumentError(field, "must be a bigint");
  if (value < 0n || value > UINT64_MAX) throw new InvalidArgumentError(field, `must be within uint64; got ${value}`);
}

/**
 * Accumulates accounts column by column as Postgres array literals, so one
 * statement settles a whole batch from `unnest(...)`. Also sums each account's
 * counters over its replicas (exact bigint), which the SQL uses for balances.
 */
export class SettlementBatch {
  private accounts: string[] = [];
  private modes: string[] = [];
  private sumGranted: string[] = [];
  private sumDebited: string[] = [];
  private readonly granted: string[][];
  private readonly debited: string[][];
  private readonly below: string[][];
  /** Accounts validated so far, across batches (for error field names). */
  private seen = 0;

  constructor(private readonly replicaCount: number) {
    this.granted = Array.from({ length: replicaCount }, () => []);
    this.debited = Array.from({ length: replicaCount }, () => []);
    this.below = Array.from({ length: replicaCount }, () => []);
  }

  get size(): number {
    return this.accounts.length;
  }

  /** Validates and appends one account. Throws InvalidArgumentError naming the field. */
  add(account: SettlementAccount): void {
    const field = `accounts[${this.seen}]`;
    const n = this.replicaCount;
    if (typeof account.accountId !== "string") throw new InvalidArgumentError(`${field}.account_id`, "must be a string");
    validateRowId(account.accountId, `${field}.account_id`);
    if (account.mode !== MODE_STRICT && account.mode !== MODE_OVERDRAFT) {
      throw new InvalidArgumentError(`${field}.mode`, "must be 1 (STRICT) or 2 (OVERDRAFT)");
    }
    if (account.granted.length !== n) throw new InvalidArgumentError(`${field}.granted`, `must have ${n} entries`);
    if (account.debited.length !== n) throw new InvalidArgumentError(`${field}.debited`, `must have ${n} entries`);
    if (account.rightsBelowZero.length !== n) {
      throw new InvalidArgumentError(`${field}.rights_below_zero`, `must have ${n} entries`);
    }
    let sumGranted = 0n;
    let sumDebited = 0n;
    for (let i = 0; i < n; i++) {
      const g = account.granted[i];
      const d = account.debited[i];
      checkUint64(g, `${field}.granted[${i}]`);
      checkUint64(d, `${field}.debited[${i}]`);
      sumGranted += g as bigint;
      sumDebited += d as bigint;
    }
    for (let i = 0; i < n; i++) {
      (this.granted[i] as string[]).push(String(account.granted[i]));
      (this.debited[i] as string[]).push(String(account.debited[i]));
      (this.below[i] as string[]).push(account.rightsBelowZero[i] === true ? "t" : "f");
    }
    // Row ids are validated to [A-Za-z0-9._:@/-] plus a lot key after "#", so quoting needs no escapes;
    // quoting is still required (an unquoted NULL would be a null element).
    this.accounts.push(`"${account.accountId}"`);
    this.modes.push(account.mode === MODE_STRICT ? "1" : "2");
    this.sumGranted.push(String(sumGranted));
    this.sumDebited.push(String(sumDebited));
    this.seen++;
  }

  /** The batch's array parameters in the order `settleBatchSql` expects ($2 on); clears the batch. */
  take(): string[] {
    const params = [literal(this.accounts), literal(this.modes), literal(this.sumGranted), literal(this.sumDebited)];
    for (let i = 0; i < this.replicaCount; i++) {
      params.push(literal(this.granted[i] ?? []), literal(this.debited[i] ?? []), literal(this.below[i] ?? []));
      this.granted[i] = [];
      this.debited[i] = [];
      this.below[i] = [];
    }
    this.accounts = [];
    this.modes = [];
    this.sumGranted = [];
    this.sumDebited = [];
    return params;
  }
}

function literal(elements: readonly string[]): string {
  return `{${elements.join(",")}}`;
}
