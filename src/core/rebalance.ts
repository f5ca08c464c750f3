// Rebalancing of escrow rights between replicas (DESIGN.md §2): how much a donor
// gives, how often it gives to the same requester, when a replica should ask before
// it runs dry, and where the demand is. Pure: no I/O, time is always passed in.

/**
 * How much a donor gives of its `rights` when asked for `requested`.
 * Why: a donor keeps its own demand-weighted fair share (`keep`), so that
 * proactive asks cannot drain it and make its own clients wait (the rights
 * would ping-pong between regions). An urgent ask (a debit is waiting) gets
 * at least half of the donor's rights, rounded up, even below that share: so
 * the last units of a nearly spent account stay reachable from every region.
 */
export function donorGrant(rights: bigint, requested: bigint, keep: bigint, urgent: boolean): bigint {
  if (rights <= 0n || requested <= 0n) return 0n;
  let give = rights - keep;
  if (urgent) give = maxBig(give, (rights + 1n) / 2n);
  return give <= 0n ? 0n : minBig(minBig(give, requested), rights);
}

/**
 * The weight of a replica's fair share: its share of recent demand blended
 * half and half with the equal split (the weights of all replicas still sum
 * to 1). Why: demand seen over a short half-life is noisy for accounts that
 * debit rarely; unblended, whoever debited last would claim the whole balance
 * and the rights would ping-pong. Undefined demand is the equal split.
 */
export function fairShareWeight(observedDemandShare: number | undefined, replicaCount: number): number {
  const equal = 1 / Math.max(1, replicaCount);
  if (observedDemandShare === undefined || Number.isNaN(observedDemandShare)) return equal;
  return (Math.min(1, Math.max(0, observedDemandShare)) + equal) / 2;
}

/** The fair share of `balance` for a replica with this observed demand share; exactly balance / n when none is known. */
export function fairShareOf(balance: bigint, observedDemandShare: number | undefined, replicaCount: number): bigint {
  if (balance <= 0n) return 0n;
  if (observedDemandShare === undefined || Number.isNaN(observedDemandShare)) return balance / BigInt(Math.max(1, replicaCount));
  return fairShare(balance, fairShareWeight(observedDemandShare, replicaCount));
}

/** `balance` × `weight`, rounded down, exact in bigint (weights are parts per million). */
export function fairShare(balance: bigint, weight: number): bigint {
  if (balance <= 0n) return 0n;
  return (balance * BigInt(Math.round(Math.min(1, Math.max(0, weight)) * SHARE_SCALE))) / BigInt(SHARE_SCALE);
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
  const share = fairShareOf(balance, observedDemandShare, replicaCount);
  if (share <= 0n || localRights * 2n >= share) return 0n;
  const need = (share - localRights) / 2n;
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
