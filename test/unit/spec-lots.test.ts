// Conformance of src/core/lots.ts (with one escrow counter per lot) to the lots
// model: ITF traces simulated from spec/lots.qnt are replayed transition by
// transition. Each debit the model took must be the burn the core plans
// (which lots, how much from each) from the same rights and clock; each
// donation the gift the core plans; each follow or reply the core's merge;
// each breakage the model recorded must be due by the core's rule. Every view
// also keeps Σ_i rights_i(lot) = remaining(lot) computed by the core.

import { expect } from "chai";
import { balanceOf, legacySlotCount, mergeInto, rightsOf, type SlotView } from "../../src/core/escrow-counter";
import { breakageDue, planBurn, planDonation, type LotRights, type LotTerms } from "../../src/core/lots";
import { at, decodeItf, field, int, forEachSimulatedTrace, type ItfValue } from "./support/quint";

const N = 3;
const LOTS = [0, 1, 2];
/** spec/lots.qnt's GUARD, in the model's time units. */
const GUARD = 2;
const TRACES = 30;
const STEPS = 40;

/** The model's counter of one lot (writer -> {p, d}) in the core's slot layout. */
function lotCounter(lotView: ItfValue): SlotView {
  const values: bigint[] = [];
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) values.push(int(at(field(at(lotView, i), "p"), j)));
  for (let i = 0; i < N; i++) values.push(int(field(at(lotView, i), "d")));
  return { slots: BigUint64Array.from(values), base: 0, n: N };
}

type RegionView = SlotView[];

/** What a replay checked; `choices` counts burns and gifts where more than one lot could have been used (the order mattered). */
interface Checked {
  burns: number;
  choices: number;
  gifts: number;
  merges: number;
}

function regionView(view: ItfValue): RegionView {
  return LOTS.map((l) => lotCounter(at(view, l)));
}

function same(a: RegionView, b: RegionView): boolean {
  return a.every((c, l) => c.slots.every((v, k) => v === b[l]!.slots[k]));
}

function merged(into: RegionView, from: RegionView): RegionView {
  return into.map((c, l) => {
    const copy: SlotView = { slots: c.slots.slice(), base: 0, n: N };
    mergeInto(copy, from[l]!);
    return copy;
  });
}

function slot(c: SlotView, writer: number, column: number): bigint {
  return c.slots[column === N ? N * N + writer : writer * N + column]!;
}

