// Every mapping between core values and the public tally.v1 messages, in one
// place, with exhaustive switches: a new enum value fails to compile here
// rather than being mapped to a default on the wire.

import { DebitOutcome, type Answer } from "../core/answer";
import { InvalidArgumentError } from "../core/errors";
import { Mode, validatePolicy, type Policy } from "../core/policy";
import type { Settlement as WireSettlement, Overspend as WireOverspend, LedgerEntry as WireLedgerEntry, PeerStatus } from "../generated/tally/v1/admin";
import {
  DebitOutcome as WireOutcome,
  HoldState,
  type DebitResponse,
  type GetBalanceResponse,
  type HoldResolution,
  type HoldResponse,
  type LotBalance,
  type RefundResponse,
} from "../generated/tally/v1/balances";
import { publicLotKey, type LotState } from "../core/lot-writes";
import { NO_EXPIRY } from "../core/lots";
import { HoldStatus } from "../core/hold-book";
import type { HoldAnswer, RefundAnswer, ResolutionAnswer } from "../node/hold-desk";
import { PolicyMode, type AccountPolicy } from "../generated/tally/v1/common";
import type { BalanceView, PeerView } from "../node/node-views";
import type { Settlement, OverspendRecord, LedgerEntry } from "../settlement/settlement-queries";

export function outcomeToWire(outcome: DebitOutcome): WireOutcome {
  switch (outcome) {
    case DebitOutcome.Approved:
      return WireOutcome.DEBIT_OUTCOME_APPROVED;
    case DebitOutcome.InsufficientCredit:
      return WireOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT;
    case DebitOutcome.ApprovedWithOverdraft:
      return WireOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT;
  }
}

export function debitResponse(answer: Answer, replayed: boolean): DebitResponse {
  return { outcome: outcomeToWire(answer.outcome), balance: answer.balance, localRights: answer.localRights, replayed };
}

export function holdStateToWire(status: HoldStatus): HoldState {
  switch (status) {
    case HoldStatus.Pending:
      return HoldState.HOLD_STATE_PENDING;
    case HoldStatus.Captured:
      return HoldState.HOLD_STATE_CAPTURED;
    case HoldStatus.Voided:
      return HoldState.HOLD_STATE_VOIDED;
    case HoldStatus.Expired:
      return HoldState.HOLD_STATE_EXPIRED;
  }
}

export function holdResponse(held: HoldAnswer): HoldResponse {
  const { answer, record } = held;
  return {
    outcome: outcomeToWire(answer.outcome),
    holdId: record?.holdId ?? "",
    balance: answer.balance,
    localRights: answer.localRights,
    expiresAtMs: BigInt(record?.expiresAtMs ?? 0),
    replayed: held.replayed,
    state: record === undefined ? HoldState.HOLD_STATE_UNSPECIFIED : holdStateToWire(record.status),
  };
}

export function resolutionToWire(resolved: ResolutionAnswer): HoldResolution {
  const { record } = resolved;
  return {
    holdId: record.holdId,
    state: holdStateToWire(record.status),
    captured: record.captured,
    released: record.amount - record.captured,
    balance: resolved.balance,
    localRights: resolved.localRights,
    replayed: resolved.replayed,
  };
}

export function refundResponse(refunded: RefundAnswer): RefundResponse {
  return {
    debitRequestId: refunded.debitRequestId,
    refundedTotal: refunded.refundedTotal,
    refundable: refunded.refundable,
    balance: refunded.balance,
    localRights: refunded.localRights,
    replayed: refunded.replayed,
  };
}

export function modeToWire(mode: Mode): PolicyMode {
  switch (mode) {
    case Mode.Strict:
      return PolicyMode.POLICY_MODE_STRICT;
    case Mode.Overdraft:
      return PolicyMode.POLICY_MODE_OVERDRAFT;
  }
}

