// A region of three NATS servers (deploy/nats/region.conf, TLS and per-region
// credentials) with R3 streams and two nodes under the writer lease (DESIGN
// §12). Under continuous debits, the server leading the region's stream is
// killed -9; the region keeps writing on the other two; then the writer node
// stops while that server is still down, and the standby takes over on the
// remaining two. Every debit whose answer was lost is retried with its request
// id; the stream then holds each approved debit once and the balance is exact.

import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import { rmSync } from "node:fs";
import { runNode, type RunningNode, type RunNodeOptions } from "../../src/app/run-node";
import { ReplicaSet } from "../../src/core/replica-set";
import { DebitOutcome } from "../../src/core/replica-state";
import type { NatsProcess } from "../../src/devcluster/nats-process";
import { jsonLogger } from "../../src/node/logger";
import { natsSecureOptions } from "../../src/security/nats-connection-options";
import { decodeDeltaOrThrow } from "../../src/replication/delta-codec";
import { ReplicaLog, StreamReplicasError } from "../../src/replication/jetstream-log";
import { testGrpcSecurity } from "../support/grpc-clients";
import { startRegionNats, tempDir } from "../support/nats";
import { until } from "../unit/support/conditions";

const REGIONS = ["east", "west"];
const ACCOUNT = "acct-r3";
const FUNDS = 1_000_000n;

function nodeOptions(servers: readonly NatsProcess[], name: string, streamReplicas: number): RunNodeOptions {
  const security = servers[0]!.clientSecurity("east");
  return {
    region: "east",
    regions: REGIONS,
    // Every server of the region: the client moves to another when its server dies.
    natsUrl: servers.map((s) => s.url).join(","),
    ...(security === undefined ? {} : { natsSecurity: security }),
    streamReplicas,
    grpcAddress: "127.0.0.1:0",
    grpcSecurity: testGrpcSecurity(),
    logger: jsonLogger(`east-${name}`, process.env["R3_LOG"] === "1" ? "info" : "error"),
    config: {
      catchUpTimeoutMs: 500,
      snapshotIntervalMs: 0,
      writerLease: { ttlMs: 3_000, renewAfterMs: 600, marginMs: 600 },
      standbyPollMs: 50,
    },
  };
}

/** An ops connection to whichever of the servers are up. */
async function opsConnection(servers: readonly NatsProcess[]): Promise<NatsConnection> {
  const security = servers[0]!.clientSecurity("ops");
  return connect({
    servers: servers.filter((s) => s.running).map((s) => s.url),
    ...(security === undefined ? {} : natsSecureOptions(security, "ops")),
  });
}

interface StreamView {
  readonly replicas: number;
  readonly leader: string | undefined;
  /** Followers the leader sees as current. */
  readonly currentFollowers: number;
}

async function streamView(servers: readonly NatsProcess[], name: string): Promise<StreamView> {
  const nc = await opsConnection(servers);
  try {
    const info = await (await nc.jetstreamManager()).streams.info(name);
    return {
      replicas: info.config.num_replicas,
      leader: info.cluster?.leader,
      currentFollowers: (info.cluster?.replicas ?? []).filter((r) => r.current).length,
    };
  } finally {
    await nc.close();
  }
}

async function approvedIdsInStream(servers: readonly NatsProcess[]): Promise<string[]> {
  const log = await ReplicaLog.over(await opsConnection(servers), { placeByRegion: false });
  const ids: string[] = [];
  try {
    await log.replay("east", 1, (m) => ids.push(...decodeDeltaOrThrow(new ReplicaSet(REGIONS), m.data, "east").requests.map((r) => r.requestId)));
  } finally {
    await log.close();
  }
  return ids;
}

