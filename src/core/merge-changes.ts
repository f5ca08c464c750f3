// Merging another writer's group commit (or this replica's own, replayed at
// recovery) into the replica state: slots by pointwise max, request records
// so a failover retry is a replay, policies by their order. Pure; the
// callbacks let the node notify watchers and feed demand tracking.

import type { PolicyRecord, RequestRecord } from "./durable-write";
import type { HoldRecord } from "./hold-book";
import type { RefundTally } from "./refund-tallies";
import type { ReplicaState, SlotChange } from "./replica-state";

/** One writer's changes as decoded from its stream. */
export interface WriterChanges {
  readonly writer: number;
  /** Other writers' slots the writer held for these accounts: merged first, so the view stays causally closed. */
  readonly context?: readonly SlotChange[];
  readonly slots: readonly SlotChange[];
  readonly requests: readonly RequestRecord[];
  readonly policies: readonly PolicyRecord[];
  /** The writer's hold records; read back only by the writer itself (its recovery). */
  readonly holds?: readonly HoldRecord[];
  /** The writer's refund tallies; read back only by the writer itself (its recovery). */
  readonly refunds?: readonly RefundTally[];
}

export interface MergeListener {
  /** A slot or record no legitimate writer could have produced was refused (state unchanged). */
  refused(error: unknown): void;
  /** An account's view changed. */
  changed(accountId: string): void;
  /** A peer's debit counter grew by `amount` (demand there). */
  peerDebited(accountId: string, writer: number, amount: bigint): void;
}

/** `receivedMs` is the local monotonic time: replicated ids are kept a full window from arrival. */
export function mergeChanges(state: ReplicaState, changes: WriterChanges, receivedMs: number, listener: MergeListener): void {
  const debitColumn = state.replicas.size;
  const fromPeer = changes.writer !== state.self;
  for (const slot of changes.context ?? []) {
    try {
      // Our own row is never taken from someone else's view of it.
      if (slot.writer !== state.self && state.merge(slot.accountId, slot.writer, slot.column, slot.value)) listener.changed(slot.accountId);
    } catch (error) {
      listener.refused(error);
    }
  }
  for (const slot of changes.slots) {
    const before = fromPeer && slot.column === debitColumn ? state.slot(slot.accountId, slot.writer, slot.column) : 0n;
    let grew: boolean;
    try {
      grew = state.merge(slot.accountId, slot.writer, slot.column, slot.value);
    } catch (error) {
      listener.refused(error);
      continue;
    }
    if (!grew) continue;
    if (fromPeer && slot.column === debitColumn) listener.peerDebited(slot.accountId, slot.writer, slot.value - before);
    listener.changed(slot.accountId);
  }
  for (const request of changes.requests) {
    // Every record in a writer's message was decided by that writer.
    state.rememberReplicated(request.requestId, request.fingerprint, request.answer, { stampMs: request.answeredAtMs, nowMs: receivedMs }, changes.writer);
  }
  if (!fromPeer) {
    // Holds and refunds are decided by their own region alone: only its recovery reads them back.
    for (const hold of changes.holds ?? []) state.holds.put(hold);
    for (const tally of changes.refunds ?? []) state.refundTallies.put(tally);
  }
  for (const policy of changes.policies) {
    try {
      if (state.applyPolicy(policy.accountId, policy.write)) listener.changed(policy.accountId);
    } catch (error) {
      listener.refused(error);
    }
  }
}
