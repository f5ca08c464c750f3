// When a writer's lease (DESIGN §12) is due for renewal or must be given up,
// judged by the holder's own monotonic clock (time is passed in). This only
// decides when to *try*: safety comes from the fence and expected-last-sequence
// on every append, so a clock that stops (GC pause) can make a node believe too
// long, never let a deposed writer append (spec/ha.qnt).

/** Lease timing, in ms of the holder's monotonic clock. */
export interface LeaseTiming {
  /** The KV bucket's TTL: the server forgets the key this long after the last write. */
  readonly ttlMs: number;
  /** Renew this long after the last confirmed write. */
  readonly renewAfterMs: number;
  /** Believe the lease for ttlMs − marginMs only (clock drift, publish latency). */
  readonly marginMs: number;
}

export class LeaseTimingError extends Error {
  override readonly name = "LeaseTimingError";
}

/** Checks that renewals come well before the holder stops believing its lease. */
export function validateLeaseTiming(timing: LeaseTiming): LeaseTiming {
  const { ttlMs, renewAfterMs, marginMs } = timing;
  for (const [name, value] of Object.entries({ ttlMs, renewAfterMs, marginMs })) {
    if (!Number.isSafeInteger(value) || value < 0) throw new LeaseTimingError(`lease ${name} must be a non-negative integer, got ${value}`);
  }
  if (ttlMs < 100) throw new LeaseTimingError(`lease ttlMs must be at least 100 (JetStream KV TTL), got ${ttlMs}`);
  if (marginMs >= ttlMs) throw new LeaseTimingError(`lease marginMs (${marginMs}) must be below ttlMs (${ttlMs})`);
  if (renewAfterMs <= 0 || renewAfterMs >= ttlMs - marginMs) {
    throw new LeaseTimingError(`lease renewAfterMs (${renewAfterMs}) must be in (0, ttlMs − marginMs = ${ttlMs - marginMs})`);
  }
  return timing;
}

/** Default: a 10 s TTL renewed every 3 s, believed for 8 s. */
export const DEFAULT_LEASE_TIMING: LeaseTiming = { ttlMs: 10_000, renewAfterMs: 3_000, marginMs: 2_000 };

/** What the holder knows: the KV revision it wrote last and when it sent that write. */
export type LeaseState =
  | { readonly kind: "none" }
  | { readonly kind: "held"; readonly revision: number; readonly sentAtMs: number };

export const NO_LEASE: LeaseState = { kind: "none" };

export type LeaseStatus = "none" | "valid" | "renew-due" | "expired";

/**
 * The lease as the holder must treat it at `nowMs`. The TTL is counted from
 * when the write was *sent* (the server's TTL starts later, never earlier), so
 * a holder with a running clock stops believing before the server forgets.
 */
export function leaseStatus(state: LeaseState, nowMs: number, timing: LeaseTiming): LeaseStatus {
  if (state.kind === "none") return "none";
  const age = nowMs - state.sentAtMs;
  if (age >= timing.ttlMs - timing.marginMs) return "expired";
  if (age >= timing.renewAfterMs) return "renew-due";
  return "valid";
}

/** The state after a create or update sent at `sentAtMs` was stored at `revision`. */
export function confirmed(revision: number, sentAtMs: number): LeaseState {
  return { kind: "held", revision, sentAtMs };
}
