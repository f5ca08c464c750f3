// Static per-slot bounds that keep every number derived from an escrow counter
// inside int64, whatever the regions do concurrently.
//
// Why per-slot and static. Each region decides on its own (possibly stale) view,
// so no check on a sum can hold across regions: east and west may each grant
// int64 max on their own view, and the merge then holds 2 × int64 max. A bound
// that depends only on the writer's own row holds whatever the others do.
//
// The argument. Let M = 2^63 − 1, n = replicas, Q = ⌊M / n⌋ (so n·Q ≤ M), and
// cap every slot at Q: each region's cumulative grants P[i][i] ≤ Q, its
// cumulative transfers to each peer P[i][j] ≤ Q, its cumulative debits D[i] ≤ Q.
// Every derived number is a signed sum of slots with at most n terms of each
// sign, each term in [0, Q], so it lies in [−n·Q, n·Q] ⊆ [−M, M]:
//   Σ granted = Σ_i P[i][i]                          ∈ [0, n·Q]
//   Σ debited = Σ_i D[i]                             ∈ [0, n·Q]
//   balance   = Σ_i P[i][i] − Σ_i D[i]              ∈ [−n·Q, n·Q]
//   rights(i) = (P[i][i] + Σ_{j≠i} P[j][i])          n terms ≤ n·Q
//             − (Σ_{j≠i} P[i][j] + D[i])             n terms ≥ −n·Q
//   settled totals per account are Σ granted and Σ debited; ledger deltas are
//   differences of those grow-only totals (in [0, n·Q]); overspend = −balance.
// This holds for every merged state whose slots are each ≤ Q — not only for the
// states a correct interleaving reaches — which is why merge refuses any larger
// value (a forged or corrupt peer message cannot poison the state).
//
// Why caps on transfers and debits and not only on grants. Rights can circulate
// (i gives to j, j gives back, …), so P[i][j] and, with them, D[i] grow without a
// bound implied by the grants: only a cap on the slot itself bounds them. The
// cost is a lifetime limit per account and region of Q minor units debited and
// Q transferred to each peer (≈ 3.07 × 10^18 at n = 3), far above any real
// account; a write past it is refused with BoundExceededError, never wrapped.
//
// Holds and refunds add three grow-only slots per row, each capped at Q too:
// HA[i] (held), HR[i] (released), RF[i] (refunded). Every legitimate row keeps
// HR[i] ≤ HA[i] (only what was held is released) and RF[i] ≤ D[i] (a refund
// gives back at most what its debit took), so held(i) = HA − HR and the net
// debits D − RF both lie in [0, Q], and the balance Σ (P[i][i] + RF[i] − D[i])
// stays in [−n·Q, n·Q]. rights(i) additionally subtracts held(i): for every
// state a legitimate writer produces it stays ≥ −overdraft limit ≥ −Q (a
// region writes only while its rights stay above that, and other rows only add
// to it). A forged row breaking those pair rules (HR > HA, RF > D) is bounded
// per slot only; merge cannot refuse it slot by slot without refusing a
// legitimate message whose slots arrive in another order, so that case is
// out of the per-slot argument.
//
// Credit lots (src/core/lot-rows.ts) are rows of their own, and an account's
// balance and per-region totals add its rows up. So a region's grants are
// capped at Q for the account as a whole (ReplicaState.grant sums its own
// grants over the account's rows), and so are its debits through lots
// (lotDebit sums its own debits over the rows): each per-region total is then
// in [0, Q] and every derived sum obeys the argument above, whatever lots
// hold the credit. (A debit of an account that has no lot yet touches only its
// plain row, whose slot cap is the same Q.)
//
// The overdraft limit is capped at Q as well: no region can debit more than Q in
// total, so a larger limit could never be used, and the total exposure Σ limits
// (the bound on overspend) then fits in int64 too.

import { INT64_MAX } from "./amounts";
import { InvalidArgumentError } from "./errors";

/** The kinds of slot in a replica's row of an escrow counter. */
export enum SlotKind {
  /** P[i][i]: cumulative grants at replica i. */
  Grant = "grant",
  /** P[i][j], i ≠ j: cumulative rights transferred from i to j. */
  Transfer = "transfer",
  /** D[i]: cumulative debits at replica i. */
  Debit = "debit",
  /** HA[i]: cumulative amounts held (authorised) at replica i. */
  Held = "held",
  /** HR[i]: cumulative held amounts released at replica i (captured, voided, expired). */
  Released = "released",
  /** RF[i]: cumulative refunds at replica i. */
  Refund = "refund",
}

/** ⌊(2^63 − 1) / n⌋: the per-slot cap for n replicas. */
export function perReplicaShare(n: number): bigint {
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("replicas", `count must be a positive integer; got ${n}`);
  return INT64_MAX / BigInt(n);
}

/** The most a region's cumulative grants on one account may reach (P[i][i]). */
export function maxRegionGrantTotal(n: number): bigint {
  return perReplicaShare(n);
}

/** The most a region's cumulative debits on one account may reach (D[i]). */
export function maxRegionDebitTotal(n: number): bigint {
  return perReplicaShare(n);
}

/** The most a region may transfer, cumulatively, to one peer on one account (P[i][j]). */
export function maxRegionTransferTotal(n: number): bigint {
  return perReplicaShare(n);
}

/** The largest overdraft limit a policy may set with n replicas. */
export function maxOverdraftLimit(n: number): bigint {
  return perReplicaShare(n);
}

/** The largest value a legitimate writer can ever put in a slot of this kind; merge refuses more. */
export function maxSlotValue(n: number, kind: SlotKind): bigint {
  switch (kind) {
    case SlotKind.Grant:
      return maxRegionGrantTotal(n);
    case SlotKind.Transfer:
      return maxRegionTransferTotal(n);
    case SlotKind.Debit:
    case SlotKind.Held:
    case SlotKind.Released:
    case SlotKind.Refund:
      // A hold takes rights (at most what was debitable) and a refund gives back
      // at most what its debit took, so the debit cap bounds them too.
      return maxRegionDebitTotal(n);
  }
}

/** The kind of slot (writer, column) of an n-replica counter (columns n.. are D, HA, HR, RF of the writer). */
export function slotKindOf(n: number, writer: number, column: number): SlotKind {
  if (column === n) return SlotKind.Debit;
  if (column === n + 1) return SlotKind.Held;
  if (column === n + 2) return SlotKind.Released;
  if (column === n + 3) return SlotKind.Refund;
  return column === writer ? SlotKind.Grant : SlotKind.Transfer;
}

/** "3074457345618258602 (int64 max / 3 regions)": a bound with where it comes from, for messages. */
export function describeShare(n: number): string {
  return `${perReplicaShare(n)} (int64 max / ${n} ${n === 1 ? "region" : "regions"})`;
}
