// A throw-away redis-server on a free loopback port plus a minimal RESP client
// (over node:net) for the benchmarks. There is no Redis npm client in the
// project; the client here supports what the bench needs: any command as an
// array of bulk strings, replies of every RESP2 type, and pipelining — each
// connection writes requests as they come and matches replies in FIFO order,
// so many concurrent callers share one or a few connections.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../src/devcluster/free-port";

export type RespValue = string | number | null | RespValue[];

export class RedisError extends Error {}

const REDIS_BIN = process.env["TALLY_REDIS_BIN"] ?? "/usr/bin/redis-server";

export interface RedisServerOptions {
  /** Extra `--name value` arguments, e.g. { appendfsync: "always" }. */
  readonly settings?: Readonly<Record<string, string>>;
  readonly startTimeoutMs?: number;
}

/** A redis-server child process in its own temp dir. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const dir = mkdtempSync(join(tmpdir(), "tally-redis-"));
    const server = new RedisServer(await freePort(), dir);
    try {
      await server.launch(options);
      return server;
    } catch (error) {
      await server.destroy();
      throw error;
    }
  }

  get host(): string {
    return "127.0.0.1";
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(join(this.dir, "redis.log"), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  private async launch(options: RedisServerOptions): Promise<void> {
    const settings: Record<string, string> = {
      port: String(this.port),
      bind: "127.0.0.1",
      dir: this.dir,
      logfile: join(this.dir, "redis.log"),
      daemonize: "no",
      save: "",
      appendonly: "yes",
      appendfsync: "everysec",
      ...options.settings,
    };
    const args: string[] = [];
    for (const [name, value] of Object.entries(settings)) args.push(`--${name}`, value);
    const child = spawn(REDIS_BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once("error", (error) => {
        stderr += String(error);
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
    for (;;) {
      if (this.child === undefined) throw new Error(`redis-server exited during start-up: ${stderr}\n${this.logTail()}`);
      try {
        const client = await RedisClient.connect(this.port, this.host);
        try {
          if ((await client.command("PING")) === "PONG") return;
        } finally {
          client.close();
        }
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING on ${this.port}: ${stderr}\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops the server (SIGTERM, SIGKILL after 10 s) and removes its temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.kill("SIGTERM");
      await this.exited;
      clearTimeout(timer);
    }
    this.child = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

interface Pending {
  resolve(value: RespValue): void;
  reject(error: Error): void;
}

/** One connection; requests are pipelined and answered in order. */
export class RedisClient {
  private readonly pending: Pending[] = [];
  private head = 0;
  private buffer: Buffer = Buffer.alloc(0);
  private closed: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    const fail = (error: Error): void => this.failAll(error);
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("redis connection closed")));
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RedisClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RedisClient(socket));
      });
    });
  }

  /** Sends one command; resolves with its reply, rejects with RedisError on an error reply. */
  command(...args: Array<string | number>): Promise<RespValue> {
    if (this.closed !== undefined) return Promise.reject(this.closed);
    return new Promise<RespValue>((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(encode(args));
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    let offset = 0;
    for (;;) {
      const parsed = parse(this.buffer, offset);
      if (parsed === undefined) break;
      offset = parsed.end;
      const waiter = this.pending[this.head];
      this.head++;
      if (waiter !== undefined) {
        if (parsed.value instanceof RedisError) waiter.reject(parsed.value);
        else waiter.resolve(parsed.value);
      }
    }
    this.buffer = offset >= this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(offset);
    // Compact the FIFO now and then instead of shift() per reply.
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
  }

  private failAll(error: Error): void {
    if (this.closed !== undefined) return;
    this.closed = error;
    for (let i = this.head; i < this.pending.length; i++) this.pending[i]?.reject(error);
    this.pending.length = 0;
    this.head = 0;
  }
}

/** A few connections; each command goes to the next one in turn. */
export class RedisPool {
  private next = 0;

  private constructor(private readonly clients: readonly RedisClient[]) {}

  static async connect(port: number, size: number, host = "127.0.0.1"): Promise<RedisPool> {
    const clients = await Promise.all(Array.from({ length: Math.max(1, size) }, () => RedisClient.connect(port, host)));
    return new RedisPool(clients);
  }

  command(...args: Array<string | number>): Promise<RespValue> {
    const client = this.clients[this.next++ % this.clients.length];
    if (client === undefined) return Promise.reject(new Error("empty redis pool"));
    return client.command(...args);
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}

function encode(args: ReadonlyArray<string | number>): Buffer {
  let out = `*${args.length}\r\n`;
  for (const arg of args) {
    const text = String(arg);
    out += `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  }
  return Buffer.from(out);
}

const CR = 13;

/** Parses one reply at `offset`; undefined when the buffer does not hold all of it yet. */
function parse(buf: Buffer, offset: number): { value: RespValue | RedisError; end: number } | undefined {
  if (offset >= buf.length) return undefined;
  const lineEnd = buf.indexOf(CR, offset);
  if (lineEnd < 0 || lineEnd + 1 >= buf.length) return undefined;
  const type = buf[offset];
  const line = buf.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b: // '+'
      return { value: line, end: next };
    case 0x2d: // '-'
      return { value: new RedisError(line), end: next };
    case 0x3a: // ':'
      return { value: Number(line), end: next };
    case 0x24: {
      // '$'
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (next + length + 2 > buf.length) return undefined;
      return { value: buf.toString("utf8", next, next + length), end: next + length + 2 };
    }
    case 0x2a: {
      // '*'
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, at);
        if (item === undefined) return undefined;
        // An error nested in an array (e.g. from EXEC) is kept as its message.
        items.push(item.value instanceof RedisError ? item.value.message : item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`unexpected RESP type byte ${String(type)}`);
  }
}
