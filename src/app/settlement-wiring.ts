// Settlement is optional per node: wired only when a Postgres URL is given.
// Migrations run at start; the Admin RPCs and the periodic job share one
// Settler; its metrics hooks feed the node's registry.

import { Pool } from "pg";
import type { Logger } from "../node/logger";
import type { TallyNode } from "../node/tally-node";
import { collectCut, type CutSources } from "../node/settlement-cut";
import { requestSnapshot } from "../replication/snapshot-requests";
import type { PostgresSettings } from "./config";
import { migrate, MIGRATION_LOCK_KEY } from "../settlement/migrate";
import { Settler } from "../settlement/settler";
import { SettlementQueries } from "../settlement/settlement-queries";
import { grantSettlementRoles, roleOfUrl } from "../security/postgres-roles";
import { postgresSsl } from "../security/postgres-tls";
import { ledgerEntryToWire, overspendToWire, settlementToWire } from "../server/wire";
import type { SettlementAdmin } from "../server/admin-service";
import type { SettledBalances } from "../core/settled-balances";
import type { SettledStream } from "../replication/settled-stream";
import type { SettledAccountValue } from "../replication/settled-codec";
import type { SettleResult } from "../settlement/settler";
import type { SettlementAccount } from "../settlement/settlement-input";

export interface RunningSettlement {
  readonly admin: SettlementAdmin;
  stop(): Promise<void>;
}

export async function startSettlement(
  node: TallyNode,
  postgres: PostgresSettings,
  intervalMs: number,
  logger: Logger,
  settledStream: SettledStream,
): Promise<RunningSettlement> {
  // Every connection has a connect and a statement timeout: a slow or gone
  // Postgres fails a settlement, it never stalls the node.
  const pool = settlementPool(postgres, postgres.url, postgres.poolSize, logger);
  await migrateAsOwner(postgres, pool, logger);
  // Listings and history go through the read-only role when one is given.
  const readerPool = postgres.readerUrl === undefined ? undefined : settlementPool(postgres, postgres.readerUrl, 2, logger);
  const metrics = node.metrics;
  const settler = new Settler({
    pool,
    metrics: {
      durationSeconds: (seconds, outcome) => {
        if (outcome === "failed") metrics.settlementFailures.inc();
        else metrics.settlementDuration.observe(seconds);
      },
      lastSuccessTime: (unixSeconds) => metrics.settlementLastSuccess.set(unixSeconds),
      accountsSettled: (count) => metrics.settlementAccounts.set(count),
      overspendAmount: (amount) => metrics.overspendAmount.inc(Number(amount)),
      strictViolations: (count) => metrics.invariantViolations.inc(count),
    },
    onError: (error) => logger.warn("settlement failed", { error: error.message }),
  });
  const connection = node.transports.log.connection;
  const cutSources: CutSources = {
    region: node.region,
    replicas: node.state.replicas,
    defaultPolicy: node.state.defaultPolicy,
    lotGuardMs: node.state.lotGuardMs,
    takeOwnSnapshot: () => node.currentSnapshot(),
    requestSnapshot: (region, timeoutMs) => requestSnapshot(connection, node.state.replicas, region, timeoutMs),
    readSnapshot: (region, onChunk) => node.transports.snapshots.read(region, onChunk),
  };
  const source = () => collectCut(cutSources, logger);
  // A settlement, then the totals it changed published for every node's reads.
  const settleAndPublish = async (): Promise<SettleResult> => {
    const input = await source();
    const changed: SettledAccountValue[] = [];
    const result = await settler.settle({ ...input, accounts: noting(input.accounts, node.views.settled, changed) });
    const settlement = result.settlement;
    if (!result.skipped && !result.unchanged && settlement !== undefined && changed.length > 0) {
      await settledStream.publish(settlement.id, changed);
    }
    return result;
  };
  // With several nodes per region only the writer settles (a standby has no snapshot of its own to cut from).
  const settleIfWriting = async (): Promise<void> => {
    if (node.writing) await settleAndPublish();
  };
  const stopPeriodic = intervalMs > 0 ? periodic(intervalMs, settleIfWriting, logger) : undefined;
  const q = readerPool === undefined ? settler.queries : new SettlementQueries(readerPool);
  const admin: SettlementAdmin = {
    settle: async () => {
      const result = await settleAndPublish();
      return {
        settlement: result.skipped || result.settlement === undefined ? undefined : settlementToWire(result.settlement),
        skipped: result.skipped,
        unchanged: result.unchanged,
      };
    },
    listSettlements: async (pageSize, pageToken) => {
      const page = await q.listSettlements({ pageSize, pageToken });
      return { settlements: page.settlements.map(settlementToWire), nextPageToken: page.nextPageToken };
    },
    listOverspends: async (filter) => {
      const page = await q.listOverspends({
        accountId: filter.accountId,
        sinceMs: filter.sinceMs,
        untilMs: filter.untilMs,
        pageSize: filter.pageSize,
        pageToken: filter.pageToken,
      });
      return {
        overspends: page.overspends.map(overspendToWire),
        nextPageToken: page.nextPageToken,
      };
    },
    accountHistory: async (accountId, pageSize, pageToken) => {
      const page = await q.accountHistory(accountId, { pageSize, pageToken });
      return {
        entries: page.entries.map(ledgerEntryToWire),
        nextPageToken: page.nextPageToken,
      };
    },
    lastSettlement: async () => {
      const last = await q.lastSettlement();
      return last === undefined ? undefined : settlementToWire(last);
    },
  };
  return {
    admin,
    stop: async () => {
      await stopPeriodic?.();
      await pool.end();
      await readerPool?.end();
    },
  };
}

