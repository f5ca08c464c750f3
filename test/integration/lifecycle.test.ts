// Starting and stopping around NATS outages: a node that cannot reach NATS at
// start says where it tried; a node stops on SIGTERM even when its nats-server
// is gone with debits in flight (draining the connection waits for a server,
// so a stop during an outage must not hang and leave the orchestrator to kill
// it), and the calls waiting on commits end UNAVAILABLE, not cancelled.

import { expect } from "chai";
import { rmSync } from "node:fs";
import { freePorts } from "../../src/devcluster/free-port";
import { NodeProcess } from "../../src/devcluster/node-process";
import { runNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { natsAccess, startStandaloneNats, tempDir } from "../support/nats";
import { status, type ServiceError } from "@grpc/grpc-js";
import { clients, unary, testGrpcSecurity, testPki } from "../support/grpc-clients";

async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

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
      await runNode({ region: "east", regions: ["east"], natsUrl: url, grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(), logger: jsonLogger("east", "error") });
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.include(`cannot connect to NATS at ${url}`);
  });

  it("lifecycle - a node whose nats-server was killed -9 under load exits promptly on SIGTERM and its in-flight calls end UNAVAILABLE", async () => {
    const dir = tempDir("shutdown");
    const nats = await startStandaloneNats(dir);
    const [grpcPort, metricsPort] = await freePorts(2);
    const node = new NodeProcess({ region: "east", regions: ["east"], ...natsAccess(nats, "east"), grpcPort: grpcPort!, metricsPort: metricsPort!, logDir: dir, extraArgs: testPki().serverArgs() });
    const c = clients(node.grpcAddress);
    try {
      await node.start();
      const pid = node.pid;
      expect(pid).to.be.a("number");
      await unary(c.balances, c.balances.grant, { accountId: "down-1", amount: 1_000_000n, requestId: "down-g" });
      const calls: Array<{ id: string; started: number; ended?: number; ok?: boolean; code?: number; details?: string }> = [];
      let stop = false;
      let n = 0;
      const worker = async (): Promise<void> => {
        while (!stop) {
          const call: (typeof calls)[number] = { id: `down-d-${n++}`, started: Date.now() };
          calls.push(call);
          try {
            await unary(c.balances, c.balances.debit, { accountId: "down-1", amount: 1n, requestId: call.id, maxWaitMs: 0 }, { deadline: Date.now() + 30_000 });
            call.ok = true;
          } catch (error) {
            call.code = (error as ServiceError).code;
            call.details = (error as ServiceError).details;
          }
          call.ended = Date.now();
        }
      };
      const load = Promise.all(Array.from({ length: 8 }, () => worker()));
      await waitFor(() => calls.filter((x) => x.ok === true).length >= 50);
      await nats.kill();
      // Debits are now stuck in flight: their commits cannot be published. An ack
      // already on the wire when the server died may still arrive: wait until no
      // call has ended for 300 ms, so every call still open is truly stuck.
      await waitFor(() => calls.filter((x) => x.ended === undefined).length >= 8);
      await waitFor(() => {
        const lastEnded = Math.max(0, ...calls.map((x) => x.ended ?? 0));
        return Date.now() - lastEnded >= 300;
      });
      stop = true;
      const inFlight = calls.filter((x) => x.ended === undefined);
      const signalled = Date.now();
      process.kill(pid!, "SIGTERM");
      const exitedAfterMs = await exitWithin(pid!, 20_000);
      expect(exitedAfterMs, "node still running 20 s after SIGTERM").to.not.equal(undefined);
      // Calls waiting on commits end after the commit grace (2 s); the NATS drain gives up after 3 s.
      await load;
      expect(exitedAfterMs!, "exit after SIGTERM").to.be.lessThan(6_000);
      for (const call of inFlight) {
        expect(call.ok, `${call.id} was acknowledged with its NATS server gone`).to.not.equal(true);
        expect(call.code, `${call.id}: ${call.details ?? ""}`).to.equal(status.UNAVAILABLE);
        expect(call.ended! - signalled, `${call.id} ended late`).to.be.lessThan(4_000);
      }
    } finally {
      c.close();
      await node.kill();
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
