// The `tally` CLI as a user runs it: a separate process against a live node
// (real nats-server underneath), checked on its exit status, stdout and stderr.

import { expect } from "chai";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { freePort } from "../../src/devcluster/free-port";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { repoRoot } from "../support/repo-root";
import { testGrpcSecurity, testPki } from "../support/grpc-clients";

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const CLI = join(repoRoot(), "dist", "src", "cli", "main.js");

/** Runs `tally ARGS`; with `closedStdout` the reader of its stdout is gone before it writes (`| head -0`). */
function tally(args: readonly string[], options: { closedStdout?: boolean } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, TALLY_TLS_DIR: testPki().dir }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    if (options.closedStdout === true) child.stdout.destroy();
    else child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("cli - the tally command against a live node", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();
  let running: RunningNode | undefined;
  const node = (): string => `127.0.0.1:${running?.grpcPort ?? 0}`;

  before(async () => {
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
    });
  });

  after(async () => {
    await running?.stop();
  });

  it("cli - without client certificate files the CLI says which file is missing and how to get it", async () => {
    const result = await tally(["status", "--nodes", node(), "--tls-dir", "/nonexistent/tls"]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.include("/nonexistent/tls/grpc-client-ops.crt").and.include("npm start");
  });

  it("cli - a rejected request prints the status name and message, one line, and exits 1", async () => {
    const result = await tally(["overspends", "--node", node(), "--account", "not valid!"]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(/^INVALID_ARGUMENT: account_id: [^\n]+\n$/);
    expect(result.stdout).to.equal("");
  });

  it("cli - a command the node cannot serve names the status, not its number", async () => {
    const result = await tally(["settlements", "--node", node()]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.equal("UNIMPLEMENTED: settlement is not configured on this node (no Postgres URL)\n");
  });

  it("cli - a settlement command names the node it cannot reach", async () => {
    const closed = await freePort();
    const result = await tally(["settlements", "--node", `127.0.0.1:${closed}`]);
    expect(result.code).to.equal(1);
    expect(result.stderr).to.match(new RegExp(`^cannot reach node 127\\.0\\.0\\.1:${closed}: UNAVAILABLE: `));
  });

  it("cli - status names the node it cannot reach and exits 1", async () => {
    const closed = await freePort();
    const result = await tally(["status", "--nodes", `${node()},127.0.0.1:${closed}`]);
    expect(result.code).to.equal(1);
    expect(result.stdout).to.include(`127.0.0.1:${closed} cannot be reached: UNAVAILABLE: `);
    expect(result.stdout).to.include("1 of 2 nodes did not answer");
    expect(result.stdout).to.not.include("NOT CONVERGED");
  });

  it("cli - status of a reachable single node reports convergence and exits 0", async () => {
    const result = await tally(["status", "--nodes", node()]);
    expect(result.stderr).to.equal("");
    expect(result.code).to.equal(0);
    expect(result.stdout).to.include("CONVERGED: ");
  });

  it("cli - output into a closed pipe ends quietly with status 0", async () => {
    for (const args of [["help"], ["status", "--nodes", node()]]) {
      const result = await tally(args, { closedStdout: true });
      expect(result.stderr, `tally ${args.join(" ")}`).to.equal("");
      expect(result.code, `tally ${args.join(" ")}`).to.equal(0);
    }
  });
});
