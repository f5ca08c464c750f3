// Settled totals kept in memory from the settlements' stream: the latest
// settlement wins whatever the delivery order, and a settlement publishes only
// the accounts whose totals it changes.

import { expect } from "chai";
import fc from "fast-check";
import { SettledBalances } from "../../src/core/settled-balances";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { ReplicaSet } from "../../src/core/replica-set";
import { inboundContext } from "../../src/replication/inbound";
import { decodeSettledBatch, encodeSettledBatch } from "../../src/replication/settled-codec";

describe("settled balances - in memory", () => {
  it("settled balances - an account never settled reads as undefined; applied totals read back as granted − debited", () => {
    const settled = new SettledBalances();
    expect(settled.get("a")).to.equal(undefined);
    expect(settled.apply("a", { granted: 100n, debited: 30n, settlementId: 4n })).to.equal(true);
    expect(settled.get("a")).to.deep.equal({ balance: 70n, settlementId: 4n });
  });

  it("settled balances - an older settlement never overwrites a newer one, in any delivery order", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ id: fc.bigInt({ min: 1n, max: 50n }), granted: fc.bigInt({ min: 0n, max: 1000n }) }), { minLength: 1, maxLength: 20 }), (updates) => {
        const settled = new SettledBalances();
        for (const u of updates) settled.apply("a", { granted: u.granted, debited: 0n, settlementId: u.id });
        const newest = updates.reduce((best, u) => (u.id > best.id ? u : best));
        const first = updates.find((u) => u.id === newest.id)!;
        expect(settled.get("a")).to.deep.equal({ balance: first.granted, settlementId: newest.id });
      }),
    );
  });

  it("settled balances - differs tells which accounts a settlement must publish", () => {
    const settled = new SettledBalances();
    expect(settled.differs("new", 0n, 0n)).to.equal(false);
    expect(settled.differs("new", 5n, 0n)).to.equal(true);
    settled.apply("a", { granted: 10n, debited: 5n, settlementId: 1n });
    expect(settled.differs("a", 10n, 5n)).to.equal(false);
    expect(settled.differs("a", 11n, 6n)).to.equal(true);
  });

  it("settled balances - the columns grow past their first capacity and keep every account", () => {
    const settled = new SettledBalances();
    for (let i = 0; i < 5_000; i++) settled.apply(`acct-${i}`, { granted: BigInt(i), debited: 0n, settlementId: 1n });
    expect(settled.size).to.equal(5_000);
    expect(settled.get("acct-4321")).to.deep.equal({ balance: 4321n, settlementId: 1n });
  });
});

describe("settled balances - codec", () => {
  const replicas = new ReplicaSet(["east", "west", "central"]);
  const ctx = inboundContext(replicas);

  it("settled balances - a batch round-trips; another cluster's batch and negative totals are refused", () => {
    const batch = { settlementId: 7n, accounts: [{ accountId: "a", granted: 10n, debited: 3n }] };
    const decoded = decodeSettledBatch(encodeSettledBatch(batch, clusterIdentity(replicas.names)), ctx);
    expect(decoded.ok && decoded.value).to.deep.equal(batch);
    const foreign = decodeSettledBatch(encodeSettledBatch(batch, clusterIdentity(["west", "east", "central"])), ctx);
    expect(foreign.ok).to.equal(false);
    const negative = decodeSettledBatch(encodeSettledBatch({ settlementId: 7n, accounts: [{ accountId: "a", granted: -1n, debited: 0n }] }, clusterIdentity(replicas.names)), ctx);
    expect(negative.ok).to.equal(false);
    expect(decodeSettledBatch(new Uint8Array([1, 2, 3]), ctx).ok).to.equal(false);
  });
});
