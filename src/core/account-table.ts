// Every account's escrow counter in one growable BigUint64Array: an account is
// a base offset into the pool plus a Map entry, no per-account objects. This
// keeps memory near (n*n + n) * 8 bytes + the id per account.

import { slotCount, slotOffset, type SlotView } from "./escrow-counter";

export class AccountTable {
  private pool: BigUint64Array;
  private readonly baseById = new Map<string, number>();
  /** Ids in insertion order; the k-th account's base is k * width. */
  private readonly ids: string[] = [];
  private used = 0;
  readonly width: number;

  constructor(
    readonly n: number,
    initialAccounts = 1024,
    /** Told of every row as it appears (the lot index listens). */
    private readonly onNewRow: (accountId: string) => void = () => undefined,
  ) {
    this.width = slotCount(n);
    this.pool = new BigUint64Array(this.width * Math.max(1, initialAccounts));
  }

  get size(): number {
    return this.baseById.size;
  }

  baseOf(accountId: string): number | undefined {
    return this.baseById.get(accountId);
  }

  /** The account's base, creating a zeroed counter when it is new. */
  ensure(accountId: string): number {
    const existing = this.baseById.get(accountId);
    if (existing !== undefined) return existing;
    if (this.used + this.width > this.pool.length) {
      const grown = new BigUint64Array(Math.max(this.pool.length * 2, this.width * 1024));
      grown.set(this.pool);
      this.pool = grown;
    }
    const base = this.used;
    this.used += this.width;
    this.baseById.set(accountId, base);
    this.ids.push(accountId);
    this.onNewRow(accountId);
    return base;
  }

  view(base: number): SlotView {
    return { slots: this.pool, base, n: this.n };
  }

  read(base: number, writer: number, column: number): bigint {
    return this.pool[base + slotOffset(this.n, writer, column)] ?? 0n;
  }

  write(base: number, writer: number, column: number, value: bigint): void {
    this.pool[base + slotOffset(this.n, writer, column)] = value;
  }

  /** A consistent copy of every counter: ids in order and their slots (k-th id at k * width). */
  copy(): { ids: string[]; slots: BigUint64Array } {
    return { ids: this.ids.slice(), slots: this.pool.slice(0, this.used) };
  }

  /** Iterates (accountId, base) in insertion order. */
  accounts(): IterableIterator<[string, number]> {
    return this.baseById.entries();
  }
}
