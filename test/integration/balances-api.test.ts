// The Balances and Admin APIs of one node over real gRPC, with a real
// nats-server (JetStream) underneath: happy paths, idempotency, the bad-input
// matrix and recovery after a restart.

import { expect } from "chai";
import { status, loadPackageDefinition, makeGenericClientConstructor, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { service as healthService } from "grpc-health-check";
import { tlsNameOptions } from "../../src/cli/node-clients";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { DebitOutcome, type DebitRequest } from "../../src/generated/tally/v1/balances";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { clients, failure, unary, type Clients, testGrpcSecurity, testPki } from "../support/grpc-clients";
import { jsonLogger } from "../../src/node/logger";

const quiet = jsonLogger("east", "error");

describe("balances api - single node over real gRPC and JetStream", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  let running: RunningNode;
  let c: Clients;
  let counter = 0;
  const rid = (): string => `req-${Date.now()}-${counter++}`;

  const start = async (): Promise<void> => {
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: quiet,
    });
    c = clients(`127.0.0.1:${running.grpcPort}`);
  };

  before(start);
  after(async () => {
    c.close();
    await running.stop();
  });

  const debit = (req: Partial<DebitRequest>) =>
    unary(c.balances, c.balances.debit, { accountId: "acct-1", amount: 1n, requestId: rid(), maxWaitMs: 0, ...req });
  const grant = (accountId: string, amount: bigint, requestId = rid()) =>
    unary(c.balances, c.balances.grant, { accountId, amount, requestId });
  const balance = (accountId: string) => unary(c.balances, c.balances.getBalance, { accountId });

  it("balances api - grant then debit moves the balance exactly", async () => {
    const granted = await grant("acct-1", 1_000n);
    expect(granted.balance).to.equal(1_000n);
    const spent = await debit({ accountId: "acct-1", amount: 250n });
    expect(spent.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
    expect(spent.balance).to.equal(750n);
    const read = await balance("acct-1");
    expect(read.balance).to.equal(750n);
    expect(read.localRights).to.equal(750n);
    expect(read.regions).to.have.length(1);
    expect(read.regions[0]?.granted).to.equal(1_000n);
    expect(read.regions[0]?.debited).to.equal(250n);
  });

  it("balances api - insufficient credit is an OK answer that changes nothing", async () => {
    await grant("acct-poor", 10n);
    const refused = await debit({ accountId: "acct-poor", amount: 11n });
    expect(refused.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    expect((await balance("acct-poor")).balance).to.equal(10n);
    const unknown = await debit({ accountId: "never-granted", amount: 1n });
    expect(unknown.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
  });

  it("balances api - amounts above 2^53 stay exact end to end", async () => {
    const big = 9_007_199_254_740_993n; // 2^53 + 1, not representable as a double
    await grant("acct-big", big);
    const spent = await debit({ accountId: "acct-big", amount: 2n });
    expect(spent.balance).to.equal(big - 2n);
    expect((await balance("acct-big")).balance).to.equal(9_007_199_254_740_991n);
  });

  it("balances api - a retry with the same request_id returns the original answer and changes nothing", async () => {
    await grant("acct-idem", 100n);
    const requestId = rid();
    const first = await debit({ accountId: "acct-idem", amount: 30n, requestId });
    const retry = await debit({ accountId: "acct-idem", amount: 30n, requestId });
    expect(first.replayed).to.equal(false);
    expect(retry.replayed).to.equal(true);
    expect(retry.balance).to.equal(first.balance);
    expect((await balance("acct-idem")).balance).to.equal(70n);
    const grantId = rid();
    await grant("acct-idem", 5n, grantId);
    const grantRetry = await grant("acct-idem", 5n, grantId);
    expect(grantRetry.replayed).to.equal(true);
    expect((await balance("acct-idem")).balance).to.equal(75n);
  });

  it("balances api - concurrent duplicates of one request are applied once", async () => {
    await grant("acct-dup", 100n);
    const requestId = rid();
    const answers = await Promise.all(Array.from({ length: 20 }, () => debit({ accountId: "acct-dup", amount: 7n, requestId })));
    expect(answers.filter((a) => !a.replayed)).to.have.length(1);
    expect((await balance("acct-dup")).balance).to.equal(93n);
  });

  it("balances api - DebitBatch decides each item in order with one durable commit", async () => {
    await grant("acct-batch", 10n);
    const items = Array.from({ length: 12 }, (_, i) => ({ accountId: "acct-batch", amount: 1n, requestId: `batch-${counter}-${i}`, maxWaitMs: 0 }));
    counter++;
    const answer = await unary(c.balances, c.balances.debitBatch, { debits: items });
    const outcomes = answer.results.map((r) => r.outcome);
    expect(outcomes.slice(0, 10).every((o) => o === DebitOutcome.DEBIT_OUTCOME_APPROVED)).to.equal(true);
    expect(outcomes.slice(10)).to.deep.equal([
      DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT,
      DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT,
    ]);
    const again = await unary(c.balances, c.balances.debitBatch, { debits: items });
    expect(again.results.every((r) => r.replayed)).to.equal(true);
    expect((await balance("acct-batch")).balance).to.equal(0n);
  });

  describe("balances api - bad input gets a clear status, changes nothing, and the node keeps serving", () => {
    before(async () => {
      await grant("acct-bad", 100n);
    });
    afterEach(async () => {
      expect((await balance("acct-bad")).balance).to.equal(100n);
    });

    const cases: Array<[string, Partial<DebitRequest>, status, RegExp]> = [
      ["empty account id", { accountId: "" }, status.INVALID_ARGUMENT, /account_id: is required/],
      ["over-long account id", { accountId: "a".repeat(129) }, status.INVALID_ARGUMENT, /account_id: is 129 characters/],
      ["ill-charactered account id", { accountId: "acct bad!" }, status.INVALID_ARGUMENT, /account_id: must contain only/],
      ["amount 0", { amount: 0n }, status.INVALID_ARGUMENT, /amount: must be a positive integer/],
      ["negative amount", { amount: -5n }, status.INVALID_ARGUMENT, /amount: must be a positive integer/],
      ["missing request id", { requestId: "" }, status.INVALID_ARGUMENT, /request_id: is required/],
      ["over-long request id", { requestId: "r".repeat(129) }, status.INVALID_ARGUMENT, /request_id: is 129 characters/],
      ["request id with spaces", { requestId: "has space" }, status.INVALID_ARGUMENT, /request_id: must be printable ASCII/],
    ];
    for (const [name, fields, code, message] of cases) {
      it(`balances api - ${name} is ${status[code]}`, async () => {
        const error = await failure(debit({ accountId: "acct-bad", ...fields }));
        expect(error.code).to.equal(code);
        expect(error.details).to.match(message);
      });
    }

    it("balances api - amount above int64 max is rejected by the wire format", async () => {
      // int64 cannot carry it: the client library refuses to encode, nothing reaches the node.
      const error = await failure(debit({ accountId: "acct-bad", amount: 1n << 64n }));
      expect(error).to.be.instanceOf(Error);
    });

    it("balances api - a grant past the region's int64-safe cap is OUT_OF_RANGE and changes nothing", async () => {
      const error = await failure(grant("acct-bad", (1n << 63n) - 1n));
      expect(error.code).to.equal(status.OUT_OF_RANGE);
      expect(error.details).to.match(/cumulative grants .* would exceed/);
    });

    it("balances api - a request_id reused with other parameters is ALREADY_EXISTS", async () => {
      const requestId = rid();
      await debit({ accountId: "acct-bad", amount: 1n, requestId });
      await grant("acct-bad", 1n); // put the spent unit back so the balance check holds
      const error = await failure(debit({ accountId: "acct-bad", amount: 2n, requestId }));
      expect(error.code).to.equal(status.ALREADY_EXISTS);
      expect(error.details).to.match(/request_id/);
    });

    it("balances api - a batch with one bad item is rejected whole, naming the item", async () => {
      const debits = [
        { accountId: "acct-bad", amount: 1n, requestId: rid(), maxWaitMs: 0 },
        { accountId: "acct-bad", amount: 0n, requestId: rid(), maxWaitMs: 0 },
      ];
      const error = await failure(unary(c.balances, c.balances.debitBatch, { debits }));
      expect(error.code).to.equal(status.INVALID_ARGUMENT);
      expect(error.details).to.match(/debits\[1\]\.amount/);
    });

    it("balances api - a batch with a conflicting request_id is refused whole and debits nothing", async () => {
      const used = rid();
      await debit({ accountId: "acct-bad", amount: 1n, requestId: used });
      await grant("acct-bad", 1n);
      const fresh = rid();
      const debits = [
        { accountId: "acct-bad", amount: 10n, requestId: fresh, maxWaitMs: 0 },
        { accountId: "acct-bad", amount: 2n, requestId: used, maxWaitMs: 0 },
      ];
      const error = await failure(unary(c.balances, c.balances.debitBatch, { debits }));
      expect(error.code).to.equal(status.ALREADY_EXISTS);
      // The first item was not applied: its id is still free.
      const retry = await debit({ accountId: "acct-bad", amount: 10n, requestId: fresh });
      expect(retry.replayed).to.equal(false);
      await grant("acct-bad", 10n);
    });

    it("balances api - a batch over 10000 items is RESOURCE_EXHAUSTED", async () => {
      const debits = Array.from({ length: 10_001 }, (_, i) => ({ accountId: "acct-bad", amount: 1n, requestId: `over-${i}`, maxWaitMs: 0 }));
      const error = await failure(unary(c.balances, c.balances.debitBatch, { debits }));
      expect(error.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(error.details).to.match(/at most 10000/);
    });

    it("balances api - an empty batch is INVALID_ARGUMENT", async () => {
      const error = await failure(unary(c.balances, c.balances.debitBatch, { debits: [] }));
      expect(error.code).to.equal(status.INVALID_ARGUMENT);
      expect(error.details).to.match(/debits: must hold at least one/);
    });

    it("balances api - an oversized message is RESOURCE_EXHAUSTED", async () => {
      const error = await failure(debit({ accountId: "acct-bad", requestId: "x".repeat(5 * 1024 * 1024) }));
      expect(error.code).to.equal(status.RESOURCE_EXHAUSTED);
    });

    it("balances api - an unknown policy mode is INVALID_ARGUMENT naming policy.mode", async () => {
      const error = await failure(
        unary(c.admin, c.admin.setAccountPolicy, {
          accountId: "acct-bad",
          policy: { mode: 7 as PolicyMode, overdraftLimit: 0n, lowWaterMark: 0n },
        }),
      );
      expect(error.code).to.equal(status.INVALID_ARGUMENT);
      expect(error.details).to.match(/policy\.mode/);
    });

    it("balances api - a STRICT policy with an overdraft limit is INVALID_ARGUMENT", async () => {
      const error = await failure(
        unary(c.admin, c.admin.setAccountPolicy, {
          accountId: "acct-bad",
          policy: { mode: PolicyMode.POLICY_MODE_STRICT, overdraftLimit: 5n, lowWaterMark: 0n },
        }),
      );
      expect(error.code).to.equal(status.INVALID_ARGUMENT);
      expect(error.details).to.match(/policy\.overdraft_limit/);
    });

    it("balances api - an already expired deadline is DEADLINE_EXCEEDED", async () => {
      const error = await failure(
        unary(c.balances, c.balances.debit, { accountId: "acct-bad", amount: 1n, requestId: rid(), maxWaitMs: 0 }, { deadline: Date.now() - 1 }),
      );
      expect(error.code).to.equal(status.DEADLINE_EXCEEDED);
    });
  });

  it("balances api - OVERDRAFT policy lets a debit go beyond rights up to the limit", async () => {
    await grant("acct-od", 10n);
    const set = await unary(c.admin, c.admin.setAccountPolicy, {
      accountId: "acct-od",
      policy: { mode: PolicyMode.POLICY_MODE_OVERDRAFT, overdraftLimit: 5n, lowWaterMark: 0n },
    });
    expect(set.policy?.mode).to.equal(PolicyMode.POLICY_MODE_OVERDRAFT);
    const over = await debit({ accountId: "acct-od", amount: 14n });
    expect(over.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT);
    expect(over.balance).to.equal(-4n);
    const beyond = await debit({ accountId: "acct-od", amount: 2n });
    expect(beyond.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
    const policy = await unary(c.admin, c.admin.getAccountPolicy, { accountId: "acct-od" });
    expect(policy.isDefault).to.equal(false);
    expect(policy.policy?.overdraftLimit).to.equal(5n);
  });

  it("balances api - health reports SERVING for the Balances service", async () => {
    const Health = makeGenericClientConstructor(healthService, "Health");
    const health = new Health(`127.0.0.1:${running.grpcPort}`, testPki().clientCredentials("reader"), tlsNameOptions("127.0.0.1"));
    const answer = await new Promise<{ status: string }>((resolve, reject) =>
      health.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (v: { service: string }) => healthService.Check!.requestSerialize(v),
        (b: Buffer) => healthService.Check!.responseDeserialize(b) as { status: string },
        { service: "tally.v1.Balances" },
        (error, value) => (error || value === undefined ? reject(error ?? new Error("no value")) : resolve(value)),
      ),
    );
    health.close();
    expect(answer.status).to.equal("SERVING");
  });

  it("balances api - server reflection lists the Tally services", async () => {
    const definition = loadSync("grpc/reflection/v1/reflection.proto", {
      includeDirs: [require.resolve("@grpc/reflection/package.json").replace(/package\.json$/, "build/proto")],
      keepCase: true,
    });
    const loaded = loadPackageDefinition(definition) as unknown as { grpc: { reflection: { v1: GrpcObject } } };
    const Reflection = loaded.grpc.reflection.v1.ServerReflection as ServiceClientConstructor;
    const reflection = new Reflection(`127.0.0.1:${running.grpcPort}`, testPki().clientCredentials("reader"), tlsNameOptions("127.0.0.1"));
    const stream = reflection.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (v: object) => Reflection.service.ServerReflectionInfo!.requestSerialize(v),
      (b: Buffer) => Reflection.service.ServerReflectionInfo!.responseDeserialize(b) as { list_services_response?: { service: Array<{ name: string }> } },
    );
    const names = await new Promise<string[]>((resolve, reject) => {
      stream.on("data", (r: { list_services_response?: { service: Array<{ name: string }> } }) => {
        resolve((r.list_services_response?.service ?? []).map((s) => s.name));
        stream.end();
      });
      stream.on("error", reject);
      stream.write({ list_services: "" });
    });
    reflection.close();
    expect(names).to.include.members(["tally.v1.Balances", "tally.v1.Admin"]);
  });

  it("balances api - a restarted node recovers every acknowledged change from its stream", async () => {
    await grant("acct-restart", 500n);
    for (let i = 0; i < 10; i++) await debit({ accountId: "acct-restart", amount: 3n });
    const before = await balance("acct-1");
    c.close();
    await running.stop();
    await start();
    expect((await balance("acct-restart")).balance).to.equal(470n);
    expect((await balance("acct-1")).balance).to.equal(before.balance);
    const policy = await unary(c.admin, c.admin.getAccountPolicy, { accountId: "acct-od" });
    expect(policy.policy?.mode).to.equal(PolicyMode.POLICY_MODE_OVERDRAFT);
  });
});
