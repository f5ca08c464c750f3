// A TCP proxy placed in front of a region's NATS gateway port. It learns which
// region a link comes from (the connecting nats-server's TALLY_REGION, found
// through /proc from the link's source port, which works under TLS too; else
// the gateway CONNECT line of a plaintext link), so a test can
// cut exactly one region's links (a partition) and heal them, and it can add
// one-way delay to simulate a WAN. The delay may change while links carry
// traffic (a bench measures with and without it on the same links): bytes
// always leave in the order they arrived, so a shorter delay never lets a
// chunk overtake one still held back.

import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

interface Link {
  readonly from: string | undefined;
  readonly client: Socket;
  readonly upstream: Socket;
  readonly pipes: readonly DelayedPipe[];
}

/** One direction of a link: chunks held until due, written strictly in arrival order. */
class DelayedPipe {
  private readonly held: Array<{ readonly due: number; readonly chunk: Buffer }> = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly to: Socket) {}

  push(chunk: Buffer, delayMs: number): void {
    if (delayMs <= 0 && this.head === this.held.length) {
      this.write(chunk);
      return;
    }
    this.held.push({ due: performance.now() + delayMs, chunk });
    this.schedule();
  }

  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.held.length = 0;
    this.head = 0;
  }

  private schedule(): void {
    const next = this.held[this.head];
    if (this.timer !== undefined || next === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, Math.max(0, next.due - performance.now()));
  }

  private flush(): void {
    // Timers fire on a millisecond clock: anything due within the next millisecond goes now.
    const now = performance.now() + 1;
    for (let next = this.held[this.head]; next !== undefined && next.due <= now; next = this.held[this.head]) {
      this.head++;
      this.write(next.chunk);
    }
    if (this.head === this.held.length) {
      this.held.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.held.splice(0, this.head);
      this.head = 0;
    }
    this.schedule();
  }

  private write(chunk: Buffer): void {
    if (!this.to.destroyed) this.to.write(chunk);
  }
}

export class GatewayProxy {
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private readonly blockedSources = new Set<string>();
  private blockedAll = false;
  /** One-way delay added to every chunk in each direction. */
  delayMs = 0;

  constructor(
    readonly listenPort: number,
    readonly targetPort: number,
    readonly host = "127.0.0.1",
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.listenPort, this.host, () => resolve());
    });
  }

  async stop(): Promise<void> {
    for (const link of this.links) this.drop(link);
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Refuses every link through this proxy (the target region is cut off). */
  blockAll(): void {
    this.blockedAll = true;
    for (const link of this.links) this.drop(link);
  }

  /** Refuses links coming from region `name`. */
  blockSource(name: string): void {
    this.blockedSources.add(name);
    for (const link of this.links) if (link.from === name) this.drop(link);
  }

  heal(): void {
    this.blockedAll = false;
    this.blockedSources.clear();
  }

  private accept(client: Socket): void {
    if (this.blockedAll) {
      client.destroy();
      return;
    }
    const upstream = connect({ port: this.targetPort, host: this.host });
    const toUpstream = new DelayedPipe(upstream);
    const toClient = new DelayedPipe(client);
    const link: { from: string | undefined; client: Socket; upstream: Socket; pipes: readonly DelayedPipe[] } = {
      from: undefined,
      client,
      upstream,
      pipes: [toUpstream, toClient],
    };
    this.links.add(link);
    link.from = regionOfPeer(client.remotePort, this.listenPort);
    if (link.from !== undefined && this.blockedSources.has(link.from)) {
      this.drop(link);
      return;
    }
    let sniffed = "";
    const forward = (from: Socket, to: DelayedPipe, sniff: boolean): void => {
      from.on("data", (chunk: Buffer) => {
        // Only the first few KB can hold a gateway CONNECT; other protocols are never sniffed further.
        if (sniff && link.from === undefined && sniffed.length < 4096) {
          sniffed += chunk.toString("latin1");
          const match = /"gateway":"([^"]+)"/.exec(sniffed);
          if (match?.[1] !== undefined) {
            link.from = match[1];
            if (this.blockedSources.has(link.from)) {
              this.drop(link);
              return;
            }
          }
        }
        to.push(chunk, this.delayMs);
      });
    };
    forward(client, toUpstream, true);
    forward(upstream, toClient, false);
    const close = (): void => this.drop(link);
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  }

  private drop(link: Link): void {
    this.links.delete(link);
    for (const pipe of link.pipes) pipe.close();
    link.client.destroy();
    link.upstream.destroy();
  }
}

/**
 * The TALLY_REGION of the local process whose socket has source port
 * `peerPort` and talks to `localPort` (Linux /proc), or undefined when it
 * cannot be told (another OS, no permission, a process without the variable).
 * Gateway links are few, so a scan of /proc per link costs nothing that matters.
 */
function regionOfPeer(peerPort: number | undefined, localPort: number): string | undefined {
  if (peerPort === undefined) return undefined;
  try {
    const inode = socketInode(peerPort, localPort);
    if (inode === undefined) return undefined;
    const target = `socket:[${inode}]`;
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid)) continue;
      let fds: string[];
      try {
        if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "nats-server") continue;
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          continue;
        }
        if (link !== target) continue;
        const environ = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
        return environ.find((v) => v.startsWith("TALLY_REGION="))?.slice("TALLY_REGION=".length);
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/** Inode of the TCP socket bound to local port `port` and connected to port `remote`, from /proc/net/tcp{,6}. */
function socketInode(port: number, remote: number): string | undefined {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const rem = fields[2];
      if (local === undefined || rem === undefined) continue;
      if (local.endsWith(`:${hex(port)}`) && rem.endsWith(`:${hex(remote)}`)) return fields[9];
    }
  }
  return undefined;
}
