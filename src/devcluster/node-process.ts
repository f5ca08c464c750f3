// Runs one Tally node as a child process (`tally serve`), waits for its ready
// line, and stops, kills (-9) or restarts it. Used by `tally up` and the e2e tests.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { stopChild } from "./stop-child";
import type { NatsClientSecurity } from "../security/nats-credentials";

export const CLI_ENTRY = resolve(__dirname, "..", "cli", "main.js");

export interface NodeProcessOptions {
  readonly region: string;
  readonly regions: readonly string[];
  readonly natsUrl: string;
  /** NATS credentials (--nats-ca, --nats-nkey); absent means --insecure. */
  readonly natsSecurity?: NatsClientSecurity;
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly logDir: string;
  readonly postgresUrl?: string;
  /** Owner and reader roles and the server's CA (--postgres-owner-url, --postgres-reader-url, --postgres-ca). */
  readonly postgresSecurity?: PostgresSecurity;
  readonly extraArgs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Flags for the node runtime itself (e.g. --cpu-prof for profiling). */
  readonly nodeFlags?: readonly string[];
}

export interface PostgresSecurity {
  readonly ownerUrl?: string;
  readonly readerUrl?: string;
  readonly caFile?: string;
}

function postgresSecurityFlags(security: PostgresSecurity | undefined): string[] {
  if (security === undefined) return [];
  return [
    ...(security.ownerUrl === undefined ? [] : ["--postgres-owner-url", security.ownerUrl]),
    ...(security.readerUrl === undefined ? [] : ["--postgres-reader-url", security.readerUrl]),
    ...(security.caFile === undefined ? [] : ["--postgres-ca", security.caFile]),
  ];
}

export class NodeProcess {
  private child: ChildProcess | undefined;
  private exit: Promise<number | null> | undefined;

  constructor(readonly options: NodeProcessOptions) {}

  get grpcAddress(): string {
    return `127.0.0.1:${this.options.grpcPort}`;
  }

  get metricsUrl(): string {
    return `http://127.0.0.1:${this.options.metricsPort}/metrics`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    const o = this.options;
    mkdirSync(o.logDir, { recursive: true });
    const args = [
      ...(o.nodeFlags ?? []),
      CLI_ENTRY,
      "serve",
      "--region",
      o.region,
      "--regions",
      o.regions.join(","),
      "--nats",
      o.natsUrl,
      ...(o.natsSecurity === undefined ? ["--insecure"] : ["--nats-ca", o.natsSecurity.caFile, "--nats-nkey", o.natsSecurity.nkeyFile]),
      "--grpc",
      this.grpcAddress,
      "--metrics-port",
      String(o.metricsPort),
      ...(o.postgresUrl !== undefined ? ["--postgres", o.postgresUrl, ...postgresSecurityFlags(o.postgresSecurity)] : []),
      ...(o.extraArgs ?? []),
    ];
    const child = spawn(process.execPath, args, {
      env: { ...process.env, ...o.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    this.exit = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    const log = createWriteStream(join(o.logDir, `node-${o.region}.log`), { flags: "a" });
    child.stderr?.pipe(log);
    await new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${o.region} not ready in ${timeoutMs} ms; see ${o.logDir}`)), timeoutMs);
      const lines = createInterface({ input: child.stdout });
      lines.on("line", (line) => {
        log.write(`${line}\n`);
        if (line.includes('"event":"ready"')) {
          clearTimeout(timer);
          resolveReady();
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`node ${o.region} exited (${code ?? signal}) before ready; see ${o.logDir}/node-${o.region}.log`));
      });
    });
  }

  /** Resolves with the exit code once the started process exits on its own or is stopped (null: by a signal). */
  exited(): Promise<number | null> {
    if (this.exit === undefined) throw new Error("node process was never started");
    return this.exit;
  }

  /** SIGTERM and wait: a graceful stop. */
  async stop(): Promise<void> {
    await this.signal("SIGTERM");
  }

  /** SIGKILL: a crash. */
  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    this.child = undefined;
    await stopChild(child, signal, 15_000);
  }

}
