// Applies pending schema migrations at start-up. Each migration runs in its own
// transaction; a session advisory lock makes concurrent starters queue, so every
// version is applied exactly once. Applied migrations are checksummed so an
// edited migration is caught instead of silently diverging.

import { createHash } from "node:crypto";
import type { Pool, PoolClient } from "pg";
import { MigrationError, SettlementUnavailableError } from "./errors";
import { MIGRATIONS, type Migration } from "./migrations";
import { toSettlementError } from "./pg-errors";

/** Advisory lock key for migrations ("TALLYMIG" in ASCII, as a signed int8). */
export const MIGRATION_LOCK_KEY = 0x54414c4c594d4947n;

export interface MigrationReport {
  /** Versions applied by this call, in order. */
  readonly applied: number[];
  /** Versions found in the database that this code does not know (a newer release ran). */
  readonly unknown: number[];
}

export function checksumOf(migration: Migration): string {
  return createHash("sha256").update(migration.sql).digest("hex");
}

/** Brings the database schema up to date. Safe to call from several processes at once. */
export async function migrate(pool: Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationReport> {
  checkOrder(migrations);
  let client: PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw toSettlementError(err, "migrate: connect");
  }
  let broken: Error | undefined;
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on("error", onError);
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
    try {
      return await applyPending(client, migrations);
    } finally {
      // If the session died, the server already dropped the lock with it.
      if (broken === undefined) {
        await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY.toString()]).catch(() => undefined);
      }
    }
  } catch (err) {
    broken ??= err instanceof MigrationError ? undefined : (err as Error);
    throw toSettlementError(err, "migrate");
  } finally {
    client.off("error", onError);
    // A broken connection is destroyed rather than returned (its lock dies with it).
    client.release(broken);
  }
}

async function applyPending(client: PoolClient, migrations: readonly Migration[]): Promise<MigrationReport> {
  await client.query(`
    CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
  const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
    "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
  );
  const done = new Map(rows.map((row) => [row.version, row]));
  for (const migration of migrations) {
    const row = done.get(migration.version);
    if (row !== undefined && row.checksum !== checksumOf(migration)) {
      throw new MigrationError(
        migration.version,
        migration.name,
        "was changed after it was applied (checksum mismatch); add a new migration instead",
      );
    }
  }
  const known = new Set(migrations.map((m) => m.version));
  const unknown = rows.map((row) => row.version).filter((version) => !known.has(version));
  const applied: number[] = [];
  for (const migration of migrations) {
    if (done.has(migration.version)) continue;
    await client.query("BEGIN");
    try {
      await client.query(migration.sql);
      await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
        migration.version,
        migration.name,
        checksumOf(migration),
      ]);
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      const cause = toSettlementError(err, `migration ${migration.version}`);
      if (cause instanceof SettlementUnavailableError) throw cause; // retryable: nothing was recorded
      throw new MigrationError(migration.version, migration.name, cause.message, { cause: err });
    }
    applied.push(migration.version);
  }
  return { applied, unknown };
}

function checkOrder(migrations: readonly Migration[]): void {
  let previous = 0;
  for (const migration of migrations) {
    if (!Number.isInteger(migration.version) || migration.version <= previous) {
      throw new MigrationError(migration.version, migration.name, "versions must be positive integers in increasing order");
    }
    previous = migration.version;
  }
}
