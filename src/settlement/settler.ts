// The settlement job: joins every replica's state at a cut into Postgres in one
// transaction — settled totals, append-only ledger deltas, overspend records —
// with one settler at a time across all regions (a transaction advisory lock).
// Bulk only: the input streams in batches of array parameters, each settled by
// one set-based statement (settle-statements.ts); nothing is written row by row.

import { performance } from "node:perf_hooks";
import type { Pool, PoolClient } from "pg";
import { InvalidArgumentError } from "../core/errors";
import { RegressedTotalsError, SettlementDuplicateError } from "./errors";
import { isAsyncIterable, SourceFailure, sourced, sourcedSync } from "./account-source";
import { checkNotStale, one, placeReplicas, sameCut } from "./settled-layout";
import { toSettlementError } from "./pg-errors";
import * as sql from "./settle-statements";
import { cutToJson, SettlementBatch, validateCut, type SettlementBreakage, type SettlementInput } from "./settlement-input";
import { NO_METRICS, type SettleOutcome, type SettlementMetrics } from "./settlement-metrics";
import {
  SETTLEMENT_COLUMNS,
  SettlementQueries,
  toSettlement,
  type LedgerPage,
  type OverspendPage,
  type PageRequest,
  type SettledBalance,
  type Settlement,
  type SettlementPage,
  type SettlementRow,
  type TimeFilter,
} from "./settlement-queries";

/** Advisory lock key shared by every settler ("TALLYSET" in ASCII). */
export const SETTLEMENT_LOCK_KEY = 0x54414c4c59534554n;

export interface SettlerOptions {
  /** Pool of the settlement database; the caller owns it (and its 'error' listener). */
  readonly pool: Pool;
  readonly metrics?: SettlementMetrics;
  /** Receives errors of periodic runs (and of metrics hooks). Required for startPeriodic. */
  readonly onError?: (err: Error) => void;
  /** Accounts per batch statement (default 16384, i.e. ~50k rows for 3 replicas). */
  readonly batchAccounts?: number;
  /** work_mem of the settling session (default 64MB): a batch's intermediate rows stay in memory. */
  readonly workMem?: string;
  /** Advisory lock key (default SETTLEMENT_LOCK_KEY); every settler of one database must share it. */
  readonly lockKey?: bigint;
}

export interface SettleResult {
  /** Another settler held the lock; nothing was done. */
  readonly skipped: boolean;
  /** The cut equals the last settlement's; nothing was written (`settlement` is that last one). */
  readonly unchanged: boolean;
  readonly settlement?: Settlement;
}

export class Settler {
  readonly queries: SettlementQueries;
  private readonly pool: Pool;
  private readonly metrics: SettlementMetrics;
  private readonly onError: ((err: Error) => void) | undefined;
  private readonly batchAccounts: number;
  private readonly workMem: string;
  private readonly lockKey: string;

  constructor(options: SettlerOptions) {
    this.pool = options.pool;
    this.queries = new SettlementQueries(options.pool);
    this.metrics = options.metrics ?? NO_METRICS;
    this.onError = options.onError;
    this.batchAccounts = options.batchAccounts ?? 16_384;
    if (!Number.isInteger(this.batchAccounts) || this.batchAccounts < 1) {
      throw new InvalidArgumentError("batchAccounts", "must be a positive integer");
    }
    this.workMem = options.workMem ?? "64MB";
    this.lockKey = (options.lockKey ?? SETTLEMENT_LOCK_KEY).toString();
  }

  /**
   * Settles the state at `input.cut`. Either everything is written in one
   * transaction or nothing is. Safe to call concurrently from any node.
   */
  async settle(input: SettlementInput): Promise<SettleResult> {
    const started = performance.now();
    let outcome: SettleOutcome = "failed";
    try {
      const result = await this.settleOnce(input);
      outcome = result.skipped ? "skipped" : result.unchanged ? "unchanged" : "settled";
      const settlement = result.settlement;
      if (outcome === "settled" && settlement !== undefined) {
        this.observe(() => {
          this.metrics.lastSuccessTime(settlement.finishedAtMs / 1000);
          this.metrics.accountsSettled(Number(settlement.accountsChanged));
          this.metrics.overspendAmount(settlement.overspendTotal);
          this.metrics.strictViolations(Number(settlement.strictViolations));
        });
      }
      return result;
    } finally {
      this.observe(() => this.metrics.durationSeconds((performance.now() - started) / 1000, outcome));
    }
  }

