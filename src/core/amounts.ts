// Exact integer bounds for amounts. Amounts are bigint end to end: int64 on the
// wire, uint64 in the grow-only counters. The per-slot caps that keep every
// balance, rights and total within int64 across regions are in ./bounds.ts.

export const INT64_MAX = (1n << 63n) - 1n;
export const INT64_MIN = -(1n << 63n);
export const UINT64_MAX = (1n << 64n) - 1n;
