// Account policies: STRICT never spends beyond the region's rights; OVERDRAFT
// may go `overdraftLimit` beyond them. A policy is a register whose writes are
// ordered by a hybrid logical clock per account — (writtenAtMs, logical) — then
// by writer replica name, then by content.
//
// Why a hybrid logical clock. Ordering by wall clock alone lets a peer whose
// clock runs ahead beat every later write made elsewhere until real time catches
// up (e.g. OVERDRAFT kept for an hour after an operator set STRICT). With the
// stamp of nextPolicyStamp, a write made after its writer has seen the current
// write always orders after it, whatever either clock says; concurrent writes
// (neither saw the other) still converge to one winner everywhere.

import { describeShare, maxOverdraftLimit } from "./bounds";
import { BoundExceededError, InvalidArgumentError } from "./errors";
import { INT64_MAX } from "./amounts";

export enum Mode {
  Strict = 1,
  Overdraft = 2,
}

export interface Policy {
  readonly mode: Mode;
  readonly overdraftLimit: bigint;
  readonly lowWaterMark: bigint;
}

/** A hybrid logical clock stamp. */
export interface PolicyStamp {
  /** Physical part: ms since the Unix epoch (never behind any stamp the writer had seen). */
  readonly writtenAtMs: number;
  /** Logical part: counts writes that did not advance writtenAtMs. */
  readonly logical: number;
}

export interface PolicyWrite extends Policy, PolicyStamp {
  /** The writer replica's name; breaks ties between equal stamps. */
  readonly replica: string;
}

export const STRICT_DEFAULT: Policy = { mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: 0n };

/** The latest instant a JavaScript Date can hold (ms); a physical part beyond it is not a time. */
export const MAX_POLICY_PHYSICAL_MS = 8_640_000_000_000_000;

/**
 * Checks a policy a client asked for; `field` prefixes the names in errors.
 * With `replicaCount`, an overdraft limit above maxOverdraftLimit(replicaCount)
 * is refused with BoundExceededError (see src/core/bounds.ts).
 */
export function validatePolicy(policy: Policy, field = "policy", replicaCount?: number): Policy {
  if (policy.mode !== Mode.Strict && policy.mode !== Mode.Overdraft) {
    throw new InvalidArgumentError(`${field}.mode`, "must be POLICY_MODE_STRICT or POLICY_MODE_OVERDRAFT");
  }
  if (policy.overdraftLimit < 0n || policy.overdraftLimit > INT64_MAX) {
    throw new InvalidArgumentError(`${field}.overdraft_limit`, "must be between 0 and 9223372036854775807");
  }
  if (policy.mode === Mode.Strict && policy.overdraftLimit !== 0n) {
    throw new InvalidArgumentError(`${field}.overdraft_limit`, "must be 0 under POLICY_MODE_STRICT");
  }
  if (policy.lowWaterMark < 0n || policy.lowWaterMark > INT64_MAX) {
    throw new InvalidArgumentError(`${field}.low_water_mark`, "must be between 0 and 9223372036854775807");
  }
  if (replicaCount !== undefined && policy.overdraftLimit > maxOverdraftLimit(replicaCount)) {
    throw new BoundExceededError(
      `${field}.overdraft_limit`,
      maxOverdraftLimit(replicaCount),
      `must be at most ${describeShare(replicaCount)}: no region can debit more than that on one account, ` +
        "and the total overdraft exposure must fit in int64",
    );
  }
  return policy;
}

/**
 * The stamp of a new local write that replaces `current`: physical =
 * max(localWallMs, current's physical); logical = 0 when physical advanced,
 * else current's logical + 1. The result always orders after `current`.
 */
export function nextPolicyStamp(current: PolicyStamp | undefined, localWallMs: number): PolicyStamp {
  if (!Number.isSafeInteger(localWallMs) || localWallMs < 0 || localWallMs > MAX_POLICY_PHYSICAL_MS) {
    throw new InvalidArgumentError("now", `must be a time in ms since the Unix epoch; got ${localWallMs}`);
  }
  if (current === undefined || localWallMs > current.writtenAtMs) return { writtenAtMs: localWallMs, logical: 0 };
  // The physical part did not advance: count. Stamps of accepted writes are
  // bounded (checkPolicyWrite), so neither part can leave the safe integers.
  if (current.logical < Number.MAX_SAFE_INTEGER) return { writtenAtMs: current.writtenAtMs, logical: current.logical + 1 };
  return { writtenAtMs: current.writtenAtMs + 1, logical: 0 };
}

/** Orders stamps: negative when a < b, 0 when equal, positive when a > b. */
export function comparePolicyStamps(a: PolicyStamp, b: PolicyStamp): number {
  if (a.writtenAtMs !== b.writtenAtMs) return a.writtenAtMs < b.writtenAtMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  return 0;
}

/** True when `candidate` orders after `current`: by stamp, then replica name, then content. */
export function policyWriteWins(candidate: PolicyWrite, current: PolicyWrite | undefined): boolean {
  if (current === undefined) return true;
  const byStamp = comparePolicyStamps(candidate, current);
  if (byStamp !== 0) return byStamp > 0;
  if (candidate.replica !== current.replica) return candidate.replica > current.replica;
  // Same writer and stamp: order by content so every replica picks the same one.
  return policyKey(candidate) > policyKey(current);
}

/**
 * Checks a replicated policy write (from a peer, a snapshot or the own log):
 * a valid policy within the bounds of `replicaCount` replicas and a stamp a
 * writer can produce. Returns the reason it is refused, or undefined.
 */
export function policyWriteProblem(write: PolicyWrite, replicaCount: number): string | undefined {
  try {
    validatePolicy(write, "policy", replicaCount);
  } catch (error) {
    if (error instanceof InvalidArgumentError || error instanceof BoundExceededError) return error.message;
    throw error;
  }
  if (!Number.isSafeInteger(write.writtenAtMs) || write.writtenAtMs < 0 || write.writtenAtMs > MAX_POLICY_PHYSICAL_MS) {
    return `written_at_ms ${write.writtenAtMs} is not a time in ms since the Unix epoch`;
  }
  if (!Number.isSafeInteger(write.logical) || write.logical < 0) {
    return `logical ${write.logical} is not a non-negative safe integer`;
  }
  return undefined;
}

/** How far below zero a replica's rights may go under this policy. */
export function overdraftAllowance(policy: Policy): bigint {
  return policy.mode === Mode.Overdraft ? policy.overdraftLimit : 0n;
}

function policyKey(policy: Policy): string {
  return `${policy.mode}|${policy.overdraftLimit.toString().padStart(20, "0")}|${policy.lowWaterMark.toString().padStart(20, "0")}`;
}
