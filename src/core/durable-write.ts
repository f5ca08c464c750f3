// What a local operation must make durable before it is acknowledged.

import type { Answer, SlotChange } from "./replica-state";
import type { PolicyWrite } from "./policy";

export interface RequestRecord {
  readonly requestId: string;
  readonly fingerprint: string;
  readonly answer: Answer;
  readonly answeredAtMs: number;
}

export interface PolicyRecord {
  readonly accountId: string;
  readonly write: PolicyWrite;
}

export interface DurableWrite {
  readonly slots: readonly SlotChange[];
  readonly requests?: readonly RequestRecord[];
  readonly policy?: PolicyRecord;
}

/** One group commit: every slot changed in the window (latest value wins) plus records. */
export interface CommitBatch {
  readonly slots: SlotChange[];
  readonly requests: RequestRecord[];
  readonly policies: PolicyRecord[];
  /** Other writers' slots of the changed accounts (non-zero), so receivers' views stay causally closed. */
  readonly context?: readonly SlotChange[];
}
