// Conformance of src/core/lots.ts (with one escrow counter per lot) to the lots
// model: ITF traces simulated from spec/lots.qnt are replayed transition by
// transition. Each debit the model took must be the burn the core plans
// (which lots, how much from each) from the same rights and clock; each hold
// the core's planHold (lots live until its timeout); each capture the core's
// captureSplit of the hold's parts; each refund the core's planRefund; each
// donation the gift the core plans; each follow or reply the core's merge;
// each breakage the model recorded must be due by the core's rule. Every view
// also keeps Σ_i (rights_i(lot) + held_i(lot)) = remaining(lot) computed by the core.

import { expect } from "chai";
import { balanceOf, heldOf, mergeInto, rightsOf, slotCount, type SlotView } from "../../src/core/escrow-counter";
import { captureSplit } from "../../src/core/hold-book";
import { breakageDue, burnsBefore, planBurn, planDonation, planHold, planRefund, type LotRights, type LotTerms } from "../../src/core/lots";
import { at, decodeItf, field, int, forEachSimulatedTrace, type ItfValue } from "./support/quint";

const N = 3;
const LOTS = [0, 1, 2];
/** spec/lots.qnt's GUARD, in the model's time units. */
const GUARD = 2;
const TRACES = 30;
const STEPS = 40;

/** The model's row columns after P, in the core's order (D, HA, HR, RF). */
const EXTRA = ["d", "ha", "hr", "rf"] as const;

/** The model's counter of one lot (writer -> {p, d, ha, hr, rf}) in the core's slot layout. */
function lotCounter(lotView: ItfValue): SlotView {
  const values: bigint[] = [];
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) values.push(int(at(field(at(lotView, i), "p"), j)));
  for (const column of EXTRA) for (let i = 0; i < N; i++) values.push(int(field(at(lotView, i), column)));
  return { slots: BigUint64Array.from(values), base: 0, n: N };
}

type RegionView = SlotView[];

