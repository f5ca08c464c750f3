// Who asks whom for rights and how much a donor gives (src/core/rights-policy.ts),
// over a real ReplicaState: the view of every region's rights comes from merged slots.

import { expect } from "chai";
import fc from "fast-check";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { DEFAULT_RIGHTS_POLICY, RightsPolicy, type RightsPolicyOptions } from "../../src/core/rights-policy";

const NAMES = ["r0", "r1", "r2", "r3"] as const;
const OPTIONS: RightsPolicyOptions = { ...DEFAULT_RIGHTS_POLICY, donorWindowMs: 1_000 };

function setup(names: readonly string[] = NAMES, self = "r0", options = OPTIONS): { state: ReplicaState; policy: RightsPolicy } {
  const state = new ReplicaState({ replicas: new ReplicaSet(names), self });
  return { state, policy: new RightsPolicy(state, options) };
}

/** Makes `replica` hold `rights` of account "a" as this replica sees it (its own grant counter). */
function seeRights(state: ReplicaState, replica: number, rights: bigint): void {
  if (replica === state.self) state.grant("a", rights);
  else state.merge("a", replica, replica, rights);
}

describe("rights policy - donors", () => {
  it("rights policy - donors are every peer, richest first as seen here, never this region", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 1_000n);
    seeRights(state, 1, 10n);
    seeRights(state, 3, 50n);
    expect(policy.donors("a")).to.deep.equal(["r3", "r1", "r2"]);
  });

  it("rights policy - peers seen with no rights are still asked, in region order", () => {
    const { policy } = setup();
    expect(policy.donors("a")).to.deep.equal(["r1", "r2", "r3"]);
  });

  it("rights policy - donors are all peers sorted by seen rights, ties in region order", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.array(fc.bigInt(0n, 5n), { minLength: 4, maxLength: 4 }), (self, rights) => {
        const { state, policy } = setup(NAMES, NAMES[self]);
        rights.forEach((r, replica) => {
          if (r > 0n) seeRights(state, replica, r);
        });
        const donors = policy.donors("a").map((name) => state.replicas.indexOf(name));
        expect([...donors].sort()).to.deep.equal([0, 1, 2, 3].filter((i) => i !== self));
        for (let k = 1; k < donors.length; k++) {
          const [prev, next] = [donors[k - 1]!, donors[k]!];
          const ordered = rights[prev]! > rights[next]! || (rights[prev] === rights[next] && prev < next);
          expect(ordered, `donor ${prev} before ${next}`).to.equal(true);
        }
      }),
    );
  });

  it("rights policy - a single region has no donors", () => {
    const { policy } = setup(["solo"], "solo");
    expect(policy.donors("a")).to.deep.equal([]);
  });
});

