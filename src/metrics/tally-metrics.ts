// Every Prometheus metric a node exports, defined in one place (catalogue in
// docs/metrics.md). Labels are bounded: results, peers and directions, never
// account ids.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type DebitResultLabel = "approved" | "overdraft" | "insufficient" | "replayed" | "invalid" | "conflict" | "error";
export type GrantResultLabel = "approved" | "replayed" | "invalid" | "conflict" | "error";

export class TallyMetrics {
  readonly registry = new Registry();

  readonly debits = new Counter({
    name: "tally_debits_total",
    help: "Debits answered, by result.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly grants = new Counter({
    name: "tally_grants_total",
    help: "Grants answered, by result.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly debitDuration = new Histogram({
    name: "tally_debit_duration_seconds",
    help: "Time to answer a Debit (or one DebitBatch), including durability.",
    labelNames: ["rpc"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "tally_debit_batch_size",
    help: "Items per DebitBatch call.",
    buckets: [1, 10, 50, 100, 500, 1000, 5000, 10000],
    registers: [this.registry],
  });
  readonly commits = new Counter({
    name: "tally_commits_total",
    help: "Group commits published to the replica's JetStream stream.",
    registers: [this.registry],
  });
  readonly commitSlots = new Histogram({
    name: "tally_commit_slots",
    help: "Slot changes per group commit.",
    buckets: [1, 2, 5, 10, 50, 100, 500, 1000, 5000],
    registers: [this.registry],
  });
  readonly commitDuration = new Histogram({
    name: "tally_commit_duration_seconds",
    help: "Publish-to-ack time of a group commit.",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly commitErrors = new Counter({
    name: "tally_commit_errors_total",
    help: "Failed publishes of a group commit (retried).",
    registers: [this.registry],
  });
  readonly replicationLagSeconds = new Gauge({
    name: "tally_replication_lag_seconds",
    help: "Age of the newest change applied from a peer when changes are pending; 0 when caught up.",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly replicationPending = new Gauge({
    name: "tally_replication_pending_updates",
    help: "Group commits a peer has published that this node has not applied.",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly appliedSequence = new Gauge({
    name: "tally_replication_applied_sequence",
    help: "Last sequence of each replica's stream applied here (the version vector).",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly converged = new Gauge({
    name: "tally_replica_converged",
    help: "1 when this node's copy of a replica's row has the digest that replica published at the same sequence.",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly divergences = new Counter({
    name: "tally_replication_divergences_total",
    help: "Digest mismatches seen at equal sequences (should stay 0).",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly peerLastHeard = new Gauge({
    name: "tally_peer_last_heard_seconds",
    help: "Seconds since this node last heard from a peer (status or change).",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly rightsRequests = new Counter({
    name: "tally_rights_requests_total",
    help: "Rights requests sent to peers, by result.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly rightsTransfers = new Counter({
    name: "tally_rights_transfers_total",
    help: "Rights transfers, by direction (in: received, out: given).",
    labelNames: ["direction"] as const,
    registers: [this.registry],
  });
  readonly rightsTransferred = new Counter({
    name: "tally_rights_transferred_amount_total",
    help: "Minor units of rights transferred, by direction.",
    labelNames: ["direction"] as const,
    registers: [this.registry],
  });
  readonly rightsWait = new Histogram({
    name: "tally_rights_wait_seconds",
    help: "Time debits waited for rights from other regions.",
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2],
    registers: [this.registry],
  });
  readonly holds = new Counter({
    name: "tally_holds_total",
    help: "Holds placed (new calls, not replays), by result: approved or insufficient.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly grpcTlsRefusals = new Counter({
    name: "tally_grpc_tls_refusals_total",
    help: "TLS handshakes the gRPC listeners refused (no client certificate, an untrusted or expired one, or no TLS at all).",
    registers: [this.registry],
  });
  readonly holdResolutions = new Counter({
    name: "tally_hold_resolutions_total",
    help: "Holds resolved at this region, by kind: captured, voided or expired.",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly holdsOutstanding = new Gauge({
    name: "tally_holds_outstanding",
    help: "Pending holds of this region (placed, not yet resolved).",
    registers: [this.registry],
  });
  readonly refunds = new Counter({
    name: "tally_refunds_total",
    help: "Refunds given at this region (new calls, not replays).",
    registers: [this.registry],
  });
  readonly refundedAmount = new Counter({
    name: "tally_refunded_amount_total",
    help: "Minor units refunded at this region.",
    registers: [this.registry],
  });
  readonly falseRejections = new Counter({
    name: "tally_false_rejections_total",
    help: "Debits refused while the global balance known here could have covered them.",
    registers: [this.registry],
  });
  readonly overdraftUsed = new Counter({
    name: "tally_overdraft_used_amount_total",
    help: "Minor units debited beyond the region's rights under OVERDRAFT.",
    registers: [this.registry],
  });
  readonly invariantViolations = new Counter({
    name: "tally_invariant_violations_total",
    help: "STRICT accounts found overspent (by a node or by settlement). Must stay 0.",
    registers: [this.registry],
  });
  readonly settlementDuration = new Histogram({
    name: "tally_settlement_duration_seconds",
    help: "Duration of settlements run by this node.",
    buckets: [0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers: [this.registry],
  });
  readonly settlementLastSuccess = new Gauge({
    name: "tally_settlement_last_success_timestamp_seconds",
    help: "Unix time of the last successful settlement run by this node.",
    registers: [this.registry],
  });
  readonly settlementAccounts = new Gauge({
    name: "tally_settlement_accounts",
    help: "Accounts in the last settlement run by this node.",
    registers: [this.registry],
  });
  readonly settlementFailures = new Counter({
    name: "tally_settlement_failures_total",
    help: "Settlement runs that failed.",
    registers: [this.registry],
  });
  readonly overspendAmount = new Counter({
    name: "tally_overspend_amount_total",
    help: "Minor units of overspend recorded by settlements run by this node.",
    registers: [this.registry],
  });
  readonly snapshots = new Counter({
    name: "tally_snapshots_total",
    help: "Full-state snapshots written by this node.",
    registers: [this.registry],
  });
  readonly snapshotDuration = new Histogram({
    name: "tally_snapshot_duration_seconds",
    help: "Time to copy, make durable and write a snapshot.",
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30],
    registers: [this.registry],
  });
  readonly peerClockOffset = new Gauge({
    name: "tally_peer_clock_offset_seconds",
    help: "A peer's wall clock minus this node's, estimated from its status messages (transit time included).",
    labelNames: ["peer"] as const,
    registers: [this.registry],
  });
  readonly snapshotBytes = new Gauge({
    name: "tally_snapshot_bytes",
    help: "Size of the last snapshot written by this node.",
    registers: [this.registry],
  });
  readonly commitFailing = new Gauge({
    name: "tally_commit_failing",
    help: "1 while this node's group commits keep failing (writes are not being acknowledged), else 0.",
    registers: [this.registry],
  });
  readonly writable = new Gauge({
    name: "tally_node_writable",
    help: "1 while this node accepts writes; 0 when fenced by another writer, stopping, or its commits fail.",
    registers: [this.registry],
  });
  readonly badMessages = new Counter({
    name: "tally_bad_messages_total",
    help: "Messages from NATS that failed to decode or validate and were dropped, by source.",
    labelNames: ["source"] as const,
    registers: [this.registry],
  });
  readonly poisonWrites = new Counter({
    name: "tally_poison_writes_total",
    help: "Writes that could never be published (refused alone; other writes unaffected).",
    registers: [this.registry],
  });
  readonly rightsAsksInFlight = new Gauge({
    name: "tally_rights_asks_in_flight",
    help: "Accounts this node is asking peers rights for right now.",
    registers: [this.registry],
  });
  readonly natsConnected = new Gauge({
    name: "tally_nats_connected",
    help: "1 while the node's NATS connection is up.",
    registers: [this.registry],
  });
  readonly accounts = new Gauge({
    name: "tally_accounts",
    help: "Accounts held in memory.",
    registers: [this.registry],
  });
  readonly rememberedRequests = new Gauge({
    name: "tally_remembered_requests",
    help: "Request ids remembered for idempotent retries.",
    registers: [this.registry],
  });
  readonly requestLogFillRatio = new Gauge({
    name: "tally_request_log_fill_ratio",
    help: "Acknowledged request ids admitted here within the retention window, over the cap; at 1 new requests are refused.",
    registers: [this.registry],
  });
  readonly watchers = new Gauge({
    name: "tally_balance_watchers",
    help: "Open WatchBalance streams.",
    registers: [this.registry],
  });
  readonly info = new Gauge({
    name: "tally_node_info",
    help: "Constant 1, labelled with the node's region.",
    labelNames: ["region"] as const,
    registers: [this.registry],
  });
  readonly rightsBatchSize = new Histogram({
    name: "tally_rights_batch_size",
    help: "Accounts per rights batch: sent to a donor (role ask) or answered with one durable commit (role give).",
    labelNames: ["role"] as const,
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000],
    registers: [this.registry],
  });
  readonly rightsDonorQueueDepth = new Gauge({
    name: "tally_rights_donor_queue_depth",
    help: "Rights batches this node is answering as a donor (each waiting for its group commit).",
    registers: [this.registry],
  });

  /** Pre-bound children for the hot path: no label hashing per call. */
  readonly debitResult: Readonly<Record<DebitResultLabel, { inc(value?: number): void }>>;
  readonly debitLatency: { readonly unary: { startTimer(): () => void }; readonly batch: { startTimer(): () => void } };

  constructor(region: string, options: { processMetrics?: boolean } = {}) {
    const results: DebitResultLabel[] = ["approved", "overdraft", "insufficient", "replayed", "invalid", "conflict", "error"];
    this.debitResult = Object.fromEntries(results.map((r) => [r, this.debits.labels(r)])) as Record<DebitResultLabel, { inc(value?: number): void }>;
    this.debitLatency = { unary: this.debitDuration.labels("Debit"), batch: this.debitDuration.labels("DebitBatch") };
    this.registry.setDefaultLabels({ region });
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named *_total break Prometheus naming rules (promtool flags them);
      // the same values are exported without the suffix (nodejs_active_handles, ...).
      for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
        this.registry.removeSingleMetric(name);
      }
    }
    this.info.set({ region }, 1);
  }
}
