// A local PostgreSQL for `tally up`: a persistent data directory (initdb on
// first use), loopback only, trust auth. As root, the server runs as the
// `postgres` system user (or a dedicated `tally-pg` user created here),
// because initdb and postgres refuse to run as root.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chownSync, existsSync, mkdirSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { Client } from "pg";
import { postgresBinDir } from "./binaries";
import { freePort } from "./free-port";

export interface LocalPostgres {
  readonly url: string;
  stop(): Promise<void>;
}

export interface ServerUser {
  readonly uid: number;
  readonly gid: number;
}

/** Who may run initdb/postgres: ourselves, or as root a system user. */
export function postgresUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = (name: string): ServerUser | undefined => {
    try {
      const id = (flag: string): number => Number(execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
      return { uid: id("-u"), gid: id("-g") };
    } catch {
      return undefined;
    }
  };
  const found = lookup("postgres") ?? lookup("tally-pg");
  if (found !== undefined) return found;
  execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tally-pg"], { stdio: "ignore" });
  const created = lookup("tally-pg");
  if (created === undefined) throw new Error("could not create the system user tally-pg for Postgres");
  return created;
}

export async function startLocalPostgres(dataRoot: string, port?: number): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  const user = postgresUser();
  const identity = user === undefined ? {} : { uid: user.uid, gid: user.gid };
  const dataDir = join(dataRoot, "data");
  mkdirSync(dataRoot, { recursive: true });
  if (user !== undefined) chownSync(dataRoot, user.uid, user.gid);
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    execFileSync(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"], {
      ...identity,
      stdio: "ignore",
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
    });
  }
  const listenPort = port ?? (await freePort());
  const logFile = join(dataRoot, "postgres.log");
  const log = openSync(logFile, "a");
  if (user !== undefined) chownSync(logFile, user.uid, user.gid);
  let child: ChildProcess;
  try {
    child = spawn(
      join(bin, "postgres"),
      ["-D", dataDir, "-c", "listen_addresses=127.0.0.1", "-c", `port=${listenPort}`, "-c", `unix_socket_directories=${dataRoot}`],
      { ...identity, stdio: ["ignore", log, log], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", TZ: "UTC" } },
    );
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `postgres://postgres@127.0.0.1:${listenPort}/postgres`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const client = new Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.end();
      break;
    } catch {
      await client.end().catch(() => undefined);
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`Postgres did not start; see ${logFile}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGINT"); // fast shutdown
      await exited;
    },
  };
}
