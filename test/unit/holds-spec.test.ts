// Conformance of holds and refunds with spec/holds.qnt: traces exported by
// the Quint simulator (ITF) are replayed step by step against ReplicaState and
// the pure hold rules (src/core/hold-path.ts). The model has no record of
// which action ran, so each step is read off the state change (one region's
// memory, its durable copy, up/down, or the clock). After every step each
// region's counter (P, D, HA, HR, RF), its holds and its refund totals must
// equal the model's, in memory and in the durable copy.

import { expect } from "chai";
import { DebitOutcome } from "../../src/core/answer";
import { HoldStatus } from "../../src/core/hold-book";
import { placeHold, refundDebit, resolveHold } from "../../src/core/hold-path";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { debitFingerprint, WritePath } from "../../src/core/write-path";
import { at, bool, decodeItf, field, int, forEachSimulatedTrace, str, type ItfValue } from "./support/quint";

const NAMES = ["r0", "r1", "r2"];
const N = NAMES.length;
const ACCOUNT = "acct";
const REPLICAS = new ReplicaSet(NAMES);
/** Model time unit → ms; the offset keeps stamps positive whatever the skew. */
const MS = 1_000;
const EPOCH = 1_000_000;

function wall(modelTime: bigint): number {
  return EPOCH + Number(modelTime) * MS;
}

function entries(map: ItfValue): Array<[bigint, ItfValue]> {
  if (!(map instanceof Map)) throw new Error("not a map");
  return [...map].map(([k, v]) => [int(k), v]);
}

/** A model view in the core's slot layout: P row-major, then the D, HA, HR and RF blocks. */
function flatten(view: ItfValue): bigint[] {
  const row = (i: number): ItfValue => at(view, i);
  const values: bigint[] = [];
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) values.push(int(at(field(row(i), "p"), j)));
  for (const column of ["d", "ha", "hr", "rf"]) for (let i = 0; i < N; i++) values.push(int(field(row(i), column)));
  return values;
}

function exported(state: ReplicaState): bigint[] {
  const values = state.exportAccount(ACCOUNT);
  return values.length === 0 ? new Array<bigint>(N * N + 4 * N).fill(0n) : values;
}

function statusOf(value: ItfValue): { status: HoldStatus; captured: bigint } {
  const tag = str(field(value, "tag"));
  switch (tag) {
    case "Pending":
      return { status: HoldStatus.Pending, captured: 0n };
    case "Captured":
      return { status: HoldStatus.Captured, captured: int(field(value, "value")) };
    case "Voided":
      return { status: HoldStatus.Voided, captured: 0n };
    case "Expired":
      return { status: HoldStatus.Expired, captured: 0n };
    default:
      throw new Error(`unknown hold status ${tag}`);
  }
}

/** A copy of a replica as its durable log would rebuild it: counter, holds, refund totals, answers (with their region). */
function copyOf(state: ReplicaState, self: string, nowMs: number): ReplicaState {
  const copy = new ReplicaState({ replicas: REPLICAS, self, initialAccounts: 2 });
  const values = state.exportAccount(ACCOUNT);
  if (values.length > 0) copy.mergeAccount(ACCOUNT, values);
  for (const hold of state.holds.entries()) copy.holds.put(hold);
  for (const tally of state.refundTallies.entries()) copy.refundTallies.put(tally);
  for (const r of state.freeze().requests.toArray()) {
    copy.restoreRequest(r.requestId, r.fingerprint, r.answer, { stampMs: r.answeredAtMs, nowMs, wallNowMs: r.answeredAtMs }, r.origin);
  }
  return copy;
}

