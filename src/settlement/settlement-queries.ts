// Read side of the settlement store: settlements, overspends, an account's
// ledger history (keyset-paged, newest first) and its last settled balance.
// Amounts cross the driver as text and become bigint here; never a JS number.

import { Mode } from "../core/policy";
import type { Pool } from "pg";
import { InvalidArgumentError } from "../core/errors";
import { validateAccountId } from "../core/validation";
import { decodePageToken, encodePageToken, pageSizeOf } from "./page-token";
import { toSettlementError } from "./pg-errors";

export interface Settlement {
  readonly id: bigint;
  readonly startedAtMs: number;
  readonly finishedAtMs: number;
  readonly cut: Record<string, bigint>;
  readonly accountsChanged: bigint;
  readonly ledgerEntries: bigint;
  readonly overspendTotal: bigint;
  readonly strictViolations: bigint;
}

export interface OverspendRecord {
  readonly settlementId: bigint;
  readonly accountId: string;
  readonly amount: bigint;
  readonly replicas: string[];
  readonly mode: Mode;
  /** Commit time of the settlement that recorded it. */
  readonly recordedAtMs: number;
}

export interface LedgerEntry {
  readonly settlementId: bigint;
  readonly accountId: string;
  readonly replica: string;
  readonly grantedDelta: bigint;
  readonly debitedDelta: bigint;
  readonly balanceAfter: bigint;
  readonly recordedAtMs: number;
}

export interface SettledBalance {
  /** Σ granted − Σ debited over every replica, as of `settlementId`. */
  readonly balance: bigint;
  /** The latest settlement; undefined if none ran yet. */
  readonly settlementId: bigint | undefined;
}

export interface PageRequest {
  /** 1–1000; 0 or unset means 100. */
  readonly pageSize?: number;
  /** From the previous page's nextPageToken; empty or unset for the first page. */
  readonly pageToken?: string;
}

/** Bounds on the settlement commit time, ms since the epoch; 0 or unset means unbounded. */
export interface TimeFilter {
  /** Inclusive. */
  readonly sinceMs?: number;
  /** Exclusive. */
  readonly untilMs?: number;
}

