// Least privilege in Postgres. Three login roles: an owner that runs the
// migrations and owns the schema; the settler, which may read and append
// settled history (and update the latest-totals rows, the one table a
// settlement rewrites in place); and a reader for the listing queries. Only
// the owner can ALTER a table or DISABLE a TRIGGER, so the append-only
// triggers hold against the settler. Grants are re-applied by the owner at
// every start (idempotent), so a table added by a later migration is covered.

import type { ClientBase } from "pg";

/** Default role names provisioned for `tally up` and the tests. */
export const POSTGRES_ROLES = { owner: "tally_owner", settler: "tally_settler", reader: "tally_reader" } as const;

/** Append-only history: the settler inserts and reads, never changes a row. */
const APPEND_ONLY_TABLES = ["settlements", "settled_replicas", "account_ledger", "overspends", "hold_ledger", "refund_ledger", "lot_breakage"] as const;
/** Latest settled totals per account: a settlement upserts them (INSERT ... ON CONFLICT DO UPDATE). */
const UPSERTED_TABLES = ["settled_accounts"] as const;
const READ_VIEWS = ["ledger", "account_totals", "account_lots"] as const;
const SETTLEMENT_SEQUENCE = "settlements_id_seq";

function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The role a connection URL logs in as. */
export function roleOfUrl(url: string): string {
  const user = decodeURIComponent(new URL(url).username);
  if (user === "") throw new Error(`${new URL(url).host}: the Postgres URL names no user`);
  return user;
}

export interface SettlementGrants {
  readonly settler: string;
  readonly reader?: string;
}

/**
 * Grants exactly what each role needs on the settlement schema; run as its
 * owner after the migrations. Revokes anything else granted to them on those
 * tables before (a grant that was wider, say from an earlier release).
 */
export async function grantSettlementRoles(owner: ClientBase, grants: SettlementGrants): Promise<void> {
  const everything = [...APPEND_ONLY_TABLES, ...UPSERTED_TABLES, ...READ_VIEWS, "schema_migrations"].join(", ");
  const settler = ident(grants.settler);
  const statements = [
    `REVOKE ALL ON ${everything} FROM PUBLIC`,
    `REVOKE ALL ON ${everything} FROM ${settler}`,
    `GRANT SELECT, INSERT ON ${APPEND_ONLY_TABLES.join(", ")} TO ${settler}`,
    `GRANT SELECT, INSERT, UPDATE ON ${UPSERTED_TABLES.join(", ")} TO ${settler}`,
    `GRANT SELECT ON ${[...READ_VIEWS, "schema_migrations"].join(", ")} TO ${settler}`,
    `GRANT USAGE ON SEQUENCE ${SETTLEMENT_SEQUENCE} TO ${settler}`,
  ];
  if (grants.reader !== undefined) {
    const reader = ident(grants.reader);
    statements.push(`REVOKE ALL ON ${everything} FROM ${reader}`, `GRANT SELECT ON ${everything} TO ${reader}`);
  }
  for (const sql of statements) await owner.query(sql);
}

export interface RolePasswords {
  readonly owner: string;
  readonly settler: string;
  readonly reader: string;
}

/**
 * Creates (or resets the passwords of) the three login roles and a database
 * owned by the owner role, whose public schema only the owner may create in.
 * Run as a superuser; used by `tally up` and the tests, an operator does the
 * same once per deployment (docs in deploy/k8s/README.md).
 */
export async function provisionSettlementRoles(superuser: ClientBase, database: string, passwords: RolePasswords): Promise<void> {
  for (const [kind, role] of Object.entries(POSTGRES_ROLES) as [keyof RolePasswords, string][]) {
    const exists = await superuser.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]);
    const verb = exists.rowCount === 0 ? "CREATE" : "ALTER";
    // NOSUPERUSER NOCREATEROLE NOBYPASSRLS: none of them can lift its own limits.
    await superuser.query(`${verb} ROLE ${ident(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD ${literal(passwords[kind])}`);
  }
  const db = await superuser.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
  if (db.rowCount === 0) await superuser.query(`CREATE DATABASE ${ident(database)} OWNER ${ident(POSTGRES_ROLES.owner)}`);
  await superuser.query(`REVOKE ALL ON DATABASE ${ident(database)} FROM PUBLIC`);
  await superuser.query(`GRANT CONNECT ON DATABASE ${ident(database)} TO ${Object.values(POSTGRES_ROLES).map(ident).join(", ")}`);
}

/** Run inside the new database as superuser: only the owner creates objects in `public`. */
export async function lockPublicSchema(superuserInDatabase: ClientBase): Promise<void> {
  await superuserInDatabase.query(`ALTER SCHEMA public OWNER TO ${ident(POSTGRES_ROLES.owner)}`);
  await superuserInDatabase.query("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  await superuserInDatabase.query(`GRANT USAGE ON SCHEMA public TO ${ident(POSTGRES_ROLES.settler)}, ${ident(POSTGRES_ROLES.reader)}`);
}

function literal(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