describe("rights policy - donation", () => {
  it("rights policy - with no demand known a donor keeps an equal split and gives what is above it", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    expect(policy.ownFairShare("a")).to.equal(25n);
    expect(policy.donation("a", 1, 80n, false, 10)).to.equal(75n);
    state.transfer("a", 1, 75n);
    // At its fair share: nothing ahead of need, half (rounded up) to a waiting debit.
    expect(policy.donation("a", 2, 500n, false, 10)).to.equal(0n);
    expect(policy.donation("a", 3, 500n, true, 10)).to.equal(13n);
  });

  it("rights policy - a donor with its own demand keeps its demand-weighted fair share", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    policy.afterLocalDebit("a", 10n, 10);
    // All demand here: weight (1 + 1/4) / 2 of the balance.
    expect(policy.ownFairShare("a")).to.equal(62n);
    expect(policy.donation("a", 1, 80n, false, 10)).to.equal(38n);
    state.transfer("a", 1, 38n);
    expect(policy.donation("a", 2, 80n, false, 10)).to.equal(0n);
    expect(policy.donation("a", 2, 20n, true, 10)).to.equal(20n);
  });

  it("rights policy - a busy donor gives the request, capped by its spare above its share, or half its rights when urgent", () => {
    fc.assert(
      fc.property(fc.bigInt(1n, 1_000_000n), fc.bigInt(1n, 2_000_000n), fc.boolean(), (rights, requested, urgent) => {
        const { state, policy } = setup();
        seeRights(state, 0, rights);
        policy.afterLocalDebit("a", 1_000n, 0);
        const keep = policy.ownFairShare("a");
        const give = policy.donation("a", 1, requested, urgent, 0);
        let cap = rights - keep;
        if (urgent && (rights + 1n) / 2n > cap) cap = (rights + 1n) / 2n;
        if (cap < 0n) cap = 0n;
        expect(give).to.equal(requested < cap ? requested : cap);
      }),
    );
  });

  it("rights policy - a donor without rights gives nothing, and that does not use up the window", () => {
    const { state, policy } = setup();
    expect(policy.donation("a", 1, 10n, true, 100)).to.equal(0n);
    seeRights(state, 0, 40n);
    expect(policy.donation("a", 1, 30n, false, 100)).to.equal(30n);
  });

  it("rights policy - a donor gives to one (account, requester) once per window", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 1_000n);
    state.grant("b", 1_000n);
    policy.afterLocalDebit("a", 100n, 5_000);
    policy.afterLocalDebit("b", 100n, 5_000);
    expect(policy.donation("a", 1, 10n, false, 5_000)).to.equal(10n);
    expect(policy.donation("a", 1, 10n, false, 5_999)).to.equal(0n);
    // Other requesters and other accounts have their own windows.
    expect(policy.donation("a", 2, 10n, false, 5_999)).to.equal(10n);
    expect(policy.donation("b", 1, 10n, false, 5_999)).to.equal(10n);
    expect(policy.donation("a", 1, 10n, false, 6_000)).to.equal(10n);
  });

  it("rights policy - a region never donates to itself", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    expect(policy.donation("a", 0, 10n, false, 1)).to.equal(0n);
  });
});

describe("rights policy - asking ahead of need", () => {
  it("rights policy - with no demand known the fair share is an equal split, and a region below half of it asks for half the gap", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 1, 300n);
    expect(policy.proactiveAsk("a")).to.equal(50n);
  });

  it("rights policy - after local debits the fair share follows the demand here", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 1, 300n);
    // All demand here: weight (1 + 1/3) / 2 of 300 is 200; half the gap.
    expect(policy.afterLocalDebit("a", 10n, 1_000)).to.equal(100n);
  });

  it("rights policy - for an account with lots the ask follows the holdings over its lots, not its plain row", () => {
    const { policy } = setup(["r0", "r1", "r2"]);
    // Nothing in the plain row (the base lot); 300 over live lots, none spendable here.
    expect(policy.proactiveAsk("a")).to.equal(0n);
    expect(policy.proactiveAsk("a", { rights: 0n, balance: 300n })).to.equal(50n);
    expect(policy.askSize("a", 10n, { rights: 0n, balance: 300n })).to.equal(50n);
    expect(policy.proactiveAsk("a", { rights: 100n, balance: 300n })).to.equal(0n);
  });

  it("rights policy - demand seen only at a peer leaves only the floor of half an equal split here", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 1, 300n);
    policy.afterPeerDebit("a", 1, 10n, 1_000);
    expect(policy.proactiveAsk("a")).to.equal(25n);
    seeRights(state, 0, 30n); // balance 330: the floor is 55
    expect(policy.proactiveAsk("a")).to.equal(0n);
  });

  it("rights policy - a region holding at least half of its fair share asks nothing", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 0, 150n);
    seeRights(state, 1, 150n);
    expect(policy.afterLocalDebit("a", 10n, 1_000)).to.equal(0n);
  });

  it("rights policy - a single region never asks", () => {
    const { state, policy } = setup(["solo"], "solo");
    state.grant("a", 10n);
    expect(policy.afterLocalDebit("a", 5n, 1)).to.equal(0n);
  });

  it("rights policy - the ask size is the deficit, or the demand-driven need when larger", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 1, 300n);
    policy.afterLocalDebit("a", 10n, 1_000);
    expect(policy.askSize("a", 10n)).to.equal(100n);
    expect(policy.askSize("a", 400n)).to.equal(400n);
    expect(policy.askSize("unknown", 7n)).to.equal(7n);
  });
});
