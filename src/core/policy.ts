// Account policies: STRICT never spends beyond the region's rights; OVERDRAFT
// may go `overdraftLimit` beyond them. Policies are last-writer-wins registers
// ordered by (writtenAtMs, replica name).

import { InvalidArgumentError } from "./errors";
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

export interface PolicyWrite extends Policy {
  readonly writtenAtMs: number;
  readonly replica: string;
}

export const STRICT_DEFAULT: Policy = { mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: 0n };

/** Checks a policy a client asked for; `field` prefixes the names in errors. */
export function validatePolicy(policy: Policy, field = "policy"): Policy {
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
  return policy;
}

/** True when `candidate` wins over `current` under last-writer-wins. */
export function policyWriteWins(candidate: PolicyWrite, current: PolicyWrite | undefined): boolean {
  if (current === undefined) return true;
  if (candidate.writtenAtMs !== current.writtenAtMs) return candidate.writtenAtMs > current.writtenAtMs;
  if (candidate.replica !== current.replica) return candidate.replica > current.replica;
  // Same writer and millisecond: order by content so every replica picks the same one.
  return policyKey(candidate) > policyKey(current);
}

/** How far below zero a replica's rights may go under this policy. */
export function overdraftAllowance(policy: Policy): bigint {
  return policy.mode === Mode.Overdraft ? policy.overdraftLimit : 0n;
}

function policyKey(policy: Policy): string {
  return `${policy.mode}|${policy.overdraftLimit.toString().padStart(20, "0")}|${policy.lowWaterMark.toString().padStart(20, "0")}`;
}
