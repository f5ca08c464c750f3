// What the peers' latest rights replies said they held, per account, for a
// short while: with this node's own view it tells whether a refused debit
// was a false rejection (the cluster held enough) when this node's view of
// the balance alone does not know it. Bounded: least recently told go first.

export interface PeerRightsMemoryOptions {
  /** A reply older than this says nothing any more. */
  readonly maxAgeMs: number;
  /** Most accounts remembered. */
  readonly maxAccounts: number;
}

interface Told {
  readonly rights: bigint[];
  readonly atMs: number[];
}

export class PeerRightsMemory {
  // Insertion order = order of the last reply (re-inserted on each).
  private readonly accounts = new Map<string, Told>();

  constructor(
    private readonly replicaCount: number,
    private readonly options: PeerRightsMemoryOptions = { maxAgeMs: 10_000, maxAccounts: 100_000 },
  ) {}

  get size(): number {
    return this.accounts.size;
  }

  remember(accountId: string, replica: number, rights: bigint, nowMs: number): void {
    if (replica < 0 || replica >= this.replicaCount) return;
    let told = this.accounts.get(accountId);
    if (told === undefined) told = { rights: new Array<bigint>(this.replicaCount).fill(0n), atMs: new Array<number>(this.replicaCount).fill(Number.NEGATIVE_INFINITY) };
    else this.accounts.delete(accountId);
    told.rights[replica] = rights;
    told.atMs[replica] = nowMs;
    this.accounts.set(accountId, told);
    while (this.accounts.size > this.options.maxAccounts) {
      const oldest = this.accounts.keys().next();
      if (oldest.done === true) break;
      this.accounts.delete(oldest.value);
    }
  }

  /** The positive rights the other replicas recently said they held (0 when none is known). */
  total(accountId: string, self: number, nowMs: number): bigint {
    const told = this.accounts.get(accountId);
    if (told === undefined) return 0n;
    let sum = 0n;
    for (let replica = 0; replica < this.replicaCount; replica++) {
      const rights = told.rights[replica] ?? 0n;
      if (replica === self || rights <= 0n || nowMs - (told.atMs[replica] ?? Number.NEGATIVE_INFINITY) > this.options.maxAgeMs) continue;
      sum += rights;
    }
    return sum;
  }
}
