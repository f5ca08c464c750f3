// Storage of the request log: remembered answers in typed columns of a ring,
// in order of local receive time. Per entry the heap holds only the request
// id (a string, the key of the id → sequence map); the answer, the times and
// the fingerprint live in typed arrays (the fingerprint as ASCII bytes in
// FingerprintBytes), so a full GC has one object per id to walk, not four.

import type { Answer } from "./answer";
import { RequestConflictError } from "./errors";
import { FingerprintBytes } from "./fingerprint-bytes";

export interface RememberedAnswer {
  readonly fingerprint: string;
  readonly answer: Answer;
  /** Wall-clock time of the answer at the region that decided it (as on the wire). */
  readonly answeredAtMs: number;
  /** Index of the region that decided it; undefined when not known (recorded before origins were kept). */
  readonly origin?: number;
}

/** One remembered answer as a snapshot carries it. */
export interface FrozenAnswer extends RememberedAnswer {
  readonly requestId: string;
}

const INITIAL_CAPACITY = 1024;
// Packed with the outcome in one byte.
const GRANT_BIT = 0x80;
const LOCAL_BIT = 0x40;
/** The fingerprint is in the ring's `odd` map (not ASCII, or too long), not in its bytes. */
const ODD_BIT = 0x20;
/** DebitOutcome values (1..3) sit in the low bits. */
const OUTCOME_MASK = 0x1f;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

interface RingColumns {
  readonly ids: ReadonlyArray<string | undefined>;
  readonly fingerprintStarts: Float64Array;
  readonly fingerprintLengths: Uint16Array;
  readonly fingerprintBytes: FingerprintBytes;
  readonly outcomes: Uint8Array;
  readonly balances: BigInt64Array;
  readonly rights: BigInt64Array;
  readonly stamps: Float64Array;
  /** Deciding region's index + 1; 0 when unknown. */
  readonly origins: Uint8Array;
  readonly wide: ReadonlyMap<number, Answer>;
  readonly odd: ReadonlyMap<number, string>;
  readonly first: number;
  readonly next: number;
}

function fingerprintAt(c: RingColumns, sequence: number, at: number): string {
  if ((c.outcomes[at]! & ODD_BIT) !== 0) return c.odd.get(sequence)!;
  return c.fingerprintBytes.read(c.fingerprintStarts[at]!, c.fingerprintLengths[at]!);
}

function answerAt(c: RingColumns, sequence: number, at: number): Answer {
  const wide = c.wide.get(sequence);
  if (wide !== undefined) return wide;
  const packed = c.outcomes[at]!;
  return { kind: (packed & GRANT_BIT) !== 0 ? "grant" : "debit", outcome: packed & OUTCOME_MASK, balance: c.balances[at]!, localRights: c.rights[at]! };
}

function recordAt(c: RingColumns, sequence: number): FrozenAnswer {
  const at = sequence % c.ids.length;
  const origin = c.origins[at]!;
  const record = { requestId: c.ids[at]!, fingerprint: fingerprintAt(c, sequence, at), answer: answerAt(c, sequence, at), answeredAtMs: c.stamps[at]! };
  return origin === 0 ? record : { ...record, origin: origin - 1 };
}

/** A ring's columns copied at one instant by AnswerRing.freeze(). */
export class FrozenRing {
  constructor(private readonly columns: RingColumns) {}

  get size(): number {
    return this.columns.next - this.columns.first;
  }

  record(offset: number): FrozenAnswer {
    return recordAt(this.columns, this.columns.first + offset);
  }
}

/**
 * Answers in typed columns of a ring, in order of local receive time. At most
 * `limit` entries: beyond it the oldest goes (only the refusal ring has a finite limit).
 */
