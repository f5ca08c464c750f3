// Remembered answers for idempotent retries, bounded by age and count. Time is
// passed in; entries are kept in insertion order so eviction is from the front.

import { RequestConflictError } from "./errors";

export interface RememberedAnswer<A> {
  readonly fingerprint: string;
  readonly answer: A;
  readonly answeredAtMs: number;
}

export interface RequestLogLimits {
  /** How long a request id is remembered. */
  readonly retentionMs: number;
  /** Most ids remembered at once; the oldest go first. */
  readonly maxEntries: number;
}

export class RequestLog<A> {
  private readonly entries_ = new Map<string, RememberedAnswer<A>>();

  constructor(private readonly limits: RequestLogLimits) {}

  get size(): number {
    return this.entries_.size;
  }

  /**
   * The earlier answer for `requestId`, undefined if unknown. Throws
   * RequestConflictError when the id was used with other parameters.
   */
  lookup(requestId: string, fingerprint: string): A | undefined {
    const found = this.entries_.get(requestId);
    if (found === undefined) return undefined;
    if (found.fingerprint !== fingerprint) throw new RequestConflictError(requestId);
    return found.answer;
  }

  /** Remembers an answer; a later record of the same id keeps the first one. */
  remember(requestId: string, fingerprint: string, answer: A, nowMs: number): void {
    if (this.entries_.has(requestId)) return;
    this.entries_.set(requestId, { fingerprint, answer, answeredAtMs: nowMs });
    this.evict(nowMs);
  }

  /** Every remembered answer, oldest first. */
  entries(): Array<[string, RememberedAnswer<A>]> {
    return [...this.entries_.entries()];
  }

  private evict(nowMs: number): void {
    const oldestAllowed = nowMs - this.limits.retentionMs;
    for (const [id, entry] of this.entries_) {
      if (this.entries_.size <= this.limits.maxEntries && entry.answeredAtMs >= oldestAllowed) break;
      this.entries_.delete(id);
    }
  }
}
