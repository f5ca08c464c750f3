// Settlement is optional per node: wired only when a Postgres URL is given.
// Migrations run at start; the Admin RPCs and the periodic job share one
// Settler; its metrics hooks feed the node's registry.

import { Pool } from "pg";
import type { Logger } from "../node/logger";
import type { TallyNode } from "../node/tally-node";
import { collectCut } from "../node/settlement-cut";
import { migrate } from "../settlement/migrate";
import { Settler } from "../settlement/settler";
import type { Settlement as StoredSettlement } from "../settlement/settlement-queries";
import type { Settlement as WireSettlement } from "../generated/tally/v1/admin";
import { PolicyMode } from "../generated/tally/v1/common";
import type { SettlementAdmin } from "../server/admin-service";
import type { SettledBalanceSource } from "../server/balances-service";

export interface RunningSettlement {
  readonly admin: SettlementAdmin & SettledBalanceSource;
  stop(): Promise<void>;
}

function toWire(s: StoredSettlement): WireSettlement {
  return {
    id: s.id,
    startedAtMs: BigInt(s.startedAtMs),
    finishedAtMs: BigInt(s.finishedAtMs),
    cut: { ...s.cut },
    accountsChanged: s.accountsChanged,
    overspendTotal: s.overspendTotal,
  };
}

export async function startSettlement(node: TallyNode, postgresUrl: string, intervalMs: number, logger: Logger): Promise<RunningSettlement> {
  const pool = new Pool({ connectionString: postgresUrl, max: 4 });
  pool.on("error", (error) => logger.warn("settlement pool error", { error: error.message }));
  const report = await migrate(pool);
  logger.info("settlement migrations applied", { applied: report.applied.length });
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
  const source = () => collectCut(node, logger);
  const stopPeriodic = intervalMs > 0 ? settler.startPeriodic(intervalMs, source) : undefined;
  const q = settler.queries;
  const admin: SettlementAdmin & SettledBalanceSource = {
    settle: async () => {
      const result = await settler.settle(await source());
      return {
        settlement: result.skipped || result.settlement === undefined ? undefined : toWire(result.settlement),
        skipped: result.skipped,
        unchanged: result.unchanged,
      };
    },
    listSettlements: async (pageSize, pageToken) => {
      const page = await q.listSettlements({ pageSize, pageToken });
      return { settlements: page.settlements.map(toWire), nextPageToken: page.nextPageToken };
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
        overspends: page.overspends.map((o) => ({
          accountId: o.accountId,
          amount: o.amount,
          regions: o.replicas,
          mode: o.mode === 2 ? PolicyMode.POLICY_MODE_OVERDRAFT : PolicyMode.POLICY_MODE_STRICT,
          settlementId: o.settlementId,
          recordedAtMs: BigInt(o.recordedAtMs),
        })),
        nextPageToken: page.nextPageToken,
      };
    },
    accountHistory: async (accountId, pageSize, pageToken) => {
      const page = await q.accountHistory(accountId, { pageSize, pageToken });
      return {
        entries: page.entries.map((e) => ({
          settlementId: e.settlementId,
          region: e.replica,
          grantedDelta: e.grantedDelta,
          debitedDelta: e.debitedDelta,
          balanceAfter: e.balanceAfter,
          recordedAtMs: BigInt(e.recordedAtMs),
        })),
        nextPageToken: page.nextPageToken,
      };
    },
    lastSettlement: async () => {
      const last = await q.lastSettlement();
      return last === undefined ? undefined : toWire(last);
    },
    settledBalance: async (accountId) => {
      const settled = await q.settledBalance(accountId);
      return settled.settlementId === undefined ? undefined : { balance: settled.balance, settlementId: settled.settlementId };
    },
  };
  return {
    admin,
    stop: async () => {
      await stopPeriodic?.();
      await pool.end();
    },
  };
}
