// The SQL of one settlement. Each batch of accounts (arrays bound as
// parameters, expanded with unnest) is settled by ONE set-based statement:
// diff against the settled counters, write the changed accounts' new counters,
// append ledger rows, record overspends. All batches and the final
// settlement row share one transaction, so a crash leaves nothing behind.

/** A replica and its 1-based position in the settled_accounts arrays. */
export interface PlacedReplica {
  readonly name: string;
  readonly position: number;
}

/** Where each replica's counters live, for the statement generator. */
export interface ReplicaLayout {
  /** The input's replicas, in input order. */
  readonly input: readonly PlacedReplica[];
  /** Replicas settled before but absent from this input: their counters are kept and still count. */
  readonly extra: readonly PlacedReplica[];
}

/** Columns returned by the batch statement. */
export interface BatchOutcome {
  regressed_account: string | null;
  regressed_replica: string | null;
  accounts_changed: string;
  ledger_entries: string;
  overspend_total: string;
  strict_violations: string;
}

/**
 * The statement settling one batch. Parameters: $1 settlement id, $2 account
 * ids, $3 modes, $4/$5 per-account Σ granted / Σ debited over the input
 * replicas, then per input replica i its granted, debited and
 * rights-below-zero arrays, then the input replica names, then the extra
 * replica names. Positions are validated integers and are inlined.
 */
