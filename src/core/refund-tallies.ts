// How much of each of this region's debits has been refunded, for the debits
// that had a refund. A debit's own record (amount, region) is its remembered
// answer in the request log, kept for the request-id window: that window is
// the refund window, and a tally is dropped once its debit's record is gone.
// Pure; records only grow (absolute refunded totals), so replaying the stream
// or a snapshot over them changes nothing.

export interface RefundTally {
  readonly debitRequestId: string;
  readonly accountId: string;
  /** What the debit took. */
  readonly debitAmount: bigint;
  /** Sum of its refunds so far (≤ debitAmount). */
  readonly refunded: bigint;
}

export class RefundTallies {
  private readonly tallies = new Map<string, RefundTally>();

  get size(): number {
    return this.tallies.size;
  }

  get(debitRequestId: string): RefundTally | undefined {
    return this.tallies.get(debitRequestId);
  }

  /** Keeps the larger refunded total. */
  put(tally: RefundTally): void {
    const current = this.tallies.get(tally.debitRequestId);
    if (current === undefined || tally.refunded > current.refunded) this.tallies.set(tally.debitRequestId, tally);
  }

  /** Drops the tallies whose debit is no longer remembered (`remembered` says). */
  forgetUnless(remembered: (debitRequestId: string) => boolean): number {
    let forgotten = 0;
    for (const debitRequestId of this.tallies.keys()) {
      if (!remembered(debitRequestId)) {
        this.tallies.delete(debitRequestId);
        forgotten++;
      }
    }
    return forgotten;
  }

  entries(): RefundTally[] {
    return [...this.tallies.values()];
  }
}
