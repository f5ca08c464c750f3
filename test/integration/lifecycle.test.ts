// Starting and stopping around NATS outages: a node that cannot reach NATS at
// start says where it tried; a node stops on SIGTERM even when its nats-server
// is gone (draining the connection waits for a server, so a stop during an
// outage must not hang and leave the orchestrator to kill it).

import { expect } from "chai";
import { rmSync } from "node:fs";
import { freePorts } from "../../src/devcluster/free-port";
import { NodeProcess } from "../../src/devcluster/node-process";
import { runNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { startStandaloneNats, tempDir } from "../support/nats";

/** Resolves with the ms until `pid` exited, or undefined if it still runs after `limitMs`. */
async function exitWithin(pid: number, limitMs: number): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    try {
      process.kill(pid, 0);
    } catch {
      return Date.now() - started;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return undefined;
}

describe("lifecycle", function () {
  this.timeout(60_000);

  it("lifecycle - no NATS at start: the error names the address tried", async () => {
    const [unused] = await freePorts(1);
    const url = `nats://127.0.0.1:${unused!}`;
    let error: unknown;
    try {
      await runNode({ region: "east", regions: ["east"], natsUrl: url, grpcAddress: "127.0.0.1:0", logger: jsonLogger("east", "error") });
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.include(`cannot connect to NATS at ${url}`);
  });

  it("lifecycle - a node whose nats-server was killed still stops on SIGTERM", async () => {
    const dir = tempDir("shutdown");
    const nats = await startStandaloneNats(dir);
    const [grpcPort, metricsPort] = await freePorts(2);
    const node = new NodeProcess({ region: "east", regions: ["east"], natsUrl: nats.url, grpcPort: grpcPort!, metricsPort: metricsPort!, logDir: dir });
    try {
      await node.start();
      const pid = node.pid;
      expect(pid).to.be.a("number");
      await nats.kill();
      await new Promise((r) => setTimeout(r, 1_000)); // the client is now reconnecting
      process.kill(pid!, "SIGTERM");
      // Generous: the bound is the drain timeout (3 s) plus the gRPC shutdown (at most 5 s).
      const exitedAfterMs = await exitWithin(pid!, 20_000);
      expect(exitedAfterMs, "node still running 20 s after SIGTERM").to.not.equal(undefined);
    } finally {
      await node.kill();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