export class AnswerRing implements RingColumns {
  /** Request id → absolute sequence of its entry; the entry sits at sequence % capacity. */
  private readonly sequences = new Map<string, number>();
  ids: Array<string | undefined> = [];
  fingerprintStarts = new Float64Array(0);
  fingerprintLengths = new Uint16Array(0);
  readonly fingerprintBytes = new FingerprintBytes();
  outcomes = new Uint8Array(0);
  balances = new BigInt64Array(0);
  rights = new BigInt64Array(0);
  stamps = new Float64Array(0);
  origins = new Uint8Array(0);
  private receivedAt = new Float64Array(0);
  /** Answers whose values do not fit the int64 columns (never on the wire, kept exact anyway). */
  readonly wide = new Map<number, Answer>();
  /** Fingerprints that are not kept as bytes (not ASCII or too long; never built by this service). */
  readonly odd = new Map<number, string>();
  first = 0;
  next = 0;

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.next - this.first;
  }

  has(requestId: string): boolean {
    return this.sequences.has(requestId);
  }

  /** The whole remembered record of `requestId`, whatever its fingerprint. */
  record(requestId: string): FrozenAnswer | undefined {
    const sequence = this.sequences.get(requestId);
    return sequence === undefined ? undefined : recordAt(this, sequence);
  }

  lookup(requestId: string, fingerprint: string): Answer | undefined {
    const sequence = this.sequences.get(requestId);
    if (sequence === undefined) return undefined;
    const at = sequence % this.ids.length;
    const same =
      (this.outcomes[at]! & ODD_BIT) !== 0
        ? this.odd.get(sequence) === fingerprint
        : this.fingerprintBytes.equals(this.fingerprintStarts[at]!, this.fingerprintLengths[at]!, fingerprint);
    if (!same) throw new RequestConflictError(requestId);
    return answerAt(this, sequence, at);
  }

  push(requestId: string, fingerprint: string, answer: Answer, stampMs: number, receivedAtMs: number, local: boolean, origin?: number): void {
    if (this.size >= this.limit) this.dropOldest();
    // Never before the newest entry, so the ring stays ordered and eviction
    // from the front is exact; holding an id a little longer is the safe side.
    const newest = this.size === 0 ? Number.NEGATIVE_INFINITY : this.receivedAt[(this.next - 1) % this.ids.length]!;
    const receivedAt = Math.max(receivedAtMs, newest);
    if (this.size === this.ids.length) this.grow();
    const sequence = this.next++;
    const at = sequence % this.ids.length;
    this.ids[at] = requestId;
    const start = this.fingerprintBytes.append(fingerprint);
    let flags = (answer.kind === "grant" ? GRANT_BIT : 0) | (local ? LOCAL_BIT : 0);
    if (start < 0) {
      flags |= ODD_BIT;
      this.odd.set(sequence, fingerprint);
      this.fingerprintLengths[at] = 0;
    } else {
      this.fingerprintStarts[at] = start;
      this.fingerprintLengths[at] = fingerprint.length;
    }
    this.outcomes[at] = answer.outcome | flags;
    if (fitsInt64(answer.balance) && fitsInt64(answer.localRights)) {
      this.balances[at] = answer.balance;
      this.rights[at] = answer.localRights;
    } else {
      this.wide.set(sequence, answer);
    }
    this.stamps[at] = stampMs;
    this.origins[at] = origin === undefined || origin < 0 || origin > 254 ? 0 : origin + 1;
    this.receivedAt[at] = receivedAt;
    this.sequences.set(requestId, sequence);
  }

  /** Drops entries received before `oldestAllowed`; returns how many of them were local. */
  expire(oldestAllowed: number): number {
    let local = 0;
    while (this.size > 0 && this.receivedAt[this.first % this.ids.length]! < oldestAllowed) {
      if (this.dropOldest()) local++;
    }
    return local;
  }

  /** A copy of the columns as they are (ring layout kept; receive times are not needed). */
  freeze(): FrozenRing {
    return new FrozenRing({
      ids: this.ids.slice(),
      fingerprintStarts: this.fingerprintStarts.slice(),
      fingerprintLengths: this.fingerprintLengths.slice(),
      fingerprintBytes: this.fingerprintBytes.copy(),
      outcomes: this.outcomes.slice(),
      balances: this.balances.slice(),
      rights: this.rights.slice(),
      stamps: this.stamps.slice(),
      origins: this.origins.slice(),
      wide: new Map(this.wide),
      odd: new Map(this.odd),
      first: this.first,
      next: this.next,
    });
  }

  collect(out: Array<[string, RememberedAnswer]>): void {
    for (let sequence = this.first; sequence < this.next; sequence++) {
      const { requestId, ...remembered } = recordAt(this, sequence);
      out.push([requestId, remembered]);
    }
  }

  /** Returns whether the dropped entry was admitted locally. */
  private dropOldest(): boolean {
    const sequence = this.first++;
    const at = sequence % this.ids.length;
    const packed = this.outcomes[at]!;
    this.sequences.delete(this.ids[at]!);
    this.wide.delete(sequence);
    if ((packed & ODD_BIT) !== 0) this.odd.delete(sequence);
    else this.fingerprintBytes.release(this.fingerprintLengths[at]!);
    this.ids[at] = undefined;
    return (packed & LOCAL_BIT) !== 0;
  }

  /** Doubles the ring (up to the limit), keeping every entry at sequence % capacity. */
  private grow(): void {
    const old = {
      ids: this.ids,
      starts: this.fingerprintStarts,
      lengths: this.fingerprintLengths,
      outcomes: this.outcomes,
      balances: this.balances,
      rights: this.rights,
      stamps: this.stamps,
      origins: this.origins,
      receivedAt: this.receivedAt,
    };
    const oldCapacity = old.ids.length;
    const capacity = Math.min(this.limit, Math.max(INITIAL_CAPACITY, oldCapacity * 2));
    // Filled by push: `new Array(n)` of a large n is a dictionary-mode array, slow to read and to copy.
    this.ids = packedArray(capacity);
    this.fingerprintStarts = new Float64Array(capacity);
    this.fingerprintLengths = new Uint16Array(capacity);
    this.outcomes = new Uint8Array(capacity);
    this.balances = new BigInt64Array(capacity);
    this.rights = new BigInt64Array(capacity);
    this.stamps = new Float64Array(capacity);
    this.origins = new Uint8Array(capacity);
    this.receivedAt = new Float64Array(capacity);
    for (let sequence = this.first; sequence < this.next; sequence++) {
      const from = sequence % oldCapacity;
      const to = sequence % capacity;
      this.ids[to] = old.ids[from];
      this.fingerprintStarts[to] = old.starts[from]!;
      this.fingerprintLengths[to] = old.lengths[from]!;
      this.outcomes[to] = old.outcomes[from]!;
      this.balances[to] = old.balances[from]!;
      this.rights[to] = old.rights[from]!;
      this.stamps[to] = old.stamps[from]!;
      this.origins[to] = old.origins[from]!;
      this.receivedAt[to] = old.receivedAt[from]!;
    }
  }
}

function packedArray(length: number): Array<string | undefined> {
  const out: Array<string | undefined> = [];
  for (let k = 0; k < length; k++) out.push(undefined);
  return out;
}

function fitsInt64(value: bigint): boolean {
  return value >= INT64_MIN && value <= INT64_MAX;
}