/** A client's policy, checked; `field` names it in errors. */
export function accountPolicyFromWire(policy: AccountPolicy | undefined, field = "policy"): Policy {
  if (policy === undefined) throw new InvalidArgumentError(field, "is required");
  let mode: Mode;
  switch (policy.mode) {
    case PolicyMode.POLICY_MODE_STRICT:
      mode = Mode.Strict;
      break;
    case PolicyMode.POLICY_MODE_OVERDRAFT:
      mode = Mode.Overdraft;
      break;
    case PolicyMode.POLICY_MODE_UNSPECIFIED:
    case PolicyMode.UNRECOGNIZED:
    default:
      throw new InvalidArgumentError(`${field}.mode`, `must be POLICY_MODE_STRICT or POLICY_MODE_OVERDRAFT; got ${policy.mode}`);
  }
  return validatePolicy({ mode, overdraftLimit: policy.overdraftLimit, lowWaterMark: policy.lowWaterMark }, field);
}

export function accountPolicyToWire(policy: Policy): AccountPolicy {
  return { mode: modeToWire(policy.mode), overdraftLimit: policy.overdraftLimit, lowWaterMark: policy.lowWaterMark };
}

export function balanceToWire(accountId: string, view: BalanceView): GetBalanceResponse {
  return {
    accountId,
    balance: view.balance,
    localRights: view.localRights,
    regions: view.regions.map((r) => ({
      region: r.replica,
      granted: r.granted,
      debited: r.debited,
      rights: r.rights,
      appliedSequence: BigInt(r.appliedSequence),
      // This region's own entry is never stale: no BigInt to allocate for it.
      stalenessMs: r.stalenessMs === 0 ? 0n : BigInt(r.stalenessMs),
      held: r.held,
      refunded: r.refunded,
    })),
    policy: accountPolicyToWire(view.policy),
    settledBalance: view.settled.balance,
    settlementId: view.settled.settlementId,
    held: view.held,
    lots: view.lots.map(lotToWire),
  };
}

function lotToWire(lot: LotState): LotBalance {
  return {
    key: publicLotKey(lot),
    terms: {
      priority: lot.terms.priority,
      effectiveAtMs: BigInt(lot.terms.effectiveAtMs),
      expiresAtMs: lot.terms.expiresAtMs === NO_EXPIRY ? 0n : BigInt(lot.terms.expiresAtMs),
    },
    remaining: lot.remaining,
    localRights: lot.rights,
    spendableHere: lot.spendable && lot.rights > 0n ? lot.rights : 0n,
    expired: lot.expired,
  };
}

export function peerToWire(p: PeerView): PeerStatus {
  return {
    region: p.region,
    appliedSequence: BigInt(p.appliedSequence),
    reportedSequence: BigInt(p.reportedSequence),
    pending: BigInt(p.pending),
    lagSeconds: p.lagSeconds,
    converged: p.converged,
    digest: p.digest,
    lastHeardMs: BigInt(p.lastHeardMs),
  };
}

export function settlementToWire(s: Settlement): WireSettlement {
  return {
    id: s.id,
    startedAtMs: BigInt(s.startedAtMs),
    finishedAtMs: BigInt(s.finishedAtMs),
    cut: { ...s.cut },
    accountsChanged: s.accountsChanged,
    overspendTotal: s.overspendTotal,
  };
}

export function overspendToWire(o: OverspendRecord): WireOverspend {
  return {
    accountId: o.accountId,
    amount: o.amount,
    regions: o.replicas,
    mode: modeToWire(o.mode),
    settlementId: o.settlementId,
    recordedAtMs: BigInt(o.recordedAtMs),
  };
}

export function ledgerEntryToWire(e: LedgerEntry): WireLedgerEntry {
  return {
    settlementId: e.settlementId,
    region: e.replica,
    grantedDelta: e.grantedDelta,
    debitedDelta: e.debitedDelta,
    balanceAfter: e.balanceAfter,
    recordedAtMs: BigInt(e.recordedAtMs),
  };
}
