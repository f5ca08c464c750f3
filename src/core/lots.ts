// Credit lots (DESIGN.md §9, model: spec/lots.qnt): grants that start, expire
// and burn in order. Each lot is its own escrow counter, so Σ_i rights_i(lot) =
// remaining(lot) holds per lot without coordination; this module decides, for
// one account at one region, which lots a debit burns, which lots a donor
// gives from, when a lot is spendable by the holding region's clock, and when
// settlement may record a lot's unspent part (breakage). Pure: no I/O, every
// clock reading is passed in.

import { INT64_MAX } from "./amounts";
import { InvalidArgumentError } from "./errors";

/** A lot's terms, fixed when it is granted. Times are wall-clock milliseconds. */
export interface LotTerms {
  /** Smaller burns first. */
  readonly priority: number;
  /** Spendable from this instant on (by the holding region's clock). */
  readonly effectiveAtMs: number;
  /** Not spendable from `expiresAtMs − guard` on; NO_EXPIRY for lots that never expire. */
  readonly expiresAtMs: number;
}

/** `expiresAtMs` of a lot that never expires: it sorts after every expiring lot of its priority. */
export const NO_EXPIRY = Number.MAX_SAFE_INTEGER;

/** Priority of a grant that names none (as Stripe's credit grants: 0 burns first, 100 last). */
export const DEFAULT_PRIORITY = 50;

/** The terms of a grant that names none: spendable at once and forever, at the default priority. */
export const BASE_TERMS: LotTerms = { priority: DEFAULT_PRIORITY, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY };

/** Largest priority accepted (priorities are small ordinals; a bound keeps keys short and comparisons exact). */
export const MAX_PRIORITY = 1_000_000;

/** One lot as one region sees it: its key, its terms and this region's rights in it. */
export interface LotRights {
  readonly key: string;
  readonly terms: LotTerms;
  /** This region's rights in the lot; may be negative after an overdraft, which counts as none. */
  readonly rights: bigint;
}

/** An amount taken from (burnt) or given out of one lot. */
export interface LotTake {
  readonly key: string;
  readonly amount: bigint;
}

export type BurnPlan =
  | { readonly kind: "burn"; readonly takes: readonly LotTake[] }
  | { readonly kind: "insufficient"; readonly spendable: bigint };

/**
 * The most live (not expired) credit lots one account may have, as the
 * granting region counts them. Each debit and hold of the account walks its
 * lots, and a hold records one part per lot it reserves from, so the count is
 * bounded; across regions at most this many per region can be opened at once.
 */
export const MAX_LIVE_LOTS = 100;

/**
 * Checks a grant's terms; throws InvalidArgumentError naming the field.
 * Why bounded: times must be exact JavaScript integers and a lot must be able
 * to live at all (expiry after start by more than the guard).
 */
export function validateLotTerms(terms: LotTerms, guardMs: number): LotTerms {
  const { priority, effectiveAtMs, expiresAtMs } = terms;
  if (!Number.isSafeInteger(priority) || priority < 0 || priority > MAX_PRIORITY) {
    throw new InvalidArgumentError("priority", `must be an integer between 0 and ${MAX_PRIORITY}`);
  }
  if (!Number.isSafeInteger(effectiveAtMs) || effectiveAtMs < 0) throw new InvalidArgumentError("effective_at", "must be a time at or after 1970-01-01");
  if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs <= 0) throw new InvalidArgumentError("expires_at", "must be a time after 1970-01-01, or unset for no expiry");
  if (expiresAtMs !== NO_EXPIRY && expiresAtMs - guardMs <= effectiveAtMs) {
    throw new InvalidArgumentError("expires_at", `must be more than the expiry guard (${guardMs} ms) after effective_at`);
  }
  return terms;
}

/**
 * The bucket a grant with these terms joins. Lots with equal terms merge: they
 * burn at the same rank and die at the same instant, so keeping them apart
 * would only cost memory. effective_at is part of the key so that merging
 * never lets credit be spent before it starts.
 */
export function lotKey(terms: LotTerms): string {
  const expiry = terms.expiresAtMs === NO_EXPIRY ? "never" : String(terms.expiresAtMs);
  return `p${terms.priority}.e${expiry}.s${terms.effectiveAtMs}`;
}

