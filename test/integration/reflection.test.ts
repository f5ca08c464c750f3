// Server reflection as a third-party client sees it: `buf curl` (Go, no local
// schema) lists and calls a live node's services through reflection alone,
// with a real nats-server underneath.

import { expect } from "chai";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { repoRoot } from "../support/repo-root";
import { testGrpcSecurity, testPki } from "../support/grpc-clients";

interface BufCurlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe("reflection - buf curl calls a live node through reflection alone", function () {
  this.timeout(120_000);
  const buf = join(repoRoot(), "node_modules", ".bin", "buf");
  const nats = useStandaloneNats();
  let running: RunningNode | undefined;
  const url = (path = ""): string => `https://127.0.0.1:${running?.grpcPort ?? 0}${path}`;
  // mTLS as the test CA's "all" principal: Grant and Debit need granter and spender.
  const tlsArgs = (): string[] => {
    const pki = testPki();
    const client = pki.clientFiles("all");
    return ["--cacert", pki.ca.certFile, "--cert", client.certFile, "--key", client.keyFile];
  };

  /** Never rejects on a non-zero exit: the assertions show buf's own message. */
  const bufCurl = (args: readonly string[]): Promise<BufCurlResult> =>
    new Promise((resolve) => {
      execFile(buf, ["curl", "--protocol", "grpc", ...tlsArgs(), ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolve({ code, stdout, stderr: error !== null && stderr === "" ? error.message : stderr });
      });
    });

  const call = async (method: string, request: object): Promise<Record<string, unknown>> => {
    const result = await bufCurl(["-d", JSON.stringify(request), url(`/${method}`)]);
    expect(result.code, `buf curl ${method}: ${result.stderr}${result.stdout}`).to.equal(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };

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

  it("reflection - grant then debit through buf curl return the JSON answers", async () => {
    const account = `reflect-${Date.now()}`;
    const granted = await call("tally.v1.Balances/Grant", { account_id: account, amount: "100", request_id: `${account}-grant` });
    expect(granted).to.deep.equal({ balance: "100", localRights: "100" });
    const debited = await call("tally.v1.Balances/Debit", { account_id: account, amount: "30", request_id: `${account}-debit` });
    expect(debited).to.deep.equal({ outcome: "DEBIT_OUTCOME_APPROVED", balance: "70", localRights: "70" });
  });

  it("reflection - methods of the contract, health and reflection are listed", async () => {
    const result = await bufCurl(["--list-methods", url()]);
    expect(result.code, result.stderr).to.equal(0);
    const methods = result.stdout.trim().split("\n");
    expect(methods).to.include.members([
      "tally.v1.Balances/Grant",
      "tally.v1.Balances/Debit",
      "tally.v1.Admin/ClusterStatus",
      "grpc.health.v1.Health/Check",
      "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ]);
  });

  it("reflection - health check is callable through reflection", async () => {
    const answer = await call("grpc.health.v1.Health/Check", { service: "tally.v1.Balances" });
    expect(answer).to.deep.equal({ status: "SERVING" });
  });

  it("reflection - a rejected request comes back as a gRPC status with its message", async () => {
    const result = await bufCurl(["-d", JSON.stringify({ account_id: "a", amount: "-3", request_id: "r-bad" }), url("/tally.v1.Balances/Debit")]);
    expect(result.code).to.not.equal(0);
    // buf curl prints the error status as JSON on stderr.
    expect(JSON.parse(result.stderr)).to.deep.equal({
      code: "invalid_argument",
      message: "amount: must be a positive integer of minor units; got -3",
    });
  });
});
