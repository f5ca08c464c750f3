// Starts one nats-server per region on loopback, joined by gateways into a
// supercluster, each region's gateway behind a GatewayProxy so tests can
// partition a region or add WAN delay.

import { join } from "node:path";
import { freePorts } from "./free-port";
import { ProxyHost } from "./gateway-proxy-host";
import { NatsProcess } from "./nats-process";
import { ensureNatsSecurity } from "../security/nats-credentials";

export interface SuperclusterOptions {
  /** No TLS and no users (experiments only); by default `<baseDir>/tls` holds the CA and credentials. */
  readonly insecure?: boolean;
}

export const REGIONS = ["east", "west", "central"] as const;
export type RegionName = (typeof REGIONS)[number];

export interface SuperclusterRegion {
  readonly name: RegionName;
  readonly nats: NatsProcess;
  /** Port of the proxy in front of this region's gateway (what other regions dial). */
  readonly proxyPort: number;
  readonly gatewayPort: number;
}

export class NatsSupercluster {
  private readonly proxies = new ProxyHost();

  private constructor(readonly regions: readonly SuperclusterRegion[]) {}

  static async start(baseDir: string, options: SuperclusterOptions = {}): Promise<NatsSupercluster> {
    const security = options.insecure === true ? undefined : ensureNatsSecurity(join(baseDir, "tls"));
    const ports = await freePorts(REGIONS.length * 5);
    const take = (): number => {
      const port = ports.shift();
      if (port === undefined) throw new Error("ran out of ports");
      return port;
    };
    const plan = REGIONS.map((name) => ({
      name,
      client: take(),
      monitor: take(),
      cluster: take(),
      gateway: take(),
      proxy: take(),
    }));
    const gatewayUrls: Record<string, string> = {};
    for (const p of plan) gatewayUrls[`NATS_GATEWAY_${p.name.toUpperCase()}`] = `nats://127.0.0.1:${p.proxy}`;
    const regions = plan.map((p) => ({
      name: p.name,
      proxyPort: p.proxy,
      gatewayPort: p.gateway,
      nats: new NatsProcess({
        config: "region.conf",
        serverName: `${p.name}-1`,
        clientPort: p.client,
        monitorPort: p.monitor,
        dataDir: join(baseDir, `nats-${p.name}`),
        ...(security === undefined ? {} : { security }),
        env: {
          TALLY_REGION: p.name,
          NATS_CLUSTER_LISTEN: `127.0.0.1:${p.cluster}`,
          NATS_CLUSTER_ROUTES: `[nats://127.0.0.1:${p.cluster}]`,
          NATS_GATEWAY_LISTEN: `127.0.0.1:${p.gateway}`,
          NATS_GATEWAY_ADVERTISE: `127.0.0.1:${p.proxy}`,
          ...gatewayUrls,
        },
      }),
    }));
    const cluster = new NatsSupercluster(regions);
    try {
      await cluster.proxies.start(regions.map((r) => ({ name: r.name, listenPort: r.proxyPort, targetPort: r.gatewayPort })));
      await Promise.all(regions.map((region) => region.nats.start()));
      await cluster.waitForMetaLeader();
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  region(name: string): SuperclusterRegion {
    const found = this.regions.find((r) => r.name === name);
    if (found === undefined) throw new Error(`no region ${name}`);
    return found;
  }

  /** Cuts every gateway link to and from `name`. */
  partition(name: string): Promise<void> {
    return this.proxies.partition(name);
  }

  heal(): Promise<void> {
    return this.proxies.heal();
  }

  /** One-way delay on every gateway link. */
  setWanDelay(ms: number): Promise<void> {
    return this.proxies.setDelay(ms);
  }

  /** Waits until every server reports the same JetStream meta leader. */
  async waitForMetaLeader(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leaders = await Promise.all(
        this.regions.map(async (r) => {
          try {
            const res = await fetch(`${r.nats.monitorUrl}/jsz`);
            const body = (await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } };
            return body.meta_cluster?.cluster_size === this.regions.length ? body.meta_cluster.leader : undefined;
          } catch {
            return undefined;
          }
        }),
      );
      const first = leaders[0];
      if (first !== undefined && first !== "" && leaders.every((l) => l === first)) return;
      if (Date.now() > deadline) throw new Error(`no JetStream meta leader after ${timeoutMs} ms: ${leaders.join(",")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.regions.map((r) => r.nats.stop()));
    await this.proxies.stop();
  }
}
