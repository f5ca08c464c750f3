// The executable specification (spec/*.qnt) in CI: bounded simulations of each
// model with its invariants, the model's own directed scenarios (quint test),
// and conformance: traces exported from the simulator (ITF) replayed step by
// step against the pure core, comparing the state after every step.
//
// Budgets (samples × steps) are small so the whole file fits about a minute of
// CPU; `npm run verify` runs the larger simulation (docs/spec.md).

import { expect } from "chai";
import { Mode, STRICT_DEFAULT, type Policy } from "../../src/core/policy";
import { donorGrant } from "../../src/core/rebalance";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState, type Answer } from "../../src/core/replica-state";
import { at, bool, decodeItf, field, forEachSimulatedTrace, int, quint, str, type ItfValue } from "./support/quint";

const SPECS: ReadonlyArray<{ file: string; samples: number; steps: number }> = [
  { file: "spec/tally.qnt", samples: 25, steps: 30 },
  { file: "spec/lots.qnt", samples: 12, steps: 25 },
  { file: "spec/holds.qnt", samples: 15, steps: 25 },
  // Small and fast (about 100 traces/s): most of this entry's cost is parsing.
  { file: "spec/ha.qnt", samples: 100, steps: 30 },
];

// Models with directed scenarios (`run ...Test`), run by `quint test`.
const DIRECTED: readonly string[] = ["spec/tally.qnt", "spec/ha.qnt"];

// The machine CI runs on may be shared: the budget is CPU, the timeout is wall time.
const TIMEOUT_MS = 300_000;

describe("executable specification (Quint)", function () {
  this.timeout(TIMEOUT_MS);

  for (const spec of SPECS) {
    it(`${spec.file}: ${spec.samples} samples × ${spec.steps} steps hold every invariant`, () => {
      const run = quint(["run", spec.file, `--max-samples=${spec.samples}`, `--max-steps=${spec.steps}`, "--invariant=safety", "--verbosity=1"]);
      if (!run.ok) {
        console.log(run.output);
        console.log(`replay: ${run.command} --seed=${run.seed ?? "?"} --verbosity=3`);
      }
      expect(run.ok, `invariant violated in ${spec.file}; seed ${run.seed ?? "?"}`).to.equal(true);
    });
  }

  for (const file of DIRECTED) {
    it(`${file}: directed scenarios (quint test)`, () => {
      const run = quint(["test", file, "--max-samples=1"]);
      if (!run.ok) console.log(run.output);
      expect(run.ok, run.output).to.equal(true);
    });
  }
});

// ---- conformance ----------------------------------------------------------

const NAMES = ["r0", "r1", "r2"];
const N = NAMES.length;
const ACCOUNT = "acct";

/** The model's view (writer -> {p, d}) in the core's slot layout: P row-major, then D. */
function flatten(view: ItfValue): bigint[] {
  const values: bigint[] = [];
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) values.push(int(at(field(at(view, i), "p"), j)));
  for (let i = 0; i < N; i++) values.push(int(field(at(view, i), "d")));
  return values;
}

/** P and D of the account (tally.qnt has no holds or refunds; their slots stay 0 here). */
function exported(state: ReplicaState): bigint[] {
  const values = state.exportAccount(ACCOUNT);
  return values.length === 0 ? new Array<bigint>(N * N + N).fill(0n) : values.slice(0, N * N + N);
}

interface Durable {
  counter: bigint[];
  answers: Map<bigint, Answer>;
}

