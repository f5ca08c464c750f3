// Wire requests to checked domain values (src/server/request-validation.ts):
// batch limits with field names carrying the item's index, and how long a
// debit may wait for rights given the client's deadline.

import { expect } from "chai";
import { InvalidArgumentError } from "../../src/core/errors";
import type { DebitRequest, GrantRequest } from "../../src/generated/tally/v1/balances";
import { NO_EXPIRY } from "../../src/core/lots";
import { LimitExceededError } from "../../src/server/status-mapping";
import { batchItems, debitItem, grantInputs, MAX_BATCH_ITEMS, waitMs } from "../../src/server/request-validation";

function request(i: number, overrides: Partial<DebitRequest> = {}): DebitRequest {
  return { accountId: `acct-${i}`, amount: BigInt(i + 1), requestId: `req-${i}`, maxWaitMs: 0, ...overrides };
}

function fieldOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidArgumentError) return error.field;
    throw error;
  }
  throw new Error("expected an InvalidArgumentError");
}

describe("request validation - batch items", () => {
  it("request validation - an empty batch is an InvalidArgumentError naming debits", () => {
    expect(fieldOf(() => batchItems([]))).to.equal("debits");
  });

  it("request validation - a batch of the maximum size is accepted, one more is LimitExceededError", () => {
    const full = Array.from({ length: MAX_BATCH_ITEMS }, (_, i) => request(i));
    expect(batchItems(full)).to.have.length(10_000);
    expect(() => batchItems([...full, request(MAX_BATCH_ITEMS)])).to.throw(LimitExceededError, "10001 items; at most 10000");
  });

  it("request validation - batch items keep their order and values", () => {
    expect(batchItems([request(0), request(1)])).to.deep.equal([
      { accountId: "acct-0", amount: 1n, requestId: "req-0" },
      { accountId: "acct-1", amount: 2n, requestId: "req-1" },
    ]);
  });

  const badFields: ReadonlyArray<[string, Partial<DebitRequest>]> = [
    ["account_id", { accountId: "has space" }],
    ["amount", { amount: 0n }],
    ["amount", { amount: 1n << 63n }],
    ["request_id", { requestId: "" }],
  ];
  for (const [field, override] of badFields) {
    it(`request validation - a bad ${field} in a batch is named with its index (${JSON.stringify(override, (_, v: unknown) => (typeof v === "bigint" ? `${v}` : v))})`, () => {
      const items = [request(0), request(1), request(2, override)];
      expect(fieldOf(() => batchItems(items))).to.equal(`debits[2].${field}`);
    });
  }

  it("request validation - a single debit names its fields without a prefix", () => {
    expect(fieldOf(() => debitItem(request(0, { amount: -5n })))).to.equal("amount");
  });
});

describe("request validation - wait for rights", () => {
  const farAway = () => Date.now() + 3_600_000;

  it("request validation - no requested wait takes the default", () => {
    expect(waitMs(0, 50, 2_000, farAway())).to.equal(50);
  });

  it("request validation - a requested wait is capped at the maximum", () => {
    expect(waitMs(10_000, 50, 2_000, farAway())).to.equal(2_000);
    expect(waitMs(700, 50, 2_000, farAway())).to.equal(700);
  });

  it("request validation - with no deadline (Infinity) the wanted wait is kept", () => {
    expect(waitMs(700, 50, 2_000, Infinity)).to.equal(700);
    expect(waitMs(0, 50, 2_000, new Date(NaN))).to.equal(50);
  });

  it("request validation - a close deadline leaves room to answer before it", () => {
    const before = Date.now();
    const deadline = before + 100;
    const wait = waitMs(2_000, 50, 2_000, new Date(deadline));
    const after = Date.now();
    // 5 ms before the deadline as seen at the call, however slow this machine.
    expect(wait).to.be.at.most(deadline - before - 5);
    expect(wait).to.be.at.least(Math.max(0, deadline - after - 5));
  });

  it("request validation - a deadline already passed (or too close) allows no wait", () => {
    expect(waitMs(2_000, 50, 2_000, Date.now() - 1_000)).to.equal(0);
    expect(waitMs(0, 50, 2_000, new Date(Date.now() + 2))).to.equal(0);
  });
});

describe("request validation - grants with lot terms", () => {
  const GUARD = 5_000;
  const grant = (overrides: Partial<GrantRequest> = {}): GrantRequest => ({ accountId: "acct", amount: 10n, requestId: "g-1", ...overrides });

  it("request validation - a grant without lot terms is a base-lot grant", () => {
    expect(grantInputs(grant(), GUARD)).to.deep.equal({ accountId: "acct", amount: 10n, requestId: "g-1", lot: undefined });
  });

  it("request validation - a lot's unset terms are zero: priority 0, effective at once, expiry 0 means never", () => {
    expect(grantInputs(grant({ lot: { priority: 7, effectiveAtMs: 0n, expiresAtMs: 0n } }), GUARD).lot).to.deep.equal({ priority: 7, effectiveAtMs: 0, expiresAtMs: NO_EXPIRY });
    expect(grantInputs(grant({ lot: { priority: 0, effectiveAtMs: 100n, expiresAtMs: 0n } }), GUARD).lot).to.deep.equal({ priority: 0, effectiveAtMs: 100, expiresAtMs: NO_EXPIRY });
    expect(grantInputs(grant({ lot: { priority: 50, effectiveAtMs: 0n, expiresAtMs: 9_000n } }), GUARD).lot).to.deep.equal({ priority: 50, effectiveAtMs: 0, expiresAtMs: 9_000 });
  });

  it("request validation - bad terms are InvalidArgumentErrors naming the wire field", () => {
    const lot = (priority: number, effectiveAtMs: bigint, expiresAtMs: bigint): Partial<GrantRequest> => ({ lot: { priority, effectiveAtMs, expiresAtMs } });
    expect(fieldOf(() => grantInputs(grant(lot(-1, 0n, 0n)), GUARD))).to.equal("lot.priority");
    expect(fieldOf(() => grantInputs(grant(lot(1_000_001, 0n, 0n)), GUARD))).to.equal("lot.priority");
    expect(fieldOf(() => grantInputs(grant(lot(1, -1n, 0n)), GUARD))).to.equal("lot.effective_at_ms");
    expect(fieldOf(() => grantInputs(grant(lot(1, 1n << 53n, 0n)), GUARD))).to.equal("lot.effective_at_ms");
    expect(fieldOf(() => grantInputs(grant(lot(1, 0n, -1n)), GUARD))).to.equal("lot.expires_at_ms");
    expect(fieldOf(() => grantInputs(grant(lot(1, 1_000n, 6_000n)), GUARD))).to.equal("lot.expires_at_ms");
    expect(fieldOf(() => grantInputs(grant({ accountId: "acct#p1.enever.s0", ...lot(1, 0n, 0n) }), GUARD))).to.equal("account_id");
  });
});