  /**
   * Settles every `intervalMs` with the input `source` gives (runs never
   * overlap). Errors go to `onError` (default: options.onError). The timer
   * does not keep the process alive. The returned function stops the job and
   * waits for a run in progress.
   */
  startPeriodic(
    intervalMs: number,
    source: () => Promise<SettlementInput>,
    onError: ((err: Error) => void) | undefined = this.onError,
  ): () => Promise<void> {
    if (!Number.isInteger(intervalMs) || intervalMs < 1) {
      throw new InvalidArgumentError("intervalMs", "must be a positive integer of milliseconds");
    }
    if (onError === undefined) {
      throw new InvalidArgumentError("onError", "periodic settlement needs an error callback (options.onError)");
    }
    const report = onError;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> | undefined;
    const schedule = (): void => {
      if (stopped) return;
      timer = setTimeout(run, intervalMs);
      timer.unref();
    };
    const run = (): void => {
      timer = undefined;
      running = this.runOnce(source, report).finally(() => {
        running = undefined;
        schedule();
      });
    };
    schedule();
    return async () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
    };
  }

  // ---- reads (delegated, so callers need one object) ----------------------

  lastSettlement(): Promise<Settlement | undefined> {
    return this.queries.lastSettlement();
  }

  listSettlements(request?: PageRequest & TimeFilter): Promise<SettlementPage> {
    return this.queries.listSettlements(request);
  }

  listOverspends(request?: PageRequest & TimeFilter & { readonly accountId?: string }): Promise<OverspendPage> {
    return this.queries.listOverspends(request);
  }

  accountHistory(accountId: string, request?: PageRequest & TimeFilter): Promise<LedgerPage> {
    return this.queries.accountHistory(accountId, request);
  }

  settledBalance(accountId: string): Promise<SettledBalance> {
    return this.queries.settledBalance(accountId);
  }

  // ---- the transaction ------------------------------------------------------

  private async settleOnce(input: SettlementInput): Promise<SettleResult> {
    const cut = validateCut(input);
    const replicas = [...cut.keys()];
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw toSettlementError(err, "settle: connect");
    }
    // A checked-out client with no 'error' listener would crash the process if
    // Postgres goes away mid-settlement; the failing query reports it instead.
    client.on("error", () => undefined);
    let open = false;
    try {
      // Row estimates of CTEs over unnest are wild: JIT would compile every batch
      // statement anew (~1 s each for ~0.3 s of work), merge joins would sort
      // what a hash join takes as it comes, and the per-account key probes would
      // become bitmap scans. The session is discarded afterwards.
      await client.query(
        `SELECT set_config('work_mem', $1, false), set_config('jit', 'off', false),
                set_config('enable_mergejoin', 'off', false), set_config('enable_bitmapscan', 'off', false)`,
        [this.workMem],
      );
      await client.query("BEGIN");
      open = true;
      const lock = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock($1::int8) AS locked", [
        this.lockKey,
      ]);
      if (lock.rows[0]?.locked !== true) {
        await client.query("ROLLBACK");
        open = false;
        return { skipped: true, unchanged: false };
      }
      const lastRow = (
        await client.query<SettlementRow>(`SELECT ${SETTLEMENT_COLUMNS} FROM settlements s ORDER BY s.id DESC LIMIT 1`)
      ).rows[0];
      const last = lastRow === undefined ? undefined : toSettlement(lastRow);
      if (last !== undefined) {
        checkNotStale(last.cut, cut);
        // The same cut settles again only for breakage that fell due since: the
        // regions' clocks moved on though their state did not.
        if (sameCut(last.cut, cut) && !(await this.newBreakageDue(client, input.breakage ?? []))) {
          await client.query("ROLLBACK");
          open = false;
          return { skipped: false, unchanged: true, settlement: last };
        }
      }
      const settlement = await this.write(client, input.accounts, replicas, cut);
      await this.writeHoldsAndRefunds(client, settlement.id.toString(), input);
      // If the connection dies during COMMIT the outcome is unknown; re-running
      // the same cut is safe either way (it is `unchanged` if it committed).
      await client.query("COMMIT");
      open = false;
      return { skipped: false, unchanged: false, settlement };
    } catch (err) {
      if (open) await client.query("ROLLBACK").catch(() => undefined);
      if (err instanceof SourceFailure) throw err.error; // the caller's own error, unchanged
      const mapped = toSettlementError(err, "settle");
      if (mapped instanceof SettlementDuplicateError) {
        // The only unique keys a settlement can hit twice are per account: the input repeats one.
        throw new InvalidArgumentError("accounts", "an account is listed more than once in the input");
      }
      throw mapped;
    } finally {
      // Discard the session: its planner settings above must not leak into
      // the pool's other users.
      client.release(true);
    }
  }

  private async write(
    client: PoolClient,
    accounts: SettlementInput["accounts"],
    replicas: string[],
    cut: ReadonlyMap<string, bigint>,
  ): Promise<Settlement> {
    const id = (await one<{ id: string }>(client, "SELECT nextval(pg_get_serial_sequence('settlements', 'id'))::text AS id")).id;
    const layout = await placeReplicas(client, replicas, id);
    const totals = { accountsChanged: 0n, ledgerEntries: 0n, overspendTotal: 0n, strictViolations: 0n };
    await this.settleBatches(client, accounts, layout, id, (outcome) => {
      if (outcome.regressed_account !== null) {
        throw new RegressedTotalsError(outcome.regressed_account, outcome.regressed_replica ?? "");
      }
      totals.accountsChanged += BigInt(outcome.accounts_changed);
      totals.ledgerEntries += BigInt(outcome.ledger_entries);
      totals.overspendTotal += BigInt(outcome.overspend_total);
      totals.strictViolations += BigInt(outcome.strict_violations);
    });
    const times = await one<{ started_ms: string; finished_ms: string }>(client, sql.INSERT_SETTLEMENT, [
      id,
      cutToJson(cut),
      totals.accountsChanged.toString(),
      totals.ledgerEntries.toString(),
      totals.overspendTotal.toString(),
      totals.strictViolations.toString(),
    ]);
    return {
      id: BigInt(id),
      startedAtMs: Number(times.started_ms),
      finishedAtMs: Number(times.finished_ms),
      cut: Object.fromEntries(cut),
      ...totals,
    };
  }

  private async newBreakageDue(client: PoolClient, breakage: readonly SettlementBreakage[]): Promise<boolean> {
    if (breakage.length === 0) return false;
    const result = await client.query<{ n: string }>(sql.COUNT_NEW_BREAKAGE, [breakage.map((b) => b.accountId), breakage.map((b) => b.lotKey)]);
    return Number(result.rows[0]?.n ?? 0) > 0;
  }

  /**
   * Appends the holds outstanding at the cut, every resolution not recorded
   * yet, every refund not recorded yet and every lot breakage not recorded
   * yet, in batches of array parameters, in the settlement's transaction.
   */
  private async writeHoldsAndRefunds(client: PoolClient, settlementId: string, input: SettlementInput): Promise<void> {
    const size = this.batchAccounts;
    const holds = input.holds ?? [];
    for (let start = 0; start < holds.length; start += size) {
      const part = holds.slice(start, start + size);
      await client.query(sql.INSERT_HOLDS, [
        settlementId,
        part.map((h) => h.holdId),
        part.map((h) => h.region),
        part.map((h) => h.accountId),
        part.map((h) => h.amount.toString()),
        part.map((h) => h.state),
        part.map((h) => h.captured.toString()),
        part.map((h) => h.expiresAtMs),
        part.map((h) => h.resolvedAtMs),
      ]);
    }
    const refunds = input.refunds ?? [];
    for (let start = 0; start < refunds.length; start += size) {
      const part = refunds.slice(start, start + size);
      await client.query(sql.INSERT_REFUNDS, [
        settlementId,
        part.map((r) => r.region),
        part.map((r) => r.refundRequestId),
        part.map((r) => r.debitRequestId),
        part.map((r) => r.accountId ?? null),
        part.map((r) => r.amount.toString()),
        part.map((r) => r.refundedAtMs),
      ]);
    }
    const breakage = input.breakage ?? [];
    for (let start = 0; start < breakage.length; start += size) {
      const part = breakage.slice(start, start + size);
      await client.query(sql.INSERT_BREAKAGE, [
        settlementId,
        part.map((b) => b.accountId),
        part.map((b) => b.lotKey),
        part.map((b) => b.amount.toString()),
        part.map((b) => b.expiresAtMs),
      ]);
    }
  }

  /**
   * Streams the accounts in batches, each settled by one statement. The next
   * batch is encoded while Postgres works on the previous one (at most one in
   * flight), so on two cores encoding and writing overlap.
   */
  private async settleBatches(
    client: PoolClient,
    accounts: SettlementInput["accounts"],
    layout: sql.ReplicaLayout,
    settlementId: string,
    onOutcome: (outcome: sql.BatchOutcome) => void,
  ): Promise<void> {
    const batch = new SettlementBatch(layout.input.length);
    const text = sql.settleBatchSql(layout);
    const tail = [...layout.input.map((r) => r.name), ...layout.extra.map((r) => r.name)];
    let pending: Promise<void> = Promise.resolve();
    let failure: { error: unknown } | undefined;
    const flush = async (): Promise<void> => {
      const params: unknown[] = [settlementId, ...batch.take(), ...tail];
      await pending;
      if (failure !== undefined) throw failure.error;
      // Failures are captured at once, so a rejection can never go unhandled
      // while the source is still producing the next batch.
      pending = client
        .query<sql.BatchOutcome>(text, params)
        .then((result) => {
          const outcome = result.rows[0];
          if (outcome === undefined) throw new Error("settlement batch returned no outcome");
          onOutcome(outcome);
        })
        .catch((error: unknown) => {
          failure = { error };
        });
    };
    try {
      if (isAsyncIterable(accounts)) {
        for await (const account of sourced(accounts)) {
          batch.add(account);
          if (batch.size >= this.batchAccounts) await flush();
        }
      } else {
        // Synchronous sources are read without an await per account.
        for (const account of sourcedSync(accounts)) {
          batch.add(account);
          if (batch.size >= this.batchAccounts) await flush();
        }
      }
      if (batch.size > 0) await flush();
    } finally {
      await pending;
    }
    if (failure !== undefined) throw failure.error;
  }

  private observe(hook: () => void): void {
    try {
      hook();
    } catch (err) {
      this.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private async runOnce(source: () => Promise<SettlementInput>, onError: (err: Error) => void): Promise<void> {
    try {
      await this.settle(await source());
    } catch (err) {
      try {
        onError(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // an error callback that throws must not stop the job
      }
    }
  }
}
