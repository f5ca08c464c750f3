// The one place where Postgres SQLSTATE codes and driver failures become
// settlement domain errors. Everything that talks to pg funnels errors here.

import { DatabaseError } from "pg";
import { InvalidArgumentError } from "../core/errors";
import {
  AppendOnlyViolationError,
  MigrationError,
  RegressedTotalsError,
  SettlementConflictError,
  SettlementDuplicateError,
  SettlementStoreError,
  SettlementUnavailableError,
  StaleCutError,
} from "./errors";

/** Node socket errors that mean "the server went away", not "the query was wrong". */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTCONN"]);

/** Errors that are already domain errors pass through unchanged. */
function isDomainError(err: unknown): err is Error {
  return (
    err instanceof InvalidArgumentError ||
    err instanceof SettlementUnavailableError ||
    err instanceof SettlementConflictError ||
    err instanceof SettlementDuplicateError ||
    err instanceof AppendOnlyViolationError ||
    err instanceof StaleCutError ||
    err instanceof RegressedTotalsError ||
    err instanceof MigrationError ||
    err instanceof SettlementStoreError
  );
}

/** Maps any error thrown by the pg driver (or our own code) to a domain error. `doing` names the operation. */
export function toSettlementError(err: unknown, doing: string): Error {
  if (isDomainError(err)) return err;
  if (err instanceof DatabaseError) return fromSqlState(err, doing);
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code !== undefined && NETWORK_CODES.has(code)) || /Connection terminated|connection timeout|not queryable/i.test(err.message)) {
      return new SettlementUnavailableError(`${doing}: Postgres is unavailable (${err.message})`, undefined, { cause: err });
    }
    return new SettlementStoreError(`${doing}: ${err.message}`, undefined, { cause: err });
  }
  return new SettlementStoreError(`${doing}: ${String(err)}`, undefined, { cause: err });
}

function fromSqlState(err: DatabaseError, doing: string): Error {
  const code = err.code ?? "";
  const message = `${doing}: ${err.message} (SQLSTATE ${code})`;
  switch (code) {
    case "40001": // serialization_failure
    case "40P01": // deadlock_detected
      return new SettlementConflictError(message, code, { cause: err });
    case "23505": // unique_violation
    case "21000": // cardinality_violation: ON CONFLICT DO UPDATE reached the same row twice
      return new SettlementDuplicateError(message, err.constraint, { cause: err });
    case "23001": // restrict_violation: raised by the append-only triggers
      return new AppendOnlyViolationError(message, err.table, { cause: err });
    case "57P01": // admin_shutdown
    case "57P02": // crash_shutdown
    case "57P03": // cannot_connect_now
    case "53300": // too_many_connections
      return new SettlementUnavailableError(message, code, { cause: err });
    default:
      if (code.startsWith("08")) return new SettlementUnavailableError(message, code, { cause: err }); // connection_exception
      return new SettlementStoreError(message, code, { cause: err });
  }
}

/** True when a retry of the same operation may succeed. */
export function isRetryable(err: unknown): boolean {
  return err instanceof SettlementUnavailableError || err instanceof SettlementConflictError;
}
