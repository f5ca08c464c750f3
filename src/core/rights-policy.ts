// Who asks whom for escrow rights, how much, and how much a donor gives
// (DESIGN §2), pure: demand tracking, proactive asks, donor limits. The rights
// broker (I/O) and the deterministic simulation both decide through it.

import { DemandTracker, DonorRateLimiter, donorGrant, fairShareOf, proactiveNeed } from "./rebalance";
import type { ReplicaState } from "./replica-state";

export interface RightsPolicyOptions {
  /** Half-life of the decayed debit rate that sets each region's fair share. */
  readonly demandHalfLifeMs: number;
  /** Accounts whose demand is tracked at once (least recently active go first). */
  readonly maxTrackedAccounts: number;
  /** An account with no debits for this long has no demand history. */
  readonly demandIdleMs: number;
  /** A donor gives to the same (account, requester) at most once per window. */
  readonly donorWindowMs: number;
}

export const DEFAULT_RIGHTS_POLICY: RightsPolicyOptions = {
  demandHalfLifeMs: 2_000,
  maxTrackedAccounts: 100_000,
  demandIdleMs: 60_000,
  donorWindowMs: 2,
};

/**
 * A region's holdings in an account that has lots (the plain row is only its
 * base lot): its spendable rights over the lots and their live balance, both
 * judged by the region's clock.
 */
export interface LotHoldings {
  readonly rights: bigint;
  readonly balance: bigint;
}

/** A donor's holdings in an account that has lots. */
export interface DonorLotView extends LotHoldings {
  /** Cap on the whole gift (each lot row's own transfer cap is applied per take). */
  readonly headroom: bigint;
}

export class RightsPolicy {
  private readonly demand: DemandTracker;
  private readonly limiter: DonorRateLimiter;

  constructor(
    private readonly state: ReplicaState,
    options: RightsPolicyOptions = DEFAULT_RIGHTS_POLICY,
  ) {
    this.demand = new DemandTracker({
      replicaCount: state.replicas.size,
      halfLifeMs: options.demandHalfLifeMs,
      maxAccounts: options.maxTrackedAccounts,
      idleMs: options.demandIdleMs,
    });
    this.limiter = new DonorRateLimiter({ windowMs: options.donorWindowMs, maxEntries: options.maxTrackedAccounts });
  }

  /** A local debit was approved: records demand; returns how much to ask for ahead of need (0: nothing). */
  afterLocalDebit(accountId: string, amount: bigint, nowMs: number, lots?: LotHoldings): bigint {
    const state = this.state;
    if (state.replicas.size === 1) return 0n;
    this.demand.record(accountId, state.self, amount, nowMs);
    return this.proactiveAsk(accountId, lots);
  }

  /** Debits merged from a peer's row: demand there, so its fair share grows. */
  afterPeerDebit(accountId: string, replica: number, amount: bigint, nowMs: number): void {
    this.demand.record(accountId, replica, amount, nowMs);
  }

  /** What this region should hold by demand, beyond what it has (0 when it holds enough). */
  proactiveAsk(accountId: string, lots?: LotHoldings): bigint {
    const state = this.state;
    const rights = lots?.rights ?? state.rights(accountId);
    const balance = lots?.balance ?? state.balance(accountId);
    return proactiveNeed(rights, balance, state.replicas.size, this.demand.share(accountId, state.self));
  }

  /** How much to ask for when `deficit` is missing: the gap, or what demand says this region should hold if more. */
  askSize(accountId: string, deficit: bigint, lots?: LotHoldings): bigint {
    const wanted = this.proactiveAsk(accountId, lots);
    return wanted > deficit ? wanted : deficit;
  }

  /**
   * Peers to ask, richest first as this region sees them. Every peer is asked:
   * the view of their rights may be stale, and a donor keeps half of its spare.
   */
  donors(accountId: string): string[] {
    const state = this.state;
    return state.replicas.names
      .map((name, index) => ({ name, index, rights: state.rights(accountId, index) }))
      .filter((p) => p.index !== state.self)
      .sort((a, b) => (a.rights === b.rights ? a.index - b.index : a.rights > b.rights ? -1 : 1))
      .map((p) => p.name);
  }

  /** The rights this region keeps for its own clients: its demand-weighted fair share of the balance. */
  ownFairShare(accountId: string): bigint {
    const state = this.state;
    return fairShareOf(state.balance(accountId), this.demand.share(accountId, state.self), state.replicas.size);
  }

  /**
   * How much this region gives `requester` (an index) for `requested`: its
   * rights above its own fair share, or, when `urgent` (a debit waits), at
   * least half of its rights; once per window per pair. Records the gift
   * when it is positive.
   */
  donation(accountId: string, requester: number, requested: bigint, urgent: boolean, nowMs: number, lots?: DonorLotView): bigint {
    const state = this.state;
    if (requester === state.self || !this.limiter.allows(accountId, requester, nowMs)) return 0n;
    const rights = lots?.rights ?? state.rights(accountId);
    const keep = fairShareOf(lots?.balance ?? state.balance(accountId), this.demand.share(accountId, state.self), state.replicas.size);
    const wanted = donorGrant(rights, requested, keep, urgent);
    // Never past the int64-safe cap of the transfer counter (src/core/bounds.ts); per lot row, the caller caps each take.
    const headroom = lots?.headroom ?? state.transferHeadroom(accountId, requester);
    const give = wanted < headroom ? wanted : headroom;
    if (give > 0n) this.limiter.tryAcquire(accountId, requester, nowMs);
    return give;
  }
}