/** Replays one ITF trace of spec/tally.qnt against ReplicaState; throws at the first difference. */
function replay(trace: { states: Array<Record<string, unknown>> }): number {
  const states = trace.states.map((s) => decodeItf(s));
  const first = states[0]!;
  const mode = field(field(first, "mode"), "tag");
  const policy: Policy =
    str(mode) === "Strict" ? STRICT_DEFAULT : { mode: Mode.Overdraft, overdraftLimit: int(field(first, "limit")), lowWaterMark: 0n };
  const replicas = new ReplicaSet(NAMES);
  const fresh = (r: number): ReplicaState => new ReplicaState({ replicas, self: NAMES[r]!, defaultPolicy: policy });
  const live: Array<ReplicaState | undefined> = NAMES.map((_, r) => fresh(r));
  const memAnswers: Array<Map<bigint, Answer>> = NAMES.map(() => new Map<bigint, Answer>());
  const durable: Durable[] = NAMES.map(() => ({ counter: new Array<bigint>(N * N + N).fill(0n), answers: new Map() }));
  const published: Array<Set<string>> = NAMES.map(() => new Set());
  const fp = (q: bigint): string => `q${q}`;

  const commit = (r: number): void => {
    const st = live[r]!;
    const saved: Durable = { counter: exported(st), answers: new Map(memAnswers[r]) };
    durable[r] = saved;
    published[r]!.add(saved.counter.join(","));
  };
  const recover = (r: number): void => {
    const st = fresh(r);
    st.mergeAccount(ACCOUNT, durable[r]!.counter);
    for (const [q, answer] of durable[r]!.answers) st.remember(fp(q), fp(q), answer, { stampMs: 0, nowMs: 0 });
    live[r] = st;
    memAnswers[r] = new Map(durable[r]!.answers);
  };
  const follow = (r: number, j: number, rowOnly: boolean): void => {
    const st = live[r]!;
    const counter = durable[j]!.counter;
    if (!rowOnly) {
      st.mergeAccount(ACCOUNT, counter);
      return;
    }
    for (let column = 0; column < N; column++) st.merge(ACCOUNT, j, column, counter[j * N + column]!);
    st.merge(ACCOUNT, j, N, counter[N * N + j]!);
  };

  for (let k = 1; k < states.length; k++) {
    const s = states[k]!;
    const step = field(s, "lastStep");
    const kind = str(field(step, "kind"));
    const r = Number(int(field(step, "region")));
    const peer = Number(int(field(step, "peer")));
    const amount = int(field(step, "amount"));
    const q = int(field(step, "req"));
    const flag = bool(field(step, "flag"));
    const where = `step ${k} (${kind} r${r})`;
    switch (kind) {
      case "grant":
      case "debit": {
        const st = live[r]!;
        expect(st.recall(fp(q), fp(q)), where).to.equal(undefined);
        const result = kind === "grant" ? { ...st.grant(ACCOUNT, amount), globallyCoverable: true } : st.debit(ACCOUNT, amount, flag);
        expect(result.changes.length > 0, `${where}: approved`).to.equal(bool(field(step, "approved")));
        if (result.changes.length > 0) {
          st.remember(fp(q), fp(q), result.answer, { stampMs: 0, nowMs: 0 });
          memAnswers[r]!.set(q, result.answer);
        }
        break;
      }
      case "retry":
        expect(live[r]!.recall(fp(q), fp(q)), `${where}: remembered`).to.deep.equal(memAnswers[r]!.get(q));
        break;
      case "commit":
        commit(r);
        break;
      case "crash":
        live[r] = undefined;
        memAnswers[r] = new Map();
        break;
      case "recover":
        recover(r);
        break;
      case "follow":
        follow(r, peer, flag);
        break;
      case "donate": {
        const st = live[r]!;
        // The spec's idle donor keeps no fair share (ask ahead of need); its busy donor keeps all (urgent ask).
        const held = st.rights(ACCOUNT);
        expect(donorGrant(held, q, flag ? 0n : held, !flag), `${where}: donorGrant`).to.equal(amount);
        st.transfer(ACCOUNT, peer, amount);
        break;
      }
      case "receive": {
        // The reply carries the donor's counter as of one of its group commits.
        const payload = flatten(field(step, "payload"));
        expect(published[peer]!.has(payload.join(",")), `${where}: reply is a committed counter`).to.equal(true);
        live[r]!.mergeAccount(ACCOUNT, payload);
        break;
      }
      case "drain": {
        for (let i = 0; i < N; i++) if (live[i] === undefined) recover(i);
        for (let i = 0; i < N; i++) commit(i);
        for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) if (i !== j) follow(i, j, flag);
        break;
      }
      case "ask":
      case "lose":
      case "partition":
      case "heal":
        break;
      default:
        throw new Error(`${where}: unknown step`);
    }

    // Compare every region after the step: up/down, slots, balance and rights,
    // remembered answers, durable counters.
    const up = field(s, "up");
    for (let i = 0; i < N; i++) {
      const isUp = bool(at(up, i));
      expect(live[i] !== undefined, `${where}: r${i} up`).to.equal(isUp);
      expect(durable[i]!.counter, `${where}: r${i} durable slots`).to.deep.equal(flatten(at(field(s, "durable"), i)));
      if (!isUp) continue;
      const st = live[i]!;
      const modelView = at(field(s, "view"), i);
      expect(exported(st), `${where}: r${i} slots`).to.deep.equal(flatten(modelView));
      const log = at(field(s, "reqLog"), i) as Map<ItfValue, ItfValue>;
      expect(memAnswers[i]!.size, `${where}: r${i} remembered ids`).to.equal(log.size);
      for (const [key, answer] of log) {
        const id = int(key);
        const core = memAnswers[i]!.get(id);
        expect(core, `${where}: r${i} answer ${id}`).to.not.equal(undefined);
        expect(core!.balance, `${where}: r${i} answer ${id} balance`).to.equal(int(field(answer, "balance")));
        expect(core!.localRights, `${where}: r${i} answer ${id} rights`).to.equal(int(field(answer, "rights")));
      }
      let sumRights = 0n;
      for (let j = 0; j < N; j++) sumRights += st.rights(ACCOUNT, j);
      expect(sumRights, `${where}: r${i} Σ rights = balance`).to.equal(st.balance(ACCOUNT));
    }
  }
  return states.length - 1;
}

describe("core conforms to the escrow model (ITF traces of spec/tally.qnt)", function () {
  this.timeout(TIMEOUT_MS);
  const TRACES = 12;
  const STEPS = 40;

  it(`replays ${TRACES} simulated traces step by step against ReplicaState`, () => {
    const kinds = new Set<string>();
    let steps = 0;
    forEachSimulatedTrace("spec/tally.qnt", TRACES, STEPS, (trace) => {
      for (const state of trace.states) {
        const step = state["lastStep"] as { kind: string } | undefined;
        if (step !== undefined) kinds.add(step.kind);
      }
      steps += replay(trace);
    });
    expect(steps).to.be.greaterThan(TRACES);
    // The traces must exercise the core, not only the network.
    expect([...kinds].filter((kind) => ["grant", "debit", "commit", "follow", "crash", "recover"].includes(kind)).length).to.be.greaterThan(3);
  });
});
