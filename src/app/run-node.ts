// Composition root of one regional node, and the only place that opens
// connections: NATS (the replica log, snapshots, rights and status traffic),
// Postgres (settlement, when configured) and the gRPC and /metrics listeners.

import type { Server as HttpServer } from "node:http";
import { connect, Events, type NatsConnection } from "nats";
import type { Policy } from "../core/policy";
import { STRICT_DEFAULT } from "../core/policy";
import { TallyMetrics } from "../metrics/tally-metrics";
import { perReplicaShare } from "../core/bounds";
import { ReplicaSet } from "../core/replica-set";
import { startMetricsServer, type ProbeStatus } from "../metrics/metrics-server";
import { jsonLogger, type Level, type Logger } from "../node/logger";
import { DEFAULT_NODE_CONFIG, type NodeConfig } from "../node/node-config";
import { TallyNode, type NodeTransports } from "../node/tally-node";
import { ReplicaLog } from "../replication/jetstream-log";
import { NatsRightsTransport } from "../replication/nats-rights-transport";
import { SnapshotStore } from "../replication/snapshot-store";
import { WriterLease } from "../replication/writer-lease";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import { SettledStream } from "../replication/settled-stream";
import { SETTLED_STREAM } from "../replication/subjects";
import { serveSnapshotRequests } from "../replication/snapshot-requests";
import { StatusExchange } from "../replication/status-exchange";
import { startGrpcServer, type RunningServer } from "../server/grpc-server";
import { openGrpcSecurity, type GrpcSecurityOptions } from "../security/grpc-security";
import { DEFAULT_POSTGRES, type PostgresSettings } from "./config";
import { startSettlement, type RunningSettlement } from "./settlement-wiring";
import type { NatsClientSecurity } from "../security/nats-credentials";
import { natsSecureOptions, type NatsSecureOptions } from "../security/nats-connection-options";

export interface RunNodeOptions {
  readonly region: string;
  readonly regions: readonly string[];
  readonly natsUrl: string;
  /** NATS TLS and this node's nkey; without it the connection is plaintext and unauthenticated (--insecure). */
  readonly natsSecurity?: NatsClientSecurity;
  /** host:port for gRPC; port 0 picks a free one. */
  readonly grpcAddress: string;
  /** Port for /metrics; 0 picks a free one; undefined disables the endpoint. */
  readonly metricsPort?: number;
  /** Host /metrics listens on; 0.0.0.0 in containers. */
  readonly metricsHost?: string;
  readonly placeStreamsByRegion?: boolean;
  /** Copies of the own stream, snapshot bucket and writer lease (--stream-replicas); default 1. */
  readonly streamReplicas?: number;
  readonly defaultPolicy?: Policy;
  /** Enables settlement with default pool settings (tests); `postgres` gives all of them. */
  readonly postgresUrl?: string;
  readonly postgres?: PostgresSettings;
  /** Periodic settlement interval; 0 or undefined runs settlement only on demand. */
  readonly settleIntervalMs?: number;
  readonly logLevel?: Level;
  readonly logger?: Logger;
  readonly config?: Partial<NodeConfig>;
  /** Also serve the no-op baseline service used by benchmarks. */
  readonly noopService?: boolean;
  // gRPC security (src/security): mTLS + roles, or an explicit { kind: "insecure" }.
  readonly grpcSecurity: GrpcSecurityOptions;
  /** host:port of a separate Admin + reflection listener; undefined serves them with Balances. */
  readonly adminAddress?: string | undefined;
}

export interface RunningNode {
  readonly node: TallyNode;
  readonly grpcPort: number;
  readonly adminPort: number | undefined;
  readonly metricsPort: number | undefined;
  readonly metrics: TallyMetrics;
  stop(): Promise<void>;
}

