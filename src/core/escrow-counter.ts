// The escrow bounded counter (Balegas et al., SRDS 2015) over a flat slot
// vector, so one account costs (n*n + n) uint64 words and no objects.
//
// Layout for n replicas: P[i][j] at i*n + j, D[i] at n*n + i. Row i (P[i][*]
// and D[i]) is written only by replica i and only grows; merge is pointwise max.

/** Read access to one account's slots; `base` is the account's first slot. */
export interface SlotView {
  readonly slots: BigUint64Array;
  readonly base: number;
  readonly n: number;
}

export function slotCount(n: number): number {
  return n * n + n;
}

/** Column index meaning "the debit counter D[writer]" in a row. */
export function debitColumn(n: number): number {
  return n;
}

/** Offset (relative to the account base) of column `column` in row `writer`. */
export function slotOffset(n: number, writer: number, column: number): number {
  return column === n ? n * n + writer : writer * n + column;
}

export function granted(view: SlotView, i: number): bigint {
  return view.slots[view.base + i * view.n + i] ?? 0n;
}

export function debited(view: SlotView, i: number): bigint {
  return view.slots[view.base + view.n * view.n + i] ?? 0n;
}

/** Σ_i P[i][i] − Σ_i D[i]. */
export function balanceOf(view: SlotView): bigint {
  let total = 0n;
  for (let i = 0; i < view.n; i++) total += granted(view, i) - debited(view, i);
  return total;
}

/** P[i][i] + Σ_{j≠i} P[j][i] − Σ_{j≠i} P[i][j] − D[i]. May be negative after overdraft. */
export function rightsOf(view: SlotView, i: number): bigint {
  const { slots, base, n } = view;
  let rights = (slots[base + i * n + i] ?? 0n) - (slots[base + n * n + i] ?? 0n);
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
