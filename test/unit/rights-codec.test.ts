// Tests of the guarded rights batch codec (src/replication/rights-codec.ts):
// round trips carry the cluster identity; decoders never throw and refuse a
// batch whole for foreign layouts, unknown or self-naming peers, amounts
// beyond int64, repeated or unasked accounts, and inconsistent gifts.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../src/core/amounts";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { MAX_RIGHTS_BATCH, type RightsBatchAsk, type RightsBatchGift, type RightsGift } from "../../src/core/rights-messages";
import { RightsBatchReply, RightsBatchRequest } from "../../src/generated/tally/replication/v1/replication";
import { clusterToWire } from "../../src/replication/inbound";
import { decodeRightsReply, decodeRightsRequest, encodeRightsReply, encodeRightsRequest, type RightsReplyContext, type RightsRequestContext } from "../../src/replication/rights-codec";
import {
  ACCOUNT_ID,
  accountIdArb,
  amountArb,
  byteMutationArb,
  bytesArb,
  checkSlotValue,
  CTX,
  EDGE_I64,
  EDGE_U64,
  ensure,
  expectRejected,
  HOSTILE_ACCOUNTS,
  HOSTILE_NAMES,
  int64Arb,
  mutateBytes,
  N,
  NAMES,
  neverThrows,
  REORDERED,
  slotValueArb,
  truncations,
} from "./support/codec-fixtures";

const IDENTITY = CTX.identity;
const WIDTH = N * N + N;
const WRONG_IDENTITIES = [undefined, clusterToWire(REORDERED), clusterToWire(clusterIdentity(["east", "west"])), { hash: IDENTITY.hash, replicas: ["east", "west", "mars"] }];

// ---- request ---------------------------------------------------------------------

const REQUEST_CTX: RightsRequestContext = { ...CTX, self: "east" };

const requestArb: fc.Arbitrary<RightsBatchAsk> = fc.record({
  requester: fc.constantFrom("west", "central"),
  asks: fc.uniqueArray(fc.record({ accountId: accountIdArb, deficit: amountArb, urgent: fc.boolean() }), { minLength: 1, maxLength: 8, selector: (a) => a.accountId }),
});

function decodeRequestChecked(bytes: Uint8Array): boolean {
  const result = neverThrows(() => decodeRightsRequest(bytes, REQUEST_CTX));
  if (!result.ok) return false;
  ensure(result.value.requester === "west" || result.value.requester === "central", "requester");
  ensure(result.value.asks.length >= 1 && result.value.asks.length <= MAX_RIGHTS_BATCH, "batch size");
  ensure(new Set(result.value.asks.map((a) => a.accountId)).size === result.value.asks.length, "unique accounts");
  for (const ask of result.value.asks) {
    ensure(ACCOUNT_ID.test(ask.accountId), "account id");
    ensure(ask.deficit >= 1n && ask.deficit <= INT64_MAX, "deficit");
  }
  return true;
}

