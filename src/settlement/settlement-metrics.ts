// The settlement job's metrics as an injected hook, so this module never
// imports prom-client; the composition root wires these to its registry.

export type SettleOutcome = "settled" | "unchanged" | "skipped" | "failed";

export interface SettlementMetrics {
  /** One settle() call took `seconds` (histogram). */
  durationSeconds(seconds: number, outcome: SettleOutcome): void;
  /** A settlement committed at this time, seconds since the epoch (gauge). */
  lastSuccessTime(unixSeconds: number): void;
  /** Accounts whose settled totals changed in a committed settlement (counter). */
  accountsSettled(count: number): void;
  /** Overspend recorded by a committed settlement, minor units (counter; exact). */
  overspendAmount(amount: bigint): void;
  /** Overspends recorded on STRICT accounts: invariant violations, must stay 0 (counter). */
  strictViolations(count: number): void;
}

export const NO_METRICS: SettlementMetrics = {
  durationSeconds: () => undefined,
  lastSuccessTime: () => undefined,
  accountsSettled: () => undefined,
  overspendAmount: () => undefined,
  strictViolations: () => undefined,
};
