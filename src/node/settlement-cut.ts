// The causally consistent cut a settlement consumes: every region is asked
// for a fresh full-state snapshot (a region that does not answer contributes
// its latest stored one), and the snapshots are joined (pointwise max). Each
// snapshot holds everything its own operations depended on, so the join is
// causally closed; the cut records, per region, the stream sequence it covers.

import type { SnapshotChunkValue, SnapshotHeaderValue } from "../replication/snapshot-decoder";
import { refunded, rightsOf } from "../core/escrow-counter";
import { ReplicaState } from "../core/replica-state";
import { rowOwner } from "../core/lot-rows";
import type { ReplicaSet } from "../core/replica-set";
import type { Policy } from "../core/policy";
import { HoldStatus } from "../core/hold-book";
import type { RefundTally } from "../core/refund-tallies";
import type { SettledHoldState, SettlementAccount, SettlementBreakage, SettlementHold, SettlementInput, SettlementRefund } from "../settlement/settlement-input";
import { breakageDue } from "../core/lots";
import type { Logger } from "./logger";

/** Where a cut's snapshots come from: this node, the other regions, the snapshot store. */
export interface CutSources {
  readonly region: string;
  readonly replicas: ReplicaSet;
  readonly defaultPolicy: Policy;
  /** The expiry guard of credit lots (every region must run the same). */
  readonly lotGuardMs: number;
  /** This region's snapshot, its `takenAtMs` raised to when its state was last found current. */
  takeOwnSnapshot(): Promise<SnapshotHeaderValue>;
  /** Asks another region for a fresh snapshot (answered as takeOwnSnapshot); rejects when it does not answer in time. */
  requestSnapshot(region: string, timeoutMs: number): Promise<SnapshotHeaderValue>;
  readSnapshot(region: string, onChunk: (chunk: SnapshotChunkValue) => void): Promise<SnapshotHeaderValue | undefined>;
}

