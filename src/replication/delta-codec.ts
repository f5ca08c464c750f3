// Converts a group commit to and from the ReplicaDelta wire message
// (proto/tally/replication/v1). Request answers reuse the public DebitResponse
// encoding so every language can read them.

import {
  ReplicaDelta,
  type PolicyValue,
  type RequestRecord as WireRequestRecord,
} from "../generated/tally/replication/v1/replication";
import { DebitOutcome as WireOutcome } from "../generated/tally/v1/balances";
import { DebitOutcome, type Answer } from "../core/replica-state";
import { Mode } from "../core/policy";
import type { ReplicaSet } from "../core/replica-set";
import type { CommitBatch, PolicyRecord, RequestRecord } from "../core/durable-write";
import type { SlotChange } from "../core/replica-state";

export interface DecodedDelta {
  readonly writer: number;
  readonly publishedAtMs: number;
  readonly slots: SlotChange[];
  readonly requests: RequestRecord[];
  readonly policies: PolicyRecord[];
  readonly rowDigest: string;
}

export function encodeDelta(
  replicas: ReplicaSet,
  writer: number,
  batch: CommitBatch,
  publishedAtMs: number,
  rowDigest: string,
): Uint8Array {
  return ReplicaDelta.encode({
    replica: replicas.nameOf(writer),
    publishedAtMs: BigInt(publishedAtMs),
    slots: batch.slots.map((s) => ({ accountId: s.accountId, column: s.column, value: s.value })),
    requests: batch.requests.map(requestToWire),
    policies: batch.policies.map(policyToWire),
    rowDigest,
  }).finish();
}

export function decodeDelta(replicas: ReplicaSet, bytes: Uint8Array): DecodedDelta {
  const delta = ReplicaDelta.decode(bytes);
  const writer = replicas.indexOf(delta.replica);
  return {
    writer,
    publishedAtMs: Number(delta.publishedAtMs),
    rowDigest: delta.rowDigest,
    slots: delta.slots.map((s) => ({ accountId: s.accountId, writer, column: s.column, value: s.value })),
    requests: delta.requests.map(requestFromWire),
    policies: delta.policies.map(policyFromWire),
  };
}

export function requestToWire(r: RequestRecord): WireRequestRecord {
  return {
    requestId: r.requestId,
    fingerprint: r.fingerprint,
    answeredAtMs: BigInt(r.answeredAtMs),
    outcome: r.answer.outcome,
    balance: r.answer.balance,
    localRights: r.answer.localRights,
  };
}

export function requestFromWire(r: WireRequestRecord): RequestRecord {
  const answer: Answer = {
    kind: r.fingerprint.startsWith("g|") ? "grant" : "debit",
    outcome: fromWireOutcome(r.outcome),
    balance: r.balance,
    localRights: r.localRights,
  };
  return { requestId: r.requestId, fingerprint: r.fingerprint, answer, answeredAtMs: Number(r.answeredAtMs) };
}

export function policyToWire(p: PolicyRecord): PolicyValue {
  return {
    accountId: p.accountId,
    mode: p.write.mode,
    overdraftLimit: p.write.overdraftLimit,
    lowWaterMark: p.write.lowWaterMark,
    writtenAtMs: BigInt(p.write.writtenAtMs),
    replica: p.write.replica,
    logical: BigInt(p.write.logical),
  };
}

export function policyFromWire(p: PolicyValue): PolicyRecord {
  return {
    accountId: p.accountId,
    write: {
      mode: p.mode === 2 ? Mode.Overdraft : Mode.Strict,
      overdraftLimit: p.overdraftLimit,
      lowWaterMark: p.lowWaterMark,
      writtenAtMs: Number(p.writtenAtMs),
      // Absent in writes from nodes that predate the hybrid logical clock: 0.
      // Beyond 2^53 it stops being a safe integer and ReplicaState refuses it.
      logical: Number(p.logical),
      replica: p.replica,
    },
  };
}

export function toWireOutcome(outcome: DebitOutcome): WireOutcome {
  switch (outcome) {
    case DebitOutcome.Approved:
      return WireOutcome.DEBIT_OUTCOME_APPROVED;
    case DebitOutcome.InsufficientCredit:
      return WireOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT;
    case DebitOutcome.ApprovedWithOverdraft:
      return WireOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT;
  }
}

function fromWireOutcome(outcome: number): DebitOutcome {
  switch (outcome) {
    case 2:
      return DebitOutcome.InsufficientCredit;
    case 3:
      return DebitOutcome.ApprovedWithOverdraft;
    default:
      return DebitOutcome.Approved;
  }
}
