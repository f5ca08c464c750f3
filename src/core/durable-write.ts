// What a local operation must make durable before it is acknowledged.

import type { Answer, SlotChange } from "./replica-state";
import type { PolicyWrite } from "./policy";
import type { HoldRecord } from "./hold-book";
import type { RefundTally } from "./refund-tallies";

export interface RequestRecord {
  readonly requestId: string;
  readonly fingerprint: string;
  readonly answer: Answer;
  readonly answeredAtMs: number;
  /** Index of the region that decided it (undefined: not known, written before origins were kept). */
  readonly origin?: number;
}

export interface PolicyRecord {
  readonly accountId: string;
  readonly write: PolicyWrite;
}

export interface DurableWrite {
  readonly slots: readonly SlotChange[];
  readonly requests?: readonly RequestRecord[];
  readonly policy?: PolicyRecord;
  /** Holds placed or resolved by this write, as they stand after it. */
  readonly holds?: readonly HoldRecord[];
  /** Refund tallies changed by this write. */
  readonly refunds?: readonly RefundTally[];
}

/** One group commit: every slot changed in the window (latest value wins) plus records. */
export interface CommitBatch {
  readonly slots: SlotChange[];
  readonly requests: RequestRecord[];
  readonly policies: PolicyRecord[];
  readonly holds?: HoldRecord[];
  readonly refunds?: RefundTally[];
  /** Other writers' slots of the changed accounts (non-zero), so receivers' views stay causally closed. */
  readonly context?: readonly SlotChange[];
}
