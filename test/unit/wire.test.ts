// The mappings between core values and the public tally.v1 messages
// (src/server/wire.ts): every enum value has its own wire value, policies
// round-trip, and a policy mode a client may send but the core cannot hold is
// an INVALID_ARGUMENT naming the field.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX } from "../../src/core/amounts";
import { DebitOutcome, type Answer } from "../../src/core/answer";
import { InvalidArgumentError } from "../../src/core/errors";
import { Mode, type Policy } from "../../src/core/policy";
import { NO_EXPIRY } from "../../src/core/lots";
import { DebitOutcome as WireOutcome } from "../../src/generated/tally/v1/balances";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import { toWireOutcome } from "../../src/replication/delta-codec";
import {
  accountPolicyFromWire,
  accountPolicyToWire,
  balanceToWire,
  debitResponse,
  modeToWire,
  outcomeToWire,
  peerToWire,
} from "../../src/server/wire";

/** The numeric members of a TypeScript enum. */
function members(e: Record<string, string | number>): number[] {
  return Object.values(e).filter((v): v is number => typeof v === "number");
}

function invalidArgument(run: () => unknown): InvalidArgumentError {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return error;
    throw error;
  }
  throw new Error("expected an InvalidArgumentError");
}

const policies = fc.oneof(
  fc.record({ mode: fc.constant(Mode.Strict), overdraftLimit: fc.constant(0n), lowWaterMark: fc.bigInt(0n, INT64_MAX) }),
  fc.record({ mode: fc.constant(Mode.Overdraft), overdraftLimit: fc.bigInt(0n, INT64_MAX), lowWaterMark: fc.bigInt(0n, INT64_MAX) }),
);

describe("wire - outcomes", () => {
  it("wire - every debit outcome maps to its own wire value, named alike and never UNSPECIFIED", () => {
    const expected: Record<string, string> = {
      Approved: "DEBIT_OUTCOME_APPROVED",
      InsufficientCredit: "DEBIT_OUTCOME_INSUFFICIENT_CREDIT",
      ApprovedWithOverdraft: "DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT",
    };
    const outcomes = members(DebitOutcome);
    expect(outcomes).to.have.length(Object.keys(expected).length);
    const seen = new Set<WireOutcome>();
    for (const outcome of outcomes) {
      const wire = outcomeToWire(outcome);
      expect(WireOutcome[wire]).to.equal(expected[DebitOutcome[outcome] ?? ""]);
      expect(wire).to.not.equal(WireOutcome.DEBIT_OUTCOME_UNSPECIFIED);
      seen.add(wire);
    }
    expect(seen.size).to.equal(outcomes.length);
  });

  it("wire - the API and the replication log encode outcomes alike", () => {
    for (const outcome of members(DebitOutcome)) expect(outcomeToWire(outcome)).to.equal(toWireOutcome(outcome));
  });

  it("wire - a debit response carries the answer's values and whether it was replayed", () => {
    const answer: Answer = { kind: "debit", outcome: DebitOutcome.ApprovedWithOverdraft, balance: -(1n << 60n), localRights: (1n << 62n) + 1n };
    expect(debitResponse(answer, true)).to.deep.equal({
      outcome: WireOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT,
      balance: -(1n << 60n),
      localRights: (1n << 62n) + 1n,
      replayed: true,
    });
  });
});

describe("wire - policies", () => {
  it("wire - every mode maps to its own wire mode, never UNSPECIFIED", () => {
    const modes = members(Mode);
    const wire = modes.map(modeToWire);
    expect(wire).to.deep.equal([PolicyMode.POLICY_MODE_STRICT, PolicyMode.POLICY_MODE_OVERDRAFT]);
    expect(new Set(wire).size).to.equal(modes.length);
  });

  it("wire - every valid policy round-trips through the wire exactly", () => {
    fc.assert(
      fc.property(policies, (policy: Policy) => {
        expect(accountPolicyFromWire(accountPolicyToWire(policy))).to.deep.equal(policy);
      }),
    );
  });

  const badModes: ReadonlyArray<[string, PolicyMode]> = [
    ["UNSPECIFIED", PolicyMode.POLICY_MODE_UNSPECIFIED],
    ["UNRECOGNIZED", PolicyMode.UNRECOGNIZED],
    ["a value from a newer client (7)", 7 as PolicyMode],
  ];
  for (const [name, mode] of badModes) {
    it(`wire - a policy mode ${name} is an InvalidArgumentError naming policy.mode`, () => {
      const error = invalidArgument(() => accountPolicyFromWire({ mode, overdraftLimit: 0n, lowWaterMark: 0n }));
      expect(error.field).to.equal("policy.mode");
      expect(error.message).to.match(/^policy\.mode: /);
    });
  }

  it("wire - errors name the field the caller gives", () => {
    expect(invalidArgument(() => accountPolicyFromWire({ mode: PolicyMode.POLICY_MODE_UNSPECIFIED, overdraftLimit: 0n, lowWaterMark: 0n }, "default_policy")).field).to.equal(
      "default_policy.mode",
    );
    expect(invalidArgument(() => accountPolicyFromWire(undefined, "default_policy")).field).to.equal("default_policy");
  });

  it("wire - a missing policy is an InvalidArgumentError naming policy", () => {
    expect(invalidArgument(() => accountPolicyFromWire(undefined)).field).to.equal("policy");
  });

  it("wire - a policy the core rejects names the offending field", () => {
    const strictWithLimit = invalidArgument(() => accountPolicyFromWire({ mode: PolicyMode.POLICY_MODE_STRICT, overdraftLimit: 5n, lowWaterMark: 0n }));
    expect(strictWithLimit.field).to.equal("policy.overdraft_limit");
    const negativeMark = invalidArgument(() => accountPolicyFromWire({ mode: PolicyMode.POLICY_MODE_OVERDRAFT, overdraftLimit: 5n, lowWaterMark: -1n }));
    expect(negativeMark.field).to.equal("policy.low_water_mark");
  });
});

