// The other replicas as this node sees them: one follower per peer stream
// plus the status exchange, and the views built from them (version vector,
// per-peer lag, convergence) for GetBalance, ClusterStatus and the gauges.

import { digestHex } from "../core/row-digest";
import type { ReplicaState } from "../core/replica-state";
import type { DecodedDelta } from "../replication/delta-codec";
import type { ReplicaLog } from "../replication/jetstream-log";
import { PeerFollower } from "../replication/peer-follower";
import type { PeerStatus } from "../replication/status-exchange";

export interface PeerView {
  readonly region: string;
  readonly appliedSequence: number;
  readonly reportedSequence: number;
  readonly pending: number;
  readonly lagSeconds: number;
  readonly converged: boolean;
  readonly digest: string;
  /** Milliseconds since the peer was last heard from (0: never). */
  readonly lastHeardMs: number;
  readonly reachable: boolean;
}

export interface PeerSetOptions {
  readonly region: string;
  readonly state: ReplicaState;
  readonly log: ReplicaLog;
  apply(delta: DecodedDelta): void;
  /** Merges `replica`'s latest snapshot; returns the sequence it covers. */
  catchUpFromSnapshot(replica: string): Promise<number>;
  onError(peer: string, error: unknown): void;
  refused(peer: string, sequence: number, reason: string): void;
  readonly maxSlotValue: bigint;
  readonly now: () => number;
}

export class PeerSet {
  private readonly followers = new Map<string, PeerFollower>();
  private readonly reportedDivergences = new Map<string, number>();
  /** Each peer's wall clock minus ours, estimated from its last status (transit time included, so a few ms high). */
  private readonly clockOffsets = new Map<string, number>();

  constructor(private readonly options: PeerSetOptions) {
    const { state, region } = options;
    for (const peer of state.replicas.names) {
      if (peer === region) continue;
      const follower = new PeerFollower(
        peer,
        state.replicas,
        options.log,
        {
          apply: (delta) => options.apply(delta),
          onError: (error) => options.onError(peer, error),
          refused: (sequence, reason) => options.refused(peer, sequence, reason),
          catchUpFromSnapshot: (replica) => options.catchUpFromSnapshot(replica),
        },
        options.now,
        options.maxSlotValue,
      );
      const index = state.replicas.indexOf(peer);
      follower.localDigest = () => digestHex(state.rowDigest(index));
      this.followers.set(peer, follower);
    }
  }

  /** Starts following from what the snapshot applied; resolves with whether every peer caught up in time. */
  async start(appliedFromSnapshot: Readonly<Record<string, number>>, catchUpTimeoutMs: number): Promise<boolean> {
    for (const [peer, follower] of this.followers) {
      follower.appliedSequence = appliedFromSnapshot[peer] ?? 0;
      void follower.start();
    }
    const caughtUp = await Promise.all([...this.followers.values()].map((f) => f.waitCaughtUp(catchUpTimeoutMs)));
    return caughtUp.every((c) => c);
  }

  stop(): void {
    for (const follower of this.followers.values()) follower.stop();
  }

  /** A peer's status broadcast. */
  observe(replica: string, status: PeerStatus): void {
    this.clockOffsets.set(replica, status.sentAtMs - status.receivedAtMs);
    this.followers.get(replica)?.observeStatus(status.ownSequence, status.ownDigest, status.applied[this.options.region]);
  }

  /** What this node has applied of each peer's stream. */
  applied(): Record<string, number> {
    const vector: Record<string, number> = {};
    for (const [peer, follower] of this.followers) vector[peer] = follower.appliedSequence;
    return vector;
  }

  /** How far each peer reports having applied this node's stream (undefined: not heard yet). */
  appliedOfOurs(): Array<number | undefined> {
    return [...this.followers.values()].map((f) => f.appliedOfOurs);
  }

  appliedSequence(peer: string): number | undefined {
    return this.followers.get(peer)?.appliedSequence;
  }

  stalenessMs(peer: string, nowMs: number): number {
    const follower = this.followers.get(peer);
    return follower === undefined || follower.lastHeardMs === 0 ? 0 : Math.max(0, Math.round(nowMs - follower.lastHeardMs));
  }

  /** True when every peer is applied up to what it reported and its digest matched. */
  get allConverged(): boolean {
    return [...this.followers.values()].every((f) => f.pending === 0 && (f.converged ?? f.appliedSequence === 0));
  }

  views(nowMs: number): PeerView[] {
    return [...this.followers.entries()].map(([region, f]) => ({
      region,
      appliedSequence: f.appliedSequence,
      reportedSequence: f.reportedSequence,
      pending: f.pending,
      lagSeconds: f.lagMs(nowMs) / 1000,
      converged: f.pending === 0 && (f.converged ?? f.appliedSequence === 0),
      digest: digestHex(this.options.state.rowDigest(this.options.state.replicas.indexOf(region))),
      // Whole milliseconds: the monotonic clock has fractions, the wire has integers.
      lastHeardMs: f.lastHeardMs === 0 ? 0 : Math.max(0, Math.round(nowMs - f.lastHeardMs)),
      reachable: f.lastHeardMs !== 0 && nowMs - f.lastHeardMs < 5_000,
    }));
  }

  /** Each heard peer's clock offset in milliseconds (its wall clock minus ours). */
  offsets(): ReadonlyMap<string, number> {
    return this.clockOffsets;
  }

  /** Divergences found since the last call, per peer (for a counter). */
  newDivergences(): Array<[string, number]> {
    const found: Array<[string, number]> = [];
    for (const [peer, follower] of this.followers) {
      const reported = this.reportedDivergences.get(peer) ?? 0;
      if (follower.divergences > reported) {
        found.push([peer, follower.divergences - reported]);
        this.reportedDivergences.set(peer, follower.divergences);
      }
    }
    return found;
  }
}
