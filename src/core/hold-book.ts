// The holds a region placed, pending or recently resolved: the holding
// region's own book (spec/holds.qnt `holds`). A hold resolves exactly once: a
// record only moves from pending to one resolved status, never back, so a
// record replayed from the stream or a snapshot can only raise what is here.
// Pure: times are passed in (the holding region's wall clock, which judges
// timeouts and survives restarts).

import { InvalidArgumentError } from "./errors";

export enum HoldStatus {
  Pending = 1,
  Captured = 2,
  Voided = 3,
  Expired = 4,
}

/** What a hold reserved in one lot row of its account. */
export interface HoldPart {
  /** The lot's row: the account id itself for the base lot, else `<account>#<lot key>`. */
  readonly rowId: string;
  readonly amount: bigint;
}

export interface HoldRecord {
  /** "<region>:<request_id of the Hold call>". */
  readonly holdId: string;
  readonly accountId: string;
  readonly amount: bigint;
  /**
   * Where an account with lots holds it, in burn order, summing to `amount`;
   * undefined when all of it is on the account's plain row (an account
   * without lots). A capture debits the parts in this order.
   */
  readonly parts?: readonly HoldPart[];
  /** Timeout on the holding region's wall clock (ms since the epoch). */
  readonly expiresAtMs: number;
  readonly status: HoldStatus;
  /** Debited by a capture; 0 otherwise. */
  readonly captured: bigint;
  readonly createdAtMs: number;
  /** 0 while pending. */
  readonly resolvedAtMs: number;
}

/** Longest hold: 30 days. */
export const MAX_HOLD_TIMEOUT_MS = 30 * 24 * 3_600_000;

const REGION_PART = /^[a-z][a-z0-9-]{0,31}$/;
const REQUEST_PART = /^[\x21-\x7e]{1,128}$/;

/** The id of the hold placed by request `requestId` at `region`. */
export function holdIdOf(region: string, requestId: string): string {
  return `${region}:${requestId}`;
}

/** Splits a hold id into its holding region and request id; throws InvalidArgumentError naming `field`. */
export function parseHoldId(holdId: string, field = "hold_id"): { region: string; requestId: string } {
  const colon = holdId.indexOf(":");
  if (holdId.length === 0) throw new InvalidArgumentError(field, "is required");
  const region = colon < 0 ? "" : holdId.slice(0, colon);
  const requestId = colon < 0 ? "" : holdId.slice(colon + 1);
  if (!REGION_PART.test(region) || !REQUEST_PART.test(requestId)) {
    throw new InvalidArgumentError(field, `must be "<region>:<request_id>" as Hold returned it; got ${JSON.stringify(holdId.slice(0, 200))}`);
  }
  return { region, requestId };
}

export function statusName(status: HoldStatus): string {
  switch (status) {
    case HoldStatus.Pending:
      return "pending";
    case HoldStatus.Captured:
      return "captured";
    case HoldStatus.Voided:
      return "voided";
    case HoldStatus.Expired:
      return "expired";
  }
}

const HOLD_STATUSES: ReadonlySet<number> = new Set<number>([HoldStatus.Pending, HoldStatus.Captured, HoldStatus.Voided, HoldStatus.Expired]);

export function isHoldStatus(value: number): value is HoldStatus {
  return HOLD_STATUSES.has(value);
}

/**
 * Pending holds by deadline (a binary min-heap of [expiresAtMs, holdId]) and
 * resolved holds in the order they resolved, so the timeout sweep and the
 * forgetting of old resolutions look only at what is due, not at every hold.
 * Entries of holds resolved or forgotten since are skipped when reached.
 */
export class HoldBook {
  private readonly records = new Map<string, HoldRecord>();
  private pendingCount = 0;
  private readonly deadlines: Array<readonly [number, string]> = [];
  private resolvedOrder: string[] = [];
  private resolvedHead = 0;

  get size(): number {
    return this.records.size;
  }

  /** Holds not resolved yet. */
  get pending(): number {
    return this.pendingCount;
  }

  get(holdId: string): HoldRecord | undefined {
    return this.records.get(holdId);
  }

