// Grants spread by policy: with --spread-grants a grant's rights are split
// evenly over the regions in the same durable commit.

import { expect } from "chai";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { testGrpcSecurity } from "../support/grpc-clients";

describe("grant spreading - rights of a grant split over regions", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  const nodes: RunningNode[] = [];
  after(async () => {
    for (const n of nodes) await n.stop();
  });

  it("grant spreading - each region holds its share as soon as the grant replicates", async () => {
    for (const region of ["east", "west"]) {
      nodes.push(
        await runNode({
          region,
          regions: ["east", "west"],
          ...natsAccess(nats(), region),
          grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
          logger: jsonLogger(region, "error"),
          config: { spreadGrants: true, catchUpTimeoutMs: 1_000 },
        }),
      );
    }
    const [east, west] = nodes as [RunningNode, RunningNode];
    const decision = await east.node.grant("spread", 101n, "spread-g");
    expect(decision.answer.balance).to.equal(101n);
    expect(decision.answer.localRights).to.equal(51n);
    const deadline = Date.now() + 5_000;
    while (west.node.state.rights("spread") !== 50n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(west.node.state.rights("spread")).to.equal(50n);
    expect(west.node.state.balance("spread")).to.equal(101n);
  });
});