/** The cut's accounts, passed through; those whose settled totals will change are noted. */
function* noting(accounts: Iterable<SettlementAccount> | AsyncIterable<SettlementAccount>, settled: SettledBalances, changed: SettledAccountValue[]): Generator<SettlementAccount> {
  if (!(Symbol.iterator in accounts)) throw new Error("the cut's accounts must be a synchronous iterable");
  for (const account of accounts) {
    const granted = account.granted.reduce((a, b) => a + b, 0n);
    const debited = account.debited.reduce((a, b) => a + b, 0n);
    if (settled.differs(account.accountId, granted, debited)) changed.push({ accountId: account.accountId, granted, debited });
    yield account;
  }
}

/** Settles every `intervalMs` (runs never overlap); the returned function stops and waits for a run. */
function periodic(intervalMs: number, run: () => Promise<unknown>, logger: Logger): () => Promise<void> {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = run()
        .then(
          () => undefined,
          (error: unknown) => logger.warn("settlement failed", { error: error instanceof Error ? error.message : String(error) }),
        )
        .finally(() => {
          running = undefined;
          schedule();
        });
    }, intervalMs);
    timer.unref();
  };
  schedule();
  return async () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    await running;
  };
}

function settlementPool(postgres: PostgresSettings, url: string, size: number, logger: Logger): Pool {
  const ssl = postgresSsl(postgres.caFile);
  const pool = new Pool({
    connectionString: url,
    max: size,
    connectionTimeoutMillis: postgres.connectTimeoutMs,
    statement_timeout: postgres.statementTimeoutMs,
    query_timeout: postgres.statementTimeoutMs + 1_000,
    idle_in_transaction_session_timeout: postgres.statementTimeoutMs,
    ...(ssl === undefined ? {} : { ssl }),
  });
  pool.on("error", (error) => logger.warn("settlement pool error", { error: error.message }));
  return pool;
}

/**
 * Applies the migrations as the owner role and grants the settler (and the
 * reader) exactly their rights; without an owner URL the settler's own
 * connection migrates, and owning the schema it could alter the triggers.
 */
async function migrateAsOwner(postgres: PostgresSettings, settlerPool: Pool, logger: Logger): Promise<void> {
  if (postgres.ownerUrl === undefined) {
    const report = await migrate(settlerPool);
    logger.warn("settlement migrations ran as the settler's role: it owns the schema (give --postgres-owner-url for least privilege)", {
      applied: report.applied.length,
    });
    return;
  }
  const ownerPool = settlementPool(postgres, postgres.ownerUrl, 1, logger);
  try {
    const report = await migrate(ownerPool);
    const client = await ownerPool.connect();
    try {
      // Nodes start together: concurrent GRANTs on one table fail ("tuple concurrently updated"), so they queue on the migrations' lock.
      await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
      try {
        const readerUrl = postgres.readerUrl;
        await grantSettlementRoles(client, { settler: roleOfUrl(postgres.url), ...(readerUrl === undefined ? {} : { reader: roleOfUrl(readerUrl) }) });
      } finally {
        await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY.toString()]);
      }
    } finally {
      client.release();
    }
    logger.info("settlement migrations applied as the owner role", { applied: report.applied.length });
  } finally {
    await ownerPool.end();
  }
}
