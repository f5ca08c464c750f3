// The Postgres that `tally up` starts: as root it runs as the postgres user,
// which cannot enter a 0700 directory; initdb failures must say why.

import { expect } from "chai";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "pg";
import { canReach, postgresUser, startLocalPostgres, type LocalPostgres } from "../../src/devcluster/postgres-process";
import { tempDir } from "../support/nats";
import { postgresSsl } from "../../src/security/postgres-tls";

describe("local postgres - data dir and initdb failures", function () {
  this.timeout(120_000);
  const cleanup: string[] = [];
  after(() => {
    for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
  });

  it("local postgres - as root, a data dir inside a 0700 directory moves where postgres can reach it", async function () {
    const user = postgresUser();
    if (user === undefined) this.skip();
    const privateParent = tempDir("pg-private");
    cleanup.push(privateParent);
    chmodSync(privateParent, 0o700);
    const requested = join(privateParent, "postgres");
    let postgres: LocalPostgres | undefined;
    try {
      postgres = await startLocalPostgres(requested);
      cleanup.push(postgres.dataRoot);
      expect(postgres.dataRoot).to.not.equal(requested);
      expect(postgres.relocated).to.include(`cannot reach ${requested}`);
      expect(canReach(postgres.dataRoot, user)).to.equal(true);
      expect(readFileSync(join(requested, "LOCATION"), "utf8")).to.include(postgres.dataRoot);
      const client = new Client({ connectionString: postgres.url });
      await client.connect();
      const answer = await client.query<{ one: number }>("select 1 as one");
      await client.end();
      expect(answer.rows[0]?.one).to.equal(1);
    } finally {
      await postgres?.stop();
    }
  });

  it("local postgres - with the local CA it serves TLS only over TCP, with the settlement roles, across restarts", async () => {
    const root = tempDir("pg-tls");
    cleanup.push(root);
    const tlsDir = join(root, "tls");
    for (let start = 0; start < 2; start++) {
      const postgres = await startLocalPostgres(join(root, "postgres"), undefined, tlsDir);
      try {
        const roles = postgres.roles;
        if (roles === undefined) throw new Error("no roles provisioned");
        const settler = new Client({ connectionString: roles.settlerUrl, ssl: postgresSsl(roles.caFile) });
        await settler.connect();
        const tls = await settler.query<{ ssl: boolean; role: string }>("SELECT ssl, current_user AS role FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
        await settler.end();
        expect(tls.rows[0]).to.deep.equal({ ssl: true, role: "tally_settler" });
        const port = new URL(roles.settlerUrl).port;
        for (const url of [roles.settlerUrl, `postgres://postgres@127.0.0.1:${port}/postgres`]) {
          const plain = new Client({ connectionString: url });
          plain.on("error", () => undefined);
          const refused = await plain.connect().then(
            async () => {
              await plain.end();
              return "connected";
            },
            (error: Error) => error.message,
          );
          expect(refused, `plaintext ${new URL(url).username}`).to.match(/no pg_hba\.conf entry|rejects connection/);
        }
      } finally {
        await postgres.stop();
      }
    }
  });

  it("local postgres - a failing initdb reports its own output and a hint", async () => {
    const root = tempDir("pg-initdb");
    cleanup.push(root);
    chmodSync(root, 0o755);
    // initdb refuses a data dir that exists and is not empty.
    mkdirSync(join(root, "data"));
    writeFileSync(join(root, "data", "stray-file"), "");
    const failure = await startLocalPostgres(root).then(
      () => new Error("startLocalPostgres succeeded"),
      (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
    );
    expect(failure.message).to.match(/^initdb failed \(exit status 1\) creating /);
    expect(failure.message).to.include("exists but is not empty");
    expect(failure.message).to.match(/\nhint: .*absent or empty/);
  });
});
