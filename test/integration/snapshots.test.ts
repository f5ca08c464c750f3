// Snapshots bound recovery: a node restarts from its snapshot plus the tail of
// its stream, and a peer whose stream was purged catches up from the
// writer's snapshot. Real nats-server, in-process nodes.

import { expect } from "chai";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { testGrpcSecurity } from "../support/grpc-clients";

const REGIONS = ["east", "west"];

describe("snapshots - bounded recovery and purged streams", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  const running: RunningNode[] = [];

  const start = async (region: string): Promise<RunningNode> => {
    const node = await runNode({
      region,
      regions: REGIONS,
      ...natsAccess(nats(), region),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger(region, "error"),
      // Purge everything a snapshot covers, so peers must use snapshots.
      config: { snapshotIntervalMs: 0, maxRetainedMessages: 0, catchUpTimeoutMs: 3_000 },
    });
    running.push(node);
    return node;
  };
  const stop = async (node: RunningNode): Promise<void> => {
    await node.stop();
    running.splice(running.indexOf(node), 1);
  };
  after(async () => {
    for (const node of [...running]) await node.stop();
  });

  it("snapshots - a node restarts from snapshot plus stream tail with every change and request id", async () => {
    let east = await start("east").catch((e: unknown) => { console.error("START FAILED", e); throw e; });
    for (let i = 0; i < 50; i++) await east.node.grant(`s-${i % 5}`, 100n, `sg-${i}`);
    await east.node.debit({ accountId: "s-0", amount: 30n, requestId: "sd-0" }, 0);
    const header = await east.node.takeSnapshot();
    expect(Number(header.accounts)).to.equal(5);
    // Changes after the snapshot live only in the stream tail.
    await east.node.debit({ accountId: "s-1", amount: 7n, requestId: "sd-1" }, 0);
    await stop(east);
    east = await start("east");
    expect(east.node.state.balance("s-0")).to.equal(970n);
    expect(east.node.state.balance("s-1")).to.equal(993n);
    const retried = await east.node.debit({ accountId: "s-0", amount: 30n, requestId: "sd-0" }, 0);
    expect(retried.replayed).to.equal(true);
    expect(east.node.state.balance("s-0")).to.equal(970n);
    await stop(east);
  });

  it("snapshots - a peer whose missing messages were purged catches up from the writer's snapshot", async () => {
    const east = await start("east");
    let west = await start("west");
    await east.node.grant("gap", 1_000n, "gap-g1");
    await west.node.takeSnapshot();
    await stop(west);
    // While west is down, east writes, snapshots and purges everything covered.
    for (let i = 0; i < 20; i++) await east.node.debit({ accountId: "gap", amount: 5n, requestId: `gap-d${i}` }, 0);
    await east.node.takeSnapshot();
    await east.node.grant("gap", 1n, "gap-g2"); // one message after the snapshot
    west = await start("west");
    const deadline = Date.now() + 10_000;
    while (west.node.state.balance("gap") !== 901n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(west.node.state.balance("gap")).to.equal(901n);
    expect(west.node.state.rowDigest(0)).to.equal(east.node.state.rowDigest(0));
  });
});