describe("wire - views", () => {
  it("wire - a balance view keeps every region's part and converts numbers to int64", () => {
    const response = balanceToWire(
      "acct",
      {
        balance: 70n,
        localRights: 20n,
        held: 7n,
        regions: [
          { replica: "east", granted: 100n, debited: 30n, rights: 20n, appliedSequence: 12, stalenessMs: 0, held: 7n, refunded: 2n },
          { replica: "west", granted: 0n, debited: 0n, rights: 50n, appliedSequence: 9, stalenessMs: 250, held: 0n, refunded: 0n },
        ],
        policy: { mode: Mode.Overdraft, overdraftLimit: 10n, lowWaterMark: 5n },
        settled: { balance: 60n, settlementId: 3n },
        lots: [],
      },
    );
    expect(response).to.deep.equal({
      accountId: "acct",
      balance: 70n,
      localRights: 20n,
      regions: [
        { region: "east", granted: 100n, debited: 30n, rights: 20n, appliedSequence: 12n, stalenessMs: 0n, held: 7n, refunded: 2n },
        { region: "west", granted: 0n, debited: 0n, rights: 50n, appliedSequence: 9n, stalenessMs: 250n, held: 0n, refunded: 0n },
      ],
      policy: { mode: PolicyMode.POLICY_MODE_OVERDRAFT, overdraftLimit: 10n, lowWaterMark: 5n },
      settledBalance: 60n,
      settlementId: 3n,
      held: 7n,
      lots: [],
    });
  });

  it("wire - a balance view lists lots: the base lot as \"base\", no expiry as 0, spendable only when started and live", () => {
    const base = { rowId: "acct", key: "p50.enever.s0", terms: { priority: 50, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY } };
    const promo = { rowId: "acct#p10.e9000.s0", key: "p10.e9000.s0", terms: { priority: 10, effectiveAtMs: 0, expiresAtMs: 9000 } };
    const response = balanceToWire("acct", {
      balance: 30n,
      localRights: 5n,
      held: 0n,
      regions: [],
      policy: { mode: Mode.Strict, overdraftLimit: 0n, lowWaterMark: 0n },
      settled: { balance: 0n, settlementId: 0n },
      lots: [
        { ...promo, remaining: 25n, rights: 25n, spendable: false, expired: true },
        { ...base, remaining: 5n, rights: 5n, spendable: true, expired: false },
      ],
    });
    expect(response.lots).to.deep.equal([
      { key: "p10.e9000.s0", terms: { priority: 10, effectiveAtMs: 0n, expiresAtMs: 9000n }, remaining: 25n, localRights: 25n, spendableHere: 0n, expired: true },
      { key: "base", terms: { priority: 50, effectiveAtMs: 0n, expiresAtMs: 0n }, remaining: 5n, localRights: 5n, spendableHere: 5n, expired: false },
    ]);
  });

  it("wire - a peer view converts its counters to int64", () => {
    expect(
      peerToWire({
        region: "west",
        appliedSequence: 7,
        reportedSequence: 9,
        pending: 2,
        lagSeconds: 0.5,
        converged: true,
        digest: "ab",
        lastHeardMs: 1_700_000_000_000,
        reachable: true,
      }),
    ).to.deep.equal({
      region: "west",
      appliedSequence: 7n,
      reportedSequence: 9n,
      pending: 2n,
      lagSeconds: 0.5,
      converged: true,
      digest: "ab",
      lastHeardMs: 1_700_000_000_000n,
    });
  });
});