describe("region of three NATS servers - R3 streams and a standby (real nats-servers)", function () {
  this.timeout(240_000);
  let dir: string;
  let servers: NatsProcess[] = [];
  const running: RunningNode[] = [];

  beforeEach(async function () {
    this.timeout(90_000);
    dir = tempDir("r3");
    servers = await startRegionNats(dir, "east", 3);
  });
  afterEach(async function () {
    this.timeout(60_000);
    for (const r of running.splice(0)) await r.stop().catch(() => undefined);
    await Promise.all(servers.map((s) => s.stop()));
    if (process.env["R3_LOG"] === "1") console.log(`      kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });

  it("region r3 - a raised --stream-replicas is applied to the existing stream, snapshot bucket and writer lease at the next start", async () => {
    const first = await runNode(nodeOptions(servers, "a", 1));
    running.push(first);
    await until(() => first.node.writing, "node a writes", 30_000);
    await first.node.grant(ACCOUNT, 5n, "g-1");
    for (const name of ["TALLY_EAST", "OBJ_TALLY_SNAP_EAST", "KV_TALLY_LEASE_EAST"]) expect((await streamView(servers, name)).replicas, name).to.equal(1);
    await first.stop();
    running.pop();

    const again = await runNode(nodeOptions(servers, "a", 3));
    running.push(again);
    await until(() => again.node.writing, "node a writes again", 30_000);
    for (const name of ["TALLY_EAST", "OBJ_TALLY_SNAP_EAST", "KV_TALLY_LEASE_EAST"]) expect((await streamView(servers, name)).replicas, name).to.equal(3);
    // Nothing was lost by the change: the grant is still there, and a retry of it is answered from the record.
    expect(again.node.state.balance(ACCOUNT)).to.equal(5n);
    expect((await again.node.grant(ACCOUNT, 5n, "g-1")).replayed).to.equal(true);
  });

  it("region r3 - more copies than servers (--stream-replicas 5 on 3) stops the start at once, naming the option; nothing is created", async () => {
    let refused: unknown;
    await runNode(nodeOptions(servers, "a", 5)).then(
      (node) => running.push(node),
      (error: unknown) => (refused = error),
    );
    expect(refused).to.be.instanceOf(StreamReplicasError);
    expect(String(refused)).to.match(/--stream-replicas 5 \(TALLY_STREAM_REPLICAS\): JetStream cannot keep 5 copies of TALLY_EAST/);
    const nc = await opsConnection(servers);
    try {
      const names: string[] = [];
      for await (const name of (await nc.jetstreamManager()).streams.names()) names.push(name);
      expect(names.filter((n) => n.endsWith("_EAST")), `streams: ${names.join(", ")}`).to.deep.equal([]);
    } finally {
      await nc.close();
    }
  });

  it("region r3 - the stream leader's server killed -9 under load, then the writer node stopped: the standby writes on two servers; every approved debit once, exact balance", async () => {
    const a = await runNode(nodeOptions(servers, "a", 3));
    running.push(a);
    await until(() => a.node.writing, "node a writes", 30_000);
    const b = await runNode(nodeOptions(servers, "b", 3));
    running.push(b);
    await a.node.grant(ACCOUNT, FUNDS, "g-funds");
    await until(() => b.node.state.balance(ACCOUNT) === FUNDS, "standby b follows the grant", 15_000);

    const writer = (): RunningNode | undefined => [a, b].find((n) => running.includes(n) && n.node.writing);
    const approved = new Set<string>();
    const refused = new Set<string>();
    const unknown = new Set<string>();
    let stop = false;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stop && next < 20_000) {
        const node = writer();
        if (node === undefined) {
          // No node writes (between the writer's end and the takeover): nothing is sent.
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const requestId = `d-${next++}`;
        try {
          const decision = await node.node.debit({ accountId: ACCOUNT, amount: 1n, requestId }, 0);
          if (decision.answer.outcome === DebitOutcome.Approved) approved.add(requestId);
          else refused.add(requestId);
        } catch {
          // Unavailable, a commit that failed or timed out: the outcome is unknown until retried.
          unknown.add(requestId);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const load = Promise.all([worker(), worker(), worker(), worker()]);
    try {
      await until(() => approved.size >= 100, "100 approvals before the fault", 30_000);
      const leader = (await streamView(servers, "TALLY_EAST")).leader;
      const victim = servers.find((s) => s.options.serverName === leader);
      expect(victim, `stream leader ${String(leader)} is one of the region's servers`).to.not.equal(undefined);
      await victim!.kill();
      const atKill = approved.size;
      await until(() => approved.size >= atKill + 200, "200 approvals with the stream leader's server dead", 60_000);

      // The writer goes while that server is still down: the standby takes the lease and fences on two servers.
      await a.stop();
      running.splice(running.indexOf(a), 1);
      await until(() => b.node.writing, "standby b takes over", 30_000);
      const atTakeover = approved.size;
      await until(() => approved.size >= atTakeover + 200, "200 approvals by b", 60_000);

      await victim!.start();
      const afterRestart = approved.size;
      await until(() => approved.size >= afterRestart + 100, "100 approvals after the server's restart", 60_000);
    } finally {
      stop = true;
      await load;
    }

    // Each unknown outcome resolved by retrying its request id at the writer: applied once or not at all.
    for (const requestId of unknown) {
      const decision = await b.node.debit({ accountId: ACCOUNT, amount: 1n, requestId }, 0);
      if (decision.answer.outcome === DebitOutcome.Approved) approved.add(requestId);
      else refused.add(requestId);
    }
    expect(refused.size, "nothing refused: the account holds far more than the load").to.equal(0);
    expect(b.node.state.balance(ACCOUNT)).to.equal(FUNDS - BigInt(approved.size));

    // The restarted server catches up: all three copies current again.
    for (const deadline = Date.now() + 60_000; (await streamView(servers, "TALLY_EAST")).currentFollowers < 2; ) {
      if (Date.now() > deadline) throw new Error("timed out waiting for both followers of TALLY_EAST to be current");
      await new Promise((r) => setTimeout(r, 100));
    }
    const ids = await approvedIdsInStream(servers);
    const counts = new Map<string, number>();
    for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
    expect([...counts].filter(([, n]) => n > 1), "request ids in the stream more than once").to.deep.equal([]);
    expect([...approved].filter((id) => counts.get(id) !== 1), "approved debits missing from the stream").to.deep.equal([]);
    expect(ids.filter((id) => id.startsWith("d-")).length, "debits in the stream").to.equal(approved.size);
    console.log(`      ${approved.size} debits approved, ${unknown.size} unknown outcomes resolved by retry; stream ${ids.length} requests, R${(await streamView(servers, "TALLY_EAST")).replicas}`);
  });
});
