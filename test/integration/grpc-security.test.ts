// gRPC security against a real node (real nats-server, real TLS): the RPC ×
// role matrix of docs/api.md cell by cell, refusals that change nothing (no
// certificate, untrusted CA, expired, wrong role, account scope), the audit
// log, and certificate rotation picked up without a restart.

import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import { credentials, makeGenericClientConstructor, Metadata, status, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { ConfigError, grpcSecurityOption, optionSource } from "../../src/app/config";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { LocalCa } from "../../src/devcluster/local-ca";
import { LocalGrpcPki, localPrincipal } from "../../src/devcluster/local-grpc-pki";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import { BalancesClient, type WatchBalanceResponse } from "../../src/generated/tally/v1/balances";
import { jsonLogger } from "../../src/node/logger";
import { tlsNameOptions } from "../../src/cli/node-clients";
import { clients, failure, unary, type Clients } from "../support/grpc-clients";
import { natsAccess, tempDir, useStandaloneNats } from "../support/nats";

type Identity = "spender" | "granter" | "reader" | "operator" | "auditor" | "stranger";

/** docs/api.md's table, written out again here so that a change to either is caught. */
const MATRIX: Readonly<Record<string, readonly Identity[]>> = {
  Debit: ["spender"],
  DebitBatch: ["spender"],
  GetBalance: ["spender", "reader"],
  WatchBalance: ["spender", "reader"],
  Grant: ["granter"],
  Hold: ["spender"],
  CaptureHold: ["spender"],
  VoidHold: ["spender"],
  Refund: ["granter"],
  GetAccountPolicy: ["operator"],
  SetAccountPolicy: ["operator"],
  TransferAllowance: ["operator"],
  Settle: ["operator"],
  ListSettlements: ["operator", "auditor"],
  ListOverspends: ["operator", "auditor"],
  GetAccountHistory: ["operator", "auditor"],
  ClusterStatus: ["operator"],
  ShiftRights: ["operator"],
  HealthCheck: ["spender", "granter", "reader", "operator", "auditor", "stranger"],
  ServerReflectionInfo: ["spender", "granter", "reader", "operator", "auditor"],
};

const IDENTITIES: readonly Identity[] = ["spender", "granter", "reader", "operator", "auditor", "stranger"];

const HEALTH_CHECK = {
  path: "/grpc.health.v1.Health/Check",
  requestStream: false,
  responseStream: false,
  // Check{service: ""} is an empty message; the answer is read only for its status.
  requestSerialize: (): Buffer => Buffer.alloc(0),
  requestDeserialize: (): object => ({}),
  responseSerialize: (): Buffer => Buffer.alloc(0),
  responseDeserialize: (bytes: Buffer): Buffer => bytes,
} as const;

const REFLECTION_INFO = {
  path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  requestStream: true,
  responseStream: true,
  requestSerialize: (bytes: Buffer): Buffer => bytes,
  requestDeserialize: (bytes: Buffer): Buffer => bytes,
  responseSerialize: (bytes: Buffer): Buffer => bytes,
  responseDeserialize: (bytes: Buffer): Buffer => bytes,
} as const;
/** ServerReflectionRequest{list_services: ""}: field 7, length-delimited, empty. */
const LIST_SERVICES = Buffer.from([0x3a, 0x00]);

async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const deadline = (): { deadline: number } => ({ deadline: Date.now() + 5_000 });

/** GetBalance over a connection of its own (no pooled subchannel): what a new client gets now. */
async function probe(address: string, creds: ChannelCredentials, account: string): Promise<status> {
  const client = new BalancesClient(address, creds, { ...tlsNameOptions(address), "grpc.use_local_subchannel_pool": 1 });
  try {
    await unary(client, client.getBalance, { accountId: account }, deadline());
    return status.OK;
  } catch (error) {
    return (error as ServiceError).code;
  } finally {
    client.close();
  }
}

/** Calls one RPC of the matrix on `account`; resolves with the status code (OK = 0) and details. */
async function callRpc(c: Clients, credentialsOf: ChannelCredentials, address: string, rpc: string, account: string, requestId: string): Promise<{ code: number; details: string }> {
  const outcome = async (promise: Promise<unknown>): Promise<{ code: number; details: string }> => {
    try {
      await promise;
      return { code: status.OK, details: "" };
    } catch (error) {
      const e = error as ServiceError;
      return { code: e.code, details: e.details };
    }
  };
  const b = c.balances;
  const a = c.admin;
  switch (rpc) {
    case "Debit":
      return outcome(unary(b, b.debit, { accountId: account, amount: 1n, requestId, maxWaitMs: 0 }, deadline()));
    case "DebitBatch":
      return outcome(unary(b, b.debitBatch, { debits: [{ accountId: account, amount: 1n, requestId, maxWaitMs: 0 }] }, deadline()));
    case "GetBalance":
      return outcome(unary(b, b.getBalance, { accountId: account }, deadline()));
    case "WatchBalance":
      return new Promise((resolve) => {
        const stream = b.watchBalance({ accountId: account, lowBalanceThreshold: 0n }, deadline());
        stream.once("data", (_event: WatchBalanceResponse) => {
          stream.cancel();
          resolve({ code: status.OK, details: "" });
        });
        stream.once("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
      });
    case "Grant":
      return outcome(unary(b, b.grant, { accountId: account, amount: 5n, requestId }, deadline()));
    case "Hold":
      return outcome(unary(b, b.hold, { accountId: account, amount: 1n, requestId, timeoutMs: 60_000n, maxWaitMs: 0 }, deadline()));
    // Allowed callers reach the node and get NOT_FOUND (no such hold or debit there).
    case "CaptureHold":
      return outcome(unary(b, b.captureHold, { holdId: `east:none-${requestId}`, amount: 1n, requestId, accountId: account }, deadline()));
    case "VoidHold":
      return outcome(unary(b, b.voidHold, { holdId: `east:none-${requestId}`, requestId, accountId: account }, deadline()));
    case "Refund":
      return outcome(unary(b, b.refund, { debitRequestId: `none-${requestId}`, amount: 1n, requestId, accountId: account }, deadline()));
    case "GetAccountPolicy":
      return outcome(unary(a, a.getAccountPolicy, { accountId: account }, deadline()));
    case "SetAccountPolicy":
      return outcome(
        unary(a, a.setAccountPolicy, { accountId: account, policy: { mode: PolicyMode.POLICY_MODE_OVERDRAFT, overdraftLimit: 50n, lowWaterMark: 0n } }, deadline()),
      );
    case "TransferAllowance":
      return outcome(unary(a, a.transferAllowance, { accountId: account, toRegion: "west", amount: 1n }, deadline()));
    case "Settle":
      return outcome(unary(a, a.settle, {}, deadline()));
    case "ListSettlements":
      return outcome(unary(a, a.listSettlements, { pageSize: 1, pageToken: "" }, deadline()));
    case "ListOverspends":
      return outcome(unary(a, a.listOverspends, { accountId: "", sinceMs: 0n, untilMs: 0n, pageSize: 1, pageToken: "" }, deadline()));
    case "GetAccountHistory":
      return outcome(unary(a, a.getAccountHistory, { accountId: account, pageSize: 1, pageToken: "" }, deadline()));
    case "ClusterStatus":
      return outcome(unary(a, a.clusterStatus, {}, deadline()));
    case "ShiftRights":
      // A one-region node has no other region to shift to: allowed callers get INVALID_ARGUMENT.
      return new Promise((resolve) => {
        const stream = a.shiftRights({ shiftId: requestId, toRegion: "west", fraction: 1 }, deadline());
        stream.once("data", () => {
          stream.cancel();
          resolve({ code: status.OK, details: "" });
        });
        stream.once("end", () => resolve({ code: status.OK, details: "" }));
        stream.once("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
      });
    case "HealthCheck": {
      const Health = makeGenericClientConstructor({ Check: HEALTH_CHECK }, "Health");
      const health = new Health(address, credentialsOf, tlsNameOptions(address));
      try {
        return await outcome(
          new Promise((resolve, reject) =>
            health.makeUnaryRequest(HEALTH_CHECK.path, HEALTH_CHECK.requestSerialize, HEALTH_CHECK.responseDeserialize, {}, deadline(), (e, v) => (e ? reject(e) : resolve(v))),
          ),
        );
      } finally {
        health.close();
      }
    }
    case "ServerReflectionInfo": {
      const Reflection = makeGenericClientConstructor({ ServerReflectionInfo: REFLECTION_INFO }, "ServerReflection");
      const reflection = new Reflection(address, credentialsOf, tlsNameOptions(address));
      try {
        return await new Promise((resolve) => {
          const call = reflection.makeBidiStreamRequest(REFLECTION_INFO.path, REFLECTION_INFO.requestSerialize, REFLECTION_INFO.responseDeserialize, new Metadata(), deadline());
          call.once("data", () => {
            call.cancel();
            resolve({ code: status.OK, details: "" });
          });
          call.once("error", (error: ServiceError) => resolve({ code: error.code, details: error.details }));
          call.write(LIST_SERVICES);
          call.end();
        });
      } finally {
        reflection.close();
      }
    }
    default:
      throw new Error(`no call for ${rpc}`);
  }
}

describe("grpc security - mTLS, roles and audit on a live node", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();
  let dir: string;
  let pki: LocalGrpcPki;
  let otherCa: LocalCa;
  let running: RunningNode | undefined;
  let address: string;
  /** The node's warning lines (JSON), among them its refused TLS handshakes. */
  const warnings: string[] = [];
  let admin: Clients;
  const files = (): { cert: string; key: string; ca: string; roles: string; audit: string } => ({
    cert: join(dir, "server.crt"),
    key: join(dir, "server.key"),
    ca: join(dir, "trusted-clients.pem"),
    roles: join(dir, "roles.json"),
    audit: join(dir, "audit.log"),
  });
  const as = (name: string, ca: LocalCa = pki.ca): ChannelCredentials =>
    credentials.createSsl(readFileSync(pki.ca.certFile), readFileSync(join(ca.dir, `${name}.key`)), readFileSync(join(ca.dir, `${name}.crt`)));

  before(async () => {
    dir = tempDir("grpc-security");
    pki = LocalGrpcPki.ensure(join(dir, "tls"));
    otherCa = LocalCa.ensure(join(dir, "other-ca"), "Another CA");
    // The node reads copies, so the rotation tests can replace them.
    copyFileSync(pki.server.certFile, files().cert);
    copyFileSync(pki.server.keyFile, files().key);
    copyFileSync(pki.ca.certFile, files().ca);
    for (const role of ["spender", "granter", "reader", "operator", "auditor"]) {
      pki.ca.issue({ name: `t-${role}`, commonName: `t-${role}`, uris: [localPrincipal(`t-${role}`)], usage: "client" });
    }
    pki.ca.issue({ name: "t-stranger", commonName: "t-stranger", uris: [localPrincipal("t-stranger")], usage: "client" });
    pki.ca.issue({ name: "t-scoped", commonName: "t-scoped", uris: [localPrincipal("t-scoped")], usage: "client" });
    pki.ca.issue({ name: "t-cn-only", commonName: "cn-reader", usage: "client" });
    pki.ca.issue({ name: "t-expired", commonName: "t-expired", uris: [localPrincipal("all")], usage: "client", expired: true });
    otherCa.issue({ name: "t-intruder", commonName: "t-intruder", uris: [localPrincipal("all")], usage: "client" });
    const principals: Record<string, { roles: string[]; accountPrefixes?: string[] }> = {
      [localPrincipal("all")]: { roles: ["spender", "granter", "reader", "operator", "auditor"] },
      [localPrincipal("t-scoped")]: { roles: ["spender", "granter", "reader", "auditor"], accountPrefixes: ["tenant-a/"] },
      "cn-reader": { roles: ["reader"] },
    };
    for (const role of ["spender", "granter", "reader", "operator", "auditor"]) principals[localPrincipal(`t-${role}`)] = { roles: [role] };
    writeFileSync(files().roles, JSON.stringify({ principals }));
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: { kind: "mtls", tls: { certFile: files().cert, keyFile: files().key, caFile: files().ca }, rolesFile: files().roles, auditLogFile: files().audit },
      logger: jsonLogger("east", "warn", (line) => void warnings.push(line)),
      config: { catchUpTimeoutMs: 0 },
    });
    address = `127.0.0.1:${running.grpcPort}`;
    admin = clients(address, as("grpc-client-all"));
  });

  after(async () => {
    admin?.close();
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const balance = async (account: string): Promise<bigint> => (await unary(admin.balances, admin.balances.getBalance, { accountId: account })).balance;

  it("grpc security - every RPC × role cell matches the documented table; refused cells change nothing", async () => {
    const refusedWrites: Array<{ account: string; rpc: string; requestId: string }> = [];
    for (const identity of IDENTITIES) {
      const creds = as(`t-${identity}`);
      const c = clients(address, creds);
      try {
        for (const [rpc, allowed] of Object.entries(MATRIX)) {
          const account = `m-${identity}-${rpc}`;
          // Funded first, so a refused Debit would show as a lower balance.
          await unary(admin.balances, admin.balances.grant, { accountId: account, amount: 100n, requestId: `fund-${account}` });
          const requestId = `call-${account}`;
          const got = await callRpc(c, creds, address, rpc, account, requestId);
          const principal = localPrincipal(`t-${identity}`);
          if (allowed.includes(identity)) {
            expect(got.code, `${identity} × ${rpc}: ${got.details}`).to.not.equal(status.PERMISSION_DENIED);
            expect(got.code, `${identity} × ${rpc}: ${got.details}`).to.not.equal(status.UNAUTHENTICATED);
          } else {
            expect(got.code, `${identity} × ${rpc} should be refused: ${got.details}`).to.equal(status.PERMISSION_DENIED);
            expect(got.details).to.include(principal);
            expect(got.details).to.include(rpc === "HealthCheck" ? "Health/Check" : `/${rpc}`);
            refusedWrites.push({ account, rpc, requestId });
          }
        }
      } finally {
        c.close();
      }
    }
    // Nothing a refused call asked for happened: balances, policies, and its request id was never recorded.
    for (const { account, rpc, requestId } of refusedWrites) {
      expect(await balance(account), `${rpc} on ${account}`).to.equal(100n);
      expect((await unary(admin.balances, admin.balances.getBalance, { accountId: account })).held, `${rpc} on ${account} held credit`).to.equal(0n);
      const policy = await unary(admin.admin, admin.admin.getAccountPolicy, { accountId: account });
      expect(policy.isDefault, `${rpc} on ${account} changed the policy`).to.equal(true);
      if (rpc === "Debit") {
        const fresh = await unary(admin.balances, admin.balances.debit, { accountId: account, amount: 1n, requestId, maxWaitMs: 0 });
        expect(fresh.replayed, `the refused ${requestId} was remembered`).to.equal(false);
      }
    }
    expect(refusedWrites.length).to.equal(IDENTITIES.length * Object.keys(MATRIX).length - Object.values(MATRIX).reduce((n, roles) => n + roles.length, 0));
  });

  it("grpc security - a principal without a SAN URI is known by its CN", async () => {
    const c = clients(address, as("t-cn-only"));
    try {
      await unary(admin.balances, admin.balances.grant, { accountId: "cn-1", amount: 3n, requestId: "cn-fund" });
      expect((await unary(c.balances, c.balances.getBalance, { accountId: "cn-1" })).balance).to.equal(3n);
      const refused = await failure(unary(c.balances, c.balances.debit, { accountId: "cn-1", amount: 1n, requestId: "cn-debit", maxWaitMs: 0 }));
      expect(refused.code).to.equal(status.PERMISSION_DENIED);
      expect(refused.details).to.include("cn-reader").and.include("/tally.v1.Balances/Debit");
      expect(await balance("cn-1")).to.equal(3n);
    } finally {
      c.close();
    }
  });

  it("grpc security - no certificate, an untrusted CA, an expired certificate are refused at the handshake, logged by the node, and change nothing", async () => {
    const attempts: Array<[string, ChannelCredentials, RegExp]> = [
      ["no client certificate", credentials.createSsl(readFileSync(pki.ca.certFile)), /did not return a certificate/],
      ["certificate from another CA", as("t-intruder", otherCa), /UNABLE_TO_VERIFY|unable to verify|unknown ca/i],
      ["expired certificate", as("t-expired"), /CERT_HAS_EXPIRED|expired/i],
      ["plaintext", credentials.createInsecure(), /./],
    ];
    type Refusal = { msg: string; remote?: string; reason?: string };
    const refusals = (): Refusal[] =>
      warnings.map((line) => JSON.parse(line) as Refusal).filter((l) => l.msg === "TLS handshake refused");
    for (const [what, creds, why] of attempts) {
      const before = refusals().length;
      const c = clients(address, creds);
      try {
        const account = `handshake-${what.replace(/ /g, "-")}`;
        const refused = await failure(unary(c.balances, c.balances.grant, { accountId: account, amount: 7n, requestId: `g-${account}` }, deadline()));
        expect(refused.code, `${what}: ${refused.details}`).to.equal(status.UNAVAILABLE);
        expect(await balance(account), what).to.equal(0n);
        // The node says so itself: who, and why.
        const logged = refusals().slice(before);
        expect(logged.length, `${what}: refusal lines`).to.be.greaterThan(0);
        for (const line of logged) {
          expect(line.remote, what).to.match(/^127\.0\.0\.1:\d+$/);
          expect(line.reason, what).to.be.a("string").and.match(why);
        }
      } finally {
        c.close();
      }
    }
  });

  it("grpc security - a scoped principal may name only accounts under its prefixes; outside them nothing changes", async () => {
    const c = clients(address, as("t-scoped"));
    try {
      const inside = await unary(c.balances, c.balances.grant, { accountId: "tenant-a/1", amount: 10n, requestId: "scoped-in" });
      expect(inside.balance).to.equal(10n);
      const outside = await failure(unary(c.balances, c.balances.grant, { accountId: "tenant-b/1", amount: 10n, requestId: "scoped-out" }));
      expect(outside.code).to.equal(status.PERMISSION_DENIED);
      expect(outside.details).to.include(localPrincipal("t-scoped")).and.include("/tally.v1.Balances/Grant").and.include("tenant-b/1");
      expect(await balance("tenant-b/1")).to.equal(0n);
      // One item outside the scope refuses the whole batch.
      const batch = await failure(
        unary(c.balances, c.balances.debitBatch, {
          debits: [
            { accountId: "tenant-a/1", amount: 1n, requestId: "scoped-b1", maxWaitMs: 0 },
            { accountId: "tenant-b/1", amount: 1n, requestId: "scoped-b2", maxWaitMs: 0 },
          ],
        }),
      );
      expect(batch.code).to.equal(status.PERMISSION_DENIED);
      expect(await balance("tenant-a/1")).to.equal(10n);
      // A call over every account is out of any scope.
      const all = await failure(unary(c.admin, c.admin.listOverspends, { accountId: "", sinceMs: 0n, untilMs: 0n, pageSize: 1, pageToken: "" }));
      expect(all.code).to.equal(status.PERMISSION_DENIED);
      expect(all.details).to.include("spans every account");
    } finally {
      c.close();
    }
  });

  it("grpc security - every Grant and Admin call leaves one JSON audit line with principal, method, account, amount, request id and outcome", async () => {
    const granter = clients(address, as("t-granter"));
    try {
      await unary(granter.balances, granter.balances.grant, { accountId: "audit-1", amount: 42n, requestId: "audit-grant" });
      await failure(unary(granter.admin, granter.admin.setAccountPolicy, { accountId: "audit-1", policy: { mode: PolicyMode.POLICY_MODE_STRICT, overdraftLimit: 0n, lowWaterMark: 0n } }));
    } finally {
      granter.close();
    }
    type Line = { principal: string; method: string; account?: string; amount?: string; request_id?: string; outcome: string };
    const lines = (): Line[] =>
      readFileSync(files().audit, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Line);
    await eventually("both audit lines written", async () => Promise.resolve(lines().some((l) => l.account === "audit-1" && l.outcome === "PERMISSION_DENIED")));
    const mine = lines().filter((l) => l.account === "audit-1");
    const granted = mine.find((l) => l.outcome === "OK");
    expect(granted).to.include({ principal: localPrincipal("t-granter"), method: "/tally.v1.Balances/Grant", amount: "42", request_id: "audit-grant" });
    const denied = mine.find((l) => l.outcome === "PERMISSION_DENIED");
    expect(denied?.principal).to.equal(localPrincipal("t-granter"));
    expect(denied?.method).to.equal("/tally.v1.Admin/SetAccountPolicy");
    expect(mine.length).to.equal(2);
  });

  it("grpc security - Refund, CaptureHold and VoidHold leave audit lines naming the hold or debit; Hold does not", async () => {
    const spender = clients(address, as("t-spender"));
    const granter = clients(address, as("t-granter"));
    try {
      await unary(admin.balances, admin.balances.grant, { accountId: "audit-h", amount: 100n, requestId: "audit-h-fund" });
      const held = await unary(spender.balances, spender.balances.hold, { accountId: "audit-h", amount: 10n, requestId: "audit-h-hold", timeoutMs: 60_000n, maxWaitMs: 0 });
      await unary(spender.balances, spender.balances.captureHold, { holdId: held.holdId, amount: 4n, requestId: "audit-h-cap", accountId: "audit-h" });
      await failure(unary(spender.balances, spender.balances.voidHold, { holdId: held.holdId, requestId: "audit-h-void", accountId: "audit-h" }));
      await unary(granter.balances, granter.balances.refund, { debitRequestId: "audit-h-cap", amount: 3n, requestId: "audit-h-refund", accountId: "audit-h" });
    } finally {
      spender.close();
      granter.close();
    }
    type Line = { principal: string; method: string; account?: string; amount?: string; request_id?: string; subject?: string; outcome: string };
    const lines = (): Line[] =>
      readFileSync(files().audit, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Line)
        .filter((l) => l.account === "audit-h");
    await eventually("the refund's audit line written", async () => Promise.resolve(lines().some((l) => l.method.endsWith("/Refund"))));
    const by = (method: string): Line | undefined => lines().find((l) => l.method === `/tally.v1.Balances/${method}`);
    expect(by("CaptureHold")).to.include({ principal: localPrincipal("t-spender"), amount: "4", request_id: "audit-h-cap", subject: "east:audit-h-hold", outcome: "OK" });
    expect(by("VoidHold")).to.include({ request_id: "audit-h-void", subject: "east:audit-h-hold", outcome: "FAILED_PRECONDITION" });
    expect(by("Refund")).to.include({ principal: localPrincipal("t-granter"), amount: "3", request_id: "audit-h-refund", subject: "audit-h-cap", outcome: "OK" });
    expect(by("Hold")).to.equal(undefined);
  });

  it("grpc security - a client CA added to the trusted file is accepted without a restart, and refused again once removed", async () => {
    const tryIntruder = (): Promise<status> => probe(address, as("t-intruder", otherCa), "rotate-1");
    expect(await tryIntruder()).to.equal(status.UNAVAILABLE);
    writeFileSync(files().ca, Buffer.concat([readFileSync(pki.ca.certFile), readFileSync(otherCa.certFile)]));
    await eventually("the other CA's client is accepted", async () => (await tryIntruder()) === status.OK);
    copyFileSync(pki.ca.certFile, files().ca);
    await eventually("the other CA's client is refused again", async () => (await tryIntruder()) === status.UNAVAILABLE);
  });

  it("grpc security - a re-issued server certificate is served to new connections without a restart", async () => {
    // A client that trusts only the other CA: refused until the node presents a certificate from it.
    const trustsOther = (): ChannelCredentials =>
      credentials.createSsl(readFileSync(otherCa.certFile), readFileSync(join(pki.ca.dir, "grpc-client-all.key")), readFileSync(join(pki.ca.dir, "grpc-client-all.crt")));
    const probeAs = (creds: ChannelCredentials): Promise<status> => probe(address, creds, "rotate-2");
    expect(await probeAs(trustsOther())).to.equal(status.UNAVAILABLE);
    const reissued = otherCa.issue({ name: "server-rotated", commonName: "tally-node", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], usage: "server" });
    // Key first, then certificate: the node keeps the old pair until the two match.
    copyFileSync(reissued.keyFile, files().key);
    copyFileSync(reissued.certFile, files().cert);
    await eventually("the re-issued certificate is served", async () => (await probeAs(trustsOther())) === status.OK);
    expect(await probeAs(as("grpc-client-all"))).to.equal(status.UNAVAILABLE);
    // Back to the original pair for the rest of the suite.
    copyFileSync(pki.server.keyFile, files().key);
    copyFileSync(pki.server.certFile, files().cert);
    await eventually("the original certificate is served again", async () => (await probeAs(as("grpc-client-all"))) === status.OK);
  });
});

describe("grpc security - options are checked before anything starts", () => {
  let dir: string;
  let pki: LocalGrpcPki;
  before(() => {
    dir = tempDir("grpc-config");
    pki = LocalGrpcPki.ensure(join(dir, "tls"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const configError = (flags: Record<string, string | boolean>): string => {
    try {
      grpcSecurityOption(optionSource(flags, {}));
    } catch (error) {
      if (error instanceof ConfigError) return error.message;
      throw error;
    }
    throw new Error("expected a ConfigError");
  };
  const tlsFlags = (): Record<string, string> => ({
    "grpc-tls-cert": pki.server.certFile,
    "grpc-tls-key": pki.server.keyFile,
    "grpc-tls-ca": pki.ca.certFile,
    "grpc-roles": pki.rolesFile,
  });

  it("config - mTLS is the default: without the certificate flags a node refuses to start, naming the flag and --insecure", () => {
    expect(configError({})).to.match(/--grpc-tls-cert \(TALLY_GRPC_TLS_CERT\) is required.*--insecure \(TALLY_INSECURE\)/);
    expect(grpcSecurityOption(optionSource({ insecure: true }, {})).kind).to.equal("insecure");
    expect(grpcSecurityOption(optionSource(tlsFlags(), {})).kind).to.equal("mtls");
  });

  it("config - --insecure never drops certificates that are given: all of them serve mTLS, part of them is an error", () => {
    expect(grpcSecurityOption(optionSource({ ...tlsFlags(), insecure: true }, {})).kind).to.equal("mtls");
    expect(configError({ insecure: true, "grpc-tls-cert": pki.server.certFile })).to.match(/--grpc-tls-key \(TALLY_GRPC_TLS_KEY\) is required/);
  });

  it("config - a key that does not match the certificate, or a malformed role file, is a ConfigError naming the flag, the file and the entry", () => {
    expect(configError({ ...tlsFlags(), "grpc-tls-key": pki.clientFiles("ops").keyFile })).to.match(/--grpc-tls-cert .*do not form a TLS context/);
    const roles = join(dir, "bad-roles.json");
    writeFileSync(roles, JSON.stringify({ principals: { "spiffe://x/ops": { roles: ["operator", "root"] } } }));
    expect(configError({ ...tlsFlags(), "grpc-roles": roles })).to.include(`--grpc-roles (TALLY_GRPC_ROLES): role file ${roles}: principal "spiffe://x/ops": roles[1] "root" is not a role`);
  });
});

describe("grpc security - Admin and reflection on a listener of their own", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();
  let dir: string;
  let pki: LocalGrpcPki;
  let running: RunningNode | undefined;

  before(async () => {
    dir = tempDir("grpc-admin-listen");
    pki = LocalGrpcPki.ensure(join(dir, "tls"));
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      adminAddress: "127.0.0.1:0",
      grpcSecurity: pki.serverSecurity(join(dir, "audit.log")),
      logger: jsonLogger("east", "error"),
    });
  });

  after(async () => {
    await running?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("admin listener - Admin answers only on --admin-listen, Balances only on --grpc, both over mTLS", async () => {
    const main = clients(`127.0.0.1:${running!.grpcPort}`, pki.clientCredentials("all"));
    const ops = clients(`127.0.0.1:${running!.adminPort!}`, pki.clientCredentials("all"));
    try {
      expect(running!.adminPort).to.not.equal(running!.grpcPort);
      expect((await unary(ops.admin, ops.admin.clusterStatus, {})).peers.length).to.equal(1);
      expect((await failure(unary(main.admin, main.admin.clusterStatus, {}))).code).to.equal(status.UNIMPLEMENTED);
      await unary(main.balances, main.balances.grant, { accountId: "listen-1", amount: 2n, requestId: "listen-g" });
      expect((await failure(unary(ops.balances, ops.balances.getBalance, { accountId: "listen-1" }))).code).to.equal(status.UNIMPLEMENTED);
      expect(await probe(`127.0.0.1:${running!.adminPort!}`, credentials.createInsecure(), "listen-1")).to.equal(status.UNAVAILABLE);
    } finally {
      main.close();
      ops.close();
    }
  });
});
