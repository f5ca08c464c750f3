// Two nodes of one region started with a writer lease (`--standby`, DESIGN
// §12) over a real nats-server, with the region's own NATS credentials: one
// writes, the other follows the own stream and serves reads; when the writer
// stops, the standby replays, fences and writes, answering a retry of an
// acknowledged call from the record.

import { expect } from "chai";
import { connect } from "nats";
import { runNode, type RunningNode, type RunNodeOptions } from "../../src/app/run-node";
import { ReplicaSet } from "../../src/core/replica-set";
import { DebitOutcome } from "../../src/core/replica-state";
import { jsonLogger } from "../../src/node/logger";
import { NodeUnavailableError } from "../../src/node/node-errors";
import { decodeDeltaOrThrow, type DecodedDelta } from "../../src/replication/delta-codec";
import { ReplicaLog } from "../../src/replication/jetstream-log";
import { until } from "../unit/support/conditions";
import { testGrpcSecurity } from "../support/grpc-clients";
import { natsAccess, natsConnectOptions, useStandaloneNats } from "../support/nats";
import type { NatsProcess } from "../../src/devcluster/nats-process";

const REGIONS = ["east", "west"];
const ACCOUNT = "acct-ha";

function nodeOptions(server: NatsProcess, name: string): RunNodeOptions {
  return {
    region: "east",
    regions: REGIONS,
    ...natsAccess(server, "east"),
    grpcAddress: "127.0.0.1:0",
    metricsPort: 0,
    grpcSecurity: testGrpcSecurity(),
    logger: jsonLogger(`east-${name}`, "error"),
    config: {
      catchUpTimeoutMs: 500,
      snapshotIntervalMs: 0,
      writerLease: { ttlMs: 1_500, renewAfterMs: 300, marginMs: 300 },
      standbyPollMs: 20,
    },
  };
}

async function ownStream(server: NatsProcess): Promise<DecodedDelta[]> {
  const log = await ReplicaLog.over(await connect(natsConnectOptions(server)), { placeByRegion: false });
  const deltas: DecodedDelta[] = [];
  await log.replay("east", 1, (m) => deltas.push(decodeDeltaOrThrow(new ReplicaSet(REGIONS), m.data, "east")));
  await log.close();
  return deltas;
}

