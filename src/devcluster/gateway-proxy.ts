// A TCP proxy placed in front of a region's NATS gateway port. It reads the
// gateway CONNECT line to learn which region a link comes from, so a test can
// cut exactly one region's links (a partition) and heal them, and it can add
// one-way delay to simulate a WAN.

import { createServer, connect, type Server, type Socket } from "node:net";

interface Link {
  readonly from: string | undefined;
  readonly client: Socket;
  readonly upstream: Socket;
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
    const link: { from: string | undefined; client: Socket; upstream: Socket } = { from: undefined, client, upstream };
    this.links.add(link);
    let sniffed = "";
    const forward = (from: Socket, to: Socket, sniff: boolean): void => {
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
        if (this.delayMs > 0) setTimeout(() => to.write(chunk), this.delayMs);
        else to.write(chunk);
      });
    };
    forward(client, upstream, true);
    forward(upstream, client, false);
    const close = (): void => this.drop(link);
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  }

  private drop(link: Link): void {
    this.links.delete(link);
    link.client.destroy();
    link.upstream.destroy();
  }
}
