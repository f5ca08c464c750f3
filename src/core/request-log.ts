// Remembered answers for idempotent retries, bounded by age and count. Time is
// passed in; entries are kept in insertion order so eviction is from the front.
//
// A node remembers up to millions of ids, so the answers are packed into typed
// columns of a ring: per entry the heap holds only the id and fingerprint
// strings, not an object graph (a wrapper, the answer, two bigints), which kept
// ~450 bytes per id on the heap and made every full GC walk them all.

import type { Answer } from "./answer";
import { InvalidArgumentError, RequestConflictError } from "./errors";

export interface RememberedAnswer {
  readonly fingerprint: string;
  readonly answer: Answer;
  readonly answeredAtMs: number;
}

export interface RequestLogLimits {
  /** How long a request id is remembered. */
  readonly retentionMs: number;
  /** Most ids remembered at once; the oldest go first. */
  readonly maxEntries: number;
}

const INITIAL_CAPACITY = 1024;
const GRANT_BIT = 0x80; // packed with the outcome in one byte
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

export class RequestLog {
  /** Request id → absolute sequence of its entry; the entry sits at sequence % capacity. */
  private readonly sequences = new Map<string, number>();
  private ids: Array<string | undefined> = [];
  private fingerprints: Array<string | undefined> = [];
  private outcomes = new Uint8Array(0);
  private balances = new BigInt64Array(0);
  private rights = new BigInt64Array(0);
  private answeredAt = new Float64Array(0);
  /** Answers whose values do not fit the int64 columns (never on the wire, kept exact anyway). */
  private readonly wide = new Map<number, Answer>();
  private first = 0;
  private next = 0;

  constructor(private readonly limits: RequestLogLimits) {
    if (!Number.isSafeInteger(limits.maxEntries) || limits.maxEntries < 1) {
      throw new InvalidArgumentError("maxEntries", "must be a positive integer");
    }
  }

  get size(): number {
    return this.next - this.first;
  }

  /**
   * The earlier answer for `requestId`, undefined if unknown. Throws
   * RequestConflictError when the id was used with other parameters.
   */
  lookup(requestId: string, fingerprint: string): Answer | undefined {
    const sequence = this.sequences.get(requestId);
    if (sequence === undefined) return undefined;
    const at = sequence % this.ids.length;
    if (this.fingerprints[at] !== fingerprint) throw new RequestConflictError(requestId);
    return this.answerAt(sequence, at);
  }

  /** Remembers an answer; a later record of the same id keeps the first one. */
  remember(requestId: string, fingerprint: string, answer: Answer, nowMs: number): void {
    if (this.sequences.has(requestId)) return;
    if (this.size === this.limits.maxEntries) this.dropOldest();
    if (this.size === this.ids.length) this.grow();
    const sequence = this.next++;
    const at = sequence % this.ids.length;
    this.ids[at] = requestId;
    this.fingerprints[at] = fingerprint;
    this.outcomes[at] = answer.outcome | (answer.kind === "grant" ? GRANT_BIT : 0);
    if (fitsInt64(answer.balance) && fitsInt64(answer.localRights)) {
      this.balances[at] = answer.balance;
      this.rights[at] = answer.localRights;
    } else {
      this.wide.set(sequence, answer);
    }
    this.answeredAt[at] = nowMs;
    this.sequences.set(requestId, sequence);
    this.evict(nowMs);
  }

  /** Every remembered answer, oldest first. */
  entries(): Array<[string, RememberedAnswer]> {
    const out: Array<[string, RememberedAnswer]> = [];
    for (let sequence = this.first; sequence < this.next; sequence++) {
      const at = sequence % this.ids.length;
      out.push([this.ids[at]!, { fingerprint: this.fingerprints[at]!, answer: this.answerAt(sequence, at), answeredAtMs: this.answeredAt[at]! }]);
    }
    return out;
  }

  private answerAt(sequence: number, at: number): Answer {
    const wide = this.wide.get(sequence);
    if (wide !== undefined) return wide;
    const packed = this.outcomes[at]!;
    return {
      kind: (packed & GRANT_BIT) !== 0 ? "grant" : "debit",
      outcome: packed & ~GRANT_BIT,
      balance: this.balances[at]!,
      localRights: this.rights[at]!,
    };
  }

  private evict(nowMs: number): void {
    const oldestAllowed = nowMs - this.limits.retentionMs;
    while (this.size > 0 && this.answeredAt[this.first % this.ids.length]! < oldestAllowed) this.dropOldest();
  }

  private dropOldest(): void {
    const sequence = this.first++;
    const at = sequence % this.ids.length;
    this.sequences.delete(this.ids[at]!);
    this.wide.delete(sequence);
    this.ids[at] = undefined;
    this.fingerprints[at] = undefined;
  }

  /** Doubles the ring (up to maxEntries), keeping every entry at sequence % capacity. */
  private grow(): void {
    const old = { ids: this.ids, fingerprints: this.fingerprints, outcomes: this.outcomes, balances: this.balances, rights: this.rights, answeredAt: this.answeredAt };
    const oldCapacity = old.ids.length;
    const capacity = Math.min(this.limits.maxEntries, Math.max(INITIAL_CAPACITY, oldCapacity * 2));
    this.ids = new Array<string | undefined>(capacity);
    this.fingerprints = new Array<string | undefined>(capacity);
    this.outcomes = new Uint8Array(capacity);
    this.balances = new BigInt64Array(capacity);
    this.rights = new BigInt64Array(capacity);
    this.answeredAt = new Float64Array(capacity);
    for (let sequence = this.first; sequence < this.next; sequence++) {
      const from = sequence % oldCapacity;
      const to = sequence % capacity;
      this.ids[to] = old.ids[from];
      this.fingerprints[to] = old.fingerprints[from];
      this.outcomes[to] = old.outcomes[from]!;
      this.balances[to] = old.balances[from]!;
      this.rights[to] = old.rights[from]!;
      this.answeredAt[to] = old.answeredAt[from]!;
    }
  }
}

function fitsInt64(value: bigint): boolean {
  return value >= INT64_MIN && value <= INT64_MAX;
}
