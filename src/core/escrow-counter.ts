// The escrow bounded counter (Balegas et al., SRDS 2015) over a flat slot
// vector, so one account costs (n*n + 4n) uint64 words and no objects.
//
// Layout for n replicas: P[i][j] at i*n + j, then one block of n per extra
// column: D[i] (debits) at n*n + i, HA[i] (held, authorised) at n*n + n + i,
// HR[i] (held, released by capture, void or timeout) at n*n + 2n + i and
// RF[i] (refunded) at n*n + 3n + i. Row i (P[i][*], D[i], HA[i], HR[i], RF[i])
// is written only by replica i and only grows; merge is pointwise max.
// spec/holds.qnt is the model of the hold and refund columns:
//   balance   = Σ_i (P[i][i] + RF[i] − D[i])
//   held(i)   = HA[i] − HR[i]
//   rights(i) = P[i][i] + RF[i] + Σ_{j≠i} P[j][i] − Σ_{j≠i} P[i][j] − D[i] − held(i)
// so Σ rights + Σ held = balance. Counters written before holds existed have
// the first n*n + n slots only (LEGACY_WIDTH): the others read as 0.

/** Read access to one account's slots; `base` is the account's first slot. */
export interface SlotView {
  readonly slots: BigUint64Array;
  readonly base: number;
  readonly n: number;
}

/** Columns after the n rights columns of a row: D, HA, HR, RF. */
export const EXTRA_COLUMNS = 4;

export function slotCount(n: number): number {
  return n * n + EXTRA_COLUMNS * n;
}

/** Slots per account of a counter written before holds and refunds (P and D only). */
export function legacySlotCount(n: number): number {
  return n * n + n;
}

/** Column index meaning "the debit counter D[writer]" in a row. */
export function debitColumn(n: number): number {
  return n;
}

/** Column of HA[writer]: cumulative amounts held (authorised) at the writer. */
export function heldColumn(n: number): number {
  return n + 1;
}

/** Column of HR[writer]: cumulative held amounts released (captured, voided or expired) at the writer. */
export function releasedColumn(n: number): number {
  return n + 2;
}

/** Column of RF[writer]: cumulative refunds given at the writer. */
export function refundColumn(n: number): number {
  return n + 3;
}

/** The last column of a row. */
export function lastColumn(n: number): number {
  return n + EXTRA_COLUMNS - 1;
}

/** Offset (relative to the account base) of column `column` in row `writer`. */
export function slotOffset(n: number, writer: number, column: number): number {
  return column >= n ? n * n + (column - n) * n + writer : writer * n + column;
}

export function granted(view: SlotView, i: number): bigint {
  return view.slots[view.base + i * view.n + i] ?? 0n;
}

export function debited(view: SlotView, i: number): bigint {
  return view.slots[view.base + view.n * view.n + i] ?? 0n;
}

function extra(view: SlotView, block: number, i: number): bigint {
  const { slots, base, n } = view;
  return slots[base + n * n + block * n + i] ?? 0n;
}

/** HA[i] − HR[i]: what replica i holds for open holds. */
export function heldOf(view: SlotView, i: number): bigint {
  return extra(view, 1, i) - extra(view, 2, i);
}

/** RF[i]: cumulative refunds given at replica i. */
export function refunded(view: SlotView, i: number): bigint {
  return extra(view, 3, i);
}

/** Σ_i (P[i][i] + RF[i] − D[i]). Held amounts are still part of the balance. */
export function balanceOf(view: SlotView): bigint {
  let total = 0n;
  for (let i = 0; i < view.n; i++) total += granted(view, i) + refunded(view, i) - debited(view, i);
  return total;
}

/** Σ_i held(i): the part of the balance set aside by open holds. */
export function totalHeldOf(view: SlotView): bigint {
  let total = 0n;
  for (let i = 0; i < view.n; i++) total += heldOf(view, i);
  return total;
}

/**
 * P[i][i] + RF[i] + Σ_{j≠i} P[j][i] − Σ_{j≠i} P[i][j] − D[i] − held(i): what
 * replica i may still spend or give away. May be negative after overdraft.
 */
export function rightsOf(view: SlotView, i: number): bigint {
  const { slots, base, n } = view;
  let rights = (slots[base + i * n + i] ?? 0n) - (slots[base + n * n + i] ?? 0n) + refunded(view, i) - heldOf(view, i);
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    rights += (slots[base + j * n + i] ?? 0n) - (slots[base + i * n + j] ?? 0n);
  }
  return rights;
}

/** Rights received by i from others minus rights given away (net transfers). */
export function netTransfersIn(view: SlotView, i: number): bigint {
  const { slots, base, n } = view;
  let net = 0n;
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    net += (slots[base + j * n + i] ?? 0n) - (slots[base + i * n + j] ?? 0n);
  }
  return net;
}

/** Pointwise max of `from` into `into` (same n). Returns true if anything grew. */
export function mergeInto(into: SlotView, from: SlotView): boolean {
  let grew = false;
  const count = slotCount(into.n);
  for (let k = 0; k < count; k++) {
    const incoming = from.slots[from.base + k] ?? 0n;
    if (incoming > (into.slots[into.base + k] ?? 0n)) {
      into.slots[into.base + k] = incoming;
      grew = true;
    }
  }
  return grew;
}