function sameRegion(where: string, i: number, core: ReplicaState, model: ItfValue): void {
  expect(exported(core), `${where}: r${i} slots`).to.deep.equal(flatten(field(model, "v")));
  const holds = entries(field(model, "holds"));
  expect(core.holds.size, `${where}: r${i} holds`).to.equal(holds.length);
  for (const [h, hold] of holds) {
    const record = core.holds.get(`r${i}:h${h}`);
    expect(record, `${where}: r${i} hold ${h}`).to.not.equal(undefined);
    const { status, captured } = statusOf(field(hold, "status"));
    expect(record!.amount, `${where}: hold ${h} amount`).to.equal(int(field(hold, "amount")));
    expect(record!.status, `${where}: hold ${h} status`).to.equal(status);
    expect(record!.captured, `${where}: hold ${h} captured`).to.equal(captured);
  }
  for (const [k, debit] of entries(field(model, "debits"))) {
    const refunded = core.refundTallies.get(`d${k}`)?.refunded ?? 0n;
    expect(refunded, `${where}: r${i} refunds of debit ${k}`).to.equal(int(field(debit, "refunded")));
  }
  let sum = 0n;
  for (let j = 0; j < N; j++) sum += core.rights(ACCOUNT, j) + core.held(ACCOUNT, j);
  expect(sum, `${where}: r${i} Σ rights + Σ held = balance`).to.equal(core.balance(ACCOUNT));
}

function flatEqual(a: readonly bigint[], b: readonly bigint[]): boolean {
  return a.length === b.length && a.every((v, k) => v === b[k]);
}

/** Replays one trace; returns the kinds of step it recognised. */
function replay(trace: { states: Array<Record<string, unknown>> }): string[] {
  const states = trace.states.map((s) => decodeItf(s));
  const kinds: string[] = [];
  let live: Array<ReplicaState | undefined> = NAMES.map((name) => new ReplicaState({ replicas: REPLICAS, self: name, initialAccounts: 2 }));
  let durable: ReplicaState[] = NAMES.map((name) => new ReplicaState({ replicas: REPLICAS, self: name, initialAccounts: 2 }));
  for (let step = 1; step < states.length; step++) {
    const before = states[step - 1]!;
    const after = states[step]!;
    const where = `step ${step}`;
    const nowMs = step; // local monotonic time: only orders the request log here
    const clock = (r: number): bigint => int(field(after, "now")) + int(at(field(after, "skew"), r));
    const time = (r: number): { stampMs: number; nowMs: number } => ({ stampMs: wall(clock(r)), nowMs });
    let kind = "none";
    for (let r = 0; r < N; r++) {
      const wasUp = bool(at(field(before, "up"), r));
      const isUp = bool(at(field(after, "up"), r));
      const memBefore = at(field(before, "mem"), r);
      const memAfter = at(field(after, "mem"), r);
      if (wasUp && !isUp) {
        kind = "crash";
        live = live.map((s, k) => (k === r ? undefined : s));
        continue;
      }
      if (!wasUp && isUp) {
        kind = "recover";
        live = live.map((s, k) => (k === r ? copyOf(durable[r]!, NAMES[r]!, nowMs) : s));
        continue;
      }
      if (!isUp) continue;
      const state = live[r]!;
      if (JSON.stringify(decodeStable(at(field(before, "durable"), r))) !== JSON.stringify(decodeStable(at(field(after, "durable"), r)))) {
        kind = "commit";
        durable = durable.map((s, k) => (k === r ? copyOf(state, NAMES[r]!, nowMs) : s));
      }
      const holdsBefore = new Map(entries(field(memBefore, "holds")));
      for (const [h, hold] of entries(field(memAfter, "holds"))) {
        const was = holdsBefore.get(h);
        if (was === undefined) {
          kind = "authorize";
          const ttl = int(field(hold, "deadline")) - clock(r);
          const placed = placeHold(state, { accountId: ACCOUNT, amount: int(field(hold, "amount")), requestId: `h${h}`, timeoutMs: Number(ttl) * MS, time: time(r) });
          expect(placed.answer.outcome, `${where}: authorize h${h} at r${r}`).to.equal(DebitOutcome.Approved);
        } else if (str(field(field(was, "status"), "tag")) !== str(field(field(hold, "status"), "tag"))) {
          const { status, captured } = statusOf(field(hold, "status"));
          kind = `resolve-${HoldStatus[status]}`;
          const resolveKind = status === HoldStatus.Captured ? "capture" : status === HoldStatus.Voided ? "void" : "timeout";
          const resolved = resolveHold(state, { holdId: `r${r}:h${h}`, kind: resolveKind, amount: captured, requestId: resolveKind === "timeout" ? undefined : `res-${step}`, time: time(r) });
          expect(resolved.kind, `${where}: resolve h${h} at r${r}`).to.not.equal("already");
        }
      }
      const debitsBefore = new Map(entries(field(memBefore, "debits")));
      for (const [k, debit] of entries(field(memAfter, "debits"))) {
        const was = debitsBefore.get(k);
        const amount = int(field(debit, "amount"));
        if (was === undefined) {
          kind = "debit";
          const decided = new WritePath(state).debit({ item: { accountId: ACCOUNT, amount, requestId: `d${k}` }, fingerprint: debitFingerprint(ACCOUNT, amount), time: time(r), final: true });
          expect(decided.kind === "decided" && decided.answer.outcome === DebitOutcome.Approved, `${where}: debit d${k} at r${r}`).to.equal(true);
        } else if (int(field(debit, "refunded")) !== int(field(was, "refunded"))) {
          kind = "refund";
          refundDebit(state, { debitRequestId: `d${k}`, amount: int(field(debit, "refunded")) - int(field(was, "refunded")), requestId: `rf-${step}`, time: time(r) }, "trace");
        }
      }
      // Writes to the own row that are neither holds nor debits: grants and transfers.
      const ownBefore = at(field(memBefore, "v"), r);
      const ownAfter = at(field(memAfter, "v"), r);
      for (let j = 0; j < N; j++) {
        const delta = int(at(field(ownAfter, "p"), j)) - int(at(field(ownBefore, "p"), j));
        if (delta === 0n) continue;
        if (j === r) {
          kind = "grant";
          state.grant(ACCOUNT, delta);
        } else {
          kind = "transfer";
          state.transfer(ACCOUNT, j, delta);
        }
      }
      // A follow merges another region's durable view into this one's memory.
      const target = flatten(field(memAfter, "v"));
      if (!flatEqual(exported(state), target)) {
        const source = [0, 1, 2].find((j) => j !== r && flatEqual(mergedWith(exported(state), exported(durable[j]!)), target));
        expect(source, `${where}: r${r} memory changed by no known step`).to.not.equal(undefined);
        kind = "follow";
        const values = durable[source!]!.exportAccount(ACCOUNT);
        if (values.length > 0) state.mergeAccount(ACCOUNT, values);
      }
    }
    kinds.push(kind);
    for (let r = 0; r < N; r++) {
      expect(live[r] !== undefined, `${where}: r${r} up`).to.equal(bool(at(field(after, "up"), r)));
      sameRegion(`${where} (${kind}) durable`, r, durable[r]!, at(field(after, "durable"), r));
      if (live[r] !== undefined) sameRegion(`${where} (${kind})`, r, live[r]!, at(field(after, "mem"), r));
    }
  }
  return kinds;
}

