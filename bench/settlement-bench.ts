// Settlement benchmark: N accounts × 3 replicas settled into a real, throw-away
// Postgres — first a full settlement, then one where ~10% of accounts changed.
// Run: node dist/bench/settlement-bench.js [accounts] [--fast]
// (--fast turns fsync and synchronous_commit off; the default is durable.)

import * as os from "node:os";
import { performance } from "node:perf_hooks";
import { Pool } from "pg";
import { migrate } from "../src/settlement/migrate";
import { Settler } from "../src/settlement/settler";
import type { SettlementAccount, SettlementInput } from "../src/settlement/settlement-input";
import { startPostgres } from "../test/support/postgres";
import { processTreeCpuSeconds } from "./cpu";

export interface SettlementBenchOptions {
  readonly accounts: number;
  /** Fraction of accounts changed before the second settlement (default 0.1). */
  readonly changedFraction?: number;
  /** fsync + synchronous_commit on (default true). */
  readonly durable?: boolean;
}

export interface SettlementBenchPhase {
  readonly name: string;
  readonly rowsOffered: number;
  readonly accountsChanged: number;
  readonly ledgerEntries: number;
  readonly seconds: number;
  readonly rowsPerSecond: number;
  /** CPU seconds of this process (input generation, validation, encoding). */
  readonly settlerCpuSeconds: number;
  /** CPU seconds of all Postgres processes of the bench server. */
  readonly postgresCpuSeconds: number;
}

export interface SettlementBenchResult {
  readonly accounts: number;
  readonly replicas: number;
  /** Wall time of the full (first) settlement. */
  readonly seconds: number;
  /** (account, replica) rows settled per second in the full settlement. */
  readonly rowsPerSecond: number;
  /** Peak resident memory of this (settler) process, MB. */
  readonly peakRssMb: number;
  readonly durable: boolean;
  /** 1-minute load average when the bench started: other work on the machine skews wall times. */
  readonly loadAverage: number;
  readonly phases: SettlementBenchPhase[];
}

const REPLICAS = ["us-east", "eu-west", "ap-south"];

/** Server settings for the bench: enough memory and WAL room that checkpoints do not interrupt a run. */
const BENCH_SETTINGS = {
  shared_buffers: "1GB",
  max_wal_size: "16GB",
  checkpoint_timeout: "30min",
  wal_buffers: "64MB",
  maintenance_work_mem: "512MB",
};

export async function runSettlementBench(opts: SettlementBenchOptions): Promise<SettlementBenchResult> {
  const accounts = opts.accounts;
  if (!Number.isInteger(accounts) || accounts < 1) throw new Error("accounts must be a positive integer");
  const changedFraction = opts.changedFraction ?? 0.1;
  const durable = opts.durable ?? true;
  const loadAverage = os.loadavg()[0] ?? 0;
  const server = await startPostgres({ durable, settings: BENCH_SETTINGS, startTimeoutMs: 60_000 });
  const pool = new Pool({ connectionString: server.url, max: 4 });
  pool.on("error", () => undefined);
  try {
    await migrate(pool);
    const settler = new Settler({ pool });
    const phases: SettlementBenchPhase[] = [];
    const run = async (name: string, input: SettlementInput): Promise<void> => {
      const pgCpuBefore = processTreeCpuSeconds(server.pid);
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      const result = await settler.settle(input);
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      const pgCpu = processTreeCpuSeconds(server.pid) - pgCpuBefore;
      const settlement = result.settlement;
      if (result.skipped || result.unchanged || settlement === undefined) throw new Error(`${name}: nothing settled`);
      const rowsOffered = accounts * REPLICAS.length;
      phases.push({
        name,
        rowsOffered,
        accountsChanged: Number(settlement.accountsChanged),
        ledgerEntries: Number(settlement.ledgerEntries),
        seconds,
        rowsPerSecond: rowsOffered / seconds,
        settlerCpuSeconds: (cpu.user + cpu.system) / 1e6,
        postgresCpuSeconds: pgCpu,
      });
    };
    await run("full", { replicas: REPLICAS, cut: { "us-east": 1000n, "eu-west": 1000n, "ap-south": 1000n }, accounts: generate(accounts, 0) });
    await run(`${Math.round(changedFraction * 100)}% changed`, {
      replicas: REPLICAS,
      cut: { "us-east": 2000n, "eu-west": 2000n, "ap-south": 2000n },
      accounts: generate(accounts, changedFraction),
    });
    const full = phases[0];
    if (full === undefined) throw new Error("no phase ran");
    return {
      accounts,
      replicas: REPLICAS.length,
      seconds: full.seconds,
      rowsPerSecond: full.rowsPerSecond,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      durable,
      loadAverage,
      phases,
    };
  } finally {
    await pool.end().catch(() => undefined);
    await server.destroy();
  }
}

/**
 * Deterministic accounts, generated lazily so the input is never held in
 * memory. `changed` of them get extra debits (and every 1000th an overdraft).
 */
function* generate(count: number, changed: number): Generator<SettlementAccount> {
  const changeEvery = changed > 0 ? Math.max(1, Math.round(1 / changed)) : 0;
  const big = 1n << 60n;
  for (let i = 0; i < count; i++) {
    const seed = BigInt(i);
    const granted = [big + seed * 7n, seed * 13n + 500n, seed * 3n + 1000n];
    const debited = [seed * 5n, seed * 11n, seed * 2n];
    let below = [false, false, false];
    if (changeEvery > 0 && i % changeEvery === 0) {
      debited[1] = (debited[1] ?? 0n) + 100n;
      if (i % 1000 === 0) {
        debited[2] = (debited[2] ?? 0n) + big * 2n; // an overspend on an OVERDRAFT account
        below = [false, false, true];
      }
    }
    yield {
      accountId: `acct:${i.toString().padStart(9, "0")}`,
      granted,
      debited,
      mode: i % 1000 === 0 ? 2 : 1,
      rightsBelowZero: below,
    };
  }
}

function printTable(result: SettlementBenchResult): void {
  const rows = result.phases.map((p) => [
    p.name,
    p.rowsOffered.toLocaleString("en-US"),
    p.accountsChanged.toLocaleString("en-US"),
    p.ledgerEntries.toLocaleString("en-US"),
    p.seconds.toFixed(2),
    Math.round(p.rowsPerSecond).toLocaleString("en-US"),
    p.settlerCpuSeconds.toFixed(2),
    p.postgresCpuSeconds.toFixed(2),
  ]);
  const header = ["settlement", "rows offered", "accounts changed", "ledger entries", "seconds", "rows/s", "settler cpu s", "postgres cpu s"];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: string[]): string => cells.map((cell, c) => cell.padStart(widths[c] ?? 0)).join("  ");
  console.log(
    `settlement bench: ${result.accounts.toLocaleString("en-US")} accounts x ${result.replicas} replicas, ` +
      `${result.durable ? "durable (fsync on)" : "fsync off"}, ${os.cpus().length} CPUs, load average ${result.loadAverage.toFixed(2)} at start`,
  );
  console.log(line(header));
  for (const row of rows) console.log(line(row));
  console.log(`peak RSS of the settler process: ${result.peakRssMb.toFixed(0)} MB`);
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const accounts = Number(args.find((a) => /^\d+$/.test(a)) ?? "1000000");
  runSettlementBench({ accounts, durable: !args.includes("--fast") }).then(printTable, (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
