// Typed errors of the settlement store. pg-errors.ts turns driver errors into
// these; the gRPC edge maps them to status codes. Each carries `retryable` so
// callers (the periodic job, the Settle RPC) can decide without string matching.

/** Postgres is unreachable, restarting or shutting down. Retry later. */
export class SettlementUnavailableError extends Error {
  override readonly name = "SettlementUnavailableError";
  readonly retryable = true;
  constructor(
    message: string,
    readonly sqlState: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A serialization failure or deadlock: the transaction was rolled back and may simply be retried. */
export class SettlementConflictError extends Error {
  override readonly name = "SettlementConflictError";
  readonly retryable = true;
  constructor(
    message: string,
    readonly sqlState: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A unique key already holds this row (e.g. a ledger entry written twice). */
export class SettlementDuplicateError extends Error {
  override readonly name = "SettlementDuplicateError";
  readonly retryable = false;
  constructor(
    message: string,
    readonly constraint: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Something tried to change settled history (ledger, overspends, settlements are append-only). */
export class AppendOnlyViolationError extends Error {
  override readonly name = "AppendOnlyViolationError";
  readonly retryable = false;
  constructor(
    message: string,
    readonly table: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The offered cut is behind the last settlement for some replica (a stale source). Nothing was written. */
export class StaleCutError extends Error {
  override readonly name = "StaleCutError";
  readonly retryable = false;
  constructor(
    readonly replica: string,
    readonly settled: bigint,
    readonly offered: bigint,
  ) {
    super(`cut for replica "${replica}" is ${offered}, behind the last settlement's ${settled}`);
  }
}

/**
 * The input has a lower counter than already settled for some account and
 * replica. Counters only grow, so the source lost state (e.g. a replica that
 * forgot its slot); nothing was written.
 */
export class RegressedTotalsError extends Error {
  override readonly name = "RegressedTotalsError";
  readonly retryable = false;
  constructor(
    readonly accountId: string,
    readonly replica: string,
  ) {
    super(`account "${accountId}" at replica "${replica}": input counter is below the settled total`);
  }
}

/** A migration failed; it was rolled back and nothing after it ran. */
export class MigrationError extends Error {
  override readonly name = "MigrationError";
  readonly retryable = false;
  constructor(
    readonly version: number,
    readonly migration: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`migration ${version} (${migration}): ${message}`, options);
  }
}

/** Any other store failure; `sqlState` is kept for diagnosis. */
export class SettlementStoreError extends Error {
  override readonly name = "SettlementStoreError";
  readonly retryable = false;
  constructor(
    message: string,
    readonly sqlState: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export type SettlementError =
  | SettlementUnavailableError
  | SettlementConflictError
  | SettlementDuplicateError
  | AppendOnlyViolationError
  | StaleCutError
  | RegressedTotalsError
  | MigrationError
  | SettlementStoreError;
