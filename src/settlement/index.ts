// Public surface of the Postgres settlement store; siblings import files directly.

export * from "./errors";
export { migrate, MIGRATION_LOCK_KEY, type MigrationReport } from "./migrate";
export { MIGRATIONS, type Migration } from "./migrations";
export { isRetryable, toSettlementError } from "./pg-errors";
export { MODE_OVERDRAFT, MODE_STRICT, type SettlementAccount, type SettlementInput } from "./settlement-input";
export { NO_METRICS, type SettleOutcome, type SettlementMetrics } from "./settlement-metrics";
export * from "./settlement-queries";
export { SETTLEMENT_LOCK_KEY, Settler, type SettleResult, type SettlerOptions } from "./settler";
