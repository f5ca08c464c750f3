// The settled-totals messages (SettledBatch) of the TALLY_SETTLED stream,
// encoded with the cluster identity and decoded through the inbound guards.

import type { ClusterIdentity } from "../core/cluster-identity";
import { SettledBatch } from "../generated/tally/replication/v1/replication";
import { checkAccountId, checkIdentity, clusterToWire, guard, reject, type Decoded, type InboundContext } from "./inbound";

export interface SettledAccountValue {
  readonly accountId: string;
  readonly granted: bigint;
  readonly debited: bigint;
}

export interface SettledBatchValue {
  readonly settlementId: bigint;
  readonly accounts: readonly SettledAccountValue[];
}

export function encodeSettledBatch(batch: SettledBatchValue, identity: ClusterIdentity): Uint8Array {
  return SettledBatch.encode({
    settlementId: batch.settlementId,
    accounts: batch.accounts.map((a) => ({ accountId: a.accountId, granted: a.granted, debited: a.debited })),
    cluster: clusterToWire(identity),
  }).finish();
}

/** Decodes and checks a settled batch: this cluster, a settlement id, valid accounts, non-negative totals. Never throws. */
export function decodeSettledBatch(bytes: Uint8Array, ctx: InboundContext): Decoded<SettledBatchValue> {
  return guard("SettledBatch", () => {
    const batch = SettledBatch.decode(bytes);
    checkIdentity(ctx, batch.cluster);
    if (batch.settlementId <= 0n) reject("field", "settlement_id must be positive");
    const accounts = batch.accounts.map((a, k) => {
      const accountId = checkAccountId(a.accountId, `accounts[${k}].account_id`);
      if (a.granted < 0n || a.debited < 0n) reject("field", `accounts[${k}]: totals must not be negative`);
      return { accountId, granted: a.granted, debited: a.debited };
    });
    return { settlementId: batch.settlementId, accounts };
  });
}
