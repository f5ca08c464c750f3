// The SQL of one settlement. Each batch of accounts (arrays bound as
// parameters, expanded with unnest) is settled by ONE set-based statement:
// diff against the settled totals, upsert the totals, append ledger entries,
// record overspends. All batches and the final settlement row share one
// transaction, so a crash at any point leaves nothing behind.

/**
 * The statement settling one batch. Parameters: $1 settlement id, $2 account
 * ids, $3 modes, $4/$5 per-account Σ granted / Σ debited over the input
 * replicas, then per replica i granted, debited, rights-below-zero arrays, then
 * the n replica names, then (with `extraReplicas`) the replicas settled before
 * but absent from this input, whose totals still count in balances.
 */
export function settleBatchSql(n: number, extraReplicas: boolean): string {
  const unnestArgs = ["$2::text[]", "$3::int2[]", "$4::numeric[]", "$5::numeric[]"];
  const columns = ["a", "m", "sg", "sd"];
  const perReplica: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = 6 + 3 * i;
    unnestArgs.push(`$${p}::numeric[]`, `$${p + 1}::numeric[]`, `$${p + 2}::bool[]`);
    columns.push(`g${i}`, `d${i}`, `b${i}`);
    perReplica.push(`($${6 + 3 * n + i}::text, a.g${i}, a.d${i}, a.b${i})`);
  }
  const extraParam = `$${6 + 4 * n}::text[]`;
  const accounts = extraReplicas
    ? `SELECT u.*, u.sg + COALESCE(x.g, 0) AS total_granted, u.sd + COALESCE(x.d, 0) AS total_debited
       FROM unnest(${unnestArgs.join(", ")}) AS u(${columns.join(", ")})
       LEFT JOIN LATERAL (
         SELECT sum(t.granted) AS g, sum(t.debited) AS d
         FROM account_totals t WHERE t.account_id = u.a AND t.replica = ANY(${extraParam})
       ) x ON true`
    : `SELECT u.*, u.sg AS total_granted, u.sd AS total_debited
       FROM unnest(${unnestArgs.join(", ")}) AS u(${columns.join(", ")})`;
  return `
WITH accounts AS (
  ${accounts}
),
input AS (
  SELECT a.a AS account_id, a.m AS mode, a.total_granted, a.total_debited,
         v.r AS replica, v.g AS granted, v.d AS debited, v.b AS below_zero
  FROM accounts a
  CROSS JOIN LATERAL (VALUES ${perReplica.join(", ")}) AS v(r, g, d, b)
),
-- The settled rows of the batch's accounts: one primary-key range probe per
-- account (OFFSET 0 keeps the planner from turning the probes into a hash join
-- that would scan every settled total once per batch).
old AS MATERIALIZED (
  SELECT t.account_id, t.replica, t.granted, t.debited
  FROM accounts a
  CROSS JOIN LATERAL (
    SELECT t.account_id, t.replica, t.granted, t.debited FROM account_totals t
    WHERE t.account_id = a.a
    OFFSET 0
  ) t
),
merged AS MATERIALIZED (
  SELECT i.*, COALESCE(o.granted, 0) AS old_granted, COALESCE(o.debited, 0) AS old_debited,
         o.account_id IS NOT NULL AS existed
  FROM input i
  LEFT JOIN old o ON o.account_id = i.account_id AND o.replica = i.replica
),
-- Counters only grow; a lower value is a regression, reported (and refused) below.
changed AS MATERIALIZED (
  SELECT * FROM merged
  WHERE (granted > old_granted OR debited > old_debited)
    AND granted >= old_granted AND debited >= old_debited
),
-- New rows are plain inserts; existing ones go through ON CONFLICT, which
-- finds them by primary key (and updates them in place: no indexed column changes).
new_totals AS (
  INSERT INTO account_totals (account_id, replica, granted, debited, settlement_id)
  SELECT account_id, replica, granted, debited, $1::int8 FROM changed WHERE NOT existed
),
updated_totals AS (
  INSERT INTO account_totals AS t (account_id, replica, granted, debited, settlement_id)
  SELECT account_id, replica, granted, debited, $1::int8 FROM changed WHERE existed
  ON CONFLICT (account_id, replica) DO UPDATE
    SET granted = excluded.granted, debited = excluded.debited, settlement_id = excluded.settlement_id
),
entries AS (
  INSERT INTO ledger (settlement_id, account_id, replica, granted_delta, debited_delta, balance_after)
  SELECT $1::int8, account_id, replica, granted - old_granted, debited - old_debited, total_granted - total_debited
  FROM changed
),
-- Overspend wherever settled Σ debits > Σ credits, with the exact amount. Blamed
-- replicas: those whose rights went below zero, else those with debits.
overspent AS (
  INSERT INTO overspends (settlement_id, account_id, amount, replicas, mode)
  SELECT $1::int8, m.account_id, m.total_debited - m.total_granted,
         COALESCE(array_agg(m.replica ORDER BY m.replica) FILTER (WHERE m.below_zero),
                  array_agg(m.replica ORDER BY m.replica) FILTER (WHERE m.debited > 0),
                  '{}'),
         CASE m.mode WHEN 1 THEN 'STRICT' ELSE 'OVERDRAFT' END
  FROM merged m
  WHERE m.total_debited > m.total_granted AND m.account_id IN (SELECT account_id FROM changed)
  GROUP BY m.account_id, m.total_granted, m.total_debited, m.mode
  RETURNING amount, mode
),
regressed AS (
  SELECT account_id, replica FROM merged
  WHERE granted < old_granted OR debited < old_debited
  ORDER BY account_id, replica LIMIT 1
)
SELECT (SELECT account_id FROM regressed) AS regressed_account,
       (SELECT replica FROM regressed) AS regressed_replica,
       (SELECT count(DISTINCT account_id) FROM changed)::text AS accounts_changed,
       (SELECT count(*) FROM changed)::text AS ledger_entries,
       (SELECT COALESCE(sum(amount), 0) FROM overspent)::text AS overspend_total,
       (SELECT count(*) FROM overspent WHERE mode = 'STRICT')::text AS strict_violations`;
}

export interface BatchOutcome {
  regressed_account: string | null;
  regressed_replica: string | null;
  accounts_changed: string;
  ledger_entries: string;
  overspend_total: string;
  strict_violations: string;
}

/** Replicas settled before but absent from this input. */
export const EXTRA_REPLICAS = `
SELECT replica FROM settled_replicas WHERE NOT (replica = ANY($1::text[])) ORDER BY replica`;

/** Inserted last, so a visible settlement row always means a complete settlement. */
export const INSERT_SETTLEMENT = `
INSERT INTO settlements (id, started_at, finished_at, cut, accounts_changed, ledger_entries, overspend_total, strict_violations)
VALUES ($1::int8, now(), clock_timestamp(), $2::jsonb, $3::int8, $4::int8, $5::numeric, $6::int8)
RETURNING floor(extract(epoch FROM started_at) * 1000)::int8::text AS started_ms,
          floor(extract(epoch FROM finished_at) * 1000)::int8::text AS finished_ms`;

export const RECORD_REPLICAS = `
INSERT INTO settled_replicas (replica, first_settlement_id)
SELECT unnest($2::text[]), $1::int8
ON CONFLICT (replica) DO NOTHING`;
