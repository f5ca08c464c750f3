// Postgres least privilege and TLS on a real server: migrations run as the
// owner role, a node settles as the settler role and lists as the reader,
// every connection over TLS verified against the local CA. The settler cannot
// disable the append-only triggers nor rewrite the ledger; each refusal
// changes nothing.

import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, type ClientConfig } from "pg";
import { DEFAULT_POSTGRES } from "../../src/app/config";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { LocalCa } from "../../src/devcluster/local-ca";
import { jsonLogger } from "../../src/node/logger";
import { postgresSsl } from "../../src/security/postgres-tls";
import { clients, failure, testGrpcSecurity, unary, type Clients } from "../support/grpc-clients";
import { natsAccess, useStandaloneNats } from "../support/nats";
import { usePostgres, type SettlementRoles } from "../support/postgres";

const INSUFFICIENT_PRIVILEGE = "42501";

async function open(url: string, ssl: ClientConfig["ssl"]): Promise<Client> {
  const client = new Client({ connectionString: url, ...(ssl === undefined ? {} : { ssl }) });
  client.on("error", () => undefined);
  await client.connect();
  return client;
}

async function sqlError(client: Client, sql: string): Promise<{ code?: string; message: string }> {
  try {
    await client.query(sql);
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error(`expected "${sql}" to be refused, it ran`);
}

describe("postgres roles - owner migrates, settler appends, reader reads, all over TLS", function () {
  this.timeout(120_000);
  const postgres = usePostgres();
  const nats = useStandaloneNats();
  let roles: SettlementRoles;
  let running: RunningNode;
  let grpc: Clients;
  let settler: Client;
  let reader: Client;
  const ssl = (): ClientConfig["ssl"] => postgresSsl(roles.caFile);

  before(async () => {
    roles = await postgres().provisionRoles("tally");
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0",
      grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      postgres: { url: roles.settlerUrl, ownerUrl: roles.ownerUrl, readerUrl: roles.readerUrl, caFile: roles.caFile, ...DEFAULT_POSTGRES },
      config: { snapshotIntervalMs: 0 },
    });
    grpc = clients(`127.0.0.1:${running.grpcPort}`);
    settler = await open(roles.settlerUrl, ssl());
    reader = await open(roles.readerUrl, ssl());
  });

  after(async () => {
    grpc?.close();
    await settler?.end();
    await reader?.end();
    await running?.stop();
  });

  const ledgerCounts = async (): Promise<string> => {
    const { rows } = await reader.query<{ counts: string }>(
      `SELECT concat_ws('/', (SELECT count(*) FROM settlements), (SELECT count(*) FROM account_ledger),
                             (SELECT count(*) FROM overspends), (SELECT count(*) FROM settled_accounts)) AS counts`,
    );
    return rows[0]!.counts;
  };

  it("postgres roles - a settlement runs end to end over TLS: settled as the settler, listed through the reader", async () => {
    await running.node.grant("pg-acct", 500n, "pg-grant-1");
    await running.node.debit({ accountId: "pg-acct", amount: 120n, requestId: "pg-debit-1" }, 0);
    const settled = await unary(grpc.admin, grpc.admin.settle, {});
    expect(settled.settlement?.accountsChanged).to.equal(1n);
    const listed = await unary(grpc.admin, grpc.admin.listSettlements, { pageSize: 10, pageToken: "" });
    expect(listed.settlements.map((s) => s.id)).to.deep.equal([settled.settlement?.id]);
    const history = await unary(grpc.admin, grpc.admin.getAccountHistory, { accountId: "pg-acct", pageSize: 0, pageToken: "" });
    expect(history.entries.map((e) => e.balanceAfter)).to.deep.equal([380n]);
    // The schema belongs to the owner, not to the role that settles.
    const { rows } = await reader.query<{ owner: string }>("SELECT DISTINCT tableowner AS owner FROM pg_tables WHERE schemaname = 'public'");
    expect(rows.map((r) => r.owner)).to.deep.equal(["tally_owner"]);
    // Each role's own session is encrypted.
    for (const client of [settler, reader]) {
      const tls = await client.query<{ ssl: boolean }>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
      expect(tls.rows[0]?.ssl).to.equal(true);
    }
  });

  it("postgres roles - the settler cannot disable, drop or bypass the append-only triggers", async () => {
    const before = await ledgerCounts();
    for (const sql of [
      "ALTER TABLE account_ledger DISABLE TRIGGER account_ledger_append_only",
      "ALTER TABLE settlements DISABLE TRIGGER ALL",
      "DROP TRIGGER overspends_append_only ON overspends",
      "DROP FUNCTION tally_append_only() CASCADE",
      "SET session_replication_role = replica",
      "CREATE TABLE shadow_ledger (id int)",
    ]) {
      const error = await sqlError(settler, sql);
      expect(error.code, `${sql}: ${error.message}`).to.equal(INSUFFICIENT_PRIVILEGE);
    }
    const { rows } = await reader.query<{ tgname: string; tgenabled: string }>(
      "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname LIKE '%append_only' ORDER BY tgname",
    );
    expect(rows).to.deep.equal(
      [
        "account_ledger_append_only",
        "hold_ledger_append_only",
        "ledger_append_only",
        "lot_breakage_append_only",
        "overspends_append_only",
        "refund_ledger_append_only",
        "settlements_append_only",
      ].map((tgname) => ({ tgname, tgenabled: "O" })),
    );
    expect(await ledgerCounts()).to.equal(before);
  });

  it("postgres roles - the settler cannot UPDATE, DELETE or TRUNCATE the ledger, settlements, overspends, holds or refunds", async () => {
    const before = await ledgerCounts();
    const aColumn = {
      account_ledger: "balance_after",
      settlements: "ledger_entries",
      overspends: "amount",
      settled_replicas: "position",
      hold_ledger: "amount",
      refund_ledger: "amount",
      lot_breakage: "amount",
    };
    for (const [table, column] of Object.entries(aColumn)) {
      for (const sql of [`UPDATE ${table} SET ${column} = ${column}`, `DELETE FROM ${table}`, `TRUNCATE ${table}`]) {
        const error = await sqlError(settler, sql);
        expect(error.code, `${sql}: ${error.message}`).to.equal(INSUFFICIENT_PRIVILEGE);
      }
    }
    // Nor delete nor empty the latest totals (it may only upsert them).
    for (const sql of ["DELETE FROM settled_accounts", "TRUNCATE settled_accounts"]) {
      expect((await sqlError(settler, sql)).code, sql).to.equal(INSUFFICIENT_PRIVILEGE);
    }
    expect(await ledgerCounts()).to.equal(before);
  });

  it("postgres roles - the reader can only read", async () => {
    const before = await ledgerCounts();
    for (const sql of [
      "INSERT INTO settled_replicas (replica, position, first_settlement_id) VALUES ('x', 99, 1)",
      "UPDATE settled_accounts SET settlement_id = settlement_id",
      "SELECT nextval('settlements_id_seq')",
    ]) {
      const error = await sqlError(reader, sql);
      expect(error.code, `${sql}: ${error.message}`).to.equal(INSUFFICIENT_PRIVILEGE);
    }
    expect(await ledgerCounts()).to.equal(before);
  });

  it("postgres roles - the roles cannot connect in plaintext, nor to a server their CA did not sign", async () => {
    const plaintext = await open(roles.settlerUrl, undefined).then(
      async (c) => {
        await c.end();
        return "connected";
      },
      (error: Error) => error.message,
    );
    expect(plaintext).to.match(/no pg_hba\.conf entry|rejects connection/);
    const otherDir = mkdtempSync(join(tmpdir(), "tally-other-ca-"));
    try {
      const other = LocalCa.ensure(otherDir);
      const untrusted = await open(roles.settlerUrl, postgresSsl(other.certFile)).then(
        async (c) => {
          await c.end();
          return "connected";
        },
        (error: Error & { code?: string }) => error.code ?? error.message,
      );
      expect(untrusted).to.be.oneOf(["UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it("postgres roles - a Settle refused by Postgres leaves the node serving", async () => {
    // The settler's grants are narrowed to nothing on the ledger: the next settlement fails cleanly.
    const owner = await open(roles.ownerUrl, ssl());
    try {
      await running.node.grant("pg-acct-2", 10n, "pg-grant-2");
      await owner.query("REVOKE INSERT ON account_ledger FROM tally_settler");
      const before = await ledgerCounts();
      const error = await failure(unary(grpc.admin, grpc.admin.settle, {}));
      expect(error.message).to.match(/permission denied|account_ledger/);
      expect(await ledgerCounts()).to.equal(before);
      const balance = await unary(grpc.balances, grpc.balances.getBalance, { accountId: "pg-acct-2" });
      expect(balance.balance).to.equal(10n);
    } finally {
      await owner.query("GRANT INSERT ON account_ledger TO tally_settler");
      await owner.end();
    }
  });
});
