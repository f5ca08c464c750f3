// Real Prometheus and promtool for tests. Prometheus runs from the deployed
// deploy/prometheus/prometheus.yml, copied with its rules into a temp dir next
// to a targets file naming the test's nodes, so the tests exercise the file
// docker-compose mounts.

import { spawn, execFileSync } from "node:child_process";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseDocument } from "yaml";
import { MissingBinaryError } from "../../src/devcluster/binaries";
import { freePort } from "../../src/devcluster/free-port";
import { tempDir } from "./nats";

export const DEPLOY_PROMETHEUS_DIR = resolve(__dirname, "..", "..", "..", "deploy", "prometheus");

const INSTALL_HINT = "apt-get update && apt-get install -y prometheus";

function findBinary(name: "prometheus" | "promtool", envVar: string): string {
  const fromEnv = process.env[envVar];
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!existsSync(fromEnv)) throw new MissingBinaryError(`${name} (${envVar}=${fromEnv})`, INSTALL_HINT);
    return fromEnv;
  }
  try {
    const found = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    if (found !== "") return found;
  } catch {
    // not on PATH
  }
  if (existsSync(`/usr/bin/${name}`)) return `/usr/bin/${name}`;
  throw new MissingBinaryError(name, INSTALL_HINT);
}

export const prometheusBinary = (): string => findBinary("prometheus", "PROMETHEUS_BIN");
export const promtoolBinary = (): string => findBinary("promtool", "PROMTOOL_BIN");

export interface ToolResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs promtool with `args`, feeding `input` on stdin; never rejects on a non-zero exit. */
export function promtool(args: readonly string[], input?: string): Promise<ToolResult> {
  const binary = promtoolBinary();
  return new Promise((resolveRun, reject) => {
    const child = spawn(binary, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolveRun({ code, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

/** One entry of a Prometheus file_sd targets file. */
export interface TargetGroup {
  readonly targets: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}

export interface PrometheusOptions {
  readonly targets: readonly TargetGroup[];
  /** Replaces the global scrape and evaluation intervals of the deployed config. */
  readonly scrapeInterval?: string;
}

export interface VectorSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

export interface RuleGroup {
  readonly name: string;
  readonly file: string;
  readonly rules: ReadonlyArray<{ readonly name: string; readonly type: string; readonly health: string }>;
}

interface ApiResponse<T> {
  readonly status: "success" | "error";
  readonly data: T;
  readonly error?: string;
}

export class PrometheusProcess {
  private exited = false;

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly child: ReturnType<typeof spawn>,
  ) {
    child.once("exit", () => (this.exited = true));
    child.once("error", () => (this.exited = true));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts Prometheus on a free loopback port and waits until it is ready. */
  static async start(options: PrometheusOptions): Promise<PrometheusProcess> {
    const binary = prometheusBinary();
    const dir = tempDir("prometheus");
    let prometheus: PrometheusProcess | undefined;
    try {
      writeConfig(dir, options);
      const port = await freePort();
      const log = createWriteStream(join(dir, "prometheus.log"));
      const child = spawn(
        binary,
        [
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      child.stdout?.pipe(log);
      child.stderr?.pipe(log);
      prometheus = new PrometheusProcess(dir, port, child);
      await prometheus.waitReady(20_000);
      return prometheus;
    } catch (error) {
      await prometheus?.kill();
      const log = existsSync(join(dir, "prometheus.log")) ? readFileSync(join(dir, "prometheus.log"), "utf8").slice(-2_000) : "";
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`prometheus did not start: ${error instanceof Error ? error.message : String(error)}\n${log}`, { cause: error });
    }
  }

  /** An instant query; the series of the resulting vector. */
  async query(promql: string): Promise<VectorSample[]> {
    const data = await this.api<{ resultType: string; result: VectorSample[] }>(`/api/v1/query?query=${encodeURIComponent(promql)}`);
    if (data.resultType !== "vector") throw new Error(`expected a vector from ${promql}, got ${data.resultType}`);
    return data.result;
  }

  async ruleGroups(): Promise<RuleGroup[]> {
    return (await this.api<{ groups: RuleGroup[] }>("/api/v1/rules")).groups;
  }

  async targetsHealth(): Promise<Array<{ scrapeUrl: string; health: string; lastError: string }>> {
    const data = await this.api<{ activeTargets: Array<{ scrapeUrl: string; health: string; lastError: string }> }>("/api/v1/targets");
    return data.activeTargets;
  }

  /** Stops Prometheus and removes its temp dir (data, copied config, log). */
  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** SIGTERM, then SIGKILL after 10 s; resolves once the process has exited. */
  private async kill(): Promise<void> {
    const child = this.child;
    if (this.exited || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolveExit) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      child.once("exit", () => {
        clearTimeout(timer);
        resolveExit();
      });
      child.kill("SIGTERM");
    });
  }

  private async api<T>(path: string): Promise<T> {
    const response = await fetch(`${this.url}${path}`);
    const body = (await response.json()) as ApiResponse<T>;
    if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error ?? response.statusText}`);
    return body.data;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exited) throw new Error(`prometheus exited during start-up`);
      try {
        const response = await fetch(`${this.url}/-/ready`);
        if (response.ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`prometheus not ready within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Copies the deployed prometheus.yml and alerts.yml into `dir` and writes the
 * test's own targets/tally.json beside them; relative paths in the config
 * then resolve to these copies. Only the global intervals may change.
 */
function writeConfig(dir: string, options: PrometheusOptions): void {
  const config = parseDocument(readFileSync(join(DEPLOY_PROMETHEUS_DIR, "prometheus.yml"), "utf8"));
  if (options.scrapeInterval !== undefined) {
    config.setIn(["global", "scrape_interval"], options.scrapeInterval);
    config.setIn(["global", "scrape_timeout"], options.scrapeInterval);
    config.setIn(["global", "evaluation_interval"], options.scrapeInterval);
  }
  writeFileSync(join(dir, "prometheus.yml"), config.toString());
  copyFileSync(join(DEPLOY_PROMETHEUS_DIR, "alerts.yml"), join(dir, "alerts.yml"));
  mkdirSync(join(dir, "targets"));
  writeFileSync(join(dir, "targets", "tally.json"), JSON.stringify(options.targets, null, 2));
}