export interface SettlementPage {
  readonly settlements: Settlement[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface OverspendPage {
  readonly overspends: OverspendRecord[];
  readonly nextPageToken: string;
}

export interface LedgerPage {
  readonly entries: LedgerEntry[];
  readonly nextPageToken: string;
}

/** Columns selecting a settlement row in the shape `toSettlement` reads. */
export const SETTLEMENT_COLUMNS = `
  s.id::text AS id,
  floor(extract(epoch FROM s.started_at) * 1000)::int8::text AS started_ms,
  floor(extract(epoch FROM s.finished_at) * 1000)::int8::text AS finished_ms,
  (SELECT jsonb_object_agg(key, value) FROM jsonb_each_text(s.cut))::text AS cut,
  s.accounts_changed::text AS accounts_changed,
  s.ledger_entries::text AS ledger_entries,
  s.overspend_total::text AS overspend_total,
  s.strict_violations::text AS strict_violations`;

export interface SettlementRow {
  id: string;
  started_ms: string;
  finished_ms: string;
  cut: string | null;
  accounts_changed: string;
  ledger_entries: string;
  overspend_total: string;
  strict_violations: string;
}

export function toSettlement(row: SettlementRow): Settlement {
  const cut: Record<string, bigint> = {};
  const parsed = row.cut === null ? {} : (JSON.parse(row.cut) as Record<string, string>);
  for (const [replica, seq] of Object.entries(parsed)) cut[replica] = BigInt(seq);
  return {
    id: BigInt(row.id),
    startedAtMs: Number(row.started_ms),
    finishedAtMs: Number(row.finished_ms),
    cut,
    accountsChanged: BigInt(row.accounts_changed),
    ledgerEntries: BigInt(row.ledger_entries),
    overspendTotal: BigInt(row.overspend_total),
    strictViolations: BigInt(row.strict_violations),
  };
}

/** `'epoch' + $n ms` as timestamptz, exact to the millisecond; NULL stays NULL. */
function msToTimestamp(param: string): string {
  return `('epoch'::timestamptz + ${param}::int8 * interval '1 millisecond')`;
}

const TIME_FILTER = (column: string, since: string, until: string): string =>
  `(${since}::int8 IS NULL OR ${column} >= ${msToTimestamp(since)})
   AND (${until}::int8 IS NULL OR ${column} < ${msToTimestamp(until)})`;

export class SettlementQueries {
  constructor(private readonly pool: Pool) {}

  /** The newest settlement, or undefined before the first one. */
  async lastSettlement(): Promise<Settlement | undefined> {
    const rows = await this.query<SettlementRow>(
      "read last settlement",
      `SELECT ${SETTLEMENT_COLUMNS} FROM settlements s ORDER BY s.id DESC LIMIT 1`,
      [],
    );
    const row = rows[0];
    return row === undefined ? undefined : toSettlement(row);
  }

  /** Settlements, newest first, optionally bounded by commit time. */
  async listSettlements(request: PageRequest & TimeFilter = {}): Promise<SettlementPage> {
    const size = pageSizeOf(request.pageSize);
    const filter = timeFilterOf(request);
    const after = decodePageToken(request.pageToken, "settlements", filter, 1);
    const rows = await this.query<SettlementRow>(
      "list settlements",
      `SELECT ${SETTLEMENT_COLUMNS} FROM settlements s
       WHERE ${TIME_FILTER("s.finished_at", "$1", "$2")}
         AND ($3::int8 IS NULL OR s.id < $3::int8)
       ORDER BY s.id DESC
       LIMIT $4`,
      [filter.since, filter.until, after?.[0] ?? null, size + 1],
    );
    const page = rows.slice(0, size).map(toSettlement);
    const last = page[page.length - 1];
    const nextPageToken =
      rows.length > size && last !== undefined ? encodePageToken("settlements", filter, [last.id.toString()]) : "";
    return { settlements: page, nextPageToken };
  }

  /** Recorded overspends, newest settlement first, optionally for one account and a time range. */
  async listOverspends(request: PageRequest & TimeFilter & { readonly accountId?: string } = {}): Promise<OverspendPage> {
    const size = pageSizeOf(request.pageSize);
    const accountId =
      request.accountId === undefined || request.accountId === "" ? null : validateAccountId(request.accountId);
    const filter = { ...timeFilterOf(request), accountId };
    const after = decodePageToken(request.pageToken, "overspends", filter, 2);
    const rows = await this.query<{
      settlement_id: string;
      account_id: string;
      amount: string;
      replicas: string[];
      mode: string;
      recorded_ms: string;
    }>(
      "list overspends",
      `SELECT o.settlement_id::text AS settlement_id, o.account_id, o.amount::text AS amount, o.replicas::text[] AS replicas,
              o.mode, floor(extract(epoch FROM s.finished_at) * 1000)::int8::text AS recorded_ms
       FROM overspends o JOIN settlements s ON s.id = o.settlement_id
       WHERE ($1::text IS NULL OR o.account_id = $1::text)
         AND ${TIME_FILTER("s.finished_at", "$2", "$3")}
         AND ($4::int8 IS NULL OR (o.settlement_id, o.account_id) < ($4::int8, $5::text))
       ORDER BY o.settlement_id DESC, o.account_id DESC
       LIMIT $6`,
      [accountId, filter.since, filter.until, after?.[0] ?? null, after?.[1] ?? null, size + 1],
    );
    const page: OverspendRecord[] = rows.slice(0, size).map((row) => ({
      settlementId: BigInt(row.settlement_id),
      accountId: row.account_id,
      amount: BigInt(row.amount),
      replicas: row.replicas,
      mode: row.mode === "STRICT" ? Mode.Strict : Mode.Overdraft,
      recordedAtMs: Number(row.recorded_ms),
    }));
    const last = page[page.length - 1];
    const nextPageToken =
      rows.length > size && last !== undefined
        ? encodePageToken("overspends", filter, [last.settlementId.toString(), last.accountId])
        : "";
    return { overspends: page, nextPageToken };
  }

  /** An account's ledger entries, newest settlement first. */
  async accountHistory(accountId: string, request: PageRequest & TimeFilter = {}): Promise<LedgerPage> {
    validateAccountId(accountId);
    const size = pageSizeOf(request.pageSize);
    const filter = { ...timeFilterOf(request), accountId };
    const after = decodePageToken(request.pageToken, "history", filter, 2);
    const rows = await this.query<{
      settlement_id: string;
      replica: string;
      granted_delta: string;
      debited_delta: string;
      balance_after: string;
      recorded_ms: string;
    }>(
      "read account history",
      `SELECT l.settlement_id::text AS settlement_id, l.replica, l.granted_delta::text AS granted_delta,
              l.debited_delta::text AS debited_delta, l.balance_after::text AS balance_after,
              floor(extract(epoch FROM s.finished_at) * 1000)::int8::text AS recorded_ms
       FROM ledger l JOIN settlements s ON s.id = l.settlement_id
       WHERE l.account_id = $1::text
         AND ${TIME_FILTER("s.finished_at", "$2", "$3")}
         AND ($4::int8 IS NULL OR (l.settlement_id, l.replica) < ($4::int8, $5::text))
       ORDER BY l.settlement_id DESC, l.replica DESC
       LIMIT $6`,
      [accountId, filter.since, filter.until, after?.[0] ?? null, after?.[1] ?? null, size + 1],
    );
    const page: LedgerEntry[] = rows.slice(0, size).map((row) => ({
      settlementId: BigInt(row.settlement_id),
      accountId,
      replica: row.replica,
      grantedDelta: BigInt(row.granted_delta),
      debitedDelta: BigInt(row.debited_delta),
      balanceAfter: BigInt(row.balance_after),
      recordedAtMs: Number(row.recorded_ms),
    }));
    const last = page[page.length - 1];
    const nextPageToken =
      rows.length > size && last !== undefined
        ? encodePageToken("history", filter, [last.settlementId.toString(), last.replica])
        : "";
    return { entries: page, nextPageToken };
  }

  /** The account's balance at the latest settlement (one statement, so one snapshot). */
  async settledBalance(accountId: string): Promise<SettledBalance> {
    validateAccountId(accountId);
    const rows = await this.query<{ settlement_id: string | null; balance: string }>(
      "read settled balance",
      `SELECT (SELECT max(id) FROM settlements)::text AS settlement_id,
              COALESCE((SELECT (SELECT COALESCE(sum(g), 0) FROM unnest(a.granted) g) - (SELECT COALESCE(sum(d), 0) FROM unnest(a.debited) d)
                        FROM settled_accounts a WHERE a.account_id = $1::text), 0)::text AS balance`,
      [accountId],
    );
    const row = rows[0];
    return {
      balance: BigInt(row?.balance ?? "0"),
      settlementId: row?.settlement_id == null ? undefined : BigInt(row.settlement_id),
    };
  }

  private async query<R extends object>(doing: string, sql: string, params: unknown[]): Promise<R[]> {
    try {
      const result = await this.pool.query<R>(sql, params);
      return result.rows;
    } catch (err) {
      throw toSettlementError(err, doing);
    }
  }
}

function timeFilterOf(request: TimeFilter): { since: string | null; until: string | null } {
  return { since: msBound(request.sinceMs, "since_ms"), until: msBound(request.untilMs, "until_ms") };
}

function msBound(value: number | undefined, field: string): string | null {
  if (value === undefined || value === 0) return null;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, "must be a non-negative integer of milliseconds since the epoch");
  }
  return String(value);
}
