// A node asked to stop while it writes a snapshot: the snapshot is cut short
// and the process exits 0. Closing the NATS connection under the object
// store's chunk publishes used to reject them unobserved, and Node ended the
// process with an unhandled CONNECTION_CLOSED (exit 1) on every such stop.

import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { expect } from "chai";
import { connect } from "nats";
import { freePorts } from "../../src/devcluster/free-port";
import { CLI_ENTRY } from "../../src/devcluster/node-process";
import { snapshotBucket } from "../../src/replication/snapshot-store";
import { clients, testPki, unary } from "../support/grpc-clients";
import { natsConnectOptions, tempDir, useStandaloneNats } from "../support/nats";

describe("snapshot shutdown - SIGTERM while a snapshot is being written", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();

  it("snapshot shutdown - a node stopped between two object chunks exits 0, with no unhandled error, and restarts with every acknowledged change", async () => {
    const dir = tempDir("snapshot-shutdown");
    const [grpcPort, metricsPort] = await freePorts(2);
    const args = [CLI_ENTRY, "serve", "--region", "east", ...nats().nodeFlags("east"), ...testPki().serverArgs(), "--grpc", `127.0.0.1:${grpcPort!}`, "--metrics-port", String(metricsPort!)];
    const start = () => {
      const child = spawn(process.execPath, args, { env: { ...process.env, TALLY_LOG: "warn" }, stdio: ["ignore", "pipe", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const ready = new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes('"event":"ready"') && resolve());
        child.once("exit", (code) => reject(new Error(`node exited (${String(code)}) before ready: ${stderr}`)));
      });
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      return { child, ready, exited, stderr: () => stderr };
    };
    const raw = await connect(natsConnectOptions(nats()));
    const first = start();
    try {
      await first.ready;
      const c = clients(`127.0.0.1:${grpcPort!}`);
      await unary(c.balances, c.balances.grant, { accountId: "ss-1", amount: 100n, requestId: "ss-g" });
      await unary(c.balances, c.balances.debit, { accountId: "ss-1", amount: 30n, requestId: "ss-d", maxWaitMs: 0 });
      // Enough remembered ids (refusals of unknown accounts) for a snapshot of several chunks.
      for (let b = 0; b < 4; b++) {
        const debits = Array.from({ length: 10_000 }, (_, i) => ({ accountId: `ss-none-${i}`, amount: 1n, requestId: `ss-b${b}-${i}`, maxWaitMs: 0 }));
        await unary(c.balances, c.balances.debitBatch, { debits }, { deadline: Date.now() + 30_000 });
      }
      c.close();
      let chunks = 0;
      const cut = new Promise<void>((resolve) =>
        raw.subscribe(`$O.${snapshotBucket("east")}.C.>`, {
          callback: () => {
            if (++chunks === 2) {
              first.child.kill("SIGTERM");
              resolve();
            }
          },
        }),
      );
      await raw.flush();
      raw.request("tally.snapshot.east", new Uint8Array(0), { timeout: 30_000 }).catch(() => undefined);
      await cut;
      const code = await first.exited;
      expect(code, first.stderr()).to.equal(0);
      expect(first.stderr()).to.not.match(/CONNECTION_CLOSED|Unhandled|NatsError/);
      expect(first.stderr()).to.include("cut short: the node is stopping");
    } finally {
      first.child.kill("SIGKILL");
    }
    const second = start();
    try {
      await second.ready;
      const c = clients(`127.0.0.1:${grpcPort!}`);
      expect((await unary(c.balances, c.balances.getBalance, { accountId: "ss-1" })).balance).to.equal(70n);
      const retry = await unary(c.balances, c.balances.debit, { accountId: "ss-1", amount: 30n, requestId: "ss-d", maxWaitMs: 0 });
      expect(retry.replayed).to.equal(true);
      expect(retry.balance).to.equal(70n);
      c.close();
    } finally {
      second.child.kill("SIGTERM");
      await second.exited;
      await raw.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
