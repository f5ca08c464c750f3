// The settlement schema as ordered, versioned migrations. Kept as TypeScript
// constants (tsc does not copy .sql files to dist). Never edit an applied
// migration: the runner checks checksums; add a new version instead.

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "settlement_schema",
    sql: `
-- One row per settlement, inserted last in the settlement's transaction, so a
-- visible row always means a complete settlement (no "status" needed).
CREATE TABLE settlements (
  id                bigserial PRIMARY KEY,  -- drawn first, so the rows below can refer to it
  started_at        timestamptz NOT NULL,
  finished_at       timestamptz NOT NULL,
  -- the causal cut: per replica, the replication sequence included
  cut               jsonb NOT NULL CHECK (jsonb_typeof(cut) = 'object'),
  accounts_changed  bigint NOT NULL CHECK (accounts_changed >= 0),
  ledger_entries    bigint NOT NULL CHECK (ledger_entries >= 0),
  overspend_total   numeric(30,0) NOT NULL CHECK (overspend_total >= 0),
  strict_violations bigint NOT NULL CHECK (strict_violations >= 0),
  CHECK (finished_at >= started_at)
);
CREATE INDEX settlements_finished_at ON settlements (finished_at);

-- Every replica that ever appeared in a cut, with its fixed position in the
-- per-account arrays below. A replica absent from a later input keeps counting.
CREATE TABLE settled_replicas (
  replica             text COLLATE "C" PRIMARY KEY,
  position            smallint NOT NULL UNIQUE CHECK (position >= 1),
  first_settlement_id bigint NOT NULL REFERENCES settlements (id) DEFERRABLE INITIALLY DEFERRED
);

-- Latest settled counters, one row per account; element p of each array is the
-- replica at settled_replicas.position p (uint64 P[i][i] and D[i]). One row per
-- account rather than per (account, replica): a settlement writes and probes a
-- third of the rows. No foreign key to settlements: millions of RI trigger calls
-- per settlement would dominate its cost, and the only writer sets it in the
-- same transaction.
CREATE TABLE settled_accounts (
  account_id    text COLLATE "C" PRIMARY KEY,
  -- integers within uint64 (validated by the settler; no element typmod, whose
  -- per-element coercion costs a third of the insert)
  granted       numeric[] NOT NULL CHECK (0 <= ALL (granted)),
  debited       numeric[] NOT NULL CHECK (0 <= ALL (debited)),
  -- the last settlement that changed this account
  settlement_id bigint NOT NULL
) WITH (fillfactor = 90);

-- The same totals per account and replica, for readers.
CREATE VIEW account_totals AS
SELECT a.account_id, r.replica,
       a.granted[r.position] AS granted,
       a.debited[r.position] AS debited,
       a.settlement_id
FROM settled_accounts a
CROSS JOIN settled_replicas r
WHERE a.granted[r.position] IS NOT NULL;

-- Append-only: what changed per account and replica in each settlement.
CREATE TABLE ledger (
  settlement_id bigint NOT NULL,
  account_id    text COLLATE "C" NOT NULL,
  replica       text COLLATE "C" NOT NULL,
  granted_delta numeric(20,0) NOT NULL CHECK (granted_delta >= 0),
  debited_delta numeric(20,0) NOT NULL CHECK (debited_delta >= 0),
  balance_after numeric(30,0) NOT NULL,
  -- one entry per (settlement, account, replica); account first so it also
  -- serves an account's history, newest first
  CONSTRAINT ledger_entry_once UNIQUE (account_id, settlement_id, replica)
);

-- Append-only: accounts whose debits exceeded their credits at a settlement.
CREATE TABLE overspends (
  settlement_id bigint NOT NULL REFERENCES settlements (id) DEFERRABLE INITIALLY DEFERRED,
  account_id    text COLLATE "C" NOT NULL,
  amount        numeric(30,0) NOT NULL CHECK (amount > 0),
  replicas      text[] COLLATE "C" NOT NULL,
  mode          text NOT NULL CHECK (mode IN ('STRICT', 'OVERDRAFT')),
  CONSTRAINT overspend_once UNIQUE (settlement_id, account_id)
);
CREATE INDEX overspends_by_account ON overspends (account_id, settlement_id);
`,
  },
  {
    version: 2,
    name: "append_only_history",
    sql: `
-- Settled history is never changed: a correction is a new settlement. Statement
-- triggers also block TRUNCATE and cost nothing on INSERT.
CREATE FUNCTION tally_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation',
          HINT = 'settled history is never changed; a correction is a new settlement';
END
$$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();
CREATE TRIGGER overspends_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON overspends
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();
CREATE TRIGGER settlements_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON settlements
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();
`,
  },
  {
    version: 3,
    name: "ledger_row_per_account",
    sql: `
-- The ledger as one row per (settlement, account) with per-replica delta arrays,
-- laid out like settled_accounts: a settlement appends a third of the rows and
-- index entries it did with one row per (account, replica), which was half of
-- a full settlement's cost. The per-replica entries stay readable as the view
-- "ledger", with the same columns as before.
CREATE TABLE account_ledger (
  settlement_id bigint NOT NULL,
  account_id    text COLLATE "C" NOT NULL,
  -- element p is the replica at settled_replicas.position p; 0 = unchanged
  granted_delta numeric[] NOT NULL CHECK (0 <= ALL (granted_delta)),
  debited_delta numeric[] NOT NULL CHECK (0 <= ALL (debited_delta)),
  balance_after numeric(30,0) NOT NULL,
  -- one row per (settlement, account); account first so it also serves an
  -- account's history, newest first
  CONSTRAINT account_ledger_once UNIQUE (account_id, settlement_id)
);
CREATE TRIGGER account_ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON account_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();

-- Carry the existing entries over (positions are dense: 1..count of replicas).
INSERT INTO account_ledger (settlement_id, account_id, granted_delta, debited_delta, balance_after)
SELECT k.settlement_id, k.account_id,
       ARRAY(SELECT COALESCE(l.granted_delta, 0) FROM settled_replicas r
             LEFT JOIN ledger l ON (l.settlement_id, l.account_id, l.replica) = (k.settlement_id, k.account_id, r.replica)
             ORDER BY r.position)::numeric[],
       ARRAY(SELECT COALESCE(l.debited_delta, 0) FROM settled_replicas r
             LEFT JOIN ledger l ON (l.settlement_id, l.account_id, l.replica) = (k.settlement_id, k.account_id, r.replica)
             ORDER BY r.position)::numeric[],
       k.balance_after
FROM (SELECT DISTINCT settlement_id, account_id, balance_after FROM ledger) k;

DROP TABLE ledger;

-- What changed per account and replica in each settlement (replicas that did not change are left out).
CREATE VIEW ledger AS
SELECT l.settlement_id, l.account_id, r.replica,
       l.granted_delta[r.position] AS granted_delta,
       l.debited_delta[r.position] AS debited_delta,
       l.balance_after
FROM account_ledger l
CROSS JOIN settled_replicas r
WHERE l.granted_delta[r.position] <> 0 OR l.debited_delta[r.position] <> 0;

-- The view refuses changes with the same error as the tables.
CREATE TRIGGER ledger_append_only INSTEAD OF UPDATE OR DELETE ON ledger
  FOR EACH ROW EXECUTE FUNCTION tally_append_only();
`,
  },
  {
    version: 4,
    name: "hold_and_refund_ledger",
    sql: `
-- Holds and refunds (DESIGN §10), append-only like the rest of the ledger.
-- Every settlement records the holds outstanding at its cut (state PENDING,
-- one row per hold and settlement) and each hold's resolution once, at the
-- first settlement whose cut includes it. Amounts are minor units (uint64);
-- times are the holding region's clock.
CREATE TABLE hold_ledger (
  settlement_id bigint NOT NULL,
  hold_id       text COLLATE "C" NOT NULL,
  region        text COLLATE "C" NOT NULL,
  account_id    text COLLATE "C" NOT NULL,
  amount        numeric(20,0) NOT NULL CHECK (amount > 0),
  state         text NOT NULL CHECK (state IN ('PENDING', 'CAPTURED', 'VOIDED', 'EXPIRED')),
  captured      numeric(20,0) NOT NULL CHECK (captured >= 0 AND captured <= amount),
  expires_at    timestamptz NOT NULL,
  resolved_at   timestamptz,
  CHECK ((state = 'PENDING') = (resolved_at IS NULL)),
  CONSTRAINT hold_ledger_once UNIQUE (hold_id, settlement_id)
);
-- A hold resolves once: its resolution is one row, whichever settlement saw it first.
CREATE UNIQUE INDEX hold_resolved_once ON hold_ledger (hold_id) WHERE state <> 'PENDING';
CREATE INDEX hold_ledger_by_account ON hold_ledger (account_id, settlement_id);
CREATE TRIGGER hold_ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON hold_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();

-- Every refund, once (its region and request id), with the debit it refunds.
-- A refund is also in the settled totals: settled_accounts.granted counts it
-- as credit of its region (RF[i]), so both totals stay grow-only.
CREATE TABLE refund_ledger (
  settlement_id     bigint NOT NULL,
  region            text COLLATE "C" NOT NULL,
  refund_request_id text COLLATE "C" NOT NULL,
  debit_request_id  text COLLATE "C" NOT NULL,
  -- NULL when the debit's record had already left the region's window
  account_id        text COLLATE "C",
  amount            numeric(20,0) NOT NULL CHECK (amount > 0),
  refunded_at       timestamptz NOT NULL,
  CONSTRAINT refund_once UNIQUE (region, refund_request_id)
);
CREATE INDEX refund_ledger_by_account ON refund_ledger (account_id, settlement_id);
CREATE TRIGGER refund_ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON refund_ledger
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();
`,
  },
  {
    version: 5,
    name: "credit_lot_breakage",
    sql: `
-- Credit lots (DESIGN §9). A lot is settled as its own row of settled_accounts
-- (account id, "#", lot key); the base lot is the account's plain row. This
-- view groups the rows under their account for readers.
CREATE VIEW account_lots AS
SELECT split_part(a.account_id, '#', 1) AS account_id,
       CASE WHEN strpos(a.account_id, '#') = 0 THEN 'base' ELSE split_part(a.account_id, '#', 2) END AS lot_key,
       (SELECT COALESCE(sum(g), 0) FROM unnest(a.granted) AS g) - (SELECT COALESCE(sum(d), 0) FROM unnest(a.debited) AS d) AS remaining,
       a.settlement_id
FROM settled_accounts a;

-- The unspent part of each expired lot (breakage), recorded once, by the
-- first settlement whose cut has every region's clock at or past the lot's
-- expiry plus the guard: no region can spend it any more, so it is final.
CREATE TABLE lot_breakage (
  settlement_id bigint NOT NULL,
  account_id    text COLLATE "C" NOT NULL,
  lot_key       text COLLATE "C" NOT NULL,
  amount        numeric(20,0) NOT NULL CHECK (amount > 0),
  expires_at    timestamptz NOT NULL,
  CONSTRAINT lot_breakage_once UNIQUE (account_id, lot_key)
);
CREATE INDEX lot_breakage_by_settlement ON lot_breakage (settlement_id);
CREATE TRIGGER lot_breakage_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON lot_breakage
  FOR EACH STATEMENT EXECUTE FUNCTION tally_append_only();
`,
  },
];
