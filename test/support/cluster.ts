// A real 3-region Tally cluster for e2e tests: one nats-server per region
// (gateways behind controllable proxies) and one node process per region.

import { rmSync } from "node:fs";
import { expect } from "chai";
import { LocalCluster } from "../../src/devcluster/local-cluster";
import { REGIONS, type NatsSupercluster } from "../../src/devcluster/nats-supercluster";
import type { NodeProcess } from "../../src/devcluster/node-process";
import type { ClientIdentity } from "../../src/devcluster/local-grpc-pki";
import type { ChannelCredentials } from "@grpc/grpc-js";
import type { ClusterStatusResponse } from "../../src/generated/tally/v1/admin";
import type { GetBalanceResponse, GrantResponse } from "../../src/generated/tally/v1/balances";
import { convergedEverywhere } from "../../src/cli/convergence";
import { clients, unary, type Clients } from "./grpc-clients";
import { tempDir } from "./nats";
import type { SettlementRoles } from "./postgres";

export interface RegionHandle {
  readonly name: string;
  readonly node: NodeProcess;
  clients: Clients;
}

export class TestCluster {
  private constructor(
    private readonly local: LocalCluster,
    readonly regions: RegionHandle[],
    readonly dir: string,
  ) {}

  get nats(): NatsSupercluster {
    return this.local.nats;
  }

  /**
   * `postgres`: the settlement roles (the nodes settle as its settler, over TLS).
   * NATS runs with TLS and per-region credentials, as deployed.
   */
  static async start(options: { extraArgs?: string[]; postgres?: SettlementRoles } = {}): Promise<TestCluster> {
    const pg = options.postgres;
    const dir = tempDir("e2e");
    const local = await LocalCluster.start({
      dir,
      ...(options.extraArgs !== undefined ? { extraArgs: options.extraArgs } : {}),
      ...(pg !== undefined ? { postgresUrl: pg.settlerUrl, postgresSecurity: { ownerUrl: pg.ownerUrl, readerUrl: pg.readerUrl, caFile: pg.caFile } } : {}),
    });
    const regions = local.nodes.map((node) => ({ name: node.options.region, node, clients: clients(node.grpcAddress, local.clientCredentials("all")) }));
    return new TestCluster(local, regions, dir);
  }

  region(name: string): RegionHandle {
    const found = this.regions.find((r) => r.name === name);
    if (found === undefined) throw new Error(`no region ${name}`);
    return found;
  }

  async restartNode(name: string): Promise<void> {
    const region = this.region(name);
    region.clients.close();
    await region.node.start();
    region.clients = this.connect(region.node);
  }

  /** Clients of one node as the cluster's "all" principal (every role). */
  connect(node: NodeProcess): Clients {
    return clients(node.grpcAddress, this.local.clientCredentials("all"));
  }

  /** The cluster's mTLS credentials of a client identity (one role, "ops" or "all"). */
  clientCredentials(identity: ClientIdentity): ChannelCredentials {
    return this.local.clientCredentials(identity);
  }

  /** A grant; with `lot`, into that credit lot (effective at once; expiry 0 = never). */
  grant(name: string, accountId: string, amount: bigint, requestId: string, lot?: { priority: number; expiresAtMs: bigint }): Promise<GrantResponse> {
    const c = this.region(name).clients;
    return unary(c.balances, c.balances.grant, {
      accountId,
      amount,
      requestId,
      ...(lot === undefined ? {} : { lot: { priority: lot.priority, effectiveAtMs: 0n, expiresAtMs: lot.expiresAtMs } }),
    });
  }

  balance(name: string, accountId: string): Promise<GetBalanceResponse> {
    const c = this.region(name).clients;
    return unary(c.balances, c.balances.getBalance, { accountId });
  }

  status(name: string): Promise<ClusterStatusResponse> {
    const c = this.region(name).clients;
    return unary(c.admin, c.admin.clusterStatus, {});
  }

  /**
   * Waits until every node has applied every other node's stream to the same
   * version vector with equal row digests, then checks the accounts read the
   * same everywhere.
   */
  async waitConverged(accounts: readonly string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    for (;;) {
      const statuses = await Promise.all(this.regions.map((r) => this.status(r.name).catch(() => undefined)));
      if (statuses.every((s) => s !== undefined)) {
        const all = statuses.filter((s): s is ClusterStatusResponse => s !== undefined);
        const agree = all.every((s) => s.peers.length === REGIONS.length) && convergedEverywhere(all);
        last = JSON.stringify(statuses.map((s) => s.peers.map((p) => [p.region, String(p.appliedSequence), p.digest, String(p.pending)])));
        if (agree) break;
      }
      if (Date.now() > deadline) throw new Error(`cluster did not converge in ${timeoutMs} ms: ${last}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const account of accounts) {
      const views = await Promise.all(this.regions.map((r) => this.balance(r.name, account)));
      const balances = views.map((v) => v.balance);
      expect(new Set(balances).size, `balances of ${account} differ: ${balances.join(",")}`).to.equal(1);
    }
  }

  async stop(): Promise<void> {
    for (const r of this.regions) r.clients.close();
    await this.local.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
