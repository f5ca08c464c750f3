// Real nats-server processes for tests: a standalone JetStream server or a
// 3-region supercluster, in temp dirs, torn down after the suite.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../../src/devcluster/free-port";
import { NatsProcess } from "../../src/devcluster/nats-process";
import { NatsSupercluster } from "../../src/devcluster/nats-supercluster";
import { ensureNatsSecurity, NATS_USERS, type NatsClientSecurity, type NatsUser } from "../../src/security/nats-credentials";
import { natsSecureOptions } from "../../src/security/nats-connection-options";
import type { ConnectionOptions } from "nats";

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `tally-${prefix}-`));
}

export async function startStandaloneNats(dir: string): Promise<NatsProcess> {
  const [client, monitor] = await freePorts(2);
  const nats = new NatsProcess({
    config: "standalone.conf",
    serverName: "standalone",
    clientPort: client!,
    monitorPort: monitor!,
    dataDir: join(dir, "nats"),
    security: ensureNatsSecurity(join(dir, "tls")),
  });
  await nats.start();
  return nats;
}

/** Mocha helper: one standalone nats-server per describe block. */
export function useStandaloneNats(): () => NatsProcess {
  let nats: NatsProcess | undefined;
  let dir: string | undefined;
  before(async function () {
    this.timeout(30_000);
    dir = tempDir("nats");
    nats = await startStandaloneNats(dir);
  });
  after(async function () {
    this.timeout(30_000);
    await nats?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (nats === undefined) throw new Error("nats-server not started");
    return nats;
  };
}

/**
 * One region's NATS cluster of `size` servers from deploy/nats/region.conf
 * (DESIGN §12: R3 streams), routes listing every server. The other regions'
 * gateways point at a port nobody listens on: those regions are simply not up.
 */
export async function startRegionNats(dir: string, region: string, size = 3): Promise<NatsProcess[]> {
  const security = ensureNatsSecurity(join(dir, "tls"));
  const ports = await freePorts(size * 4 + 1);
  const take = (): number => {
    const port = ports.shift();
    if (port === undefined) throw new Error("ran out of ports");
    return port;
  };
  const absent = take();
  const plan = Array.from({ length: size }, (_, i) => ({ i, client: take(), monitor: take(), cluster: take(), gateway: take() }));
  const routes = `[${plan.map((p) => `nats://127.0.0.1:${p.cluster}`).join(", ")}]`;
  const gateways: Record<string, string> = {};
  for (const r of ["east", "west", "central"]) gateways[`NATS_GATEWAY_${r.toUpperCase()}`] = r === region ? `nats://127.0.0.1:${plan[0]!.gateway}` : `nats://127.0.0.1:${absent}`;
  const servers = plan.map(
    (p) =>
      new NatsProcess({
        config: "region.conf",
        serverName: `${region}-${p.i}`,
        clientPort: p.client,
        monitorPort: p.monitor,
        dataDir: join(dir, `nats-${region}-${p.i}`),
        security,
        env: {
          TALLY_REGION: region,
          NATS_CLUSTER_LISTEN: `127.0.0.1:${p.cluster}`,
          NATS_CLUSTER_ROUTES: routes,
          NATS_GATEWAY_LISTEN: `127.0.0.1:${p.gateway}`,
          NATS_GATEWAY_ADVERTISE: `127.0.0.1:${p.gateway}`,
          ...gateways,
        },
      }),
  );
  try {
    await Promise.all(servers.map((s) => s.start()));
    await waitForJetStreamCluster(servers);
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
  return servers;
}

/** Waits until every running server of `servers` reports a JetStream meta leader and a meta group of all of them. */
export async function waitForJetStreamCluster(servers: readonly NatsProcess[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leaders = await Promise.all(
      servers
        .filter((s) => s.running)
        .map(async (s) => {
          try {
            const body = (await (await fetch(`${s.monitorUrl}/jsz`)).json()) as { meta_cluster?: { leader?: string; cluster_size?: number } };
            return body.meta_cluster?.cluster_size === servers.length ? (body.meta_cluster.leader ?? "") : "";
          } catch {
            return "";
          }
        }),
    );
    if (leaders.length > 0 && leaders[0] !== "" && leaders.every((l) => l === leaders[0])) return;
    if (Date.now() > deadline) throw new Error(`no JetStream meta leader across ${servers.length} servers after ${timeoutMs} ms: [${leaders.join(", ")}]`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Mocha helper: a 3-region supercluster per describe block. */
export function useSupercluster(): () => { cluster: NatsSupercluster; dir: string } {
  let cluster: NatsSupercluster | undefined;
  let dir: string | undefined;
  before(async function () {
    this.timeout(60_000);
    dir = tempDir("sc");
    cluster = await NatsSupercluster.start(dir);
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (cluster === undefined || dir === undefined) throw new Error("supercluster not started");
    return { cluster, dir };
  };
}

/** runNode options reaching `nats` as `user` (a region's node, or `ops` for a region auth.conf does not list). */
export function natsAccess(nats: NatsProcess, user: string): { natsUrl: string; natsSecurity?: NatsClientSecurity } {
  const natsSecurity = nats.clientSecurity(natsUser(user));
  return natsSecurity === undefined ? { natsUrl: nats.url } : { natsUrl: nats.url, natsSecurity };
}

/** nats.js connection options for a test's own client, as `user` (default `ops`: every subject). */
/** `name` as a user auth.conf knows (a region's node or ops); throws for any other name. */
export function natsUser(name: string): NatsUser {
  const found = NATS_USERS.find((u) => u === name);
  if (found === undefined) throw new Error(`no NATS user "${name}" in deploy/nats/auth.conf (users: ${NATS_USERS.join(", ")})`);
  return found;
}

export function natsConnectOptions(nats: NatsProcess, user: NatsUser = "ops"): ConnectionOptions {
  const security = nats.clientSecurity(user);
  return { servers: nats.url, ...(security === undefined ? {} : natsSecureOptions(security, user)) };
}
