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
  it("rights policy - an idle donor gives what is asked, up to all of its rights", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    expect(policy.donation("a", 1, 80n, 10)).to.equal(80n);
    expect(policy.donation("a", 2, 500n, 10)).to.equal(100n);
    // ... and at least half, so the next ask is rarely needed.
    expect(policy.donation("a", 3, 10n, 10)).to.equal(50n);
  });

  it("rights policy - a donor with its own demand gives at most half of its rights", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    policy.afterLocalDebit("a", 10n, 10);
    expect(policy.donation("a", 1, 80n, 10)).to.equal(50n);
    expect(policy.donation("a", 2, 20n, 10)).to.equal(20n);
  });

  it("rights policy - a busy donor's gift never exceeds half its rights rounded up, nor the request", () => {
    fc.assert(
      fc.property(fc.bigInt(1n, 1_000_000n), fc.bigInt(1n, 2_000_000n), (rights, requested) => {
        const { state, policy } = setup();
        seeRights(state, 0, rights);
        policy.afterLocalDebit("a", 1_000n, 0);
        const give = policy.donation("a", 1, requested, 0);
        expect(give).to.equal(requested < (rights + 1n) / 2n ? requested : (rights + 1n) / 2n);
      }),
    );
  });

  it("rights policy - a donor without rights gives nothing, and that does not use up the window", () => {
    const { state, policy } = setup();
    expect(policy.donation("a", 1, 10n, 100)).to.equal(0n);
    seeRights(state, 0, 40n);
    expect(policy.donation("a", 1, 30n, 100)).to.equal(30n);
  });

  it("rights policy - a donor gives to one (account, requester) once per window", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 1_000n);
    state.grant("b", 1_000n);
    policy.afterLocalDebit("a", 100n, 5_000);
    policy.afterLocalDebit("b", 100n, 5_000);
    expect(policy.donation("a", 1, 10n, 5_000)).to.equal(10n);
    expect(policy.donation("a", 1, 10n, 5_999)).to.equal(0n);
    // Other requesters and other accounts have their own windows.
    expect(policy.donation("a", 2, 10n, 5_999)).to.equal(10n);
    expect(policy.donation("b", 1, 10n, 5_999)).to.equal(10n);
    expect(policy.donation("a", 1, 10n, 6_000)).to.equal(10n);
  });

  it("rights policy - a region never donates to itself", () => {
    const { state, policy } = setup();
    seeRights(state, 0, 100n);
    expect(policy.donation("a", 0, 10n, 1)).to.equal(0n);
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
    expect(policy.afterLocalDebit("a", 10n, 1_000)).to.equal(150n);
  });

  it("rights policy - demand seen only at a peer means no ask here", () => {
    const { state, policy } = setup(["r0", "r1", "r2"]);
    seeRights(state, 1, 300n);
    policy.afterPeerDebit("a", 1, 10n, 1_000);
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
    expect(policy.askSize("a", 10n)).to.equal(150n);
    expect(policy.askSize("a", 400n)).to.equal(400n);
    expect(policy.askSize("unknown", 7n)).to.equal(7n);
  });
});