async function openNats(url: string, name: string, secure: NatsSecureOptions | undefined): Promise<NatsConnection> {
  try {
    return await connect({
      // A region of several servers: all are tried, at start and on reconnect.
      servers: url.split(","),
      name,
      ...secure,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5_000,
      // Every publish is a request; capturing a stack trace for each one was the
      // largest single cost of the NATS client on the debit path.
      noAsyncTraces: true,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot connect to NATS at ${url}: ${reason}`, { cause: error });
  }
}

/** Counts every dropped message; logs at most one line per source per second (a flood must not flood the log). */
function badMessageSink(metrics: TallyMetrics, logger: Logger): (source: string, subject: string, reason: string) => void {
  const lastLogged = new Map<string, { atMs: number; suppressed: number }>();
  return (source, subject, reason) => {
    metrics.badMessages.inc({ source });
    const nowMs = Date.now();
    const last = lastLogged.get(source);
    if (last !== undefined && nowMs - last.atMs < 1_000) {
      last.suppressed++;
      return;
    }
    logger.warn("bad message dropped", { source, subject, reason, suppressedBefore: last?.suppressed ?? 0 });
    lastLogged.set(source, { atMs: nowMs, suppressed: 0 });
  };
}

function natsTransports(connection: NatsConnection, log: ReplicaLog, config: NodeConfig, metrics: TallyMetrics, logger: Logger): NodeTransports {
  const badMessage = badMessageSink(metrics, logger);
  const replicas = new ReplicaSet(config.regions);
  const maxSlot = perReplicaShare(replicas.size);
  return {
    log,
    snapshots: new SnapshotStore(log, replicas, maxSlot, config.region),
    rights: new NatsRightsTransport(connection, config.region, replicas, badMessage, maxSlot),
    startStatus: (own, onPeer) => {
      const exchange = new StatusExchange(connection, config.region, replicas, own, onPeer, Date.now, badMessage);
      exchange.start(config.statusIntervalMs);
      return () => exchange.stop();
    },
    serveSnapshotRequests: (take) =>
      serveSnapshotRequests(connection, config.region, take, (error) => logger.warn("requested snapshot failed", { error: String(error) })),
    openLease: (timing) =>
      WriterLease.open(log, {
        region: config.region,
        // Written as the lease's value: who writes, for operators.
        nodeId: `${hostname()}/${process.pid}/${Date.now().toString(36)}`,
        timing,
        monotonic: () => performance.now(),
        placeByRegion: config.placeStreamsByRegion,
      }),
  };
}

function trackConnection(connection: NatsConnection, metrics: TallyMetrics): void {
  metrics.natsConnected.set(1);
  void (async () => {
    for await (const s of connection.status()) {
      if (s.type === Events.Disconnect) metrics.natsConnected.set(0);
      if (s.type === Events.Reconnect) metrics.natsConnected.set(1);
    }
  })();
}

export async function runNode(options: RunNodeOptions): Promise<RunningNode> {
  const logger = options.logger ?? jsonLogger(options.region, options.logLevel ?? "info");
  const metrics = new TallyMetrics(options.region);
  const config: NodeConfig = {
    ...DEFAULT_NODE_CONFIG,
    region: options.region,
    regions: options.regions,
    natsUrl: options.natsUrl,
    defaultPolicy: options.defaultPolicy ?? STRICT_DEFAULT,
    placeStreamsByRegion: options.placeStreamsByRegion ?? false,
    ...options.config,
  };
  const postgres =
    options.postgres ?? (options.postgresUrl === undefined || options.postgresUrl === "" ? undefined : { url: options.postgresUrl, ...DEFAULT_POSTGRES });
  // Certificates and the role file are checked before any connection opens.
  const grpcSecurity = openGrpcSecurity(options.grpcSecurity, config.region, logger);
  if (options.natsSecurity === undefined) logger.warn("insecure: NATS connection without TLS or credentials (--insecure); for local experiments only", { natsUrl: config.natsUrl });
  const natsSecure = options.natsSecurity === undefined ? undefined : natsSecureOptions(options.natsSecurity, config.region);
  let connection: NatsConnection;
  try {
    connection = await openNats(config.natsUrl, `tally-${config.region}`, natsSecure);
  } catch (error) {
    await grpcSecurity.stop();
    throw error;
  }
  let log: ReplicaLog;
  try {
    log = await ReplicaLog.over(connection, { placeByRegion: config.placeStreamsByRegion, replicas: options.streamReplicas ?? 1 });
  } catch (error) {
    await connection.close();
    await grpcSecurity.stop();
    throw error;
  }
  const settledStream = new SettledStream(connection, new ReplicaSet(config.regions), badMessageSink(metrics, logger), options.streamReplicas ?? 1);
  let node: TallyNode | undefined;
  let settlement: RunningSettlement | undefined;
  let grpc: RunningServer | undefined;
  let http: HttpServer | undefined;
  let gauges: NodeJS.Timeout | undefined;
  try {
    trackConnection(connection, metrics);
    const started = await startStep("recovery", () => TallyNode.start(config, natsTransports(connection, log, config, metrics, logger), metrics, logger));
    node = started;
    settledStream.ensureInBackground((error) =>
      logger.warn(`${SETTLED_STREAM} cannot be read or created yet; serving without settled totals until it can`, { error: String(error) }),
    );
    void settledStream.follow((batch) => {
      for (const a of batch.accounts) started.views.settled.apply(a.accountId, { granted: a.granted, debited: a.debited, settlementId: batch.settlementId });
    });
    if (postgres !== undefined) settlement = await startSettlement(started, postgres, options.settleIntervalMs ?? 0, logger, settledStream);
    grpc = await startGrpcServer(started, options.grpcAddress, {
      noopService: options.noopService ?? false,
      security: grpcSecurity,
      adminAddress: options.adminAddress,
      ...(settlement === undefined ? {} : { settlement: settlement.admin }),
    });
    if (options.metricsPort !== undefined) {
      http = await startMetricsServer(metrics.registry, options.metricsPort, options.metricsHost ?? "127.0.0.1", (service) => healthOf(started, service));
    }
    const health = grpc.health;
    const refresh = (): void => {
      started.views.refreshGauges();
      for (const service of HEALTH_SERVICES) health.setStatus(service, healthOf(started, service).status);
    };
    gauges = setInterval(refresh, 1_000);
    gauges.unref();
    refresh();
  } catch (error) {
    clearInterval(gauges);
    settledStream.stop();
    await grpc?.stop();
    await settlement?.stop();
    await node?.close();
    await log.close();
    await grpcSecurity.stop();
    throw error;
  }
  const address = http?.address();
  const metricsPort = typeof address === "object" && address !== null ? address.port : undefined;
  const running = { node, grpc, http };
  let stopping: Promise<void> | undefined;
  return {
    node: running.node,
    grpcPort: running.grpc.port,
    adminPort: running.grpc.adminPort,
    metricsPort,
    metrics,
    stop: () => {
      stopping ??= (async () => {
        clearInterval(gauges);
        settledStream.stop();
        // The node stops writing while the gRPC server shuts down: calls waiting
        // on commits (NATS down) end UNAVAILABLE within the commit grace, so the
        // graceful shutdown need not wait out its force timeout and cancel them.
        await Promise.all([running.grpc.stop(), running.node.close()]);
        await settlement?.stop();
        await log.close();
        await grpcSecurity.stop();
        const httpServer = running.http;
        if (httpServer !== undefined) await new Promise<void>((r) => httpServer.close(() => r()));
      })();
      return stopping;
    },
  };
}

const HEALTH_SERVICES = ["tally.v1.Balances", "tally.replication", "tally.writer"] as const;

/** A node's health per service, read live: gRPC health is refreshed from it every second, the HTTP probes read it on each request. */
function healthOf(node: TallyNode, service: string): { readonly status: ProbeStatus; readonly reason?: string } {
  const report = (serving: boolean, reason: string | undefined) => (serving ? { status: "SERVING" as const } : { status: "NOT_SERVING" as const, ...(reason === undefined ? {} : { reason }) });
  switch (service) {
    case "tally.v1.Balances": {
      // Reads still work when writes do not; health says which.
      const unavailable = node.unavailableReason;
      return report(unavailable === undefined, unavailable);
    }
    case "tally.replication":
      // Ready but not caught up with every region is a visible degraded state, not a silent one.
      return report(node.peers.allConverged, "not caught up with every region");
    case "tally.writer":
      // Several nodes per region: SERVING on the one that writes, NOT_SERVING on standbys.
      return report(node.writing, "this node does not hold the region's writer role");
    default:
      return { status: "NOT_SERVING", reason: `unknown health service ${service}` };
  }
}

/** Runs one start-up step; an error from it says which step failed (a bare NATS "TIMEOUT" says nothing). */
async function startStep<T>(step: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    // Typed refusals (a region list that disagrees, a damaged snapshot) already say what is wrong.
    if (error instanceof Error && error.name !== "Error" && error.name !== "NatsError") throw error;
    throw new Error(`start-up step "${step}" failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}
