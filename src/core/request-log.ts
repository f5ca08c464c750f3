// Remembered answers for idempotent retries. Time is passed in; nothing here
// reads a clock.
//
// Two kinds of answers, kept apart so that one can never push out the other:
//
// - Acknowledged answers (approved, approved with overdraft, grants) changed a
//   balance. Forgetting one inside its retention window would let a retry be
//   charged twice, so they are never evicted early: when the ids admitted here
//   reach `maxEntries`, new local requests are refused up front (assertRoom)
//   instead. Records replicated from peers or restored from a snapshot are
//   other regions' (or this region's earlier) acknowledged ids and are always
//   accepted; refusing them would lose them. The cap counts local admissions
//   only, so while peers are caught up the log holds at most regions × cap
//   acknowledged ids (each region admits at most its cap per window). A backlog
//   that arrives at once (a peer catching up after a partition) is kept a full
//   window from its arrival, so it can briefly hold more.
// - Refusals (InsufficientCredit) changed nothing. They live in a separate ring
//   that evicts its oldest when full: a forgotten refusal only means a retry is
//   decided again, never a double charge.
//
// Retention is judged on the local monotonic clock only: each entry expires
// `retentionMs` after it was recorded here. The wall-clock stamp an answer
// carries (`stampMs`, on the wire and in snapshots) is kept for replication but
// never used for eviction, so a peer's skewed clock or a wall-clock jump cannot
// evict anything. Entries are kept in order of local receive time, so eviction
// from the front never stops early at an out-of-order entry.
//
// A node remembers up to millions of ids, so the answers are packed into typed
// columns of a ring (answer-ring.ts): per entry the heap holds only the id
// string, the key of one Map; the fingerprint is kept as ASCII bytes in one
// buffer (fingerprint-bytes.ts) and compared byte for byte, so equality is
// exact. Measured by bench/memory-bench.ts (see README, "Sizing").

import { DebitOutcome, type Answer } from "./answer";
import { AnswerRing, type FrozenAnswer, type FrozenRing, type RememberedAnswer } from "./answer-ring";
import { InvalidArgumentError, RequestLogFullError } from "./errors";

export type { FrozenAnswer, RememberedAnswer } from "./answer-ring";

export interface RequestLogLimits {
  /** How long a request id is remembered after it was recorded here. */
  readonly retentionMs: number;
  /** Most acknowledged ids admitted by local requests within the retention window. */
  readonly maxEntries: number;
  /** Most refusals remembered; the oldest go first. Defaults to maxEntries. */
  readonly maxRefusals?: number;
}

/** When an answer is recorded. */
export interface RequestTime {
  /** Wall-clock answer time carried on the wire; kept for snapshots and replication, never used for retention. */
  readonly stampMs: number;
  /** Local monotonic time now; retention runs on this clock. */
  readonly nowMs: number;
}

/** When an answer restored from a snapshot is recorded. */
export interface RestoreTime extends RequestTime {
  /** Local wall-clock time now, to tell how old `stampMs` is. */
  readonly wallNowMs: number;
}

export interface RequestLogFill {
  /** Acknowledged ids held (local, replicated and restored). */
  readonly acknowledged: number;
  /** Acknowledged ids admitted by local requests: what the capacity limits. */
  readonly local: number;
  /** Refusals held. */
  readonly refusals: number;
  /** Most local acknowledged ids at once (maxEntries). */
  readonly capacity: number;
}

export class RequestLog {
  private readonly acknowledged = new AnswerRing(Number.POSITIVE_INFINITY);
  private readonly refusals: AnswerRing;
  /** Acknowledged entries that were admitted locally (LOCAL_BIT set). */
  private local = 0;

  constructor(private readonly limits: RequestLogLimits) {
    const maxRefusals = limits.maxRefusals ?? limits.maxEntries;
    if (!Number.isSafeInteger(limits.maxEntries) || limits.maxEntries < 1) {
      throw new InvalidArgumentError("maxEntries", "must be a positive integer");
    }
    if (!Number.isSafeInteger(maxRefusals) || maxRefusals < 1) {
      throw new InvalidArgumentError("maxRefusals", "must be a positive integer");
    }
    if (!Number.isFinite(limits.retentionMs) || limits.retentionMs < 0) {
      throw new InvalidArgumentError("retentionMs", "must be a finite number >= 0");
    }
    this.refusals = new AnswerRing(maxRefusals);
  }

  /** Every id held, acknowledged and refused. */
  get size(): number {
    return this.acknowledged.size + this.refusals.size;
  }

  get fill(): RequestLogFill {
    return { acknowledged: this.acknowledged.size, local: this.local, refusals: this.refusals.size, capacity: this.limits.maxEntries };
  }

  /** True when `count` more local requests may be admitted (as of the last expiry). */
  hasRoom(count: number): boolean {
    return this.local + count <= this.limits.maxEntries;
  }

  /**
   * Forgets what expired by `nowMs`, then throws RequestLogFullError unless
   * `count` more local requests fit. Call before deciding, so a refused request
   * (or batch, as a whole) changes nothing.
   */
  assertRoom(count: number, nowMs: number): void {
    if (!Number.isSafeInteger(count) || count < 0) throw new InvalidArgumentError("count", `must be an integer >= 0; got ${count}`);
    this.expire(nowMs);
    if (!this.hasRoom(count)) throw new RequestLogFullError(count, this.local, this.limits.maxEntries);
  }

