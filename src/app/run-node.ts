// Composition root of one regional node: metrics, the Tally node (state,
// JetStream log, followers, rights broker), the gRPC server and, when a
// Postgres URL is given, settlement. Everything is wired here and only here.

import type { Server as HttpServer } from "node:http";
import type { Policy } from "../core/policy";
import { STRICT_DEFAULT } from "../core/policy";
import { TallyMetrics } from "../metrics/tally-metrics";
import { startMetricsServer } from "../metrics/metrics-server";
import { jsonLogger, type Level, type Logger } from "../node/logger";
import { DEFAULT_NODE_CONFIG, type NodeConfig } from "../node/node-config";
import { TallyNode } from "../node/tally-node";
import { startGrpcServer, type RunningServer } from "../server/grpc-server";
import { startSettlement, type RunningSettlement } from "./settlement-wiring";

export interface RunNodeOptions {
  readonly region: string;
  readonly regions: readonly string[];
  readonly natsUrl: string;
  /** host:port for gRPC; port 0 picks a free one. */
  readonly grpcAddress: string;
  /** Port for /metrics; 0 picks a free one; undefined disables the endpoint. */
  readonly metricsPort?: number;
  /** Host /metrics listens on; 0.0.0.0 in containers. */
  readonly metricsHost?: string;
  readonly placeStreamsByRegion?: boolean;
  readonly defaultPolicy?: Policy;
  readonly postgresUrl?: string;
  /** Periodic settlement interval; 0 or undefined runs settlement only on demand. */
  readonly settleIntervalMs?: number;
  readonly logLevel?: Level;
  readonly logger?: Logger;
  readonly config?: Partial<NodeConfig>;
  /** Also serve the no-op baseline service used by benchmarks. */
  readonly noopService?: boolean;
}

export interface RunningNode {
  readonly node: TallyNode;
  readonly grpcPort: number;
  readonly metricsPort: number | undefined;
  readonly metrics: TallyMetrics;
  stop(): Promise<void>;
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
  const node = await TallyNode.start(config, metrics, logger);
  let settlement: RunningSettlement | undefined;
  let grpc: RunningServer | undefined;
  let http: HttpServer | undefined;
  let gauges: NodeJS.Timeout | undefined;
  try {
    if (options.postgresUrl !== undefined && options.postgresUrl !== "") {
      settlement = await startSettlement(node, options.postgresUrl, options.settleIntervalMs ?? 0, logger);
    }
    grpc = await startGrpcServer(node, options.grpcAddress, {
      noopService: options.noopService ?? false,
      ...(settlement === undefined ? {} : { settlement: settlement.admin }),
    });
    if (options.metricsPort !== undefined) {
      http = await startMetricsServer(metrics.registry, options.metricsPort, options.metricsHost ?? "127.0.0.1");
    }
    gauges = setInterval(() => node.refreshGauges(), 1_000);
    gauges.unref();
    node.refreshGauges();
  } catch (error) {
    await grpc?.stop();
    await settlement?.stop();
    await node.close();
    throw error;
  }
  const address = http?.address();
  const metricsPort = typeof address === "object" && address !== null ? address.port : undefined;
  const grpcServer = grpc;
  const httpServer = http;
  let stopping: Promise<void> | undefined;
  return {
    node,
    grpcPort: grpcServer.port,
    metricsPort,
    metrics,
    stop: () => {
      stopping ??= (async () => {
        clearInterval(gauges);
        await grpcServer.stop();
        await settlement?.stop();
        await node.close();
        if (httpServer !== undefined) await new Promise<void>((r) => httpServer.close(() => r()));
      })();
      return stopping;
    },
  };
}
