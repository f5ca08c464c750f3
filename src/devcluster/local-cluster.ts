// A whole local cluster: the NATS supercluster (one server per region, gateways
// behind proxies) and one node process per region. Shared by `tally up`, the
// e2e tests and the multi-region benchmarks.

import { join } from "node:path";
import type { ChannelCredentials } from "@grpc/grpc-js";
import { freePorts } from "./free-port";
import { LocalGrpcPki, type ClientIdentity } from "./local-grpc-pki";
import { NatsSupercluster, REGIONS } from "./nats-supercluster";
import { NodeProcess, type PostgresSecurity } from "./node-process";
import type { NatsClientSecurity } from "../security/nats-credentials";

export interface LocalClusterOptions {
  /** Data and log directory. */
  readonly dir: string;
  /** gRPC and metrics ports per region, in REGIONS order; free ports when omitted. */
  readonly grpcPorts?: readonly number[];
  readonly metricsPorts?: readonly number[];
  /** One-way delay on every gateway link (a simulated WAN), set before the nodes start. */
  readonly wanDelayMs?: number;
  readonly postgresUrl?: string;
  readonly postgresSecurity?: PostgresSecurity;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** NATS without TLS or users (experiments only); by default credentials live in `<dir>/tls`. */
  readonly insecureNats?: boolean;
}

function natsCredentials(security: NatsClientSecurity | undefined): { natsSecurity?: NatsClientSecurity } {
  return security === undefined ? {} : { natsSecurity: security };
}

export class LocalCluster {
  private constructor(
    readonly nats: NatsSupercluster,
    readonly nodes: readonly NodeProcess[],
    readonly grpcPki: LocalGrpcPki,
  ) {}

  /** mTLS credentials of a local client: one role, "ops" (operator + auditor) or "all". */
  clientCredentials(identity: ClientIdentity): ChannelCredentials {
    return this.grpcPki.clientCredentials(identity);
  }

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    // gRPC certificates and role file in <dir>/tls (grpc-*), shared with `tally` CLI defaults.
    const grpcPki = LocalGrpcPki.ensure(join(options.dir, "tls"));
    const nats = await NatsSupercluster.start(options.dir, { insecure: options.insecureNats ?? false });
    if (options.wanDelayMs !== undefined) await nats.setWanDelay(options.wanDelayMs);
    const spare = await freePorts(REGIONS.length * 2);
    const nodes = REGIONS.map(
      (region, i) =>
        new NodeProcess({
          region,
          regions: REGIONS,
          natsUrl: nats.region(region).nats.url,
          ...natsCredentials(nats.region(region).nats.clientSecurity(region)),
          grpcPort: options.grpcPorts?.[i] ?? spare[i * 2]!,
          metricsPort: options.metricsPorts?.[i] ?? spare[i * 2 + 1]!,
          logDir: options.dir,
          extraArgs: ["--place-by-region", ...grpcPki.serverArgs(), ...(options.extraArgs ?? [])],
          env: { TALLY_LOG: "warn", ...options.env },
          ...(options.postgresUrl !== undefined ? { postgresUrl: options.postgresUrl } : {}),
          ...(options.postgresSecurity !== undefined ? { postgresSecurity: options.postgresSecurity } : {}),
        }),
    );
    const cluster = new LocalCluster(nats, nodes, grpcPki);
    try {
      await Promise.all(nodes.map((n) => n.start()));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  node(region: string): NodeProcess {
    const found = this.nodes.find((n) => n.options.region === region);
    if (found === undefined) throw new Error(`no region ${region}`);
    return found;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    await this.nats.stop();
  }
}