export function settleBatchSql(layout: ReplicaLayout): string {
  const n = layout.input.length;
  const name = (i: number): string => `$${6 + 3 * n + i}::text`;
  const extraName = (j: number): string => `$${6 + 4 * n + j}::text`;
  const unnestArgs = ["$2::text[]", "$3::int2[]", "$4::numeric[]", "$5::numeric[]"];
  const columns = ["a", "m", "sg", "sd"];
  const olds: string[] = [];
  const differs: string[] = [];
  const regressed: string[] = [];
  const slotChanged: string[] = [];
  layout.input.forEach((replica, i) => {
    const p = 6 + 3 * i;
    unnestArgs.push(`$${p}::numeric[]`, `$${p + 1}::numeric[]`, `$${p + 2}::bool[]`);
    columns.push(`g${i}`, `d${i}`, `b${i}`);
    olds.push(`COALESCE(i.og[${replica.position}], 0) AS og${i}`, `COALESCE(i.od[${replica.position}], 0) AS od${i}`);
    differs.push(`o.g${i} <> o.og${i} OR o.d${i} <> o.od${i}`);
    regressed.push(`WHEN o.g${i} < o.og${i} OR o.d${i} < o.od${i} THEN ${name(i)}`);
    slotChanged.push(`(o.g${i} <> o.og${i} OR o.d${i} <> o.od${i})::int`);
  });
  // Columns carried past the diff (only what the writers read: rows are copied).
  const kept = [
    "o.a",
    "o.m",
    "o.existed",
    ...layout.input.flatMap((_, i) => [`o.g${i}`, `o.d${i}`, `o.b${i}`, `o.og${i}`, `o.od${i}`]),
    ...(layout.extra.length > 0 ? ["o.og", "o.od"] : []),
  ].join(", ");
  const extraGranted = layout.extra.map((r) => `COALESCE(i.og[${r.position}], 0)`).join(" + ") || "0";
  const extraDebited = layout.extra.map((r) => `COALESCE(i.od[${r.position}], 0)`).join(" + ") || "0";

  // New arrays: input replicas take the input value, the others keep theirs.
  const width = Math.max(...layout.input.map((r) => r.position), ...layout.extra.map((r) => r.position));
  const inputAt = new Map(layout.input.map((r, i) => [r.position, i]));
  const byPosition = (element: (position: number, input: number | undefined) => string): string => {
    const elements: string[] = [];
    for (let p = 1; p <= width; p++) elements.push(element(p, inputAt.get(p)));
    return `ARRAY[${elements.join(", ")}]::numeric[]`;
  };
  const newArray = (kind: "g" | "d"): string =>
    byPosition((p, i) => (i !== undefined ? `c.${kind}${i}` : `COALESCE(c.o${kind}[${p}], 0)`));
  // Ledger deltas: replicas absent from the input did not change.
  const deltaArray = (kind: "g" | "d"): string => byPosition((_, i) => (i !== undefined ? `c.${kind}${i} - c.o${kind}${i}` : "0"));

  // Blamed replicas, by name: those whose rights went below zero, else those with debits.
  const byName = [
    ...layout.input.map((r, i) => ({ name: r.name, below: `c.b${i}`, debits: `c.d${i} > 0`, param: name(i) })),
    ...layout.extra.map((r, j) => ({
      name: r.name,
      below: "false",
      debits: `COALESCE(c.od[${r.position}], 0) > 0`,
      param: extraName(j),
    })),
  ].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  const blamedBelow = byName.map((r) => `CASE WHEN ${r.below} THEN ${r.param} END`).join(", ");
  const blamedDebits = byName.map((r) => `CASE WHEN ${r.debits} THEN ${r.param} END`).join(", ");

  return `
WITH input AS (
  SELECT u.*, t.granted AS og, t.debited AS od, t.account_id IS NOT NULL AS existed
  FROM unnest(${unnestArgs.join(", ")}) AS u(${columns.join(", ")})
  -- one primary-key probe per account; LIMIT 1 (the key is unique) keeps the
  -- planner from turning the probes into a scan of every settled account
  LEFT JOIN LATERAL (
    SELECT t.account_id, t.granted, t.debited FROM settled_accounts t WHERE t.account_id = u.a LIMIT 1
  ) t ON true
),
olds AS (
  SELECT i.*, ${olds.join(", ")},
         ${extraGranted} AS xg, ${extraDebited} AS xd
  FROM input i
),
-- Only accounts where some counter differs go on (all of them the first time,
-- few afterwards). Counters only grow: a lower one means the source lost state;
-- such an account is reported and the whole settlement refused.
changed AS MATERIALIZED (
  SELECT ${kept},
         CASE ${regressed.join(" ")} END AS regressed,
         ${slotChanged.join(" + ")} AS slots_changed,
         (o.sg + o.xg) - (o.sd + o.xd) AS balance
  FROM olds o
  WHERE ${differs.join(" OR ")}
),
-- New accounts are plain inserts; existing ones are found again by key through
-- ON CONFLICT and updated in place (no indexed column changes).
new_accounts AS (
  INSERT INTO settled_accounts (account_id, granted, debited, settlement_id)
  SELECT c.a, ${newArray("g")}, ${newArray("d")}, $1::int8 FROM changed c WHERE c.regressed IS NULL AND NOT c.existed
),
updated_accounts AS (
  INSERT INTO settled_accounts AS t (account_id, granted, debited, settlement_id)
  SELECT c.a, ${newArray("g")}, ${newArray("d")}, $1::int8 FROM changed c WHERE c.regressed IS NULL AND c.existed
  ON CONFLICT (account_id) DO UPDATE
    SET granted = excluded.granted, debited = excluded.debited, settlement_id = excluded.settlement_id
),
-- One ledger row per changed account, its per-replica deltas in position order.
entries AS (
  INSERT INTO account_ledger (settlement_id, account_id, granted_delta, debited_delta, balance_after)
  SELECT $1::int8, c.a, ${deltaArray("g")}, ${deltaArray("d")}, c.balance
  FROM changed c
  WHERE c.regressed IS NULL
),
-- Overspend wherever settled Σ debits > Σ credits, with the exact amount.
overspent AS (
  INSERT INTO overspends (settlement_id, account_id, amount, replicas, mode)
  SELECT $1::int8, c.a, -c.balance,
         COALESCE(NULLIF(array_remove(ARRAY[${blamedBelow}]::text[], NULL), '{}'),
                  array_remove(ARRAY[${blamedDebits}]::text[], NULL)),
         CASE c.m WHEN 1 THEN 'STRICT' ELSE 'OVERDRAFT' END
  FROM changed c
  WHERE c.regressed IS NULL AND c.balance < 0
  RETURNING amount, mode
),
first_regressed AS (
  SELECT a, regressed FROM changed WHERE regressed IS NOT NULL LIMIT 1
)
SELECT (SELECT a FROM first_regressed) AS regressed_account,
       (SELECT regressed FROM first_regressed) AS regressed_replica,
       (SELECT count(*) FROM changed)::text AS accounts_changed,
       (SELECT COALESCE(sum(slots_changed), 0) FROM changed)::text AS ledger_entries,
       (SELECT COALESCE(sum(amount), 0) FROM overspent)::text AS overspend_total,
       (SELECT count(*) FROM overspent WHERE mode = 'STRICT')::text AS strict_violations`;
}

