// Rebalancing of escrow rights between replicas (DESIGN.md §2): how much a donor
// gives, how often it gives to the same requester, when a replica should ask before
// it runs dry, and where the demand is. Pure: no I/O, time is always passed in.

/** Why: a donor keeps half of its spare so that its own clients rarely wait (AntidoteDB, PotionDB). */
export function donorGrant(spareRights: bigint, requested: bigint, donorIdle = false): bigint {
  if (spareRights <= 0n || requested <= 0n) return 0n;
  // Rounded up, so the last unit of spare can still move (no credit stranded in the endgame).
  const half = (spareRights + 1n) / 2n;
  // Why: an idle donor strands credit if it keeps any, so it gives what is asked and
  // at least half (fewer round trips); when its spare is below the request it gives all.
  if (donorIdle) return minBig(spareRights, maxBig(requested, half));
  return minBig(requested, half);
}

export interface DonorRateLimitOptions {
  /** How long a donor waits before it gives again to the same requester for the same account. */
  readonly windowMs: number;
  /** Most (account, requester) pairs remembered; the least recently served go first. */
  readonly maxEntries: number;
}

/**
 * Why: a requester that keeps asking would drain a donor half by half; one gift per
 * (account, requester) per window bounds that while the requester spends what it got.
 */
export class DonorRateLimiter {
  // Insertion order is the order of the last gift (re-inserted on each), so the
  // expired and the least recently served pairs sit at the front.
  private readonly lastGiftMs = new Map<string, number>();

  constructor(private readonly options: DonorRateLimitOptions) {}

  get size(): number {
    return this.lastGiftMs.size;
  }

  /** Why: lets a donor decide without recording, e.g. before it knows it can give anything. */
  allows(accountId: string, requester: number, nowMs: number): boolean {
    const last = this.lastGiftMs.get(pairKey(accountId, requester));
    // A clock that stepped back must not block a pair until it catches up.
    return last === undefined || nowMs - last >= this.options.windowMs || nowMs < last;
  }

  /** Why: records a gift so that repeats inside the window are refused; returns false if refused. */
  tryAcquire(accountId: string, requester: number, nowMs: number): boolean {
    if (!this.allows(accountId, requester, nowMs)) return false;
    const key = pairKey(accountId, requester);
    this.lastGiftMs.delete(key);
    this.lastGiftMs.set(key, nowMs);
    this.evict(nowMs);
    return true;
  }

  /** Why: bounded memory; pairs whose window has passed carry no information. */
  evict(nowMs: number): void {
    for (const [key, last] of this.lastGiftMs) {
      const expired = nowMs - last >= this.options.windowMs;
      if (!expired && this.lastGiftMs.size <= this.options.maxEntries) break;
      this.lastGiftMs.delete(key);
    }
  }
}

/** Why: account ids never contain a space (validation.ts), so this key is unambiguous. */
function pairKey(accountId: string, requester: number): string {
  return `${requester} ${accountId}`;
}

/** Demand shares are weights, not money: parts per million are precise enough. */
const SHARE_SCALE = 1_000_000;

/**
 * Why: ask before running dry (PotionDB) — below half of the demand-weighted fair share,
 * ask for half the gap so that asker and donor meet in the middle rather than overshoot.
 * Returns 0n when no request is due. `observedDemandShare` undefined means no demand is
 * known, so the fair share is the equal split.
 */
export function proactiveNeed(
  localRights: bigint,
  balance: bigint,
  replicaCount: number,
  observedDemandShare: number | undefined,
): bigint {
  if (balance <= 0n || replicaCount < 1) return 0n;
  const fairShare =
    observedDemandShare === undefined || Number.isNaN(observedDemandShare)
      ? balance / BigInt(replicaCount)
      : (balance * BigInt(Math.round(Math.min(1, Math.max(0, observedDemandShare)) * SHARE_SCALE))) /
        BigInt(SHARE_SCALE);
  if (fairShare <= 0n || localRights * 2n >= fairShare) return 0n;
  const need = (fairShare - localRights) / 2n;
  return need > 0n ? need : 0n;
}

