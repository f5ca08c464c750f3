// A local PostgreSQL for `tally up`: a persistent data directory (initdb on
// first use), loopback only, trust auth. As root, the server runs as the
// `postgres` system user (or a dedicated `tally-pg` user created here),
// because initdb and postgres refuse to run as root; when that user cannot
// reach the requested directory (under /root, say), the files go to /tmp.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chownSync, existsSync, lstatSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { postgresBinDir } from "./binaries";
import { lockPublicSchema, POSTGRES_ROLES, provisionSettlementRoles, type RolePasswords } from "../security/postgres-roles";
import { preparePostgresTls, requireTlsForRoles } from "../security/postgres-server-tls";
import { freePort } from "./free-port";

/** The settlement roles' URLs (TLS only, verified against `caFile`). */
export interface LocalPostgresRoles {
  readonly ownerUrl: string;
  readonly settlerUrl: string;
  readonly readerUrl: string;
  readonly caFile: string;
}

export interface LocalPostgres {
  /** Superuser over TCP: plaintext without `tlsDir`; with it, superuser access is through the socket only and this is the socket URL. */
  readonly url: string;
  /** With `tlsDir`: the owner, settler and reader roles of the `tally` database. */
  readonly roles?: LocalPostgresRoles;
  /** Where its data, log and socket are: the requested directory or, when relocated, its stand-in. */
  readonly dataRoot: string;
  /** Why the files are not in the requested directory, when they are not. */
  readonly relocated?: string;
  stop(): Promise<void>;
}