export async function collectCut(node: CutSources, logger: Logger, timeoutMs = 30_000): Promise<SettlementInput> {
  const regions = node.replicas.names;
  /** What each region answered: its snapshot and when that state was last current. */
  const answered = new Map<string, SnapshotHeaderValue>();
  await Promise.all(
    regions.map(async (region) => {
      if (region === node.region) {
        answered.set(region, await node.takeOwnSnapshot());
        return;
      }
      try {
        answered.set(region, await node.requestSnapshot(region, timeoutMs));
      } catch (error) {
        logger.warn("region did not snapshot for settlement; using its latest stored snapshot", { region, error: String(error) });
      }
    }),
  );
  const joined = new ReplicaState({ replicas: node.replicas, self: node.region, defaultPolicy: node.defaultPolicy, lotGuardMs: node.lotGuardMs });
  const cut: Record<string, bigint> = {};
  for (const region of regions) cut[region] = 0n;
  const raise = (region: string, sequence: bigint): void => {
    if (region in cut && sequence > (cut[region] ?? 0n)) cut[region] = sequence;
  };
  const holds: SettlementHold[] = [];
  const refunds: SettlementRefund[] = [];
  /** Per region, the wall clock its snapshot was taken at (what breakage is judged by). */
  const cutClocksMs: number[] = [];
  for (const region of regions) {
    const origin = node.replicas.indexOf(region);
    const tallies = new Map<string, RefundTally>();
    const given: Array<Omit<SettlementRefund, "accountId">> = [];
    const header = await node.readSnapshot(region, (chunk) => {
      for (const account of chunk.accounts) joined.mergeAccount(account.accountId, account.values);
      for (const policy of chunk.policies) joined.applyPolicy(policy.accountId, policy.write);
      // A region's snapshot holds its own holds and refund tallies only (the decoder checks the hold ids).
      for (const h of chunk.holds) {
        holds.push({
          holdId: h.holdId,
          region,
          accountId: h.accountId,
          amount: h.amount,
          state: holdState(h.status),
          captured: h.captured,
          expiresAtMs: h.expiresAtMs,
          resolvedAtMs: h.resolvedAtMs,
        });
      }
      for (const t of chunk.refunds) tallies.set(t.debitRequestId, t);
      for (const r of chunk.requests) {
        // The refunds this region decided ("r|<debit request id>|<amount>").
        if (r.origin !== origin || !r.fingerprint.startsWith("r|")) continue;
        const last = r.fingerprint.lastIndexOf("|");
        const amount = r.fingerprint.slice(last + 1);
        if (last < 2 || !/^\d{1,19}$/.test(amount)) continue;
        given.push({ region, refundRequestId: r.requestId, debitRequestId: r.fingerprint.slice(2, last), amount: BigInt(amount), refundedAtMs: r.answeredAtMs });
      }
    });
    for (const g of given) refunds.push({ ...g, accountId: tallies.get(g.debitRequestId)?.accountId });
    if (header === undefined) continue;
    // The region's clock for this state: when it last found it current, if it
    // answered about this very snapshot (same sequences), else when it was taken.
    const answer = answered.get(region);
    cutClocksMs.push(answer !== undefined && sameState(answer, header) ? Math.max(header.takenAtMs, answer.takenAtMs) : header.takenAtMs);
    raise(region, BigInt(header.durableSequence));
    for (const [peer, sequence] of Object.entries(header.applied)) raise(peer, BigInt(sequence));
  }
  const n = regions.length;
  function* accounts(): Generator<SettlementAccount> {
    for (const [accountId, view] of joined.accounts()) {
      const granted: bigint[] = [];
      const debited: bigint[] = [];
      const rightsBelowZero: boolean[] = [];
      for (let i = 0; i < n; i++) {
        // A refund gives credit back: settled as credit of its region, so both totals stay grow-only.
        granted.push((view.slots[view.base + i * n + i] ?? 0n) + refunded(view, i));
        debited.push(view.slots[view.base + n * n + i] ?? 0n);
        rightsBelowZero.push(rightsOf(view, i) < 0n);
      }
      // A lot row is settled under its account's policy (policies are set per account, never per lot).
      const owner = rowOwner(accountId)?.accountId ?? accountId;
      yield { accountId, granted, debited, mode: joined.policy(owner).mode, rightsBelowZero };
    }
  }
  // A region without a snapshot has no clock in the cut: no breakage is due then.
  const breakage = cutClocksMs.length === regions.length ? breakageAt(joined, cutClocksMs, node.lotGuardMs) : [];
  return { replicas: regions, cut, accounts: accounts(), holds, refunds, breakage };
}

/**
 * The unspent part of every lot that every region's cut shows dead (past
 * expiry + guard by that region's clock): no region can spend it any more,
 * so the remaining amount is final. The settler records each lot once ever.
 */
function breakageAt(joined: ReplicaState, cutClocksMs: readonly number[], guardMs: number): SettlementBreakage[] {
  const due: SettlementBreakage[] = [];
  for (const lot of joined.lots.rows()) {
    if (!breakageDue(lot.terms, cutClocksMs, guardMs)) continue;
    const remaining = joined.balance(lot.rowId);
    if (remaining > 0n) due.push({ accountId: lot.accountId, lotKey: lot.key, amount: remaining, expiresAtMs: lot.terms.expiresAtMs });
  }
  return due;
}

function holdState(status: HoldStatus): SettledHoldState {
  switch (status) {
    case HoldStatus.Pending:
      return "PENDING";
    case HoldStatus.Captured:
      return "CAPTURED";
    case HoldStatus.Voided:
      return "VOIDED";
    case HoldStatus.Expired:
      return "EXPIRED";
  }
}

/** Whether two headers of one region describe the same state (the same own and applied sequences). */
function sameState(a: SnapshotHeaderValue, b: SnapshotHeaderValue): boolean {
  if (a.durableSequence !== b.durableSequence) return false;
  const peers = new Set([...Object.keys(a.applied), ...Object.keys(b.applied)]);
  return [...peers].every((peer) => (a.applied[peer] ?? 0) === (b.applied[peer] ?? 0));
}