  /**
   * Keeps `record` unless what is here is already resolved (a resolution is
   * final) or the same. Returns true if it took effect.
   */
  put(record: HoldRecord): boolean {
    const current = this.records.get(record.holdId);
    if (current !== undefined && current.status !== HoldStatus.Pending) return false;
    if (current !== undefined && record.status === HoldStatus.Pending) return false;
    this.records.set(record.holdId, record);
    if (record.status === HoldStatus.Pending) {
      this.pendingCount++;
      this.pushDeadline(record.expiresAtMs, record.holdId);
    } else {
      if (current !== undefined) this.pendingCount--;
      this.resolvedOrder.push(record.holdId);
    }
    return true;
  }

  /** Pending holds whose timeout passed by `wallNowMs`, earliest deadline first (at most `limit`). */
  due(wallNowMs: number, limit = 1_000): HoldRecord[] {
    const out: HoldRecord[] = [];
    const seen = new Set<string>();
    while (out.length < limit && this.deadlines.length > 0 && this.deadlines[0]![0] <= wallNowMs) {
      const [, holdId] = this.popDeadline();
      const record = this.records.get(holdId);
      if (record === undefined || record.status !== HoldStatus.Pending || seen.has(holdId)) continue;
      seen.add(holdId);
      out.push(record);
    }
    // Still pending until the caller resolves them: keep them on the heap.
    for (const record of out) this.pushDeadline(record.expiresAtMs, record.holdId);
    return out;
  }

  /**
   * Forgets holds resolved before `wallNowMs − retentionMs`, oldest
   * resolution first. Pending holds are never forgotten (their amount is held
   * until they resolve).
   */
  forgetResolved(wallNowMs: number, retentionMs: number): number {
    let forgotten = 0;
    while (this.resolvedHead < this.resolvedOrder.length) {
      const holdId = this.resolvedOrder[this.resolvedHead]!;
      const record = this.records.get(holdId);
      if (record !== undefined && record.status !== HoldStatus.Pending) {
        // Resolutions arrive in about clock order: stop at the first one still kept.
        if (record.resolvedAtMs + retentionMs >= wallNowMs) break;
        this.records.delete(holdId);
        forgotten++;
      }
      this.resolvedHead++;
    }
    if (this.resolvedHead > 1_024 && this.resolvedHead * 2 > this.resolvedOrder.length) {
      this.resolvedOrder = this.resolvedOrder.slice(this.resolvedHead);
      this.resolvedHead = 0;
    }
    return forgotten;
  }

  /** Every record, for a snapshot (a copy: the snapshot is taken at one instant). */
  entries(): HoldRecord[] {
    return [...this.records.values()];
  }

  private pushDeadline(expiresAtMs: number, holdId: string): void {
    const heap = this.deadlines;
    heap.push([expiresAtMs, holdId]);
    let k = heap.length - 1;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (heap[parent]![0] <= heap[k]![0]) break;
      [heap[parent], heap[k]] = [heap[k]!, heap[parent]!];
      k = parent;
    }
  }

  private popDeadline(): readonly [number, string] {
    const heap = this.deadlines;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let k = 0;
      for (;;) {
        const left = 2 * k + 1;
        const right = left + 1;
        let least = k;
        if (left < heap.length && heap[left]![0] < heap[least]![0]) least = left;
        if (right < heap.length && heap[right]![0] < heap[least]![0]) least = right;
        if (least === k) break;
        [heap[least], heap[k]] = [heap[k]!, heap[least]!];
        k = least;
      }
    }
    return top;
  }
}

/** The parts of `record`, the plain row as one part when it has none. */
export function holdParts(record: Pick<HoldRecord, "accountId" | "amount" | "parts">): readonly HoldPart[] {
  return record.parts ?? [{ rowId: record.accountId, amount: record.amount }];
}

/** How a capture of `captured` splits over `parts`: the first parts first. */
export function captureSplit(parts: readonly HoldPart[], captured: bigint): bigint[] {
  let left = captured;
  return parts.map((part) => {
    const take = part.amount < left ? part.amount : left;
    left -= take;
    return take;
  });
}
