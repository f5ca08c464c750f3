// One slot write of an account's escrow counter, as produced by a local write
// and carried to peers (replicated changes, a message's causal context).

/** The absolute new value of one slot in the row of `writer`. */
export interface SlotChange {
  readonly accountId: string;
  readonly writer: number;
  readonly column: number;
  readonly value: bigint;
}
