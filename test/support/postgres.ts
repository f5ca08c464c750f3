// A real, throw-away PostgreSQL server for integration tests and benchmarks:
// initdb into a temp dir, listen on a free loopback port, tear everything down.
//
// initdb and postgres refuse to run as root, so when we are root the server runs
// as the `postgres` system user (or a dedicated `tally-pg` user created here).
// Backends call setsid(), so killing the postmaster's process group is not
// enough for a crash: kill9() freezes the postmaster, kills its children, then
// the postmaster itself.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { lockPublicSchema, POSTGRES_ROLES, provisionSettlementRoles } from "../../src/security/postgres-roles";
import { preparePostgresTls, requireTlsForRoles } from "../../src/security/postgres-server-tls";

export interface PostgresOptions {
  /** Extra `-c name=value` server settings, e.g. { shared_buffers: "512MB" }. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Keep fsync and synchronous commit on (benchmarks); tests default to off. */
  readonly durable?: boolean;
  /** Milliseconds to wait for the server to accept connections. */
  readonly startTimeoutMs?: number;
}

export interface PostgresServer {
  /** Connection URL of the `postgres` database as superuser `postgres` (trust auth). */
  readonly url: string;
  readonly port: number;
  /** The temp dir holding the data directory, socket and server log. */
  readonly dir: string;
  /** The postmaster's pid while running. */
  readonly pid: number | undefined;
  /** Fast shutdown; data is kept so restart() can bring it back. */
  stop(): Promise<void>;
  /** Stops (if running) and starts again on the same port and data. */
  restart(): Promise<void>;
  /** Simulates a crash: SIGKILL the postmaster and every backend at once. */
  kill9(): Promise<void>;
  /** Creates a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** URL of another database on this server. */
  urlFor(database: string): string;
  /** The last lines of the server log (for failure messages). */
  logTail(lines?: number): string;
  /** Teardown: kill the server and remove the temp dir. Safe to call twice. */
  destroy(): Promise<void>;
  /** CA of the server's certificate (TLS is on; the Tally roles may connect only over TLS). */
  readonly caFile: string;
  /** Creates the owner, settler and reader roles and a database owned by the owner; their URLs. */
  provisionRoles(database: string): Promise<SettlementRoles>;
}

/** Connection URLs of the three settlement roles (all over TLS, verified against `caFile`). */
export interface SettlementRoles {
  readonly ownerUrl: string;
  readonly settlerUrl: string;
  readonly readerUrl: string;
  readonly caFile: string;
}

const INSTALL_HINT =
  "PostgreSQL server binaries (initdb, postgres) were not found. Install them with " +
  "`apt-get install -y postgresql-15` (Debian/Ubuntu; they land in /usr/lib/postgresql/15/bin) " +
  "or point TALLY_PG_BIN at the directory holding initdb and postgres.";

/** Starts a fresh server. Call destroy() when done (usePostgres does it for you). */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = findBinDir();
  const owner = serverUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tally-pg-"));
  const server = new EphemeralPostgres(bin, owner, dir, options);
  live.add(server);
  try {
    fs.chownSync(dir, owner.uid, owner.gid);
    await server.init();
    await server.startOnFreePort();
    return server;
  } catch (err) {
    await server.destroy();
    throw err;
  }
}

/**
 * Mocha helper: one server per `describe` block, started in before() and
 * destroyed in after(). Returns an accessor for the running server.
 */
export function usePostgres(options: PostgresOptions = {}): () => PostgresServer {
  let server: PostgresServer | undefined;
  before(async function () {
    this.timeout(120_000);
    server = await startPostgres(options);
  });
  after(async function () {
    this.timeout(60_000);
    await server?.destroy();
    server = undefined;
  });
  return () => {
    if (server === undefined) throw new Error("postgres harness: server not started (use inside a test or hook)");
    return server;
  };
}

// ---- implementation -------------------------------------------------------

interface ServerUser {
  readonly uid: number;
  readonly gid: number;
  readonly name: string;
}

const live = new Set<EphemeralPostgres>();

// Last-resort cleanup if the test process exits without after() hooks running.
// The server is in its own process group, so a terminal's Ctrl-C never reaches
// it: kill it here, then let the signal take its usual course.
process.on("exit", () => {
  for (const server of live) server.destroySync();
});
for (const name of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(name, () => {
    for (const server of live) server.destroySync();
    if (process.listenerCount(name) === 0) process.kill(process.pid, name);
  });
}

