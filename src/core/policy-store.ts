// The explicit policies one replica holds: per account the write that orders
// last by hybrid logical clock, whether written here or replicated.

import { nextPolicyStamp, policyWriteProblem, policyWriteWins, validatePolicy, type Policy, type PolicyWrite } from "./policy";
import { ReplicaDataRejectedError } from "./errors";
import type { ReplicaSet } from "./replica-set";

export class PolicyStore {
  private readonly writes = new Map<string, PolicyWrite>();

  constructor(
    private readonly replicas: ReplicaSet,
    /** Index of this replica, the writer named on local writes. */
    private readonly self: number,
  ) {}

  get(accountId: string): PolicyWrite | undefined {
    return this.writes.get(accountId);
  }

  /** Every account's current write, in insertion order. */
  entries(): [string, PolicyWrite][] {
    return [...this.writes.entries()];
  }

  /**
   * A local policy write: validated (bounds included), stamped with the hybrid
   * logical clock after the account's current write, and applied. Returns the
   * write to replicate.
   */
  write(accountId: string, policy: Policy, nowMs: number): PolicyWrite {
    validatePolicy(policy, "policy", this.replicas.size);
    const stamp = nextPolicyStamp(this.writes.get(accountId), nowMs);
    const write: PolicyWrite = {
      mode: policy.mode,
      overdraftLimit: policy.overdraftLimit,
      lowWaterMark: policy.lowWaterMark,
      writtenAtMs: stamp.writtenAtMs,
      logical: stamp.logical,
      replica: this.replicas.nameOf(this.self),
    };
    this.writes.set(accountId, write);
    return write;
  }

  /**
   * Applies a policy write, local or replicated, if it orders after the current
   * one. Returns true if it took effect. Throws ReplicaDataRejectedError (and
   * changes nothing) for a write no legitimate writer could have made.
   */
  apply(accountId: string, write: PolicyWrite): boolean {
    const problem =
      policyWriteProblem(write, this.replicas.size) ??
      (this.replicas.has(write.replica) ? undefined : `writer "${write.replica}" is not a configured region`);
    if (problem !== undefined) throw new ReplicaDataRejectedError(accountId, "policy write", problem);
    if (!policyWriteWins(write, this.writes.get(accountId))) return false;
    this.writes.set(accountId, write);
    return true;
  }
}
