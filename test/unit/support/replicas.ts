// Helpers for tests that run several ReplicaState replicas side by side: build
// them, ship rows between them, and join every replica's own row into an oracle
// (the "full merge" that settlement would compute).

import { ReplicaSet } from "../../../src/core/replica-set";
import { ReplicaState, type SlotChange } from "../../../src/core/replica-state";
import { Mode, type PolicyWrite } from "../../../src/core/policy";

export const NAMES = ["r0", "r1", "r2"] as const;

export function makeReplicas(names: readonly string[] = NAMES): ReplicaState[] {
  const replicas = new ReplicaSet(names);
  return names.map((self) => new ReplicaState({ replicas, self, initialAccounts: 4 }));
}

export function overdraftWrite(limit: bigint, writtenAtMs = 1): PolicyWrite {
  return { mode: Mode.Overdraft, overdraftLimit: limit, lowWaterMark: 0n, writtenAtMs, logical: 0, replica: "r0" };
}

export function applyChanges(to: ReplicaState, changes: readonly SlotChange[]): void {
  for (const c of changes) to.merge(c.accountId, c.writer, c.column, c.value);
}

/** The current absolute values of `writer`'s row for one account, as SlotChanges. */
export function rowChanges(from: ReplicaState, accountId: string, writer: number): SlotChange[] {
  const changes: SlotChange[] = [];
  for (let column = 0; column <= from.replicas.size; column++) {
    const value = from.slot(accountId, writer, column);
    if (value !== 0n) changes.push({ accountId, writer, column, value });
  }
  return changes;
}

/** Every replica's own row (the authoritative one) joined into a fresh replica. */
export function oracleOf(replicas: readonly ReplicaState[], accountIds: Iterable<string>): ReplicaState {
  const first = replicas[0];
  if (first === undefined) throw new Error("no replicas");
  const oracle = new ReplicaState({ replicas: first.replicas, self: first.replicas.nameOf(0), initialAccounts: 4 });
  for (const accountId of accountIds) {
    replicas.forEach((r) => applyChanges(oracle, rowChanges(r, accountId, r.self)));
  }
  return oracle;
}

/** First difference between two replicas' slots or digests, or undefined when they are equal. */
export function firstDifference(a: ReplicaState, b: ReplicaState, accountIds: Iterable<string>): string | undefined {
  const n = a.replicas.size;
  for (const accountId of accountIds) {
    for (let w = 0; w < n; w++) {
      for (let c = 0; c <= n; c++) {
        const x = a.slot(accountId, w, c);
        const y = b.slot(accountId, w, c);
        if (x !== y) return `${accountId} slot (${w},${c}): ${x} at r${a.self} vs ${y} at r${b.self}`;
      }
    }
  }
  for (let w = 0; w < n; w++) {
    if (a.rowDigest(w) !== b.rowDigest(w)) return `row ${w} digest differs between r${a.self} and r${b.self}`;
  }
  return undefined;
}

/** Σ_i rights(i) as seen by `state`. */
export function sumOfRights(state: ReplicaState, accountId: string): bigint {
  let sum = 0n;
  for (let i = 0; i < state.replicas.size; i++) sum += state.rights(accountId, i);
  return sum;
}