/** Burn order: priority, then expiry (sooner first), then key. Exact within a region. */
export function burnsBefore(a: Pick<LotRights, "key" | "terms">, b: Pick<LotRights, "key" | "terms">): number {
  if (a.terms.priority !== b.terms.priority) return a.terms.priority - b.terms.priority;
  if (a.terms.expiresAtMs !== b.terms.expiresAtMs) return a.terms.expiresAtMs < b.terms.expiresAtMs ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/**
 * May the region whose clock reads `clockMs` spend the lot? Only the holding
 * region judges, on its own clock, and stops `guardMs` before the expiry: a
 * clock that runs up to `guardMs` behind can then never spend past the real
 * expiry (skew may end a lot early, never late). Rights of a dead lot that
 * arrive later are dead on arrival: nothing ever spends them.
 */
export function isSpendable(terms: LotTerms, clockMs: number, guardMs: number): boolean {
  if (clockMs < terms.effectiveAtMs) return false;
  return terms.expiresAtMs === NO_EXPIRY || clockMs < terms.expiresAtMs - guardMs;
}

/** The region's rights it may spend now: Σ over spendable lots of max(0, rights). */
export function spendableRights(lots: readonly LotRights[], clockMs: number, guardMs: number): bigint {
  let total = 0n;
  for (const lot of lots) if (lot.rights > 0n && isSpendable(lot.terms, clockMs, guardMs)) total += lot.rights;
  return total;
}

/** Spendable lots with rights, in burn order. */
function inBurnOrder(lots: readonly LotRights[], clockMs: number, guardMs: number): LotRights[] {
  return lots.filter((lot) => lot.rights > 0n && isSpendable(lot.terms, clockMs, guardMs)).sort(burnsBefore);
}

/** Takes up to `amount` from `ordered`, each lot up to its rights, first lots first. */
function takeInOrder(ordered: readonly LotRights[], amount: bigint): LotTake[] {
  const takes: LotTake[] = [];
  let left = amount;
  for (const lot of ordered) {
    if (left === 0n) break;
    const take = lot.rights < left ? lot.rights : left;
    takes.push({ key: lot.key, amount: take });
    left -= take;
  }
  return takes;
}

/**
 * Which lots a STRICT debit of `amount` burns at this region: its own
 * spendable rights, lot by lot in burn order, all or nothing. Each take is
 * one D increment in that lot's counter, written in one group commit.
 */
export function planBurn(lots: readonly LotRights[], amount: bigint, clockMs: number, guardMs: number): BurnPlan {
  if (amount <= 0n || amount > INT64_MAX) throw new InvalidArgumentError("amount", "must be between 1 and 9223372036854775807");
  const ordered = inBurnOrder(lots, clockMs, guardMs);
  let spendable = 0n;
  for (const lot of ordered) spendable += lot.rights;
  if (spendable < amount) return { kind: "insufficient", spendable };
  return { kind: "burn", takes: takeInOrder(ordered, amount) };
}

/**
 * Which lots a hold of `amount` reserves at this region: a STRICT burn over
 * the lots spendable now that are still spendable at `untilMs`, the hold's
 * timeout on this region's clock. A hold on a lot therefore always resolves
 * before the lot dies here: its capture never spends a dead lot, and the
 * lot's breakage cannot change once settlement may record it.
 */
export function planHold(lots: readonly LotRights[], amount: bigint, clockMs: number, untilMs: number, guardMs: number): BurnPlan {
  return planBurn(
    lots.filter((lot) => isSpendable(lot.terms, untilMs, guardMs)),
    amount,
    clockMs,
    guardMs,
  );
}

/** A lot as a refund sees it: how much this region debited from it and has not refunded. */
export interface LotRefundRoom {
  readonly key: string;
  readonly terms: LotTerms;
  /** This region's debits less its refunds in the lot. */
  readonly room: bigint;
}

/**
 * Where a refund of `amount` goes: the lots this region debited that are not
 * expired by its clock, in burn order, each up to its room (debits burn in
 * that order, so these are the lots a refunded debit most likely took from).
 * A dead lot never takes a refund: settlement may have recorded its breakage.
 * `rest` is what none of them can take (it goes to the base lot).
 */
export function planRefund(lots: readonly LotRefundRoom[], amount: bigint, clockMs: number, guardMs: number): { takes: LotTake[]; rest: bigint } {
  const live = lots.filter((lot) => lot.room > 0n && !(lot.terms.expiresAtMs !== NO_EXPIRY && clockMs >= lot.terms.expiresAtMs - guardMs)).sort(burnsBefore);
  const takes: LotTake[] = [];
  let left = amount;
  for (const lot of live) {
    if (left === 0n) break;
    const take = lot.room < left ? lot.room : left;
    takes.push({ key: lot.key, amount: take });
    left -= take;
  }
  return { takes, rest: left };
}

/**
 * What a donor gives of `give` (already sized by the rebalancing rules) and
 * from which lots: its spendable lots in the asker's burn order (the lots the
 * asker will burn first), judged by the donor's own clock. A dead lot is
 * never given: the asker could not spend it either.
 */
export function planDonation(lots: readonly LotRights[], give: bigint, clockMs: number, guardMs: number): LotTake[] {
  if (give <= 0n) return [];
  return takeInOrder(inBurnOrder(lots, clockMs, guardMs), give);
}

/**
 * May settlement record the lot's breakage (its unspent part) now? Only once
 * every region's cut is at or past expiry + guard: by then no region's clock
 * can still call the lot spendable, so the remaining amount can only stay.
 * `cutClocksMs` holds, per region, the clock reading its settled state carries.
 */
export function breakageDue(terms: LotTerms, cutClocksMs: readonly number[], guardMs: number): boolean {
  if (terms.expiresAtMs === NO_EXPIRY) return false;
  return cutClocksMs.length > 0 && cutClocksMs.every((clock) => clock >= terms.expiresAtMs + guardMs);
}