class EphemeralPostgres implements PostgresServer {
  port = 0;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private destroyed = false;
  private readonly dataDir: string;
  private readonly logFile: string;
  private tlsSettings: Record<string, string> = {};
  caFile = "";

  constructor(
    private readonly bin: string,
    private readonly owner: ServerUser,
    readonly dir: string,
    private readonly options: PostgresOptions,
  ) {
    this.dataDir = path.join(dir, "data");
    this.logFile = path.join(dir, "server.log");
  }

  get url(): string {
    return this.urlFor("postgres");
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  urlFor(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  async init(): Promise<void> {
    const args = ["-D", this.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"];
    await new Promise<void>((resolve, reject) => {
      const child = spawn(path.join(this.bin, "initdb"), args, {
        ...this.spawnIdentity(),
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", LC_ALL: "C", LANG: "C" },
      });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.on("error", reject);
      child.on("exit", (code) =>
        code === 0 ? resolve() : reject(new Error(`initdb exited with ${code}:\n${output.slice(-4000)}`)),
      );
    });
    const tls = preparePostgresTls(path.join(this.dir, "tls"), this.dataDir, process.getuid?.() === 0 ? this.owner : undefined);
    this.tlsSettings = tls.settings;
    this.caFile = tls.caFile;
    requireTlsForRoles(this.dataDir);
  }

  async provisionRoles(database: string): Promise<SettlementRoles> {
    const passwords = { owner: secret(), settler: secret(), reader: secret() };
    const admin = new Client({ connectionString: this.url });
    await admin.connect();
    try {
      await provisionSettlementRoles(admin, database, passwords);
    } finally {
      await admin.end();
    }
    const inDatabase = new Client({ connectionString: this.urlFor(database) });
    await inDatabase.connect();
    try {
      await lockPublicSchema(inDatabase);
    } finally {
      await inDatabase.end();
    }
    const url = (role: string, password: string): string =>
      `postgres://${role}:${encodeURIComponent(password)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
    return {
      ownerUrl: url(POSTGRES_ROLES.owner, passwords.owner),
      settlerUrl: url(POSTGRES_ROLES.settler, passwords.settler),
      readerUrl: url(POSTGRES_ROLES.reader, passwords.reader),
      caFile: this.caFile,
    };
  }

  async startOnFreePort(): Promise<void> {
    // Binding port 0 then releasing it races with other processes; retry on "in use".
    for (let attempt = 1; ; attempt++) {
      this.port = await freeLoopbackPort();
      try {
        await this.start();
        return;
      } catch (err) {
        const inUse = /could not bind|Address already in use/i.test(this.logTail(20));
        if (!inUse || attempt >= 5) throw err;
      }
    }
  }

  async start(): Promise<void> {
    if (this.destroyed) throw new Error("postgres harness: server was destroyed");
    if (this.child !== undefined) throw new Error("postgres harness: server already running");
    const durable = this.options.durable === true;
    const settings: Record<string, string> = {
      listen_addresses: "127.0.0.1",
      port: String(this.port),
      unix_socket_directories: this.dir,
      max_connections: "60",
      fsync: durable ? "on" : "off",
      synchronous_commit: durable ? "on" : "off",
      full_page_writes: durable ? "on" : "off",
      logging_collector: "off",
      ...this.tlsSettings,
      ...this.options.settings,
    };
    const args = ["-D", this.dataDir];
    for (const [name, value] of Object.entries(settings)) args.push("-c", `${name}=${value}`);
    const log = fs.openSync(this.logFile, "a");
    fs.chownSync(this.logFile, this.owner.uid, this.owner.gid);
    let child: ChildProcess;
    try {
      child = spawn(path.join(this.bin, "postgres"), args, {
        ...this.spawnIdentity(),
        detached: true, // own process group, so teardown can signal it as a whole
        stdio: ["ignore", log, log],
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", LC_ALL: "C", LANG: "C", TZ: "UTC" },
      });
    } finally {
      fs.closeSync(log);
    }
    this.child = child;
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once("error", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    try {
      await this.waitUntilReady();
    } catch (err) {
      await this.kill9();
      throw err;
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child?.pid === undefined) return;
    signal(child.pid, "SIGINT"); // fast shutdown: abort transactions, checkpoint, exit
    if (!(await within(this.exited, 15_000))) await this.kill9();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async kill9(): Promise<void> {
    const child = this.child;
    const pid = child?.pid;
    if (pid === undefined) return;
    // Freeze the postmaster so it cannot fork or reap while we collect its children.
    signal(pid, "SIGSTOP");
    const children = childrenOf(pid);
    for (const backend of children) signal(backend, "SIGKILL");
    signal(-pid, "SIGKILL");
    signal(pid, "SIGKILL");
    await this.exited;
    await waitGone(children, 10_000);
  }

  async createDatabase(name: string): Promise<string> {
    const client = new Client({ connectionString: this.url });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    } finally {
      await client.end();
    }
    return this.urlFor(name);
  }

  logTail(lines = 40): string {
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.kill9();
    } finally {
      this.destroyed = true;
      live.delete(this);
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  /** Synchronous teardown for process exit: no awaiting possible. */
  destroySync(): void {
    const pid = this.child?.pid;
    if (pid !== undefined) {
      signal(pid, "SIGSTOP");
      for (const backend of childrenOf(pid)) signal(backend, "SIGKILL");
      signal(-pid, "SIGKILL");
      signal(pid, "SIGKILL");
    }
    this.destroyed = true;
    live.delete(this);
    try {
      fs.rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }

  private spawnIdentity(): { uid?: number; gid?: number } {
    return process.getuid?.() === 0 ? { uid: this.owner.uid, gid: this.owner.gid } : {};
  }

  private async waitUntilReady(): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (this.child === undefined) {
        throw new Error(`postgres exited during start-up; log:\n${this.logTail()}`);
      }
      const client = new Client({ connectionString: this.url, connectionTimeoutMillis: 1_000 });
      client.on("error", () => undefined);
      try {
        await client.connect();
        await client.query("SELECT 1");
        await client.end();
        return;
      } catch (err) {
        lastError = err;
        await client.end().catch(() => undefined);
        await sleep(100);
      }
    }
    throw new Error(
      `postgres did not accept connections on 127.0.0.1:${this.port} in time ` +
        `(${lastError instanceof Error ? lastError.message : String(lastError)}); log:\n${this.logTail()}`,
    );
  }
}

function findBinDir(): string {
  const candidates: string[] = [];
  const explicit = process.env["TALLY_PG_BIN"];
  if (explicit !== undefined && explicit !== "") candidates.push(explicit);
  const root = "/usr/lib/postgresql";
  if (fs.existsSync(root)) {
    const versions = fs
      .readdirSync(root)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    // Prefer 15 (what the project is developed against), then the newest.
    versions.sort((a, b) => (a === "15" ? -1 : b === "15" ? 1 : 0));
    for (const version of versions) candidates.push(path.join(root, version, "bin"));
  }
  for (const dir of (process.env["PATH"] ?? "").split(path.delimiter)) if (dir !== "") candidates.push(dir);
  for (const dir of candidates) {
    if (isExecutable(path.join(dir, "initdb")) && isExecutable(path.join(dir, "postgres"))) return dir;
  }
  throw new Error(INSTALL_HINT);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Who runs the server: ourselves, or (as root) the postgres or a dedicated system user. */
function serverUser(): ServerUser {
  if (process.getuid?.() !== 0) {
    return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, name: os.userInfo().username };
  }
  for (const name of ["postgres", "tally-pg"]) {
    const found = lookupUser(name);
    if (found !== undefined) return found;
  }
  execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tally-pg"], {
    stdio: "ignore",
  });
  const created = lookupUser("tally-pg");
  if (created === undefined) throw new Error("postgres harness: could not create system user tally-pg");
  return created;
}

function lookupUser(name: string): ServerUser | undefined {
  try {
    const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
    const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid, name } : undefined;
  } catch {
    return undefined;
  }
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once("error", reject);
    probe.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = probe.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

/** Direct children of `pid`, read from /proc (Linux). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = fs.readdirSync("/proc");
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat !== undefined && stat.ppid === pid) found.push(Number(entry));
  }
  return found;
}

function readStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid ..." — comm may contain spaces, so parse after the last ')'.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0] ?? "", ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

async function waitGone(pids: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter((pid) => {
      const stat = readStat(pid);
      return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
    });
    if (alive.length === 0 || Date.now() > deadline) return;
    await sleep(20);
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

async function within(promise: Promise<void> | undefined, ms: number): Promise<boolean> {
  if (promise === undefined) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function secret(): string {
  return randomBytes(18).toString("base64url");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
