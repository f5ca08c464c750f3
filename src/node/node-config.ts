// A node's settings, with defaults suited to the local 3-region cluster.

import type { LeaseTiming } from "../core/lease-clock";
import type { Policy } from "../core/policy";
import { DEFAULT_LOT_GUARD_MS } from "../core/replica-state";

export interface NodeConfig {
  /** This node's region (replica) name. */
  readonly region: string;
  /** Every region, in the same order on every node. */
  readonly regions: readonly string[];
  readonly natsUrl: string;
  /** Place each region's stream in the NATS cluster of the same name (supercluster). */
  readonly placeStreamsByRegion: boolean;
  readonly defaultPolicy: Policy;
  /** Default and maximum wait for rights from other regions when a debit is short. */
  readonly defaultRightsWaitMs: number;
  readonly maxRightsWaitMs: number;
  /** How long request ids are remembered, and how many at most. */
  readonly requestRetentionMs: number;
  readonly maxRememberedRequests: number;
  /** Most slot changes in one replication message. */
  readonly maxCommitSlots: number;
  /** Pause before a failed group commit is published again. */
  readonly commitRetryDelayMs: number;
  /** How long start-up waits for peers' streams to be applied before serving. */
  readonly catchUpTimeoutMs: number;
  readonly statusIntervalMs: number;
  /** How often a snapshot is written when the row changed; 0 disables periodic snapshots. */
  readonly snapshotIntervalMs: number;
  /** Own-stream messages kept for lagging peers beyond the snapshot before purging anyway. */
  readonly maxRetainedMessages: number;
  /**
   * Spread each grant's rights evenly over all regions in the same durable
   * commit, instead of leaving them where the grant landed (then demand moves them).
   */
  readonly spreadGrants: boolean;
  /** WatchBalance streams open on this node at once; more are refused (RESOURCE_EXHAUSTED). Bounds their memory. */
  readonly maxWatchers: number;
  /** WatchBalance streams of one account on this node at once; more are refused (RESOURCE_EXHAUSTED). */
  readonly maxWatchersPerAccount: number;
  /**
   * Several nodes per region (DESIGN §12, `--standby`): the node writes only
   * while it holds the region's writer lease with this timing, and stands by
   * (following the own stream, serving reads) until then. Undefined: the
   * single-node deployment, which writes from the start.
   */
  readonly writerLease: LeaseTiming | undefined;
  /** A standby's pause between looks at the lease and the own stream. */
  readonly standbyPollMs: number;
  /** How often pending holds are checked for their timeout (on this region's clock). */
  readonly holdSweepIntervalMs: number;
  /**
   * Credit lots stop being spendable this long before their expiry, by this
   * region's clock, so that a clock up to this far behind never spends a lot
   * past its real expiry (DESIGN §9). See DEFAULT_LOT_GUARD_MS.
   */
  readonly lotGuardMs: number;
}

export const DEFAULT_NODE_CONFIG: Omit<NodeConfig, "region" | "regions" | "natsUrl" | "defaultPolicy"> = {
  placeStreamsByRegion: false,
  defaultRightsWaitMs: 50,
  maxRightsWaitMs: 2_000,
  requestRetentionMs: 15 * 60_000,
  maxRememberedRequests: 2_000_000,
  maxCommitSlots: 2_000,
  commitRetryDelayMs: 100,
  catchUpTimeoutMs: 10_000,
  statusIntervalMs: 1_000,
  snapshotIntervalMs: 60_000,
  maxRetainedMessages: 200_000,
  spreadGrants: false,
  maxWatchers: 10_000,
  maxWatchersPerAccount: 100,
  writerLease: undefined,
  standbyPollMs: 250,
  holdSweepIntervalMs: 100,
  lotGuardMs: DEFAULT_LOT_GUARD_MS,
};
