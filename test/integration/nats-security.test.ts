// NATS security on a real 3-region supercluster (TLS on client, route and
// gateway links; a nkey per node; per-region permissions from
// deploy/nats/auth.conf): a node's credentials cannot write into, purge or
// delete what belongs to another region, nor forge a reply into another
// client's inbox. Each refusal is seen by the client, logged by nats-server
// and changes nothing.

import { testGrpcSecurity } from "../support/grpc-clients";
import { expect } from "chai";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AckPolicy, connect, ErrorCode, NatsError, type NatsConnection } from "nats";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { streamName } from "../../src/replication/subjects";
import { freePorts } from "../../src/devcluster/free-port";
import { NatsProcess } from "../../src/devcluster/nats-process";
import { natsAccess, natsConnectOptions, tempDir, useSupercluster } from "../support/nats";

const REGIONS = ["east", "west", "central"];

async function refusal(attempt: Promise<unknown>): Promise<NatsError> {
  try {
    await attempt;
  } catch (error) {
    if (error instanceof NatsError) return error;
    throw error;
  }
  throw new Error("expected a refusal, the operation succeeded");
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("nats security - TLS, a nkey per node and per-region permissions", function () {
  this.timeout(120_000);
  const supercluster = useSupercluster();
  const nodes: RunningNode[] = [];
  const clients: NatsConnection[] = [];
  let ops: NatsConnection;
  let west: NatsConnection;

  const serverLog = (region: string): string => readFileSync(join(supercluster().dir, `nats-${region}`, "nats-server.log"), "utf8");
  const regionNats = (region: string) => supercluster().cluster.region(region).nats;

  before(async () => {
    for (const region of ["east", "west"]) {
      nodes.push(
        await runNode({
          region,
          regions: REGIONS,
          ...natsAccess(regionNats(region), region),
          grpcAddress: "127.0.0.1:0",
          grpcSecurity: testGrpcSecurity(),
          logger: jsonLogger(region, "error"),
          placeStreamsByRegion: true,
          config: { catchUpTimeoutMs: 500, snapshotIntervalMs: 0 },
        }),
      );
    }
    await nodes[0]!.node.grant("acct-1", 100n, "grant-1");
    ops = await connect(natsConnectOptions(regionNats("east"), "ops"));
    // A client holding west's node credentials, connected to west's server.
    west = await connect(natsConnectOptions(regionNats("west"), "west"));
    clients.push(ops, west);
  });

  after(async () => {
    for (const c of clients) await c.close();
    for (const n of nodes) await n.stop();
  });

  it("nats security - west's credentials cannot append to east's stream; the server logs the violation", async () => {
    const jsm = await ops.jetstreamManager();
    const before = (await jsm.streams.info(streamName("east"))).state;
    const error = await refusal(west.jetstream({ timeout: 5_000 }).publish("tally.delta.east", new Uint8Array([1, 2, 3])));
    expect(error.code).to.equal(ErrorCode.PermissionsViolation);
    expect(error.message).to.contain("tally.delta.east");
    const after = (await jsm.streams.info(streamName("east"))).state;
    expect(after.last_seq).to.equal(before.last_seq);
    expect(after.messages).to.equal(before.messages);
    await until("west's server to log the publish violation", () => /Publish Violation.*"tally\.delta\.east"/.test(serverLog("west")));
  });

  it("nats security - west's credentials cannot purge or delete east's stream", async () => {
    const jsm = await ops.jetstreamManager();
    const before = (await jsm.streams.info(streamName("east"))).state;
    expect(before.messages).to.be.greaterThan(0);
    const westJsm = await west.jetstreamManager();
    const purge = await refusal(westJsm.streams.purge(streamName("east")));
    expect(purge.code).to.equal(ErrorCode.PermissionsViolation);
    const removal = await refusal(westJsm.streams.delete(streamName("east")));
    expect(removal.code).to.equal(ErrorCode.PermissionsViolation);
    const after = (await jsm.streams.info(streamName("east"))).state;
    expect(after.messages).to.equal(before.messages);
    expect(after.first_seq).to.equal(before.first_seq);
    await until("the purge violation in west's server log", () => /Publish Violation.*"\$JS\.API\.STREAM\.PURGE\.TALLY_EAST"/.test(serverLog("west")));
    await until("the delete violation in west's server log", () => /Publish Violation.*"\$JS\.API\.STREAM\.DELETE\.TALLY_EAST"/.test(serverLog("west")));
  });

  it("nats security - west's credentials cannot delete consumers on east's stream", async () => {
    const jsm = await ops.jetstreamManager();
    // West's own node follows east's stream with an ordered consumer; an
    // operator's durable consumer stands for any other reader.
    await jsm.consumers.add(streamName("east"), { durable_name: "audit-reader", ack_policy: AckPolicy.Explicit });
    const names = async (): Promise<string[]> => (await jsm.consumers.list(streamName("east")).next()).map((c) => c.name);
    await until("a consumer of west's node on east's stream", async () => (await names()).length >= 2);
    const westJsm = await west.jetstreamManager();
    for (const name of await names()) {
      const error = await refusal(westJsm.consumers.delete(streamName("east"), name));
      expect(error.code, name).to.equal(ErrorCode.PermissionsViolation);
    }
    expect(await names()).to.include("audit-reader");
    await until("the consumer delete violation in west's server log", () =>
      /Publish Violation.*"\$JS\.API\.CONSUMER\.DELETE\.TALLY_EAST\.audit-reader"/.test(serverLog("west")),
    );
  });

  it("nats security - west's credentials cannot publish east's status nor write east's snapshot bucket", async () => {
    for (const subject of ["tally.status.east", "$O.TALLY_SNAP_EAST.M.forged"]) {
      west.publish(subject, new Uint8Array([9]));
    }
    await west.flush();
    await until("both violations in west's server log", () => {
      const log = serverLog("west");
      return log.includes('"tally.status.east"') && log.includes('"$O.TALLY_SNAP_EAST.M.forged"');
    });
    const jsm = await ops.jetstreamManager();
    const bucket = await jsm.streams.info("OBJ_TALLY_SNAP_EAST");
    const forged = await jsm.streams.getMessage("OBJ_TALLY_SNAP_EAST", { last_by_subj: "$O.TALLY_SNAP_EAST.M.forged" }).then(
      () => true,
      () => false,
    );
    expect(forged).to.equal(false);
    expect((await jsm.streams.info("OBJ_TALLY_SNAP_EAST")).state.last_seq).to.equal(bucket.state.last_seq);
  });

  it("nats security - a forged reply into a node's inbox is refused; only the responder's reply arrives", async () => {
    // East (its node's credentials) asks west for rights; west answers; central
    // sees the request on no subject it may read and cannot write into east's inbox.
    const east = await connect(natsConnectOptions(regionNats("east"), "east"));
    const central = await connect(natsConnectOptions(regionNats("central"), "central"));
    const responder = await connect(natsConnectOptions(regionNats("west"), "west"));
    clients.push(east, central, responder);
    const subject = "tally.rights.west.probe";
    const seen: string[] = [];
    responder.subscribe(subject, {
      callback: (_err, m) => {
        seen.push(m.reply ?? "");
        // Forge first, from central, into the very inbox the request named.
        if (m.reply !== undefined) central.publish(m.reply, new TextEncoder().encode("forged"));
        void central.flush().then(() => m.respond(new TextEncoder().encode("genuine")));
      },
    });
    await responder.flush();
    await until("west's subscription across the gateways", async () => {
      const reply = await east.request(subject, new Uint8Array(0), { timeout: 1_000 }).then(
        (m) => new TextDecoder().decode(m.data),
        () => undefined,
      );
      if (reply === undefined) return false;
      expect(reply).to.equal("genuine");
      return true;
    });
    expect(seen.length).to.be.greaterThan(0);
    expect(seen.every((reply) => reply.startsWith("_INBOX.east."))).to.equal(true);
    await until("the forged reply's violation in central's server log", () => /Publish Violation.*"_INBOX\.east\./.test(serverLog("central")));
    // Nor may central listen on east's inbox.
    central.subscribe("_INBOX.east.>");
    await central.flush().catch(() => undefined);
    await until("the subscription violation in central's server log", () => /Subscription Violation.*"_INBOX\.east\.>"/.test(serverLog("central")));
  });

  it("nats security - west's credentials cannot create central's stream or bucket; central's node makes them and the others follow", async () => {
    const jsm = await ops.jetstreamManager();
    // East and west started without central's node: neither made its stream or bucket.
    expect(await jsm.streams.info(streamName("central")).then(() => "exists", () => "absent")).to.equal("absent");
    expect(await jsm.streams.info("OBJ_TALLY_SNAP_CENTRAL").then(() => "exists", () => "absent")).to.equal("absent");
    const westJsm = await west.jetstreamManager();
    const stream = await refusal(westJsm.streams.add({ name: streamName("central"), subjects: ["tally.delta.central"] }));
    expect(stream.code).to.equal(ErrorCode.PermissionsViolation);
    const bucket = await refusal(westJsm.streams.add({ name: "OBJ_TALLY_SNAP_CENTRAL", subjects: ["$O.TALLY_SNAP_CENTRAL.C.>"] }));
    expect(bucket.code).to.equal(ErrorCode.PermissionsViolation);
    expect(await jsm.streams.info(streamName("central")).then(() => "exists", () => "absent")).to.equal("absent");
    await until("the create violation in west's server log", () => /Publish Violation.*"\$JS\.API\.STREAM\.CREATE\.TALLY_CENTRAL"/.test(serverLog("west")));
    // Central's node creates its own; east's node, already running, follows it.
    const central = await runNode({
      region: "central",
      regions: REGIONS,
      ...natsAccess(regionNats("central"), "central"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("central", "error"),
      placeStreamsByRegion: true,
      config: { catchUpTimeoutMs: 500, snapshotIntervalMs: 0 },
    });
    nodes.push(central);
    await central.node.grant("acct-central", 7n, "grant-central-1");
    await until("east to see central's grant", () => nodes[0]!.node.state.balance("acct-central") === 7n, 30_000);
  });

  it("nats security - a client without credentials, or not trusting the local CA, is refused", async () => {
    const nats = regionNats("east");
    const anonymous = await refusal(connect({ servers: nats.url, tls: { caFile: nats.clientSecurity("ops")!.caFile }, reconnect: false }));
    expect(anonymous.code).to.equal(ErrorCode.AuthorizationViolation);
    const plain = await connect({ servers: nats.url, reconnect: false }).then(
      async (c) => {
        await c.close();
        return "connected";
      },
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    expect(plain).to.not.equal("connected");
  });
});

describe("nats security - --insecure is for experiments and says so", function () {
  this.timeout(60_000);
  let nats: NatsProcess | undefined;
  let dir: string | undefined;
  after(async () => {
    await nats?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("nats security - a node without NATS credentials (the insecure server) logs a warning at start", async () => {
    dir = tempDir("insecure");
    const [client, monitor] = await freePorts(2);
    nats = new NatsProcess({ config: "standalone.conf", serverName: "insecure", clientPort: client!, monitorPort: monitor!, dataDir: join(dir, "nats") });
    await nats.start();
    const lines: string[] = [];
    const node = await runNode({ region: "east", regions: ["east"], natsUrl: nats.url, grpcAddress: "127.0.0.1:0",
          grpcSecurity: testGrpcSecurity(), logger: jsonLogger("east", "warn", (l) => lines.push(l)) });
    await node.stop();
    const warnings = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === "warn" && l.msg.startsWith("insecure"));
    expect(warnings.map((w) => w.msg)).to.deep.equal(["insecure: NATS connection without TLS or credentials (--insecure); for local experiments only"]);
  });
});
