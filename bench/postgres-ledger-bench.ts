// What users would pick instead (1): a Postgres ledger. A real, durable
// Postgres (fsync and synchronous_commit on — a ledger users would trust), one
// `accounts` table, and a debit as one conditional UPDATE per call over a
// pg.Pool sized to the client concurrency. "hot" puts every call on one row;
// "spread" goes round-robin over `accounts` rows.
//
// With `wanDelayMs`, the pool reaches Postgres through a delay proxy (that
// one-way delay on every chunk in each direction): a centralized ledger reached
// across a WAN. Every pool connection is opened before timing starts.
// Run: node dist/bench/postgres-ledger-bench.js [calls] [concurrency] [accounts] [wanDelayMs]

import { Pool, type PoolClient } from "pg";
import { freePort } from "../src/devcluster/free-port";
import { GatewayProxy } from "../src/devcluster/gateway-proxy";
import { startPostgres } from "../test/support/postgres";
import { closedLoop } from "./load";
import { fmt, progress, summarize, table, type LatencySummary } from "./stats";

export interface PostgresLedgerBenchOptions {
  readonly calls: number;
  readonly concurrency: number;
  readonly accounts: number;
  /** One-way delay between the client and Postgres (a WAN), ms. */
  readonly wanDelayMs?: number;
}

export interface PostgresLedgerBenchResult {
  readonly hot: LatencySummary;
  readonly spread: LatencySummary;
}

const DEBIT_SQL = "UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1";
const HUGE = "1000000000000000000";

export async function runPostgresLedgerBench(options: PostgresLedgerBenchOptions): Promise<PostgresLedgerBenchResult> {
  const { calls, concurrency, accounts } = options;
  const wanDelayMs = options.wanDelayMs ?? 0;
  const server = await startPostgres({ durable: true, settings: { max_connections: String(Math.max(60, concurrency + 10)) } });
  let proxy: GatewayProxy | undefined;
  let pool: Pool | undefined;
  try {
    const setup = new Pool({ connectionString: server.url, max: 1 });
    setup.on("error", () => undefined);
    try {
      await setup.query("CREATE TABLE accounts (id text PRIMARY KEY, balance bigint NOT NULL)");
      await setup.query("INSERT INTO accounts (id, balance) VALUES ('hot', $1)", [HUGE]);
      await setup.query("INSERT INTO accounts (id, balance) SELECT 'acct-' || g, $1 FROM generate_series(0, $2::int - 1) AS g", [HUGE, accounts]);
      await setup.query("VACUUM ANALYZE accounts");
    } finally {
      await setup.end();
    }

    let port = server.port;
    if (wanDelayMs > 0) {
      proxy = new GatewayProxy(await freePort(), server.port);
      proxy.delayMs = wanDelayMs;
      await proxy.start();
      port = proxy.listenPort;
    }
    pool = new Pool({
      connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
      max: concurrency,
      idleTimeoutMillis: 0, // keep every connection open for the whole run
      connectionTimeoutMillis: 30_000,
    });
    pool.on("error", () => undefined);
    const db = pool;
    progress(`postgres: opening ${concurrency} connections${wanDelayMs > 0 ? ` through a ${wanDelayMs} ms one-way delay` : ""}`);
    const opened: PoolClient[] = await Promise.all(Array.from({ length: concurrency }, () => db.connect()));
    for (const client of opened) client.release();

    const debit = async (id: string): Promise<void> => {
      const result = await db.query(DEBIT_SQL, [1, id]);
      if (result.rowCount !== 1) throw new Error(`postgres debit of ${id} not approved (rowCount ${String(result.rowCount)})`);
    };
    // Warm-up: prepared plans, JIT; short when every call pays a WAN round trip.
    const warm = wanDelayMs > 0 ? concurrency : Math.min(1000, calls);
    let w = 0;
    await closedLoop(warm, concurrency, () => debit(`acct-${w++ % accounts}`));

    progress(`postgres: hot, ${calls} calls, concurrency ${concurrency}`);
    const hotRun = await closedLoop(calls, concurrency, () => debit("hot"));
    progress(`postgres: spread over ${accounts} accounts, ${calls} calls`);
    let n = 0;
    const spreadRun = await closedLoop(calls, concurrency, () => debit(`acct-${n++ % accounts}`));
    return {
      hot: summarize(hotRun.latenciesNs, hotRun.seconds),
      spread: summarize(spreadRun.latenciesNs, spreadRun.seconds),
    };
  } finally {
    await pool?.end().catch(() => undefined);
    await proxy?.stop();
    await server.destroy();
  }
}

export function postgresTable(result: PostgresLedgerBenchResult, wanDelayMs = 0): string {
  const label = wanDelayMs > 0 ? ` (+${wanDelayMs} ms one way)` : "";
  const row = (name: string, s: LatencySummary): string[] => [name, String(s.count), fmt(s.perSecond), fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.maxMs)];
  return table(
    ["postgres UPDATE debit (durable)", "calls", "ops/s", "p50 ms", "p99 ms", "max ms"],
    [row(`hot${label}`, result.hot), row(`spread${label}`, result.spread)],
  );
}

if (require.main === module) {
  const [calls, concurrency, accounts, wanDelayMs] = process.argv.slice(2).map(Number);
  const delay = wanDelayMs ?? 0;
  runPostgresLedgerBench({ calls: calls || 10_000, concurrency: concurrency || 32, accounts: accounts || 10_000, wanDelayMs: delay }).then(
    (result) => console.log(postgresTable(result, delay)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
