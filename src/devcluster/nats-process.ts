// Runs one real nats-server from the config files in deploy/nats, with its
// variables passed through the environment. Used by `npm start` and the tests.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, createWriteStream } from "node:fs";
import { join, resolve } from "node:path";
import { natsServerEnv, natsClientSecurity, type NatsClientSecurity, type NatsSecurityFiles, type NatsUser } from "../security/nats-credentials";
import { natsServerBinary } from "./binaries";
import { stopChild } from "./stop-child";
import { waitForPort } from "./wait-for-port";

export const DEPLOY_NATS_DIR = resolve(__dirname, "..", "..", "..", "deploy", "nats");

export interface NatsProcessOptions {
  /** deploy/nats/<config>; its `-insecure` twin when `security` is absent. */
  readonly config: "region.conf" | "standalone.conf";
  /** TLS and users; without them the server runs the insecure config (experiments only). */
  readonly security?: NatsSecurityFiles;
  readonly serverName: string;
  readonly clientPort: number;
  readonly monitorPort: number;
  readonly dataDir: string;
  /** Extra variables (cluster and gateway addresses for region.conf). */
  readonly env?: Readonly<Record<string, string>>;
}

export class NatsProcess {
  private child: ChildProcess | undefined;

  constructor(readonly options: NatsProcessOptions) {}

  get url(): string {
    return `nats://127.0.0.1:${this.options.clientPort}`;
  }

  /** A client's credentials for this server; undefined when it runs insecure. */
  clientSecurity(user: NatsUser): NatsClientSecurity | undefined {
    return this.options.security === undefined ? undefined : natsClientSecurity(this.options.security, user);
  }

  /** `tally serve` flags reaching this server as `user` (or insecurely). */
  nodeFlags(user: NatsUser): string[] {
    const security = this.clientSecurity(user);
    return ["--nats", this.url, ...(security === undefined ? ["--insecure"] : ["--nats-ca", security.caFile, "--nats-nkey", security.nkeyFile])];
  }

  get monitorUrl(): string {
    return `http://127.0.0.1:${this.options.monitorPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const { options } = this;
    mkdirSync(options.dataDir, { recursive: true });
    const env = {
      ...process.env,
      NATS_SERVER_NAME: options.serverName,
      NATS_LISTEN: `127.0.0.1:${options.clientPort}`,
      NATS_MONITOR_PORT: String(options.monitorPort),
      NATS_STORE_DIR: options.dataDir,
      ...(options.security === undefined ? {} : natsServerEnv(options.security)),
      ...options.env,
    };
    const log = createWriteStream(join(options.dataDir, "nats-server.log"), { flags: "a" });
    const config = options.security === undefined ? options.config.replace(/\.conf$/, "-insecure.conf") : options.config;
    const child = spawn(natsServerBinary(), ["-c", join(DEPLOY_NATS_DIR, config)], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    this.child = child;
    const exited = new Promise<never>((_, reject) => {
      child.once("exit", (code, signal) =>
        reject(new Error(`nats-server ${options.serverName} exited (${code ?? signal}); see ${options.dataDir}/nats-server.log`)),
      );
    });
    exited.catch(() => undefined);
    await Promise.race([waitForPort(options.clientPort), exited]);
  }

  /** Graceful stop (SIGTERM), waiting for the exit. */
  async stop(): Promise<void> {
    await this.signal("SIGTERM");
  }

  /** Abrupt stop, as a crash. */
  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = undefined;
    await stopChild(child, signal, 10_000);
  }

}