export interface DemandTrackerOptions {
  readonly replicaCount: number;
  /** Time for a rate to halve with no new debits. */
  readonly halfLifeMs: number;
  /** Most accounts tracked; the least recently active go first. */
  readonly maxAccounts: number;
  /** An account with no debits for this long is forgotten by evictIdle. */
  readonly idleMs: number;
}

interface DemandEntry {
  lastMs: number;
  /** Decayed debit amount per replica as of lastMs (a weight, so float precision is fine). */
  readonly rates: Float64Array;
}

/**
 * Why: shares should follow where the spending happens (DESIGN §2); an exponentially
 * decayed debit rate per replica forgets old patterns at a known half-life and costs
 * one small array per recently active account.
 */
export class DemandTracker {
  // Insertion order = order of last activity (re-inserted on record).
  private readonly entries = new Map<string, DemandEntry>();

  constructor(private readonly options: DemandTrackerOptions) {}

  get size(): number {
    return this.entries.size;
  }

  /** Why: feeds local debits and the debit growth seen in merged peer rows. */
  record(accountId: string, replica: number, amount: bigint, nowMs: number): void {
    if (amount <= 0n || replica < 0 || replica >= this.options.replicaCount) return;
    let entry = this.entries.get(accountId);
    if (entry === undefined) {
      entry = { lastMs: nowMs, rates: new Float64Array(this.options.replicaCount) };
    } else {
      this.decay(entry, nowMs);
      this.entries.delete(accountId);
    }
    entry.rates[replica] = (entry.rates[replica] ?? 0) + Number(amount);
    this.entries.set(accountId, entry);
    while (this.entries.size > this.options.maxAccounts) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }

  /** Why: the decayed debit weight of one replica now; 0 when nothing recent. */
  rate(accountId: string, replica: number, nowMs: number): number {
    const entry = this.entries.get(accountId);
    if (entry === undefined) return 0;
    return (entry.rates[replica] ?? 0) * this.decayFactor(entry.lastMs, nowMs);
  }

  /** Why: the fraction of recent demand at `replica`, the weight of its fair share; undefined when none is known. */
  share(accountId: string, replica: number): number | undefined {
    const entry = this.entries.get(accountId);
    if (entry === undefined) return undefined;
    let total = 0;
    for (const rate of entry.rates) total += rate;
    if (!(total > 0)) return undefined;
    // No time argument: the decay factor is common to every replica and cancels out.
    return (entry.rates[replica] ?? 0) / total;
  }

  /** Why: a donor with no recent demand of its own may give all of its spare (no stranded credit). */
  isIdle(accountId: string, replica: number, nowMs: number, threshold = 1): boolean {
    return this.rate(accountId, replica, nowMs) < threshold;
  }

  /** Why: bounded memory; accounts without debits for idleMs have no useful history. Returns how many were dropped. */
  evictIdle(nowMs: number): number {
    let dropped = 0;
    for (const [accountId, entry] of this.entries) {
      if (nowMs - entry.lastMs < this.options.idleMs) break;
      this.entries.delete(accountId);
      dropped++;
    }
    return dropped;
  }

  private decay(entry: DemandEntry, nowMs: number): void {
    const factor = this.decayFactor(entry.lastMs, nowMs);
    if (factor !== 1) for (let i = 0; i < entry.rates.length; i++) entry.rates[i] = (entry.rates[i] ?? 0) * factor;
    entry.lastMs = Math.max(entry.lastMs, nowMs);
  }

  /** Why: a clock that steps back must not inflate rates, so negative elapsed time counts as none. */
  private decayFactor(sinceMs: number, nowMs: number): number {
    const elapsed = nowMs - sinceMs;
    return elapsed > 0 ? Math.pow(2, -elapsed / this.options.halfLifeMs) : 1;
  }
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function maxBig(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
