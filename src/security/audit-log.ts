// One JSON line per audited call (every Grant, Refund, CaptureHold, VoidHold
// and Admin call, allowed or
// refused): who, what, on which account, how much, under which request id, and
// how it ended. Written to its own file when configured, else to stderr beside
// the node's log, so a credit change always leaves a trace.

import { createWriteStream, type WriteStream } from "node:fs";

export interface AuditEntry {
  readonly principal: string;
  readonly method: string;
  readonly account: string | undefined;
  readonly amount: string | undefined;
  readonly requestId: string | undefined;
  /** What the call acts on besides the account: a hold id (capture, void) or a debit's request id (refund). */
  readonly subject?: string | undefined;
  /** The gRPC status name the caller got (OK, PERMISSION_DENIED, ...). */
  readonly outcome: string;
  readonly details: string | undefined;
}

export interface AuditLog {
  record(entry: AuditEntry): void;
  close(): Promise<void>;
}

export function auditLine(region: string, entry: AuditEntry, nowMs: number): string {
  return `${JSON.stringify({
    event: "audit",
    time: new Date(nowMs).toISOString(),
    region,
    principal: entry.principal,
    method: entry.method,
    account: entry.account,
    amount: entry.amount,
    request_id: entry.requestId,
    ...(entry.subject === undefined ? {} : { subject: entry.subject }),
    outcome: entry.outcome,
    details: entry.details,
  })}\n`;
}

/** Appends to `file` when given (created if absent), else writes to stderr. */
export function openAuditLog(region: string, file: string | undefined): AuditLog {
  const stream: WriteStream | undefined = file === undefined ? undefined : createWriteStream(file, { flags: "a", mode: 0o600 });
  return {
    record: (entry) => {
      const line = auditLine(region, entry, Date.now());
      if (stream === undefined) process.stderr.write(line);
      else stream.write(line);
    },
    close: () => (stream === undefined ? Promise.resolve() : new Promise<void>((resolve) => stream.end(() => resolve()))),
  };
}
