// The migration runner against a real Postgres: applies in order, once, under
// concurrent starters; a failing migration leaves nothing; an edited one is caught.

import { expect } from "chai";
import { Pool } from "pg";
import { MigrationError, MIGRATIONS, migrate, type Migration } from "../../src/settlement";
import { usePostgres } from "../support/postgres";

describe("settlement migrations", function () {
  this.timeout(120_000);
  const server = usePostgres();
  let pools: Pool[] = [];
  let databases = 0;

  async function freshPool(): Promise<Pool> {
    const url = await server().createDatabase(`migrate_${++databases}`);
    const pool = new Pool({ connectionString: url, max: 8 });
    pool.on("error", () => undefined);
    pools.push(pool);
    return pool;
  }

  async function applied(pool: Pool): Promise<number[]> {
    const { rows } = await pool.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
    return rows.map((r) => r.version);
  }

  afterEach(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    pools = [];
  });

  it("settlement migrations - apply every version once, and nothing on a second start", async () => {
    const pool = await freshPool();
    const first = await migrate(pool);
    expect(first.applied).to.deep.equal(MIGRATIONS.map((m) => m.version));
    const second = await migrate(pool);
    expect(second).to.deep.equal({ applied: [], unknown: [] });
    expect(await applied(pool)).to.deep.equal(MIGRATIONS.map((m) => m.version));
  });

  it("settlement migrations - concurrent starters apply each version exactly once", async () => {
    const pool = await freshPool();
    const reports = await Promise.all([migrate(pool), migrate(pool), migrate(pool), migrate(pool)]);
    const all = reports.flatMap((r) => r.applied).sort((a, b) => a - b);
    expect(all).to.deep.equal(MIGRATIONS.map((m) => m.version));
    expect(await applied(pool)).to.deep.equal(MIGRATIONS.map((m) => m.version));
  });

  it("settlement migrations - a failing migration is rolled back whole and stops the run", async () => {
    const pool = await freshPool();
    const broken: Migration[] = [
      { version: 1, name: "good", sql: "CREATE TABLE first_table (id int)" },
      { version: 2, name: "bad", sql: "CREATE TABLE half_done (id int); SELECT no_such_column FROM first_table" },
      { version: 3, name: "after", sql: "CREATE TABLE never_made (id int)" },
    ];
    let error: unknown;
    try {
      await migrate(pool, broken);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(MigrationError);
    expect(error).to.deep.include({ version: 2, migration: "bad" });
    expect(await applied(pool)).to.deep.equal([1]);
    const { rows } = await pool.query<{ name: string }>(
      "SELECT tablename AS name FROM pg_tables WHERE tablename IN ('first_table', 'half_done', 'never_made')",
    );
    expect(rows.map((r) => r.name)).to.deep.equal(["first_table"]);
    // Fixed, the run continues where it stopped.
    const fixed = broken.map((m) => (m.version === 2 ? { ...m, sql: "CREATE TABLE half_done (id int)" } : m));
    expect((await migrate(pool, fixed)).applied).to.deep.equal([2, 3]);
  });

  it("settlement migrations - an applied migration that was edited is refused", async () => {
    const pool = await freshPool();
    const original: Migration[] = [{ version: 1, name: "one", sql: "CREATE TABLE edited (id int)" }];
    await migrate(pool, original);
    let error: unknown;
    try {
      await migrate(pool, [{ version: 1, name: "one", sql: "CREATE TABLE edited (id bigint)" }]);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(MigrationError);
    expect((error as Error).message).to.match(/checksum/);
    // A database ahead of this code is reported, not refused (rolling upgrades).
    const ahead = await migrate(pool, []);
    expect(ahead).to.deep.equal({ applied: [], unknown: [1] });
  });

  it("settlement migrations - ledger entries written before version 3 read the same afterwards", async () => {
    const pool = await freshPool();
    await migrate(pool, MIGRATIONS.filter((m) => m.version < 3));
    await pool.query(`
      INSERT INTO settlements (id, started_at, finished_at, cut, accounts_changed, ledger_entries, overspend_total, strict_violations)
      VALUES (1, now(), now(), '{"ap": 1, "eu": 1, "us": 1}', 2, 3, 0, 0),
             (2, now(), now(), '{"ap": 2, "eu": 2, "us": 2}', 1, 1, 0, 0);
      INSERT INTO settled_replicas (replica, position, first_settlement_id) VALUES ('us', 1, 1), ('eu', 2, 1), ('ap', 3, 1);
      INSERT INTO ledger (settlement_id, account_id, replica, granted_delta, debited_delta, balance_after) VALUES
        (1, 'a', 'us', 18446744073709551615, 0, 18446744073709551610),
        (1, 'a', 'ap', 0, 5, 18446744073709551610),
        (1, 'b', 'eu', 7, 0, 7),
        (2, 'a', 'eu', 0, 3, 18446744073709551607);`);
    const read = async (): Promise<string[]> =>
      (
        await pool.query<{ entry: string }>(
          `SELECT concat_ws(' ', settlement_id, account_id, replica, granted_delta, debited_delta, balance_after) AS entry
           FROM ledger ORDER BY settlement_id, account_id, replica`,
        )
      ).rows.map((r) => r.entry);
    const before = await read();
    expect(before).to.have.length(4);
    expect((await migrate(pool)).applied).to.deep.equal(MIGRATIONS.filter((m) => m.version >= 3).map((m) => m.version));
    expect(await read()).to.deep.equal(before);
    const { rows } = await pool.query<{ rows: string }>("SELECT count(*)::text AS rows FROM account_ledger");
    expect(rows[0]?.rows).to.equal("3"); // one row per (settlement, account)
  });
});