describe("rights codec - batch request", () => {
  it("rights codec - decodes what encodeRightsRequest wrote", () => {
    fc.assert(
      fc.property(requestArb, (request) => {
        const result = decodeRightsRequest(encodeRightsRequest(request, IDENTITY), REQUEST_CTX);
        expect(result).to.deep.equal({ ok: true, value: request });
      }),
    );
  });

  it("rights codec - refuses the whole batch for one bad entry, a bad sender, an empty or oversized batch, another layout", () => {
    const ok: RightsBatchAsk = { requester: "west", asks: [{ accountId: "a", deficit: 5n, urgent: true }, { accountId: "b", deficit: 7n, urgent: false }] };
    expect(decodeRightsRequest(encodeRightsRequest(ok, IDENTITY), REQUEST_CTX).ok).to.equal(true);
    const wire = RightsBatchRequest.decode(encodeRightsRequest(ok, IDENTITY));
    const again = (change: Partial<RightsBatchRequest>): Uint8Array => RightsBatchRequest.encode({ ...wire, ...change }).finish();
    const withSecond = (entry: Partial<RightsBatchRequest["asks"][number]>): Uint8Array => again({ asks: [wire.asks[0]!, { ...wire.asks[1]!, ...entry }] });
    expectRejected(decodeRightsRequest(again({ requester: "east" }), REQUEST_CTX), "sender", "this node");
    expectRejected(decodeRightsRequest(again({ requester: "mars" }), REQUEST_CTX), "sender", "mars");
    for (const deficit of [0n, INT64_MAX + 1n, UINT64_MAX]) expectRejected(decodeRightsRequest(withSecond({ deficit }), REQUEST_CTX), "field", "asks[1].deficit");
    expect(decodeRightsRequest(withSecond({ deficit: INT64_MAX }), REQUEST_CTX).ok).to.equal(true);
    expectRejected(decodeRightsRequest(withSecond({ accountId: "a b" }), REQUEST_CTX), "field", "asks[1].account_id");
    expectRejected(decodeRightsRequest(withSecond({ accountId: "a" }), REQUEST_CTX), "field", "twice");
    expectRejected(decodeRightsRequest(again({ asks: [] }), REQUEST_CTX), "field", "empty");
    const tooMany = Array.from({ length: MAX_RIGHTS_BATCH + 1 }, (_, k) => ({ accountId: `acct-${k}`, deficit: 1n, urgent: false }));
    expectRejected(decodeRightsRequest(again({ asks: tooMany }), REQUEST_CTX), "field", "at most");
    expectRejected(decodeRightsRequest(encodeRightsRequest(ok, REORDERED), REQUEST_CTX), "identity", "[west,east,central]", "[east,west,central]");
    expectRejected(decodeRightsRequest(again({ cluster: undefined }), REQUEST_CTX), "identity");
  });

  it("rights codec - never throws on arbitrary bytes, truncations, byte and field mutations", () => {
    fc.assert(fc.property(bytesArb, (bytes) => void decodeRequestChecked(bytes)), { numRuns: 1_000 });
    fc.assert(
      fc.property(requestArb, byteMutationArb, (request, mutations) => {
        const bytes = encodeRightsRequest(request, IDENTITY);
        for (const cut of truncations(bytes)) decodeRequestChecked(cut);
        decodeRequestChecked(mutateBytes(bytes, mutations));
      }),
      { numRuns: 200 },
    );
    const entryMutation = fc.oneof(
      fc.record({ deficit: fc.constantFrom(...EDGE_U64) }),
      fc.record({ accountId: fc.constantFrom(...HOSTILE_ACCOUNTS) }),
    );
    const mutation = fc.oneof(
      fc.record({ requester: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }),
      fc.record({ cluster: fc.constantFrom(...WRONG_IDENTITIES) }),
    );
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(requestArb, fc.array(mutation, { maxLength: 2 }), fc.array(entryMutation, { maxLength: 2 }), (request, mutations, entryMutations) => {
        const decoded = RightsBatchRequest.decode(encodeRightsRequest(request, IDENTITY));
        const asks = decoded.asks.map((a, k) => ({ ...a, ...(entryMutations[k] ?? {}) }));
        const wire = mutations.reduce<RightsBatchRequest>((m, change) => ({ ...m, ...change }), { ...decoded, asks });
        if (decodeRequestChecked(RightsBatchRequest.encode(wire).finish())) seen.accepted++;
        else seen.refused++;
      }),
      { numRuns: 1_000 },
    );
    expect(seen.accepted).to.be.greaterThan(0);
    expect(seen.refused).to.be.greaterThan(0);
  });
});

// ---- reply -------------------------------------------------------------------------

const REPLY_CTX: RightsReplyContext = { ...CTX, self: "east", expectedDonor: "west" };
const DONOR = 1;
const SELF = 0;

/** A consistent gift from west to east: a grant with west's counter, or a refusal. */
const giftArb = (accountId: string): fc.Arbitrary<RightsGift> =>
  fc.oneof(
    fc
      .record({ granted: amountArb, extra: fc.bigInt({ min: 0n, max: 1000n }), counter: fc.array(slotValueArb, { minLength: WIDTH, maxLength: WIDTH }), donorRights: int64Arb })
      .map(({ granted, extra, counter, donorRights }) => {
        const transferredTotal = granted + extra > INT64_MAX ? granted : granted + extra;
        const accountCounter = [...counter];
        accountCounter[DONOR * N + SELF] = transferredTotal;
        return { accountId, granted, transferredTotal, donorRights: donorRights < -INT64_MAX ? 0n : donorRights, accountCounter };
      }),
    int64Arb.map((donorRights) => ({ accountId, granted: 0n, transferredTotal: 0n, donorRights: donorRights < -INT64_MAX ? 0n : donorRights, accountCounter: [] })),
  );