  /** Forgets every entry recorded before `nowMs - retentionMs` (local monotonic clock). */
  expire(nowMs: number): void {
    // A NaN time would compare false forever and pin every entry behind it.
    if (!Number.isFinite(nowMs)) throw new InvalidArgumentError("nowMs", `must be a finite monotonic time; got ${nowMs}`);
    const oldestAllowed = nowMs - this.limits.retentionMs;
    this.local -= this.acknowledged.expire(oldestAllowed);
    this.refusals.expire(oldestAllowed);
  }

  /**
   * The earlier answer for `requestId`, undefined if unknown. Throws
   * RequestConflictError when the id was used with other parameters. An
   * acknowledged answer wins over a refusal of the same id (seen when a retry
   * was approved in another region): it is the one that changed a balance.
   */
  lookup(requestId: string, fingerprint: string): Answer | undefined {
    return this.acknowledged.lookup(requestId, fingerprint) ?? this.refusals.lookup(requestId, fingerprint);
  }

  /** The remembered record of `requestId` whatever its parameters (acknowledged first), or undefined. */
  record(requestId: string): FrozenAnswer | undefined {
    return this.acknowledged.record(requestId) ?? this.refusals.record(requestId);
  }

  /** True while an acknowledged answer of `requestId` is remembered. */
  hasAcknowledged(requestId: string): boolean {
    return this.acknowledged.has(requestId);
  }

  /**
   * Remembers the answer to a local request. Never evicts an acknowledged id
   * and never throws for room: the room is checked by assertRoom before
   * deciding, and an answer already decided must be remembered (requests
   * admitted just before the log filled may take it slightly past the cap).
   * A later record of the same id keeps the first one.
   */
  remember(requestId: string, fingerprint: string, answer: Answer, time: RequestTime, origin?: number): void {
    this.expire(time.nowMs);
    this.insert(requestId, fingerprint, answer, time.stampMs, time.nowMs, true, origin);
  }

  /** Remembers an answer replicated from a stream (a peer's, or this region's own on replay): always accepted. */
  rememberReplicated(requestId: string, fingerprint: string, answer: Answer, time: RequestTime, origin?: number): void {
    this.expire(time.nowMs);
    this.insert(requestId, fingerprint, answer, time.stampMs, time.nowMs, false, origin);
  }

  /**
   * Remembers an answer from a snapshot: always accepted, kept for what is left
   * of its window. Its age is `wallNowMs - stampMs` clamped to [0, retention]
   * (a future or absurd stamp counts as new, never as expired early).
   */
  restore(requestId: string, fingerprint: string, answer: Answer, time: RestoreTime, origin?: number): void {
    const age = time.wallNowMs - time.stampMs;
    const clamped = Number.isFinite(age) ? Math.min(Math.max(age, 0), this.limits.retentionMs) : 0;
    this.expire(time.nowMs);
    this.insert(requestId, fingerprint, answer, time.stampMs, time.nowMs - clamped, false, origin);
  }

  /**
   * A copy of every remembered answer taken at one instant, for a snapshot, in
   * the order of entries(). Cheap enough to take on the request path: the ring
   * columns are copied as they are (typed arrays and the fingerprint bytes by
   * memcpy, the id array by one slice), and an answer becomes an object only
   * when the encoder reads it, chunk by chunk.
   */
  freeze(): FrozenRequests {
    return new FrozenRequests(this.acknowledged.freeze(), this.refusals.freeze());
  }

  /** Every remembered answer: acknowledged ones oldest first, then refusals oldest first. */
  entries(): Array<[string, RememberedAnswer]> {
    const out: Array<[string, RememberedAnswer]> = [];
    this.acknowledged.collect(out);
    this.refusals.collect(out);
    return out;
  }

  private insert(
    requestId: string,
    fingerprint: string,
    answer: Answer,
    stampMs: number,
    receivedAtMs: number,
    local: boolean,
    origin: number | undefined,
  ): void {
    if (this.acknowledged.has(requestId)) return;
    if (answer.outcome === DebitOutcome.InsufficientCredit) {
      if (!this.refusals.has(requestId)) this.refusals.push(requestId, fingerprint, answer, stampMs, receivedAtMs, false, origin);
      return;
    }
    this.acknowledged.push(requestId, fingerprint, answer, stampMs, receivedAtMs, local, origin);
    if (local) this.local++;
  }
}

/** Remembered answers frozen by RequestLog.freeze(): acknowledged ones oldest first, then refusals. */
export class FrozenRequests {
  constructor(
    private readonly acknowledged: FrozenRing,
    private readonly refusals: FrozenRing,
  ) {}

  get size(): number {
    return this.acknowledged.size + this.refusals.size;
  }

  /** The answer at `index` (0 ≤ index < size). */
  record(index: number): FrozenAnswer {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) throw new RangeError(`no frozen request at ${index} (size ${this.size})`);
    const ackSize = this.acknowledged.size;
    return index < ackSize ? this.acknowledged.record(index) : this.refusals.record(index - ackSize);
  }

  /** Every answer as an array (tests and small states). */
  toArray(): FrozenAnswer[] {
    const out: FrozenAnswer[] = [];
    for (let k = 0; k < this.size; k++) out.push(this.record(k));
    return out;
  }
}
