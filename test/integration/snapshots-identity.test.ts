// A node started with the regions in another order than the cluster's must
// refuse to start, naming both lists, and `tally serve` must exit non-zero
// with that message at once (no connection left open). Real nats-server, a
// cluster of two in-process nodes written as east,west,central, and `tally
// serve` as a separate process.

import { expect } from "chai";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess, natsUser } from "../support/nats";
import { repoRoot } from "../support/repo-root";
import { testGrpcSecurity, testPki } from "../support/grpc-clients";

const CLI = join(repoRoot(), "dist", "src", "cli", "main.js");
const REGIONS = ["east", "west", "central"];

interface Exit {
  readonly code: number | null;
  readonly stderr: string;
  /** Ms from the refusal's line on stderr to the process's exit. */
  readonly exitAfterMessageMs: number;
}

function serve(args: readonly string[]): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "serve", ...testPki().serverArgs(), ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TALLY_LOG: "error" } });
    let stderr = "";
    let messageAt: number | undefined;
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      if (messageAt === undefined && stderr.includes("refuses to start")) messageAt = performance.now();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stderr, exitAfterMessageMs: performance.now() - (messageAt ?? performance.now()) }));
  });
}

describe("snapshots - region list checked against the streams at start", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();
  const running: RunningNode[] = [];

  const start = async (region: string): Promise<RunningNode> => {
    const node = await runNode({
      region,
      regions: REGIONS,
      ...natsAccess(nats(), region),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger(region, "error"),
      config: { snapshotIntervalMs: 0, catchUpTimeoutMs: 500 },
    });
    running.push(node);
    return node;
  };

  before(async () => {
    const east = await start("east");
    const west = await start("west");
    await east.node.grant("a", 100n, "g-east");
    await west.node.grant("b", 100n, "g-west");
    await west.node.takeSnapshot();
    await west.node.grant("b", 1n, "g-west-2");
    // west stops; east keeps running.
    await west.stop();
    running.splice(running.indexOf(west), 1);
  });
  after(async () => {
    for (const node of running) await node.stop();
  });

  const args = (region: string): string[] => ["--region", region, "--regions", "west,east,central", ...nats().nodeFlags(natsUser(region)), "--grpc", "127.0.0.1:0", "--metrics-port", "0"];

  it("snapshots - a restarted west listing west,east,central exits 1 naming both lists", async () => {
    const result = await serve(args("west"));
    expect(result.code).to.equal(1);
    expect(result.stderr).to.contain("region west refuses to start");
    expect(result.stderr).to.contain("[east,west,central]").and.contain("[west,east,central]");
    expect(result.stderr).to.not.contain('"event":"ready"');
    expect(result.exitAfterMessageMs).to.be.below(5_000);
  });

  it("snapshots - a new central listing west,east,central refuses on the peers' streams", async () => {
    const result = await serve(args("central"));
    expect(result.code).to.equal(1);
    expect(result.stderr).to.contain("region central refuses to start").and.match(/the last message of (east|west)'s stream/);
    expect(result.stderr).to.contain("[east,west,central]").and.contain("[west,east,central]");
    expect(result.exitAfterMessageMs).to.be.below(5_000);
  });
});
