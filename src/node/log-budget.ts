// How many lines a noisy event (a refused TLS handshake, say) may write per
// window, so that a flood of them cannot flood the log; the first line
// written after a quiet spell says how many were left out. Pure: the time is
// passed in (a monotonic clock).

export interface LogDecision {
  /** Write a line for this event. */
  readonly write: boolean;
  /** Events left out since the last line written (to put in this one). */
  readonly skipped: number;
}

export class LogBudget {
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private written = 0;
  private skipped = 0;

  constructor(
    private readonly linesPerWindow: number,
    private readonly windowMs: number,
  ) {}

  take(nowMs: number): LogDecision {
    if (nowMs - this.windowStartMs >= this.windowMs) {
      this.windowStartMs = nowMs;
      this.written = 0;
    }
    if (this.written >= this.linesPerWindow) {
      this.skipped++;
      return { write: false, skipped: this.skipped };
    }
    this.written++;
    const skipped = this.skipped;
    this.skipped = 0;
    return { write: true, skipped };
  }
}