/** Replays one trace; returns how many burns, gifts and merges were checked. */
function replay(trace: { states: Array<Record<string, unknown>> }): Checked {
  const states = trace.states.map((s) => decodeItf(s));
  const checked: Checked = { burns: 0, choices: 0, gifts: 0, merges: 0 };
  const lotsVar = field(states[0], "lots");
  const terms: LotTerms[] = LOTS.map((l) => ({
    priority: Number(int(field(at(lotsVar, l), "priority"))),
    // The model has no start time: every lot is effective from the beginning.
    effectiveAtMs: Number.MIN_SAFE_INTEGER,
    expiresAtMs: Number(int(field(at(lotsVar, l), "expiresAt"))),
  }));
  const skew = field(states[0], "skew");
  for (let k = 1; k < states.length; k++) {
    const prev = states[k - 1]!;
    const next = states[k]!;
    const now = Number(int(field(prev, "now")));
    const clock = (r: number): number => now + Number(int(at(skew, r)));
    const where = `state ${k}`;
    for (let r = 0; r < N; r++) {
      const before = regionView(at(field(prev, "view"), r));
      const after = regionView(at(field(next, "view"), r));
      if (same(before, after)) continue;
      const lots: LotRights[] = LOTS.map((l) => ({ key: String(l), terms: terms[l]!, rights: rightsOf(before[l]!, r) }));
      const burnt = LOTS.map((l) => slot(after[l]!, r, N) - slot(before[l]!, r, N));
      const total = burnt.reduce((s, v) => s + v, 0n);
      if (total > 0n) {
        const plan = planBurn(lots, total, clock(r), GUARD);
        expect(plan.kind, `${where}: r${r} debit of ${total} approved by the model`).to.equal("burn");
        const planned = LOTS.map((l) => (plan.kind === "burn" ? (plan.takes.find((t) => t.key === String(l))?.amount ?? 0n) : 0n));
        expect(planned, `${where}: r${r} burnt per lot (clock ${clock(r)})`).to.deep.equal(burnt);
        checked.burns++;
        if (lots.filter((lot) => lot.rights > 0n && planDonation([lot], 1n, clock(r), GUARD).length > 0).length > 1) checked.choices++;
        continue;
      }
      let gave = false;
      for (let asker = 0; asker < N; asker++) {
        if (asker === r) continue;
        const given = LOTS.map((l) => slot(after[l]!, r, asker) - slot(before[l]!, r, asker));
        const sum = given.reduce((s, v) => s + v, 0n);
        if (sum === 0n) continue;
        const planned = LOTS.map((l) => planDonation(lots, sum, clock(r), GUARD).find((t) => t.key === String(l))?.amount ?? 0n);
        expect(planned, `${where}: r${r} gave r${asker} per lot (clock ${clock(r)})`).to.deep.equal(given);
        checked.gifts++;
        if (lots.filter((lot) => lot.rights > 0n && planDonation([lot], 1n, clock(r), GUARD).length > 0).length > 1) checked.choices++;
        gave = true;
      }
      if (gave) continue;
      const granted = LOTS.some((l) => slot(after[l]!, r, r) > slot(before[l]!, r, r));
      if (granted) continue;
      // A follow or a reply: the core's merge of some source gives exactly the new view.
      const sources: RegionView[] = [
        ...[0, 1, 2].filter((j) => j !== r).map((j) => regionView(at(field(prev, "view"), j))),
        ...(field(prev, "replies") as ItfValue[]).filter((m) => int(field(m, "asker")) === BigInt(r)).map((m) => regionView(field(m, "view"))),
      ];
      expect(sources.some((source) => same(merged(before, source), after)), `${where}: r${r}'s new view is the core's merge of a peer or a reply`).to.equal(true);
      checked.merges++;
    }
    // Breakage the model recorded in this step must be due by the core's rule at this instant.
    const breakageBefore = field(prev, "breakage") as Map<ItfValue, ItfValue>;
    for (const [lot] of field(next, "breakage") as Map<ItfValue, ItfValue>) {
      if ([...breakageBefore.keys()].includes(lot)) continue;
      const l = Number(int(lot));
      expect(breakageDue(terms[l]!, [0, 1, 2].map(clock), GUARD), `${where}: breakage of lot ${l} due`).to.equal(true);
    }
    // Σ rights = remaining per lot, in every region's view, by the core's arithmetic.
    for (let r = 0; r < N; r++) {
      for (const [l, c] of regionView(at(field(next, "view"), r)).entries()) {
        let sum = 0n;
        for (let i = 0; i < N; i++) sum += rightsOf(c, i);
        expect(sum, `${where}: r${r} lot ${l} Σ rights = remaining`).to.equal(balanceOf(c));
      }
    }
  }
  return checked;
}

describe("core lots conform to the lots model (ITF traces of spec/lots.qnt)", function () {
  this.timeout(300_000);

  it(`replays ${TRACES} simulated traces: every burn, gift, merge and breakage is the core's`, () => {
    // A lot's counter holds P and D only (its views are the legacy width; hold columns read as 0).
    expect(legacySlotCount(N)).to.equal(12);
    const total: Checked = { burns: 0, choices: 0, gifts: 0, merges: 0 };
    forEachSimulatedTrace("spec/lots.qnt", TRACES, STEPS, (trace) => {
      const checked = replay(trace);
      for (const key of ["burns", "choices", "gifts", "merges"] as const) total[key] += checked[key];
    });
    // The traces must exercise the burn and the gift, not only the network.
    if (process.env["TALLY_SPEC_VERBOSE"] !== undefined) console.log(total);
    expect(total.burns, "burns checked").to.be.greaterThan(0);
    expect(total.gifts + total.merges, "gifts and merges checked").to.be.greaterThan(0);
    expect(total.choices, "burns or gifts where the order mattered").to.be.greaterThan(0);
  });
});
