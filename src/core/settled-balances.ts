// The last settled totals of every account, as settlements published them:
// what GetBalance reports as the settled balance, answered from memory.
// Packed in typed columns (24 bytes per account plus its map entry): a node
// holds every account.

export interface SettledTotals {
  readonly granted: bigint;
  readonly debited: bigint;
  readonly settlementId: bigint;
}

const INITIAL_CAPACITY = 1024;

export class SettledBalances {
  private readonly index = new Map<string, number>();
  private granted = new BigInt64Array(INITIAL_CAPACITY);
  private debited = new BigInt64Array(INITIAL_CAPACITY);
  private settlement = new BigUint64Array(INITIAL_CAPACITY);

  get size(): number {
    return this.index.size;
  }

  /** The account's settled balance and the settlement that last changed its totals; undefined if never settled. */
  get(accountId: string): { balance: bigint; settlementId: bigint } | undefined {
    const at = this.index.get(accountId);
    if (at === undefined) return undefined;
    return { balance: this.granted[at]! - this.debited[at]!, settlementId: this.settlement[at]! };
  }

  /** Whether these totals differ from what is recorded (a settlement must publish them). */
  differs(accountId: string, granted: bigint, debited: bigint): boolean {
    const at = this.index.get(accountId);
    return at === undefined ? granted !== 0n || debited !== 0n : this.granted[at] !== granted || this.debited[at] !== debited;
  }

  /** Records totals from a settlement; an older settlement never overwrites a newer one. Returns true if applied. */
  apply(accountId: string, totals: SettledTotals): boolean {
    let at = this.index.get(accountId);
    if (at !== undefined && this.settlement[at]! >= totals.settlementId) return false;
    if (at === undefined) {
      at = this.index.size;
      if (at === this.granted.length) this.grow();
      this.index.set(accountId, at);
    }
    this.granted[at] = totals.granted;
    this.debited[at] = totals.debited;
    this.settlement[at] = totals.settlementId;
    return true;
  }

  private grow(): void {
    const capacity = this.granted.length * 2;
    const granted = new BigInt64Array(capacity);
    const debited = new BigInt64Array(capacity);
    const settlement = new BigUint64Array(capacity);
    granted.set(this.granted);
    debited.set(this.debited);
    settlement.set(this.settlement);
    this.granted = granted;
    this.debited = debited;
    this.settlement = settlement;
  }
}
