// Runs the gateway proxies of a local supercluster in their own process, so
// forwarding (and simulated WAN delay) never competes with the tests' or
// benchmarks' own event loop. Controlled over IPC by ProxyHost.

import { fork, type ChildProcess } from "node:child_process";
import { GatewayProxy } from "./gateway-proxy";

export interface ProxySpec {
  readonly name: string;
  readonly listenPort: number;
  readonly targetPort: number;
}

type Command =
  | { readonly op: "start"; readonly proxies: readonly ProxySpec[] }
  | { readonly op: "partition"; readonly name: string }
  | { readonly op: "heal" }
  | { readonly op: "delay"; readonly ms: number }
  | { readonly op: "stop" };

interface Reply {
  readonly id: number;
  readonly error?: string;
}

/** Parent side: forks this file and sends it commands. */
export class ProxyHost {
  private child: ChildProcess | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(): void; reject(error: Error): void }>();

  async start(proxies: readonly ProxySpec[]): Promise<void> {
    const child = fork(__filename, ["--proxy-host"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child = child;
    // A closed channel (the host already exited, e.g. on Ctrl-C) is handled by stop().
    child.on("error", () => undefined);
    child.on("message", (message: Reply) => {
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error));
      else waiter?.resolve();
    });
    child.on("exit", () => {
      for (const waiter of this.pending.values()) waiter.reject(new Error("proxy host exited"));
      this.pending.clear();
    });
    await this.send({ op: "start", proxies });
  }

  /** Cuts every gateway link to and from region `name`. */
  partition(name: string): Promise<void> {
    return this.send({ op: "partition", name });
  }

  heal(): Promise<void> {
    return this.send({ op: "heal" });
  }

  setDelay(ms: number): Promise<void> {
    return this.send({ op: "delay", ms });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    if (child.connected) child.send({ id: this.nextId++, command: { op: "stop" } });
    else child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  private send(command: Command): Promise<void> {
    const child = this.child;
    if (child === undefined) return Promise.reject(new Error("proxy host not started"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      child.send({ id, command });
    });
  }
}

/** Child side: owns the proxies. */
function serve(): void {
  const proxies = new Map<string, GatewayProxy>();
  const handle = async (command: Command): Promise<void> => {
    switch (command.op) {
      case "start":
        for (const spec of command.proxies) {
          const proxy = new GatewayProxy(spec.listenPort, spec.targetPort);
          await proxy.start();
          proxies.set(spec.name, proxy);
        }
        return;
      case "partition":
        for (const [name, proxy] of proxies) {
          if (name === command.name) proxy.blockAll();
          else proxy.blockSource(command.name);
        }
        return;
      case "heal":
        for (const proxy of proxies.values()) proxy.heal();
        return;
      case "delay":
        for (const proxy of proxies.values()) proxy.delayMs = command.ms;
        return;
      case "stop":
        await Promise.all([...proxies.values()].map((p) => p.stop()));
        process.exit(0);
    }
  };
  process.on("message", (message: { id: number; command: Command }) => {
    handle(message.command).then(
      () => process.send?.({ id: message.id }),
      (error: unknown) => process.send?.({ id: message.id, error: String(error) }),
    );
  });
  // The parent is gone: nothing left to serve.
  process.on("disconnect", () => process.exit(0));
  // Ctrl-C reaches the whole process group; the parent decides when proxies stop.
  process.on("SIGINT", () => undefined);
}

if (require.main === module && process.argv.includes("--proxy-host")) serve();
