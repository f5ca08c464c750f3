// Read models of a node: an account's balance with every region's part, the
// version vector, the cluster view (this replica plus its peers) and the
// gauges refreshed from them. Reads only; nothing here changes state.

import type { Contribution, ReplicaState } from "../core/replica-state";
import type { LotState } from "../core/lot-writes";
import type { Policy } from "../core/policy";
import { digestHex } from "../core/row-digest";
import { SettledBalances } from "../core/settled-balances";
import type { TallyMetrics } from "../metrics/tally-metrics";
import type { BalanceWatchHub } from "./balance-watch";
import type { PeerSet, PeerView } from "./peer-set";

export type { PeerView } from "./peer-set";

export interface RegionView extends Contribution {
  readonly appliedSequence: number;
  readonly stalenessMs: number;
}

export interface BalanceView {
  readonly balance: bigint;
  /** Last settled balance and the settlement that last changed it (0, 0 when never settled). */
  readonly settled: { readonly balance: bigint; readonly settlementId: bigint };
  readonly localRights: bigint;
  /** Σ held over every region (open holds only). */
  readonly held: bigint;
  readonly regions: RegionView[];
  readonly policy: Policy;
  /** The account's lots in burn order, base lot included; empty for an account that has none. */
  readonly lots: readonly LotState[];
}

/** What the views read from their node. */
export interface ViewedNode {
  readonly region: string;
  readonly state: ReplicaState;
  readonly peers: PeerSet;
  readonly watches: BalanceWatchHub;
  readonly metrics: TallyMetrics;
  readonly sequence: number;
  readonly publishedDigest: string;
  /** Wall clock: judges which lots are spendable or expired here. */
  now(): number;
  readonly unavailableReason: string | undefined;
  monotonic(): number;
  readonly writes: { readonly requestsInFlight: number };
  readonly rights: { readonly asksInFlight: number };
}

export class NodeViews {
  /** Settled totals per account, as the settlements published them (TALLY_SETTLED). */
  readonly settled = new SettledBalances();

  constructor(
    private readonly node: ViewedNode,
    /** The peers' times are on the node's monotonic clock. */
    private readonly now: () => number = () => node.monotonic(),
  ) {}

  balanceView(accountId: string): BalanceView {
    const { state, peers, region } = this.node;
    const nowMs = this.now();
    // A literal of fixed shape, not a spread: GetBalance builds one per region on every call.
    const regions = state.contributions(accountId).map(
      (c): RegionView =>
        c.replica === region
          ? { replica: c.replica, granted: c.granted, debited: c.debited, rights: c.rights, held: c.held, refunded: c.refunded, appliedSequence: this.node.sequence, stalenessMs: 0 }
          : {
              replica: c.replica,
              granted: c.granted,
              debited: c.debited,
              rights: c.rights,
              held: c.held,
              refunded: c.refunded,
              appliedSequence: peers.appliedSequence(c.replica) ?? 0,
              stalenessMs: peers.stalenessMs(c.replica, nowMs),
            },
    );
    const clockMs = this.node.now();
    const settled = this.settledOf(accountId);
    return {
      balance: state.accountBalance(accountId, clockMs),
      settled,
      localRights: state.spendableRights(accountId, clockMs),
      held: state.totalHeld(accountId),
      regions,
      policy: state.policy(accountId),
      lots: state.lots.hasLots(accountId) ? state.accountLots(accountId, clockMs) : [],
    };
  }

  /** The account's settled balance: its plain row's, plus every lot row's (settled per row). */
  private settledOf(accountId: string): { balance: bigint; settlementId: bigint } {
    const rows = [accountId, ...this.node.state.lots.lotsOf(accountId).map((lot) => lot.rowId)];
    let balance = 0n;
    let settlementId = 0n;
    for (const row of rows) {
      const settled = this.settled.get(row);
      if (settled === undefined) continue;
      balance += settled.balance;
      if (settled.settlementId > settlementId) settlementId = settled.settlementId;
    }
    return { balance, settlementId };
  }

  appliedVector(): Record<string, number> {
    return { [this.node.region]: this.node.sequence, ...this.node.peers.applied() };
  }

  /** Every replica in cluster order; this node's own entry reports its stream and health. */
  peerViews(): PeerView[] {
    const node = this.node;
    const peers = new Map(node.peers.views(this.now()).map((p) => [p.region, p]));
    return node.state.replicas.names.map(
      (region) =>
        peers.get(region) ?? {
          region,
          appliedSequence: node.sequence,
          reportedSequence: node.sequence,
          pending: 0,
          lagSeconds: 0,
          converged: node.unavailableReason === undefined,
          digest: digestHex(node.state.rowDigest(node.state.self)),
          lastHeardMs: 0,
          reachable: true,
        },
    );
  }

  /** Refreshes the gauges that are read, not counted. */
  refreshGauges(): void {
    const { metrics, state, region } = this.node;
    metrics.accounts.set(state.accountCount);
    // Expiry otherwise runs only on writes: an idle node must not report a stale fill.
    state.expireRequests(this.node.monotonic());
    const fill = state.requestLogFill;
    metrics.requestLogFillRatio.set(fill.local / fill.capacity);
    metrics.rememberedRequests.set(state.rememberedRequests);
    metrics.watchers.set(this.node.watches.size);
    metrics.rightsAsksInFlight.set(this.node.rights.asksInFlight);
    const reason = this.node.unavailableReason;
    metrics.writable.set(reason === undefined ? 1 : 0);
    metrics.commitFailing.set(reason !== undefined && reason.startsWith("commits are failing") ? 1 : 0);
    for (const peer of this.peerViews()) {
      if (peer.region === region) continue;
      metrics.replicationLagSeconds.set({ peer: peer.region }, peer.lagSeconds);
      metrics.replicationPending.set({ peer: peer.region }, peer.pending);
      metrics.appliedSequence.set({ peer: peer.region }, peer.appliedSequence);
      metrics.converged.set({ peer: peer.region }, peer.converged ? 1 : 0);
      metrics.peerLastHeard.set({ peer: peer.region }, peer.lastHeardMs / 1000);
    }
    for (const [peer, count] of this.node.peers.newDivergences()) metrics.divergences.inc({ peer }, count);
    for (const [peer, offsetMs] of this.node.peers.offsets()) metrics.peerClockOffset.set({ peer }, offsetMs / 1000);
    metrics.appliedSequence.set({ peer: region }, this.node.sequence);
  }
}