export interface ServerUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/** Who may run initdb/postgres: ourselves, or as root a system user. */
export function postgresUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = (name: string): ServerUser | undefined => {
    try {
      const id = (flag: string): number => Number(execFileSync("id", [flag, name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
      return { name, uid: id("-u"), gid: id("-g") };
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

/** Whether `user` can reach `dir`: search permission on it and every parent, checked by the kernel as that user. */
export function canReach(dir: string, user: ServerUser): boolean {
  return spawnSync("test", ["-x", dir], { uid: user.uid, gid: user.gid, stdio: "ignore" }).status === 0;
}

/**
 * The directory the server keeps its files in. As root it must be reachable by
 * the server user; a requested directory that is not (inside a 0700 parent)
 * gets a stand-in under the temp dir, the same one on every run.
 */
function serverRoot(requested: string, user: ServerUser | undefined): { root: string; relocated?: string } {
  mkdirSync(requested, { recursive: true });
  if (user === undefined) return { root: requested };
  chownSync(requested, user.uid, user.gid);
  if (canReach(requested, user)) return { root: requested };
  const standIn = join(tmpdir(), `tally-postgres-${createHash("sha256").update(requested).digest("hex").slice(0, 12)}`);
  if (existsSync(standIn)) {
    // A predictable name in a shared directory: only reuse what is ours.
    const found = lstatSync(standIn);
    if (!found.isDirectory() || (found.uid !== user.uid && found.uid !== 0)) {
      throw new Error(`${standIn} exists and is not a directory of ${user.name}; remove it, or pass --data-dir a path ${user.name} can reach`);
    }
  } else {
    mkdirSync(standIn, { mode: 0o700 });
  }
  chownSync(standIn, user.uid, user.gid);
  const relocated = `the ${user.name} user that runs Postgres cannot reach ${requested} (a parent directory is not searchable by it)`;
  if (!canReach(standIn, user)) throw new Error(`${relocated}, nor ${standIn}: pass --data-dir a path it can reach (e.g. under /tmp)`);
  writeFileSync(join(requested, "LOCATION"), `Postgres keeps its files in ${standIn}: ${relocated}.\n`);
  return { root: standIn, relocated };
}

function initdb(bin: string, dataDir: string, user: ServerUser | undefined): void {
  const result = spawnSync(join(bin, "initdb"), ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"], {
    ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
    encoding: "utf8",
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
  });
  if (result.status === 0) return;
  const output = `${result.stderr ?? ""}${result.stdout ?? ""}`.trim();
  const hint =
    user === undefined
      ? "the data dir must be absent or empty (remove a half-created one), or choose another --data-dir"
      : `initdb runs as the ${user.name} user: the data dir must be absent or empty, and ${user.name} must be able to search ` +
        "every parent directory of it (make them searchable, chmod o+x, or choose --data-dir under /tmp)";
  throw new Error(
    [
      `initdb failed (${result.error?.message ?? `exit status ${result.status ?? result.signal ?? "unknown"}`}) creating ${dataDir}:`,
      ...(output === "" ? ["  (no output)"] : output.split("\n").map((line) => `  ${line}`)),
      `hint: ${hint}`,
    ].join("\n"),
  );
}

/** The end of the server's log, for a failure message. */
function logTail(logFile: string, lines = 15): string {
  try {
    return readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-lines).map((line) => `  ${line}`).join("\n");
  } catch {
    return "  (no log)";
  }
}

/**
 * Starts (initdb on first use) the local Postgres. With `tlsDir` (the local
 * CA's directory) it serves TLS with a certificate from that CA, refuses every
 * plaintext TCP connection, and provisions the settlement roles.
 */
export async function startLocalPostgres(requestedRoot: string, port?: number, tlsDir?: string): Promise<LocalPostgres> {
  const bin = postgresBinDir();
  const user = postgresUser();
  const identity = user === undefined ? {} : { uid: user.uid, gid: user.gid };
  const { root: dataRoot, relocated } = serverRoot(requestedRoot, user);
  const dataDir = join(dataRoot, "data");
  if (!existsSync(join(dataDir, "PG_VERSION"))) initdb(bin, dataDir, user);
  const tls = tlsDir === undefined ? undefined : preparePostgresTls(tlsDir, dataDir, user);
  if (tls !== undefined) requireTlsForRoles(dataDir, true);
  const tlsArgs = Object.entries(tls?.settings ?? {}).flatMap(([name, value]) => ["-c", `${name}=${value}`]);
  const listenPort = port ?? (await freePort());
  const logFile = join(dataRoot, "postgres.log");
  const log = openSync(logFile, "a");
  if (user !== undefined) chownSync(logFile, user.uid, user.gid);
  let child: ChildProcess;
  try {
    child = spawn(
      join(bin, "postgres"),
      ["-D", dataDir, "-c", "listen_addresses=127.0.0.1", "-c", `port=${listenPort}`, "-c", `unix_socket_directories=${dataRoot}`, ...tlsArgs],
      { ...identity, stdio: ["ignore", log, log], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C", TZ: "UTC" } },
    );
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // With TLS required over TCP, the superuser administers through the socket.
  const url = tls === undefined ? `postgres://postgres@127.0.0.1:${listenPort}/postgres` : `postgres://postgres@/postgres?host=${encodeURIComponent(dataRoot)}&port=${listenPort}`;
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
      if (child.exitCode !== null || Date.now() > deadline) {
        if (child.exitCode === null) child.kill("SIGINT");
        throw new Error(`Postgres did not start; the end of ${logFile}:\n${logTail(logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const roles = tls === undefined || tlsDir === undefined ? undefined : await provisionLocalRoles(url, tlsDir, listenPort, tls.caFile);
  return {
    url,
    dataRoot,
    ...(roles !== undefined ? { roles } : {}),
    ...(relocated !== undefined ? { relocated } : {}),
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGINT"); // fast shutdown
      await exited;
    },
  };
}

/** Each role's password, kept beside the CA (0600) so restarts reuse it. */
export function rolePasswords(tlsDir: string): RolePasswords {
  const read = (kind: keyof RolePasswords): string => {
    const file = join(tlsDir, `postgres-${kind}.password`);
    if (!existsSync(file)) writeFileSync(file, `${randomBytes(18).toString("base64url")}\n`, { mode: 0o600 });
    return readFileSync(file, "utf8").trim();
  };
  return { owner: read("owner"), settler: read("settler"), reader: read("reader") };
}

async function provisionLocalRoles(superuserUrl: string, tlsDir: string, port: number, caFile: string): Promise<LocalPostgresRoles> {
  const passwords = rolePasswords(tlsDir);
  const database = "tally";
  const admin = new Client({ connectionString: superuserUrl });
  await admin.connect();
  try {
    await provisionSettlementRoles(admin, database, passwords);
  } finally {
    await admin.end();
  }
  const inDatabase = new Client({ connectionString: superuserUrl.replace("/postgres?", `/${database}?`) });
  await inDatabase.connect();
  try {
    await lockPublicSchema(inDatabase);
  } finally {
    await inDatabase.end();
  }
  const url = (role: string, password: string): string => `postgres://${role}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  return {
    ownerUrl: url(POSTGRES_ROLES.owner, passwords.owner),
    settlerUrl: url(POSTGRES_ROLES.settler, passwords.settler),
    readerUrl: url(POSTGRES_ROLES.reader, passwords.reader),
    caFile,
  };
}
