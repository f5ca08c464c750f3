// Several `tally serve --standby` processes of one region (DESIGN §12) over a
// real nats-server: a writer frozen past its lease is deposed when it resumes
// (the standby took over and fenced) and exits 75, printing why, rather than
// serving on with a memory that may hold refused decisions; started again it
// stands by: it serves the new writer's state and refuses writes.

import { rmSync } from "node:fs";
import { expect } from "chai";
import { status } from "@grpc/grpc-js";
import { freePorts } from "../../src/devcluster/free-port";
import { NodeProcess } from "../../src/devcluster/node-process";
import { EXIT_DEPOSED } from "../../src/cli/serve-command";
import { clients, failure, unary, type Clients, testPki } from "../support/grpc-clients";
import { tempDir, useStandaloneNats, natsAccess } from "../support/nats";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Polls an async condition until it holds (never a fixed sleep). */
async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("deposed writer - several serve --standby processes of one region", function () {
  this.timeout(120_000);
  let dir: string;
  const nodes: NodeProcess[] = [];
  const open: Clients[] = [];

  before(() => {
    dir = tempDir("deposed");
  });

  // Registered before the nats-server's own hook, so the nodes stop (and give the lease up) while it still runs.
  after(async () => {
    for (const c of open) c.close();
    for (const n of nodes) await n.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const nats = useStandaloneNats();

  const standbyNode = async (name: string): Promise<NodeProcess> => {
    const [grpcPort, metricsPort] = await freePorts(2);
    const node = new NodeProcess({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcPort: grpcPort!,
      metricsPort: metricsPort!,
      logDir: join(dir, name),
      extraArgs: [...testPki().serverArgs(), "--standby", "--lease-ttl-ms", "1500", "--standby-poll-ms", "20", "--snapshot-interval-ms", "0"],
      env: { TALLY_LOG: "warn" },
    });
    nodes.push(node);
    await node.start();
    return node;
  };
  const clientOf = (node: NodeProcess): Clients => {
    const c = clients(node.grpcAddress);
    open.push(c);
    return c;
  };
  /** Grants at `c` until one is acknowledged (the node writes). */
  const grantWhenWriting = async (c: Clients, requestId: string, amount: bigint): Promise<void> => {
    await until(`${requestId} acknowledged`, async () => {
      try {
        await unary(c.balances, c.balances.grant, { accountId: "ha-1", amount, requestId });
        return true;
      } catch {
        return false;
      }
    }, 30_000);
  };

  it("deposed writer - frozen past its lease, it exits 75 on resuming; started again it stands by and refuses writes", async () => {
    const a = await standbyNode("a");
    const ca = clientOf(a);
    await grantWhenWriting(ca, "ha-g1", 100n);
    const b = await standbyNode("b");
    const cb = clientOf(b);
    const refused = await failure(unary(cb.balances, cb.balances.grant, { accountId: "ha-1", amount: 1n, requestId: "ha-at-standby" }));
    expect(refused.code, refused.details).to.equal(status.UNAVAILABLE);

    // Freeze the writer past its lease: the standby takes the lease, replays and fences.
    process.kill(a.pid!, "SIGSTOP");
    try {
      await grantWhenWriting(cb, "ha-g2", 10n);
    } finally {
      process.kill(a.pid!, "SIGCONT");
    }
    // Resumed, the old writer finds its lease gone (or its next append refused) and exits.
    const code = await Promise.race([a.exited(), new Promise<string>((r) => setTimeout(() => r("still running after 20 s"), 20_000).unref())]);
    expect(code).to.equal(EXIT_DEPOSED);
    const logged = readFileSync(join(dir, "a", "node-east.log"), "utf8");
    expect(logged).to.match(/"event":"deposed"/);

    // Started again, it stands by: reads show the new writer's grant, writes are refused.
    const again = await standbyNode("a-again");
    const cAgain = clientOf(again);
    await until("the restarted node reads the new writer's grant", async () => (await unary(cAgain.balances, cAgain.balances.getBalance, { accountId: "ha-1" })).balance === 110n, 20_000);
    const write = await failure(unary(cAgain.balances, cAgain.balances.grant, { accountId: "ha-1", amount: 1n, requestId: "ha-at-restarted" }));
    expect(write.code, write.details).to.equal(status.UNAVAILABLE);
    // Status says who writes: b, as b and the restarted standby both see it.
    const atWriter = await unary(cb.admin, cb.admin.clusterStatus, {});
    expect(atWriter.writerRole).to.equal("writer");
    expect(atWriter.writesRefused).to.equal("");
    // The standby learns the holder at its next look at the lease (every --standby-poll-ms; a look can time out on a busy machine).
    await until("the restarted standby names the lease holder", async () => (await unary(cAgain.admin, cAgain.admin.clusterStatus, {})).leaseHolder !== "", 20_000);
    const atStandby = await unary(cAgain.admin, cAgain.admin.clusterStatus, {});
    expect(atStandby.writerRole).to.equal("standby");
    expect(atStandby.leaseHolder).to.equal(atWriter.leaseHolder);
    expect(atStandby.writesRefused).to.match(/^standby/);
    // The writer is still b, and the retry of the first grant replays there.
    const retry = await unary(cb.balances, cb.balances.grant, { accountId: "ha-1", amount: 100n, requestId: "ha-g1" });
    expect(retry.replayed).to.equal(true);
    expect((await unary(cb.balances, cb.balances.getBalance, { accountId: "ha-1" })).balance).to.equal(110n);
  });
});
