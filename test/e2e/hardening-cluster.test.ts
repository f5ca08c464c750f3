// Hardening of three real regions (nats-server per region joined by gateways,
// one node process per region, Postgres for settlement): the settlement cut
// under continuous writes, stray and malformed NATS traffic under load, and a
// region restarting after its peers purged what it had not applied. Every
// node purges its stream as soon as a snapshot covers it, so peers that lag
// must catch up from snapshots.

import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import { Client } from "pg";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { DebitOutcome } from "../../src/generated/tally/v1/balances";
import { NodeStatus, ReplicaDelta, RightsBatchRequest, type ClusterIdentity } from "../../src/generated/tally/replication/v1/replication";
import { TestCluster } from "../support/cluster";
import { approved, debitLoad, sum, type Attempt } from "../support/debit-load";
import { unary } from "../support/grpc-clients";
import { natsConnectOptions } from "../support/nats";
import { startPostgres, type PostgresServer, type SettlementRoles } from "../support/postgres";
import { postgresSsl } from "../../src/security/postgres-tls";

const REGIONS = ["east", "west", "central"] as const;
const U64_MAX = (1n << 64n) - 1n;
const INT64_MIN = -(1n << 63n);

const wire = (replicas: readonly string[]): ClusterIdentity => {
  const identity = clusterIdentity(replicas);
  return { hash: identity.hash, replicas: [...identity.replicas] };
};
const OURS = wire(REGIONS);
const REORDERED = wire(["west", "east", "central"]);

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** tally_bad_messages_total by source, read from a node's /metrics. */
async function badMessages(metricsUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^tally_bad_messages_total\{([^}]*)\} (\S+)$/gm)) {
    const source = /source="([^"]*)"/.exec(match[1]!)?.[1] ?? "";
    counts.set(source, (counts.get(source) ?? 0) + Number(match[2]));
  }
  return counts;
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("hardening - three regions under faults", function () {
  this.timeout(180_000);
  let postgres: PostgresServer;
  let roles: SettlementRoles;
  let cluster: TestCluster;

  before(async function () {
    this.timeout(120_000);
    postgres = await startPostgres();
    roles = await postgres.provisionRoles("tally");
    cluster = await TestCluster.start({ postgres: roles, extraArgs: ["--max-retained-messages", "0"] });
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
    await postgres?.destroy();
  });

  const c = (region: string) => cluster.region(region).clients;
  const settle = (region: string) => unary(c(region).admin, c(region).admin.settle, {}, { deadline: Date.now() + 30_000 });

  /** Retries every attempt without an answer with its own id until it has one (the unknown outcomes resolved). */
  const resolveUnknown = async (region: string, attempts: readonly Attempt[]): Promise<void> => {
    for (const attempt of attempts.filter((a) => a.answer === undefined)) {
      const client = c(region).balances;
      attempt.answer = await unary(client, client.debit, { accountId: attempt.accountId, amount: attempt.amount, requestId: attempt.requestId, maxWaitMs: 0 });
    }
  };

  /** Debited per region, summed over `accounts`, as read at `at`. */
  const debitedByRegion = async (at: string, accounts: readonly string[]): Promise<Map<string, bigint>> => {
    const totals = new Map<string, bigint>();
    for (const account of accounts) {
      for (const r of (await cluster.balance(at, account)).regions) totals.set(r.region, (totals.get(r.region) ?? 0n) + r.debited);
    }
    return totals;
  };

  it("settlement cut - settling twice under continuous writes, then once more: the ledger sums per account equal the live totals exactly", async () => {
    const accounts = ["cut-1", "cut-2", "cut-3", "cut-4"];
    for (const region of REGIONS) for (const a of accounts) await cluster.grant(region, a, 1_000_000n, `cut-g0-${region}-${a}`);
    let stop = false;
    const loads = REGIONS.map((region) =>
      debitLoad({ client: () => c(region).balances, accounts, amount: 7n, concurrency: 3, stop: () => stop, maxCalls: 100_000, prefix: `cut-${region}` }),
    );
    const grantIds: Array<{ region: string; account: string; id: string }> = [];
    const grants = (async () => {
      for (let i = 0; !stop; i++) {
        const region = REGIONS[i % 3]!;
        const entry = { region, account: accounts[i % accounts.length]!, id: `cut-g-${i}` };
        grantIds.push(entry);
        await cluster.grant(region, entry.account, 11n, entry.id).catch(() => undefined);
      }
    })();
    const settlements = [];
    for (let i = 0; i < 2; i++) {
      const result = await settle(REGIONS[i]!);
      expect(result.skipped).to.equal(false);
      settlements.push(result.settlement?.id);
    }
    stop = true;
    const attempts = await Promise.all(loads);
    await grants;
    for (const [i, region] of REGIONS.entries()) await resolveUnknown(region, attempts[i]!);
    for (const g of grantIds) await cluster.grant(g.region, g.account, 11n, g.id);
    expect(attempts.flat().length, "writes ran while settling").to.be.greaterThan(50);
    await cluster.waitConverged(accounts, 60_000);
    const final = await settle("central");
    expect(final.skipped).to.equal(false);

    // The ledger as its read-only role sees it, over TLS.
    const pg = new Client({ connectionString: roles.readerUrl, ssl: postgresSsl(roles.caFile) });
    await pg.connect();
    try {
      const rows = await pg.query<{ account_id: string; granted: string; debited: string }>(
        "SELECT account_id, sum(granted_delta)::text AS granted, sum(debited_delta)::text AS debited FROM ledger WHERE account_id = ANY($1) GROUP BY account_id",
        [accounts],
      );
      expect(rows.rows.map((r) => r.account_id).sort()).to.deep.equal([...accounts].sort());
      for (const row of rows.rows) {
        const live = await cluster.balance("west", row.account_id);
        const granted = live.regions.reduce((s, r) => s + r.granted, 0n);
        const debited = live.regions.reduce((s, r) => s + r.debited, 0n);
        expect(BigInt(row.granted), `ledger grants of ${row.account_id}`).to.equal(granted);
        expect(BigInt(row.debited), `ledger debits of ${row.account_id}`).to.equal(debited);
        expect(live.settledBalance, `settled balance of ${row.account_id}`).to.equal(live.balance);
        const mine = approved(attempts.flat()).filter((a) => a.accountId === row.account_id);
        const grantsOf = grantIds.filter((g) => g.account === row.account_id).length;
        expect(debited).to.equal(sum(mine));
        expect(granted).to.equal(3_000_000n + 11n * BigInt(grantsOf));
      }
    } finally {
      await pg.end();
    }
  });

  it("stray messages - garbage, truncated, foreign-identity and int64-edge messages on status, rights and a delta stream: no exit, no stall, counted, exact totals, convergence", async () => {
    const accounts = new Map(REGIONS.map((region) => [region, [`stray-${region}-1`, `stray-${region}-2`]]));
    for (const region of REGIONS) for (const a of accounts.get(region)!) await cluster.grant(region, a, 1_000_000n, `stray-g-${a}`);
    const all = [...accounts.values()].flat();
    await cluster.waitConverged(all);
    const before = await Promise.all(REGIONS.map((r) => badMessages(cluster.region(r).node.metricsUrl)));

    let stop = false;
    const loads = REGIONS.map((region) =>
      debitLoad({ client: () => c(region).balances, accounts: accounts.get(region)!, amount: 5n, concurrency: 3, stop: () => stop, maxCalls: 100_000, prefix: `stray-${region}` }),
    );
    const raw: NatsConnection = await connect(natsConnectOptions(cluster.nats.region("east").nats));
    try {
      const validStatus = NodeStatus.encode({ replica: "west", ownSequence: 1n, ownDigest: "", applied: {}, sentAtMs: BigInt(Date.now()), cluster: OURS }).finish();
      const statuses = [
        new TextEncoder().encode("not a protobuf at all \u0000\u00ff"),
        Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        validStatus.slice(0, 3),
        NodeStatus.encode({ replica: "west", ownSequence: 1n, ownDigest: "", applied: {}, sentAtMs: BigInt(Date.now()), cluster: REORDERED }).finish(),
        NodeStatus.encode({ replica: "west", ownSequence: 1n, ownDigest: "", applied: {}, sentAtMs: BigInt(Date.now()), cluster: undefined }).finish(),
        NodeStatus.encode({ replica: "west", ownSequence: U64_MAX, ownDigest: "", applied: { east: 1n << 63n }, sentAtMs: INT64_MIN, cluster: OURS }).finish(),
        NodeStatus.encode({ replica: "north", ownSequence: 1n, ownDigest: "", applied: {}, sentAtMs: BigInt(Date.now()), cluster: OURS }).finish(),
      ];
      for (const region of REGIONS) for (const data of statuses) raw.publish(`tally.status.${region}`, data);

      const ask = (requester: string, accountId: string, deficit: bigint, cluster: ClusterIdentity | undefined): Uint8Array =>
        RightsBatchRequest.encode({ requester, asks: [{ accountId, deficit, urgent: true }], cluster }).finish();
      const validAsk = ask("west", "stray-east-1", 1n, OURS);
      const asks = [
        new TextEncoder().encode("garbage"),
        validAsk.slice(0, validAsk.length - 3),
        ask("west", "stray-east-1", 1n, REORDERED),
        ask("west", "stray-east-1", U64_MAX, OURS),
        ask("west", "stray-east-1", 1n << 63n, OURS),
        ask("north", "stray-east-1", 1n, OURS),
        ask("west", "bad id!", 1n, OURS),
      ];
      const unanswered = await Promise.all(
        REGIONS.flatMap((region) =>
          asks.map((data) =>
            raw.request(`tally.rights.${region}`, data, { timeout: 500 }).then(
              () => false,
              () => true,
            ),
          ),
        ),
      );
      expect(unanswered.every((u) => u), "a malformed rights request was answered").to.equal(true);

      // A rogue publisher on east's stream subject: nothing here is a delta east could have written.
      const validDelta = ReplicaDelta.encode({
        replica: "east",
        publishedAtMs: BigInt(Date.now()),
        slots: [],
        requests: [],
        policies: [],
        rowDigest: "",
        cluster: OURS,
        context: [],
        holds: [],
        refunds: [],
      }).finish();
      const rogue = [
        new TextEncoder().encode("garbage in the stream"),
        validDelta.slice(0, 4),
        ReplicaDelta.encode({ replica: "east", publishedAtMs: BigInt(Date.now()), slots: [], requests: [], policies: [], rowDigest: "", cluster: REORDERED, context: [], holds: [], refunds: [] }).finish(),
        ReplicaDelta.encode({ replica: "west", publishedAtMs: BigInt(Date.now()), slots: [], requests: [], policies: [], rowDigest: "", cluster: OURS, context: [], holds: [], refunds: [] }).finish(),
        ReplicaDelta.encode({
          replica: "east",
          publishedAtMs: BigInt(Date.now()),
          slots: [{ accountId: "stray-east-1", column: 0, value: U64_MAX }],
          requests: [],
          policies: [],
          rowDigest: "",
          cluster: OURS,
          context: [],
          holds: [],
          refunds: [],
        }).finish(),
      ];
      const js = raw.jetstream();
      for (const data of rogue) await js.publish("tally.delta.east", data);
    } finally {
      await raw.close();
    }

    // No stall: every region keeps answering debits after the garbage, east (whose stream got it) included.
    const answered = async (): Promise<Map<string, number>> => {
      const m = new Map<string, number>();
      for (const region of REGIONS) m.set(region, Number((await cluster.balance(region, accounts.get(region)![0]!)).regions.find((r) => r.region === region)?.debited ?? 0n));
      return m;
    };
    const start = await answered();
    // 50 more debits of 5 on one account of every region.
    await waitFor("debits answered after the garbage in every region", async () => {
      const now = await answered();
      return REGIONS.every((r) => (now.get(r) ?? 0) >= (start.get(r) ?? 0) + 5 * 50);
    });
    stop = true;
    const attempts = await Promise.all(loads);
    for (const region of REGIONS) expect(alive(cluster.region(region).node.pid), `${region} process exited`).to.equal(true);
    for (const [i, region] of REGIONS.entries()) await resolveUnknown(region, attempts[i]!);

    // Followers refused the first rogue message and wait for east's snapshot covering it; east takes one right after stepping over.
    await cluster.waitConverged(all, 60_000);
    for (const [i, region] of REGIONS.entries()) {
      const mine = attempts[i]!;
      expect(approved(mine).length, `every ${region} debit approved`).to.equal(mine.length);
      for (const at of REGIONS) {
        const totals = await debitedByRegion(at, accounts.get(region)!);
        expect(totals.get(region), `${region} debits seen at ${at}`).to.equal(sum(mine));
      }
    }

    const after = await Promise.all(REGIONS.map((r) => badMessages(cluster.region(r).node.metricsUrl)));
    const grew = (i: number, source: string): number => (after[i]!.get(source) ?? 0) - (before[i]!.get(source) ?? 0);
    const report = JSON.stringify(after.map((m) => Object.fromEntries(m)));
    // Every node hears the 7 statuses published on each of the other two regions' subjects.
    for (const i of [0, 1, 2]) expect(grew(i, "status"), `status at ${REGIONS[i]}: ${report}`).to.equal(14);
    for (const i of [0, 1, 2]) expect(grew(i, "rights_request"), `rights at ${REGIONS[i]}: ${report}`).to.equal(7);
    expect(grew(0, "own_stream"), `own stream at east: ${report}`).to.equal(5);
    // West and central refuse the first rogue message they reach (unless east's
    // purge got there first) and recover from east's snapshot: converged above.
  });

  it("restart after purge - a region killed -9 while its peers write, snapshot and purge past it catches up from their snapshots without a new write", async () => {
    await cluster.grant("east", "purge-1", 1_000n, "purge-g-east-0");
    await cluster.waitConverged(["purge-1"]);
    const raw = await connect(natsConnectOptions(cluster.nats.region("east").nats));
    try {
      const jsm = await raw.jetstreamManager();
      const lastAtKill = new Map<string, number>();
      await cluster.region("central").node.kill();
      for (const region of ["east", "west"]) lastAtKill.set(region, (await jsm.streams.info(`TALLY_${region.toUpperCase()}`)).state.last_seq);
      for (let i = 0; i < 10; i++) {
        await cluster.grant("east", "purge-1", 100n, `purge-ge-${i}`);
        await cluster.grant("west", "purge-2", 50n, `purge-gw-${i}`);
        const east = c("east").balances;
        const answer = await unary(east, east.debit, { accountId: "purge-1", amount: 3n, requestId: `purge-de-${i}`, maxWaitMs: 0 });
        expect(answer.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_APPROVED);
      }
      // A refusal at east while central is down: it is east's alone, and stays so through east's snapshot.
      const refusedAtEast = await unary(c("east").balances, c("east").balances.debit, { accountId: "purge-1", amount: 1_000_000n, requestId: "purge-refused", maxWaitMs: 0 });
      expect(refusedAtEast.outcome).to.equal(DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT);
      // Snapshots now (as a settlement would ask): each purges its stream below what the snapshot covers.
      for (const region of ["east", "west"]) await raw.request(`tally.snapshot.${region}`, new Uint8Array(0), { timeout: 15_000 });
      for (const region of ["east", "west"]) {
        const first = (await jsm.streams.info(`TALLY_${region.toUpperCase()}`)).state.first_seq;
        expect(first, `${region} purged past what central applied`).to.be.greaterThan(lastAtKill.get(region)! + 1);
      }
    } finally {
      await raw.close();
    }
    await cluster.restartNode("central");
    // No write after the restart: central must get there from the peers' snapshots alone.
    await waitFor(
      "central to show the writes made while it was down",
      async () => {
        const [p1, p2] = await Promise.all([cluster.balance("central", "purge-1"), cluster.balance("central", "purge-2")]);
        return p1.balance === 1_000n + 1_000n - 30n && p2.balance === 500n;
      },
      20_000,
    );
    await cluster.waitConverged(["purge-1", "purge-2"], 20_000);
    // Caught up from east's snapshot, central took east's acknowledged ids but not its refusals
    // (the stream never carries them): the same id is decided afresh there, never replayed.
    const central = c("central").balances;
    const atCentral = await unary(central, central.debit, { accountId: "purge-1", amount: 1_000_000n, requestId: "purge-refused", maxWaitMs: 0 });
    expect(atCentral.replayed, "central replayed a refusal decided at east").to.equal(false);
    const approvedAtCentral = await unary(central, central.debit, { accountId: "purge-1", amount: 3n, requestId: "purge-de-0", maxWaitMs: 0 });
    expect(approvedAtCentral.replayed, "an approval of east is replayed at central").to.equal(true);
  });
});
