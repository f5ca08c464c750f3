// The API contract outside TypeScript: Python stubs generated from proto/ with
// grpc_tools drive a live node (real nats-server underneath) through
// test/python/client_check.py, which prints a JSON summary of its checks.

import { expect } from "chai";
import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { tempDir, useStandaloneNats, natsAccess } from "../support/nats";
import { repoRoot } from "../support/repo-root";
import { testGrpcSecurity, testPki } from "../support/grpc-clients";

/** Debian's interpreter: python3-grpcio and python3-grpc-tools install for it, not for a pyenv one. */
const PYTHON = process.env.TALLY_TEST_PYTHON ?? "/usr/bin/python3";
const INSTALL_HINT = "apt-get update && apt-get install -y python3-grpcio python3-grpc-tools";

interface ProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

interface StatusSeen {
  readonly code: string;
  readonly details: string;
}

interface Summary {
  readonly ok: boolean;
  readonly checks: readonly Check[];
  readonly failed: readonly Check[];
  readonly values: {
    readonly big_account: string;
    readonly big_balance: string;
    readonly big_granted: string;
    readonly region: string;
    readonly retry_replayed: boolean;
    readonly balance_after_retry: string;
    readonly insufficient_outcome: string;
    readonly poor_balance: string;
    readonly invalid_argument: StatusSeen;
    readonly already_exists: StatusSeen;
    readonly batch_outcomes: readonly string[];
    readonly watch_balances: readonly string[];
    readonly lots_after_refund: ReadonlyArray<readonly [string, string]>;
  };
}

/** Runs a process to completion; never rejects on a non-zero exit (the caller asserts). */
function run(file: string, args: readonly string[], cwd: string, timeoutMs = 60_000): Promise<ProcessResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // A pyenv or virtualenv setting would point Debian's python at the wrong site-packages.
  delete env.PYTHONPATH;
  delete env.PYTHONHOME;
  return new Promise((resolve) => {
    execFile(file, [...args], { cwd, env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr: error !== null && stderr === "" ? error.message : stderr });
    });
  });
}

describe("python client - stubs generated from proto drive a live node", function () {
  this.timeout(120_000);
  const root = repoRoot();
  let stubDir: string | undefined;
  let running: RunningNode | undefined;

  // Registered before the NATS hook so that a skip here also skips starting nats-server.
  before(async function () {
    const probe = existsSync(PYTHON)
      ? await run(PYTHON, ["-c", "import grpc, grpc_tools.protoc"], root)
      : { code: -1, stdout: "", stderr: `${PYTHON} not found` };
    if (probe.code !== 0) {
      const reason = probe.stderr.trim().split("\n").pop() ?? "";
      console.warn(`    skipped: ${PYTHON} cannot import grpc and grpc_tools (${reason}). Install: ${INSTALL_HINT}`);
      this.skip();
    }
    stubDir = tempDir("pystubs");
    const protoc = await run(
      PYTHON,
      ["-m", "grpc_tools.protoc", "-I", "proto", `--python_out=${stubDir}`, `--grpc_python_out=${stubDir}`,
        "proto/tally/v1/common.proto", "proto/tally/v1/balances.proto", "proto/tally/v1/admin.proto"],
      root,
    );
    expect(protoc.code, `grpc_tools.protoc failed: ${protoc.stderr}`).to.equal(0);
    for (const file of ["balances_pb2.py", "balances_pb2_grpc.py", "admin_pb2_grpc.py", "common_pb2.py"]) {
      expect(existsSync(join(stubDir, "tally", "v1", file)), `generated ${file}`).to.equal(true);
    }
  });

  const nats = useStandaloneNats();

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
    if (stubDir !== undefined) rmSync(stubDir, { recursive: true, force: true });
  });

  let seen: Summary | undefined;
  const summary = (): Summary => {
    if (seen === undefined) throw new Error("the client script produced no summary (see the first test)");
    return seen;
  };
  const prefix = `py-${Date.now()}`;

  it("python client - the client script passes every check and exits 0", async () => {
    if (running === undefined || stubDir === undefined) throw new Error("node or stubs not ready");
    const script = join(root, "test", "python", "client_check.py");
    // Mutual TLS as the test CA's "all" principal (Grant and Debit need granter and spender).
    const pki = testPki();
    const client = pki.clientFiles("all");
    const result = await run(PYTHON, [script, `127.0.0.1:${running.grpcPort}`, stubDir, prefix, pki.ca.certFile, client.certFile, client.keyFile], root);
    const lines = result.stdout.trim().split("\n");
    const last = lines[lines.length - 1] ?? "";
    expect(last, `no JSON summary; exit ${result.code}; stderr:\n${result.stderr}`).to.match(/^\{/);
    const parsed = JSON.parse(last) as Summary;
    seen = parsed;
    expect(parsed.failed, `failed checks:\n${JSON.stringify(parsed.failed, null, 2)}\nstderr:\n${result.stderr}`).to.deep.equal([]);
    expect(result.code, result.stderr).to.equal(0);
    expect(parsed.ok).to.equal(true);
    expect(parsed.checks.length).to.be.greaterThan(15);
  });

  it("python client - int64 amounts above 2^53 arrive and return exact", () => {
    expect(summary().values.big_account).to.equal(`${prefix}-big`);
    expect(BigInt(summary().values.big_granted)).to.equal(2n ** 53n + 1n);
    expect(BigInt(summary().values.big_balance)).to.equal(2n ** 53n - 1n);
    expect(summary().values.region).to.equal("east");
    // What Python wrote is what the node holds.
    expect(running?.node.views.balanceView(`${prefix}-big`).balance).to.equal(2n ** 53n - 1n);
  });

  it("python client - a retry with the same request_id is replayed and changes nothing", () => {
    expect(summary().values.retry_replayed).to.equal(true);
    expect(BigInt(summary().values.balance_after_retry)).to.equal(2n ** 53n - 1n);
  });

  it("python client - insufficient credit is an OK outcome", () => {
    expect(summary().values.insufficient_outcome).to.equal("DEBIT_OUTCOME_INSUFFICIENT_CREDIT");
    expect(summary().values.poor_balance).to.equal("10");
  });

  it("python client - errors carry the documented status and name the field", () => {
    expect(summary().values.invalid_argument.code).to.equal("INVALID_ARGUMENT");
    expect(summary().values.invalid_argument.details).to.match(/^account_id: /);
    expect(summary().values.already_exists.code).to.equal("ALREADY_EXISTS");
    expect(summary().values.already_exists.details).to.match(/request_id/);
  });

  it("python client - DebitBatch and WatchBalance work from Python", () => {
    expect(summary().values.batch_outcomes).to.deep.equal([
      "DEBIT_OUTCOME_APPROVED",
      "DEBIT_OUTCOME_APPROVED",
      "DEBIT_OUTCOME_INSUFFICIENT_CREDIT",
    ]);
    expect(summary().values.watch_balances).to.deep.equal(["2", "1"]);
    expect(running?.node.views.balanceView(`${prefix}-poor`).balance).to.equal(1n);
  });

  it("python client - a grant into a credit lot, a hold across lots, its capture and a refund work from Python", () => {
    expect(summary().values.lots_after_refund).to.deep.equal([
      ["p1.enever.s0", "10"],
      ["base", "15"],
    ]);
  });
});
