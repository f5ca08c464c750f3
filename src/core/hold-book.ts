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

export interface HoldRecord {
  /** "<region>:<request_id of the Hold call>". */
  readonly holdId: string;
  readonly accountId: string;
  readonly amount: bigint;
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

export class HoldBook {
  private readonly records = new Map<string, HoldRecord>();
  private pendingCount = 0;

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
    if (current === undefined && record.status === HoldStatus.Pending) this.pendingCount++;
    if (current !== undefined && record.status !== HoldStatus.Pending) this.pendingCount--;
    this.records.set(record.holdId, record);
    return true;
  }

  /** Pending holds whose timeout passed by `wallNowMs`, oldest deadline first. */
  due(wallNowMs: number, limit = 1_000): HoldRecord[] {
    const out: HoldRecord[] = [];
    if (this.pendingCount === 0) return out;
    for (const record of this.records.values()) {
      if (record.status === HoldStatus.Pending && record.expiresAtMs <= wallNowMs) out.push(record);
    }
    out.sort((a, b) => a.expiresAtMs - b.expiresAtMs);
    return out.slice(0, limit);
  }

  /** Every open hold's amount, summed (what this region holds). */
  heldTotal(): bigint {
    let total = 0n;
    for (const record of this.records.values()) if (record.status === HoldStatus.Pending) total += record.amount;
    return total;
  }

  /**
   * Forgets holds resolved before `wallNowMs − retentionMs`. Pending holds are
   * never forgotten (their amount is held until they resolve).
   */
  forgetResolved(wallNowMs: number, retentionMs: number): number {
    let forgotten = 0;
    for (const [holdId, record] of this.records) {
      if (record.status !== HoldStatus.Pending && record.resolvedAtMs + retentionMs < wallNowMs) {
        this.records.delete(holdId);
        forgotten++;
      }
    }
    return forgotten;
  }

  /** Every record, for a snapshot (a copy: the snapshot is taken at one instant). */
  entries(): HoldRecord[] {
    return [...this.records.values()];
  }
}
