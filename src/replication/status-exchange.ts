// Periodic version-vector and digest broadcast over core NATS (not JetStream):
// each node says how far its own stream goes and its row digest there, plus
// what it has applied of every other stream. Peers use it to count pending
// changes even when their consumer is cut off, and to detect divergence.
// Every received status is decoded and checked (status-codec.ts) inside a
// guard: a bad one is counted and dropped, never thrown in the NATS reader.

import type { NatsConnection, Subscription } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import { clusterIdentityOf, inboundContext, type InboundContext } from "./inbound";
import { decodeNodeStatus, encodeNodeStatus } from "./status-codec";
import { STATUS_WILDCARD, statusSubject } from "./subjects";

export interface StatusSnapshot {
  readonly ownSequence: number;
  readonly ownDigest: string;
  readonly applied: Record<string, number>;
}

/** A peer's status as received: what it said, its clock when it said it, and local wall time at receipt. */
export interface PeerStatus extends StatusSnapshot {
  readonly sentAtMs: number;
  readonly receivedAtMs: number;
}

export class StatusExchange {
  private timer: NodeJS.Timeout | undefined;
  private subscription: Subscription | undefined;
  private readonly ctx: InboundContext;

  constructor(
    private readonly connection: NatsConnection,
    private readonly self: string,
    replicas: ReplicaSet,
    private readonly snapshot: () => StatusSnapshot,
    private readonly onPeerStatus: (replica: string, status: PeerStatus) => void,
    private readonly now: () => number,
    private readonly badMessage: (source: string, subject: string, reason: string) => void,
  ) {
    this.ctx = inboundContext(replicas);
  }

  start(intervalMs: number): void {
    this.subscription = this.connection.subscribe(STATUS_WILDCARD, {
      callback: (error, message) => {
        if (error !== null) return;
        // Our own broadcast comes back on the wildcard: not a bad message.
        if (message.subject === statusSubject(this.self)) return;
        const decoded = decodeNodeStatus(message.data, { ...this.ctx, self: this.self });
        if (!decoded.ok) {
          this.badMessage("status", message.subject, decoded.reason);
          return;
        }
        const status = decoded.value;
        this.onPeerStatus(status.replica, {
          ownSequence: status.ownSequence,
          ownDigest: status.ownDigest,
          applied: { ...status.applied },
          sentAtMs: status.sentAtMs,
          receivedAtMs: this.now(),
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
    this.connection.publish(
      statusSubject(this.self),
      encodeNodeStatus(
        { replica: this.self, ownSequence: snapshot.ownSequence, ownDigest: snapshot.ownDigest, applied: snapshot.applied, sentAtMs: this.now() },
        clusterIdentityOf(this.ctx.replicas),
      ),
    );
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.subscription?.unsubscribe();
  }
}
