// Periodic version-vector and digest broadcast over core NATS (not JetStream):
// each node says how far its own stream goes and its row digest there, plus
// what it has applied of every other stream. Peers use it to count pending
// changes even when their consumer is cut off, and to detect divergence.

import type { NatsConnection, Subscription } from "nats";
import { NodeStatus } from "../generated/tally/replication/v1/replication";
import { STATUS_WILDCARD, statusSubject } from "./subjects";

export interface StatusSnapshot {
  readonly ownSequence: number;
  readonly ownDigest: string;
  readonly applied: Record<string, number>;
}

export class StatusExchange {
  private timer: NodeJS.Timeout | undefined;
  private subscription: Subscription | undefined;

  constructor(
    private readonly connection: NatsConnection,
    private readonly self: string,
    private readonly snapshot: () => StatusSnapshot,
    private readonly onPeerStatus: (replica: string, status: StatusSnapshot) => void,
    private readonly now: () => number,
  ) {}

  start(intervalMs: number): void {
    this.subscription = this.connection.subscribe(STATUS_WILDCARD, {
      callback: (error, message) => {
        if (error !== null) return;
        const status = NodeStatus.decode(message.data);
        if (status.replica === this.self) return;
        const applied: Record<string, number> = {};
        for (const [replica, seq] of Object.entries(status.applied)) applied[replica] = Number(seq);
        this.onPeerStatus(status.replica, {
          ownSequence: Number(status.ownSequence),
          ownDigest: status.ownDigest,
          applied,
        });
      },
    });
    this.timer = setInterval(() => this.publish(), intervalMs);
    this.timer.unref();
    this.publish();
  }

  publish(): void {
    if (this.connection.isClosed()) return;
    const snapshot = this.snapshot();
    const applied: Record<string, bigint> = {};
    for (const [replica, seq] of Object.entries(snapshot.applied)) applied[replica] = BigInt(seq);
    this.connection.publish(
      statusSubject(this.self),
      NodeStatus.encode({
        replica: this.self,
        ownSequence: BigInt(snapshot.ownSequence),
        ownDigest: snapshot.ownDigest,
        applied,
        sentAtMs: BigInt(this.now()),
        cluster: undefined,
      }).finish(),
    );
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.subscription?.unsubscribe();
  }
}