function mergedWith(a: readonly bigint[], b: readonly bigint[]): bigint[] {
  return a.map((v, k) => (v > (b[k] ?? 0n) ? v : (b[k] ?? 0n)));
}

/** A JSON-able form of an ITF value (maps as sorted entry lists), to compare two states. */
function decodeStable(value: ItfValue): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Map) return [...value].map(([k, v]) => [decodeStable(k), decodeStable(v)]).sort((x, y) => (JSON.stringify(x) < JSON.stringify(y) ? -1 : 1));
  if (Array.isArray(value)) return value.map(decodeStable);
  if (typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decodeStable(v)]));
  return value;
}

describe("core conforms to the holds model (ITF traces of spec/holds.qnt)", function () {
  this.timeout(300_000);
  const TRACES = 20;
  const STEPS = 80;

  it(`replays ${TRACES} simulated traces step by step against ReplicaState and the hold rules`, () => {
    const kinds = new Set<string>();
    forEachSimulatedTrace("spec/holds.qnt", TRACES, STEPS, (trace) => {
      for (const kind of replay(trace)) kinds.add(kind);
    });
    // The traces exercised holds, not only the clock and the network.
    expect([...kinds].filter((k) => k === "authorize" || k.startsWith("resolve-")).length, [...kinds].join(",")).to.be.greaterThan(1);
  });
});
