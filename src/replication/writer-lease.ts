// The writer lease of one region (DESIGN §12) in a JetStream KV bucket whose
// TTL makes the server forget a holder that stops renewing: take it with
// `create`, keep it with `update(key, value, lastRevision)`. The lease decides
// which node tries to write; the fence (takeover.ts) keeps a deposed writer out.

import { StorageType, type KV, type KvEntry } from "nats";
import { confirmed, leaseStatus, NO_LEASE, validateLeaseTiming, type LeaseState, type LeaseStatus, type LeaseTiming } from "../core/lease-clock";
import { explainReplicaRefusal, jetStreamErrorCode, type ReplicaLog } from "./jetstream-log";

/** JetStream "wrong last sequence": the key exists (create) or moved on (update). */
const JS_WRONG_LAST_SEQUENCE = 10071;

const LEASE_KEY = "writer";

/** The KV bucket holding `region`'s writer lease. */
export function leaseBucket(region: string): string {
  return `TALLY_LEASE_${region.toUpperCase().replace(/-/g, "_")}`;
}

/** Who holds the lease as the server has it, for health. */
export interface LeaseHolder {
  readonly node: string;
  readonly revision: number;
}

export interface WriterLeaseOptions {
  readonly region: string;
  /** This process; written as the lease's value. */
  readonly nodeId: string;
  readonly timing: LeaseTiming;
  /** The holder's monotonic clock, in ms. */
  readonly monotonic: () => number;
  /** Place the bucket in the region's NATS cluster (supercluster). */
  readonly placeByRegion: boolean;
}

export class WriterLease {
  private state: LeaseState = NO_LEASE;

  private constructor(
    private readonly kv: KV,
    readonly options: WriterLeaseOptions,
  ) {}

  /** Opens (creating if needed) the region's lease bucket; its TTL is the lease's. */
  static async open(log: ReplicaLog, options: WriterLeaseOptions): Promise<WriterLease> {
    validateLeaseTiming(options.timing);
    const kv = await log.js.views
      .kv(leaseBucket(options.region), {
      ttl: options.timing.ttlMs,
      history: 1,
      storage: StorageType.File,
        replicas: log.replicas,
        ...(options.placeByRegion ? { placement: { cluster: options.region, tags: [] } } : {}),
      })
      .catch((error: unknown) => {
        throw explainReplicaRefusal(error, log.replicas, `KV_${leaseBucket(options.region)}`);
      });
    await log.ensureReplicas(`KV_${leaseBucket(options.region)}`);
    return new WriterLease(kv, options);
  }

  /** The lease as this node must treat it now. */
  status(): LeaseStatus {
    return leaseStatus(this.state, this.options.monotonic(), this.options.timing);
  }

  /** True while this node may act as the writer (its own clock says the lease is alive). */
  get held(): boolean {
    const status = this.status();
    return status === "valid" || status === "renew-due";
  }

  /** The KV revision of this node's last confirmed write (0: none). */
  get revision(): number {
    return this.state.kind === "held" ? this.state.revision : 0;
  }

  /** `kv.create`: true when this node now holds the lease; false when another node does. */
  async tryAcquire(): Promise<boolean> {
    const sentAtMs = this.options.monotonic();
    try {
      const revision = await this.kv.create(LEASE_KEY, this.value());
      this.state = confirmed(revision, sentAtMs);
      return true;
    } catch (error) {
      if (jetStreamErrorCode(error) === JS_WRONG_LAST_SEQUENCE) return false;
      throw error;
    }
  }

  /**
   * `kv.update` with the last revision: true when renewed; false when the
   * lease is lost (expired at the server, or another node took it) — the
   * caller must stop writing. Other errors (no server) leave the state as it
   * is: the lease runs out by the clock unless a later renewal succeeds.
   */
  async renew(): Promise<boolean> {
    if (this.state.kind !== "held") return false;
    const sentAtMs = this.options.monotonic();
    try {
      const revision = await this.kv.update(LEASE_KEY, this.value(), this.state.revision);
      this.state = confirmed(revision, sentAtMs);
      return true;
    } catch (error) {
      if (jetStreamErrorCode(error) === JS_WRONG_LAST_SEQUENCE) {
        this.state = NO_LEASE;
        return false;
      }
      throw error;
    }
  }

  /** Gives the lease up (a clean stop): deleted only if still this node's revision. */
  async release(): Promise<void> {
    if (this.state.kind !== "held") return;
    const revision = this.state.revision;
    this.state = NO_LEASE;
    try {
      await this.kv.delete(LEASE_KEY, { previousSeq: revision });
    } catch (error) {
      if (jetStreamErrorCode(error) !== JS_WRONG_LAST_SEQUENCE) throw error;
    }
  }

  /** Forgets the lease locally (after a fence or a failed renewal). */
  drop(): void {
    this.state = NO_LEASE;
  }

  /** The holder the server has now, or undefined (no holder, or expired). */
  async holder(): Promise<LeaseHolder | undefined> {
    const entry: KvEntry | null = await this.kv.get(LEASE_KEY);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return { node: entry.string(), revision: entry.revision };
  }

  private value(): string {
    return this.options.nodeId;
  }
}