const ASKED = ["a", "b", "c"];
const replyArb: fc.Arbitrary<RightsBatchGift> = fc
  .subarray(ASKED, { minLength: 1 })
  .chain((accounts) => fc.tuple(...accounts.map(giftArb)))
  .map((gifts) => ({ donor: "west", gifts }));

function decodeReplyChecked(bytes: Uint8Array): boolean {
  const result = neverThrows(() => decodeRightsReply(bytes, REPLY_CTX, new Set(ASKED)));
  if (!result.ok) return false;
  ensure(result.value.donor === "west", "donor");
  ensure(new Set(result.value.gifts.map((g) => g.accountId)).size === result.value.gifts.length, "unique accounts");
  for (const gift of result.value.gifts) {
    ensure(ASKED.includes(gift.accountId), "asked account");
    ensure(gift.granted >= 0n && gift.granted <= INT64_MAX, "granted");
    checkSlotValue(gift.transferredTotal);
    ensure(gift.transferredTotal >= gift.granted, "total covers grant");
    ensure(gift.accountCounter.length === 0 || gift.accountCounter.length === WIDTH, "counter length");
    ensure(gift.granted === 0n || gift.accountCounter.length === WIDTH, "grant carries counter");
    ensure(gift.donorRights >= -INT64_MAX, "donor rights");
    gift.accountCounter.forEach(checkSlotValue);
  }
  return true;
}