/** What a replay checked; `choices` counts burns and gifts where more than one lot could have been used (the order mattered). */
interface Checked {
  burns: number;
  choices: number;
  gifts: number;
  merges: number;
  holds: number;
  /** Captures that debited something. */
  captures: number;
  refunds: number;
  /** Holds, captures and refunds over more than one lot. */
  spread: number;
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

/** Slot of `writer`'s row: P columns 0..N−1, then N = D, N+1 = HA, N+2 = HR, N+3 = RF. */
function slot(c: SlotView, writer: number, column: number): bigint {
  return c.slots[column >= N ? N * N + (column - N) * N + writer : writer * N + column]!;
}

const D = N;
const HA = N + 1;
const HR = N + 2;
const RF = N + 3;

/** A hold of the model: id, region, parts per lot, deadline. */
function holdsOf(state: ItfValue): Array<{ id: bigint; region: number; parts: bigint[]; deadline: number }> {
  return (field(state, "pending") as ItfValue[]).map((h) => ({
    id: int(field(h, "id")),
    region: Number(int(field(h, "region"))),
    parts: LOTS.map((l) => int(at(field(h, "parts"), l))),
    deadline: Number(int(field(h, "deadline"))),
  }));
}

/** Replays one trace; returns how many burns, gifts and merges were checked. */
function replay(trace: { states: Array<Record<string, unknown>> }): Checked {
  const states = trace.states.map((s) => decodeItf(s));
  const checked: Checked = { burns: 0, choices: 0, gifts: 0, merges: 0, holds: 0, captures: 0, refunds: 0, spread: 0 };
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
      const grown = (column: number): bigint[] => LOTS.map((l) => slot(after[l]!, r, column) - slot(before[l]!, r, column));
      const sum = (values: bigint[]): bigint => values.reduce((s, v) => s + v, 0n);
      const perLot = (takes: ReadonlyArray<{ key: string; amount: bigint }>): bigint[] => LOTS.map((l) => takes.find((t) => t.key === String(l))?.amount ?? 0n);
      const reserved = grown(HA);
      if (sum(reserved) > 0n) {
        const placed = holdsOf(next).filter((h) => !holdsOf(prev).some((p) => p.id === h.id));
        expect(placed.length, `${where}: one hold placed`).to.equal(1);
        const plan = planHold(lots, sum(reserved), clock(r), placed[0]!.deadline, GUARD);
        expect(plan.kind, `${where}: r${r} hold of ${sum(reserved)} approved by the model`).to.equal("burn");
        expect(plan.kind === "burn" ? perLot(plan.takes) : [], `${where}: r${r} held per lot (clock ${clock(r)}, timeout ${placed[0]!.deadline})`).to.deep.equal(reserved);
        expect(placed[0]!.parts, `${where}: the hold's parts`).to.deep.equal(reserved);
        checked.holds++;
        if (reserved.filter((v) => v > 0n).length > 1) checked.spread++;
        continue;
      }
      const released = grown(HR);
      if (sum(released) > 0n) {
        const resolved = holdsOf(prev).filter((h) => !holdsOf(next).some((n) => n.id === h.id));
        expect(resolved.length, `${where}: one hold resolved`).to.equal(1);
        expect(released, `${where}: every part released`).to.deep.equal(resolved[0]!.parts);
        // The core keeps the parts in burn order; a capture debits them in that order.
        const order = LOTS.map((l) => ({ key: String(l), terms: terms[l]! })).sort(burnsBefore).map((lot) => Number(lot.key));
        const parts = order.filter((l) => resolved[0]!.parts[l]! > 0n).map((l) => ({ rowId: String(l), amount: resolved[0]!.parts[l]! }));
        const split = captureSplit(parts, sum(grown(D)));
        const expected = LOTS.map((l) => split[parts.findIndex((p) => p.rowId === String(l))] ?? 0n);
        expect(grown(D), `${where}: r${r} captured per lot`).to.deep.equal(expected);
        if (sum(grown(D)) > 0n) checked.captures++;
        if (grown(D).filter((v) => v > 0n).length > 1) checked.spread++;
        continue;
      }
      const refunded = grown(RF);
      if (sum(refunded) > 0n) {
        const rooms = LOTS.map((l) => ({ key: String(l), terms: terms[l]!, room: slot(before[l]!, r, D) - slot(before[l]!, r, RF) }));
        const plan = planRefund(rooms, sum(refunded), clock(r), GUARD);
        expect(plan.rest, `${where}: r${r} refund fully taken by its live lots`).to.equal(0n);
        expect(perLot(plan.takes), `${where}: r${r} refunded per lot (clock ${clock(r)})`).to.deep.equal(refunded);
        checked.refunds++;
        if (refunded.filter((v) => v > 0n).length > 1) checked.spread++;
        continue;
      }
      const burnt = grown(D);
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
    // Σ (rights + held) = remaining per lot, in every region's view, by the core's arithmetic.
    for (let r = 0; r < N; r++) {
      for (const [l, c] of regionView(at(field(next, "view"), r)).entries()) {
        let sum = 0n;
        for (let i = 0; i < N; i++) sum += rightsOf(c, i) + heldOf(c, i);
        expect(sum, `${where}: r${r} lot ${l} Σ (rights + held) = remaining`).to.equal(balanceOf(c));
      }
    }
  }
  return checked;
}

describe("core lots conform to the lots model (ITF traces of spec/lots.qnt)", function () {
  this.timeout(300_000);

  it(`replays ${TRACES} simulated traces: every burn, hold, capture, refund, gift, merge and breakage is the core's`, () => {
    // A lot's counter has every column: P, D, HA, HR, RF.
    expect(slotCount(N)).to.equal(21);
    const total: Checked = { burns: 0, choices: 0, gifts: 0, merges: 0, holds: 0, captures: 0, refunds: 0, spread: 0 };
    forEachSimulatedTrace("spec/lots.qnt", TRACES, STEPS, (trace) => {
      const checked = replay(trace);
      for (const key of ["burns", "choices", "gifts", "merges", "holds", "captures", "refunds", "spread"] as const) total[key] += checked[key];
    });
    // The traces must exercise the burn and the gift, not only the network.
    if (process.env["TALLY_SPEC_VERBOSE"] !== undefined) console.log(total);
    expect(total.burns, "burns checked").to.be.greaterThan(0);
    expect(total.gifts + total.merges, "gifts and merges checked").to.be.greaterThan(0);
    expect(total.choices, "burns or gifts where the order mattered").to.be.greaterThan(0);
    expect(total.holds, "holds checked").to.be.greaterThan(0);
    expect(total.captures, "captures checked").to.be.greaterThan(0);
    expect(total.refunds, "refunds checked").to.be.greaterThan(0);
  });
});