/** An HTTP probe of a node's metrics port, as the kubelet sends it: status code and body. */
async function probe(node: RunningNode, path: string): Promise<{ code: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${String(node.metricsPort)}${path}`);
  return { code: response.status, body: await response.text() };
}

function isFence(d: DecodedDelta): boolean {
  return d.slots.length === 0 && d.requests.length === 0 && d.policies.length === 0;
}

describe("standby node - several nodes of one region (real nats-server)", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();

  function options(name: string): RunNodeOptions {
    return nodeOptions(nats(), name);
  }

  it("standby node - one writes, the other serves reads and refuses writes; after the writer stops the standby fences and writes", async () => {
    const running: RunningNode[] = [];
    try {
      const a = await runNode(options("a"));
      running.push(a);
      await until(() => a.node.writing, "node a writes", 15_000);
      const b = await runNode(options("b"));
      running.push(b);
      expect(b.node.writing).to.equal(false);
      expect(b.node.writerRole?.kind).to.equal("standby");

      const granted = await a.node.grant(ACCOUNT, 5n, "g-1");
      expect(granted.replayed).to.equal(false);
      // The standby follows the own stream: its reads see the writer's grant.
      await until(() => b.node.state.balance(ACCOUNT) === 5n, "standby b applies a's grant", 10_000);
      let refused: unknown;
      await b.node.debit({ accountId: ACCOUNT, amount: 1n, requestId: "d-b" }, 0).catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(NodeUnavailableError);
      expect(b.node.unavailableReason).to.match(/standby/);
      // The HTTP probes (the kubelet cannot probe the mTLS gRPC port) say the same as gRPC health.
      expect(await probe(a, "/readyz")).to.deep.equal({ code: 200, body: "SERVING\n" });
      expect((await probe(a, "/readyz/writer")).code).to.equal(200);
      const standbyReady = await probe(b, "/readyz");
      expect(standbyReady.code).to.equal(503);
      expect(standbyReady.body).to.match(/^NOT_SERVING: standby/);
      expect((await probe(b, "/readyz/writer")).code).to.equal(503);
      expect(await probe(b, "/livez")).to.deep.equal({ code: 200, body: "ok\n" });
      expect((await probe(b, "/readyz/nothing")).code).to.equal(404);

      // A clean stop gives the lease up: b takes over without waiting out the TTL.
      await a.stop();
      running.shift();
      await until(() => b.node.writing, "standby b takes over", 15_000);
      expect(b.node.writerRole?.kind).to.equal("writer");
      // The probes read the node's state on each request: b is ready as it writes.
      expect((await probe(b, "/readyz/writer")).code).to.equal(200);
      expect((await probe(b, "/readyz")).code).to.equal(200);

      // A client that never got a's answer retries at b: answered from the record, not granted twice.
      const retried = await b.node.grant(ACCOUNT, 5n, "g-1");
      expect(retried.replayed).to.equal(true);
      const debited = await b.node.debit({ accountId: ACCOUNT, amount: 2n, requestId: "d-1" }, 0);
      expect(debited.answer.outcome).to.equal(DebitOutcome.Approved);
      expect(b.node.state.balance(ACCOUNT)).to.equal(3n);

      // The own stream: a's fence, g-1 once, b's fence, d-1.
      const deltas = await ownStream(nats());
      expect(deltas.flatMap((d) => d.requests.map((r) => r.requestId))).to.deep.equal(["g-1", "d-1"]);
      expect(deltas.map(isFence)).to.deep.equal([true, false, true, false]);
    } finally {
      for (const r of running) await r.stop();
    }
  });
});

describe("standby node - a writer that loses its lease (real nats-server)", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();

  it("standby node - when the lease is taken from the writer it stops writing, the standby takes over; `writing` (health tally.writer) follows", async () => {
    const running: RunningNode[] = [];
    try {
      const a = await runNode(nodeOptions(nats(), "a"));
      running.push(a);
      await until(() => a.node.writing, "node a writes", 15_000);
      const b = await runNode(nodeOptions(nats(), "b"));
      running.push(b);
      await a.node.grant(ACCOUNT, 5n, "g-1");

      // As if a's renewals had stopped for longer than the TTL: the key is gone at the server.
      const admin = await connect(natsConnectOptions(nats()));
      const kv = await admin.jetstream().views.kv("TALLY_LEASE_EAST");
      await kv.purge("writer");
      await admin.close();

      // Either a's renewal is refused or b's fence refuses a's next append: a stops writing.
      await until(() => b.node.writing, "standby b takes over", 15_000);
      await until(() => a.node.writerRole?.kind === "deposed", "writer a deposed", 15_000);
      expect(a.node.writing).to.equal(false);
      let refused: unknown;
      await a.node.debit({ accountId: ACCOUNT, amount: 1n, requestId: "d-a" }, 0).catch((error: unknown) => (refused = error));
      expect(refused).to.be.instanceOf(NodeUnavailableError);
      // Reads still work on the deposed node; it no longer snapshots the region.
      expect(a.node.state.balance(ACCOUNT)).to.equal(5n);
      let noSnapshot: unknown;
      await a.node.takeSnapshot().catch((error: unknown) => (noSnapshot = error));
      expect(noSnapshot).to.be.instanceOf(NodeUnavailableError);

      const debited = await b.node.debit({ accountId: ACCOUNT, amount: 2n, requestId: "d-1" }, 0);
      expect(debited.answer.outcome).to.equal(DebitOutcome.Approved);
      const ids = (await ownStream(nats())).flatMap((d) => d.requests.map((r) => r.requestId));
      expect(ids).to.deep.equal(["g-1", "d-1"]);
    } finally {
      for (const r of running) await r.stop();
    }
  });
});