/** Every settled replica with its array position. */
export const SETTLED_REPLICAS = `
SELECT replica, position FROM settled_replicas ORDER BY position`;

/** Gives replicas seen for the first time the next free positions, in input order. */
export const PLACE_REPLICAS = `
INSERT INTO settled_replicas (replica, position, first_settlement_id)
SELECT r.replica, (SELECT COALESCE(max(position), 0) FROM settled_replicas) + r.ord, $2::int8
FROM unnest($1::text[]) WITH ORDINALITY AS r(replica, ord)`;

/** Inserted last, so a visible settlement row always means a complete settlement. */
export const INSERT_SETTLEMENT = `
INSERT INTO settlements (id, started_at, finished_at, cut, accounts_changed, ledger_entries, overspend_total, strict_violations)
VALUES ($1::int8, now(), clock_timestamp(), $2::jsonb, $3::int8, $4::int8, $5::numeric, $6::int8)
RETURNING floor(extract(epoch FROM started_at) * 1000)::int8::text AS started_ms,
          floor(extract(epoch FROM finished_at) * 1000)::int8::text AS finished_ms`;

/**
 * Holds at the cut: pending ones as outstanding in this settlement, resolved
 * ones once ever (hold_resolved_once; a later settlement adds nothing).
 * $1 settlement id, then one array per column.
 */
export const INSERT_HOLDS = `
INSERT INTO hold_ledger (settlement_id, hold_id, region, account_id, amount, state, captured, expires_at, resolved_at)
SELECT $1::int8, u.h, u.r, u.a, u.am, u.s, u.c, to_timestamp(u.e / 1000.0),
       CASE WHEN u.s = 'PENDING' THEN NULL ELSE to_timestamp(u.rs / 1000.0) END
FROM unnest($2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::numeric[], $8::float8[], $9::float8[])
  AS u(h, r, a, am, s, c, e, rs)
ON CONFLICT DO NOTHING`;

/** Refunds at the cut, each once (refund_once). $1 settlement id, then one array per column. */
export const INSERT_REFUNDS = `
INSERT INTO refund_ledger (settlement_id, region, refund_request_id, debit_request_id, account_id, amount, refunded_at)
SELECT $1::int8, u.r, u.q, u.d, u.a, u.am, to_timestamp(u.t / 1000.0)
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::float8[]) AS u(r, q, d, a, am, t)
ON CONFLICT DO NOTHING`;

/** Breakage of expired lots, each once ever (lot_breakage_once). $1 settlement id, then one array per column. */
/** How many of the given lots have no breakage recorded yet. */
export const COUNT_NEW_BREAKAGE = `
SELECT count(*)::int8 AS n
FROM unnest($1::text[], $2::text[]) AS u(a, k)
WHERE NOT EXISTS (SELECT 1 FROM lot_breakage b WHERE b.account_id = u.a AND b.lot_key = u.k)`;

export const INSERT_BREAKAGE = `
INSERT INTO lot_breakage (settlement_id, account_id, lot_key, amount, expires_at)
SELECT $1::int8, u.a, u.k, u.am, to_timestamp(u.e / 1000.0)
FROM unnest($2::text[], $3::text[], $4::numeric[], $5::float8[]) AS u(a, k, am, e)
ON CONFLICT DO NOTHING`;