describe("rights codec - batch reply", () => {
  it("rights codec - decodes what encodeRightsReply wrote", () => {
    fc.assert(
      fc.property(replyArb, (reply) => {
        const result = decodeRightsReply(encodeRightsReply(reply, IDENTITY), REPLY_CTX, new Set(ASKED));
        expect(result).to.deep.equal({ ok: true, value: reply });
      }),
    );
  });

  it("rights codec - refuses a donor that is unknown, this node, or not the peer asked", () => {
    const refusal: RightsBatchGift = { donor: "west", gifts: [{ accountId: "a", granted: 0n, transferredTotal: 0n, donorRights: 0n, accountCounter: [] }] };
    for (const donor of ["mars", "east", "central"]) expectRejected(decodeRightsReply(encodeRightsReply({ ...refusal, donor }, IDENTITY), REPLY_CTX, new Set(ASKED)), "sender");
  });

  it("rights codec - a gift may name a lot row of an asked account, never a lot of an unasked one", () => {
    const counter = Array.from({ length: WIDTH }, () => 0n);
    counter[DONOR * N + SELF] = 10n;
    const lotGift = (accountId: string): RightsBatchGift => ({ donor: "west", gifts: [{ accountId, granted: 10n, transferredTotal: 10n, donorRights: 0n, accountCounter: counter }] });
    const asked = new Set(["a"]);
    expect(decodeRightsReply(encodeRightsReply(lotGift("a#p5.e900000.s0"), IDENTITY), REPLY_CTX, asked).ok).to.equal(true);
    expectRejected(decodeRightsReply(encodeRightsReply(lotGift("b#p5.e900000.s0"), IDENTITY), REPLY_CTX, asked), "field", "was not asked");
    expectRejected(decodeRightsReply(encodeRightsReply(lotGift("a#p05.e900000.s0"), IDENTITY), REPLY_CTX, asked), "field", "not canonical");
  });

  it("rights codec - refuses the whole batch for one inconsistent gift, an unasked or repeated account", () => {
    const counter = Array.from({ length: WIDTH }, () => 0n);
    counter[DONOR * N + SELF] = 10n;
    const good: RightsGift = { accountId: "a", granted: 10n, transferredTotal: 10n, donorRights: 0n, accountCounter: counter };
    const refusal: RightsGift = { accountId: "b", granted: 0n, transferredTotal: 0n, donorRights: 5n, accountCounter: [] };
    const batch: RightsBatchGift = { donor: "west", gifts: [refusal, good] };
    const asked = new Set(ASKED);
    expect(decodeRightsReply(encodeRightsReply(batch, IDENTITY), REPLY_CTX, asked).ok).to.equal(true);
    const wire = RightsBatchReply.decode(encodeRightsReply(batch, IDENTITY));
    const withSecond = (change: Partial<RightsBatchReply["gifts"][number]>): Uint8Array =>
      RightsBatchReply.encode({ ...wire, gifts: [wire.gifts[0]!, { ...wire.gifts[1]!, ...change }] }).finish();
    expectRejected(decodeRightsReply(withSecond({ granted: INT64_MAX + 1n }), REPLY_CTX, asked), "field", "gifts[1].granted");
    expectRejected(decodeRightsReply(withSecond({ transferredTotal: UINT64_MAX }), REPLY_CTX, asked), "field", "transferred_total");
    expectRejected(decodeRightsReply(withSecond({ transferredTotal: 9n }), REPLY_CTX, asked), "field", "below granted");
    expectRejected(decodeRightsReply(withSecond({ accountCounter: counter.slice(1) }), REPLY_CTX, asked), "field", "account_counter");
    expectRejected(decodeRightsReply(withSecond({ accountCounter: [] }), REPLY_CTX, asked), "field", "account_counter");
    expectRejected(decodeRightsReply(withSecond({ transferredTotal: 11n }), REPLY_CTX, asked), "field", "P[west][east]");
    expectRejected(decodeRightsReply(withSecond({ donorRights: -(1n << 63n) }), REPLY_CTX, asked), "field", "donor_rights");
    expectRejected(decodeRightsReply(withSecond({ accountId: "b" }), REPLY_CTX, asked), "field", "twice");
    expectRejected(decodeRightsReply(withSecond({ accountId: "zz" }), REPLY_CTX, asked), "field", "not asked");
    expectRejected(decodeRightsReply(encodeRightsReply(batch, REORDERED), REPLY_CTX, asked), "identity", "[west,east,central]", "[east,west,central]");
  });

  it("rights codec - never throws on arbitrary bytes, truncations, byte and field mutations", () => {
    fc.assert(fc.property(bytesArb, (bytes) => void decodeReplyChecked(bytes)), { numRuns: 1_000 });
    fc.assert(
      fc.property(replyArb, byteMutationArb, (reply, mutations) => {
        const bytes = encodeRightsReply(reply, IDENTITY);
        for (const cut of truncations(bytes)) decodeReplyChecked(cut);
        decodeReplyChecked(mutateBytes(bytes, mutations));
      }),
      { numRuns: 100 },
    );
    const giftMutation = fc.oneof(
      fc.record({ accountId: fc.constantFrom(...HOSTILE_ACCOUNTS, ...ASKED) }),
      fc.record({ granted: fc.constantFrom(...EDGE_U64) }),
      fc.record({ transferredTotal: fc.constantFrom(...EDGE_U64) }),
      fc.record({ donorRights: fc.constantFrom(...EDGE_I64) }),
      fc.record({ accountCounter: fc.array(fc.constantFrom(...EDGE_U64), { maxLength: WIDTH + 2 }) }),
    );
    const mutation = fc.oneof(fc.record({ donor: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }), fc.record({ cluster: fc.constantFrom(...WRONG_IDENTITIES) }));
    fc.assert(
      fc.property(replyArb, fc.array(mutation, { maxLength: 2 }), fc.array(giftMutation, { minLength: 1, maxLength: 3 }), (reply, mutations, giftMutations) => {
        const decoded = RightsBatchReply.decode(encodeRightsReply(reply, IDENTITY));
        const gifts = decoded.gifts.map((g, k) => ({ ...g, ...(giftMutations[k] ?? {}) }));
        const wire = mutations.reduce<RightsBatchReply>((m, change) => ({ ...m, ...change }), { ...decoded, gifts });
        decodeReplyChecked(RightsBatchReply.encode(wire).finish());
      }),
      { numRuns: 1_000 },
    );
  });
});
