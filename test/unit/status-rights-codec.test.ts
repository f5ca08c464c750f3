// Tests of the guarded status and rights codecs: round trips carry the cluster
// identity; decoders never throw and refuse foreign layouts, unknown or
// self-naming peers, sequences beyond safe integers and amounts beyond int64.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../src/core/amounts";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { NodeStatus, RightsReply, RightsRequest } from "../../src/generated/tally/replication/v1/replication";
import { clusterToWire } from "../../src/replication/inbound";
import {
  decodeRightsReply,
  decodeRightsRequest,
  encodeRightsReply,
  encodeRightsRequest,
  type RightsReplyContext,
  type RightsReplyValue,
  type RightsRequestContext,
  type RightsRequestValue,
} from "../../src/replication/rights-codec";
import { decodeNodeStatus, encodeNodeStatus, type NodeStatusValue, type StatusContext } from "../../src/replication/status-codec";
import {
  ACCOUNT_ID,
  accountIdArb,
  amountArb,
  byteMutationArb,
  bytesArb,
  checkSequenceValue,
  checkSlotValue,
  checkTimestampValue,
  CTX,
  EDGE_I64,
  EDGE_U64,
  ensure,
  expectRejected,
  hexDigestArb,
  HOSTILE_ACCOUNTS,
  HOSTILE_NAMES,
  int64Arb,
  mutateBytes,
  N,
  NAMES,
  neverThrows,
  REORDERED,
  REPLICAS,
  sequenceArb,
  slotValueArb,
  timestampArb,
  truncations,
} from "./support/codec-fixtures";

const IDENTITY = CTX.identity;
const WIDTH = N * N + N;
const WRONG_IDENTITIES = [undefined, clusterToWire(REORDERED), clusterToWire(clusterIdentity(["east", "west"])), { hash: IDENTITY.hash, replicas: ["east", "west", "mars"] }];

// ---- status ------------------------------------------------------------------

const STATUS_CTX: StatusContext = { ...CTX, self: "east" };

const statusArb: fc.Arbitrary<NodeStatusValue> = fc.record({
  replica: fc.constantFrom("west", "central"),
  ownSequence: sequenceArb,
  ownDigest: hexDigestArb,
  applied: fc.dictionary(fc.constantFrom(...NAMES), sequenceArb, { noNullPrototype: true }),
  sentAtMs: timestampArb,
});

function checkStatus(status: NodeStatusValue): void {
  ensure(REPLICAS.has(status.replica) && status.replica !== "east", "sender");
  checkSequenceValue(status.ownSequence);
  ensure(/^(?:[0-9a-f]{16})?$/.test(status.ownDigest), "digest");
  for (const [name, sequence] of Object.entries(status.applied)) {
    ensure(REPLICAS.has(name), "applied name");
    checkSequenceValue(sequence);
  }
  checkTimestampValue(status.sentAtMs);
}

function decodeStatusChecked(bytes: Uint8Array): boolean {
  const result = neverThrows(() => decodeNodeStatus(bytes, STATUS_CTX));
  if (result.ok) checkStatus(result.value);
  return result.ok;
}

describe("status codec - round trip and refusals", () => {
  it("decodes what encodeNodeStatus wrote", () => {
    fc.assert(
      fc.property(statusArb, (status) => {
        const result = decodeNodeStatus(encodeNodeStatus(status, IDENTITY), STATUS_CTX);
        if (!result.ok) expect.fail(result.reason);
        expect(result.value).to.deep.equal(status);
      }),
    );
  });

  it("refuses a 3-byte truncated status instead of throwing", () => {
    const bytes = encodeNodeStatus({ replica: "west", ownSequence: 5, ownDigest: "", applied: { east: 1 }, sentAtMs: 1 }, IDENTITY);
    expectRejected(decodeNodeStatus(bytes.subarray(0, 3), STATUS_CTX));
  });

  it("refuses sequences beyond Number.MAX_SAFE_INTEGER (2^64-1 would leave pending at 1.8e19)", () => {
    const wire = NodeStatus.decode(encodeNodeStatus({ replica: "west", ownSequence: 5, ownDigest: "", applied: {}, sentAtMs: 1 }, IDENTITY));
    for (const sequence of [UINT64_MAX, INT64_MAX, BigInt(Number.MAX_SAFE_INTEGER) + 1n]) {
      expectRejected(decodeNodeStatus(NodeStatus.encode({ ...wire, ownSequence: sequence }).finish(), STATUS_CTX), "field", "own_sequence");
      expectRejected(decodeNodeStatus(NodeStatus.encode({ ...wire, applied: { east: sequence } }).finish(), STATUS_CTX), "field", "applied[east]");
    }
    expect(decodeNodeStatus(NodeStatus.encode({ ...wire, ownSequence: BigInt(Number.MAX_SAFE_INTEGER) }).finish(), STATUS_CTX).ok).to.equal(true);
  });

  it("refuses a status from this node, from unknown replicas, or naming unknown replicas", () => {
    const wire = NodeStatus.decode(encodeNodeStatus({ replica: "west", ownSequence: 5, ownDigest: "", applied: {}, sentAtMs: 1 }, IDENTITY));
    expectRejected(decodeNodeStatus(NodeStatus.encode({ ...wire, replica: "east" }).finish(), STATUS_CTX), "sender", "this node");
    for (const replica of HOSTILE_NAMES) expectRejected(decodeNodeStatus(NodeStatus.encode({ ...wire, replica }).finish(), STATUS_CTX), "sender");
    expectRejected(decodeNodeStatus(NodeStatus.encode({ ...wire, applied: { mars: 1n } }).finish(), STATUS_CTX), "sender", "mars");
  });

  it("refuses a status of another layout, naming both lists", () => {
    const bytes = encodeNodeStatus({ replica: "west", ownSequence: 5, ownDigest: "", applied: {}, sentAtMs: 1 }, REORDERED);
    expectRejected(decodeNodeStatus(bytes, STATUS_CTX), "identity", "[west,east,central]", "[east,west,central]");
  });

  it("never throws on arbitrary bytes, truncations, byte and field mutations", () => {
    fc.assert(
      fc.property(bytesArb, (bytes) => {
        decodeStatusChecked(bytes);
      }),
      { numRuns: 1_000 },
    );
    fc.assert(
      fc.property(statusArb, byteMutationArb, (status, mutations) => {
        const bytes = encodeNodeStatus(status, IDENTITY);
        for (const cut of truncations(bytes)) decodeStatusChecked(cut);
        decodeStatusChecked(mutateBytes(bytes, mutations));
      }),
      { numRuns: 200 },
    );
    const mutation = fc.oneof(
      fc.record({ replica: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }),
      fc.record({ ownSequence: fc.constantFrom(...EDGE_U64) }),
      fc.record({ ownDigest: fc.constantFrom("", "zz", "0123456789abcdef", "0123456789ABCDEF") }),
      fc.record({ applied: fc.dictionary(fc.constantFrom(...NAMES, ...HOSTILE_NAMES), fc.constantFrom(...EDGE_U64)) }),
      fc.record({ sentAtMs: fc.constantFrom(...EDGE_I64) }),
      fc.record({ cluster: fc.constantFrom(...WRONG_IDENTITIES) }),
    );
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(statusArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (status, mutations) => {
        const wire = mutations.reduce<NodeStatus>((m, change) => ({ ...m, ...change }), NodeStatus.decode(encodeNodeStatus(status, IDENTITY)));
        seen[decodeStatusChecked(NodeStatus.encode(wire).finish()) ? "accepted" : "refused"]++;
      }),
      { numRuns: 1_000 },
    );
    expect(seen.accepted).to.be.greaterThan(0);
    expect(seen.refused).to.be.greaterThan(0);
  });
});

// ---- rights request ----------------------------------------------------------

const REQUEST_CTX: RightsRequestContext = { ...CTX, self: "east" };

const requestArb: fc.Arbitrary<RightsRequestValue> = fc.record({
  accountId: accountIdArb,
  requester: fc.constantFrom("west", "central"),
  deficit: amountArb,
});

function decodeRequestChecked(bytes: Uint8Array): void {
  const result = neverThrows(() => decodeRightsRequest(bytes, REQUEST_CTX));
  if (!result.ok) return;
  ensure(ACCOUNT_ID.test(result.value.accountId), "account id");
  ensure(result.value.requester === "west" || result.value.requester === "central", "requester");
  ensure(result.value.deficit >= 1n && result.value.deficit <= INT64_MAX, "deficit");
}

describe("rights request codec", () => {
  it("decodes what encodeRightsRequest wrote", () => {
    fc.assert(
      fc.property(requestArb, (request) => {
        const result = decodeRightsRequest(encodeRightsRequest(request, IDENTITY), REQUEST_CTX);
        if (!result.ok) expect.fail(result.reason);
        expect(result.value).to.deep.equal(request);
      }),
    );
  });

  it("refuses unknown or self requesters, zero and above-int64 deficits, bad accounts, other layouts", () => {
    const ok: RightsRequestValue = { accountId: "a", requester: "west", deficit: 5n };
    const wire = RightsRequest.decode(encodeRightsRequest(ok, IDENTITY));
    const again = (change: Partial<RightsRequest>): Uint8Array => RightsRequest.encode({ ...wire, ...change }).finish();
    expectRejected(decodeRightsRequest(again({ requester: "east" }), REQUEST_CTX), "sender", "this node");
    expectRejected(decodeRightsRequest(again({ requester: "mars" }), REQUEST_CTX), "sender", "mars");
    for (const deficit of [0n, INT64_MAX + 1n, UINT64_MAX]) expectRejected(decodeRightsRequest(again({ deficit }), REQUEST_CTX), "field", "deficit");
    expect(decodeRightsRequest(again({ deficit: INT64_MAX }), REQUEST_CTX).ok).to.equal(true);
    expectRejected(decodeRightsRequest(again({ accountId: "a b" }), REQUEST_CTX), "field", "account_id");
    expectRejected(decodeRightsRequest(encodeRightsRequest(ok, REORDERED), REQUEST_CTX), "identity", "[west,east,central]", "[east,west,central]");
    expectRejected(decodeRightsRequest(again({ cluster: undefined }), REQUEST_CTX), "identity");
  });

  it("never throws on arbitrary bytes, truncations, byte and field mutations", () => {
    fc.assert(fc.property(bytesArb, decodeRequestChecked), { numRuns: 1_000 });
    fc.assert(
      fc.property(requestArb, byteMutationArb, (request, mutations) => {
        const bytes = encodeRightsRequest(request, IDENTITY);
        for (const cut of truncations(bytes)) decodeRequestChecked(cut);
        decodeRequestChecked(mutateBytes(bytes, mutations));
      }),
      { numRuns: 200 },
    );
    const mutation = fc.oneof(
      fc.record({ requester: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }),
      fc.record({ deficit: fc.constantFrom(...EDGE_U64) }),
      fc.record({ accountId: fc.constantFrom(...HOSTILE_ACCOUNTS) }),
      fc.record({ cluster: fc.constantFrom(...WRONG_IDENTITIES) }),
    );
    fc.assert(
      fc.property(requestArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (request, mutations) => {
        const wire = mutations.reduce<RightsRequest>((m, change) => ({ ...m, ...change }), RightsRequest.decode(encodeRightsRequest(request, IDENTITY)));
        decodeRequestChecked(RightsRequest.encode(wire).finish());
      }),
      { numRuns: 1_000 },
    );
  });
});

// ---- rights reply --------------------------------------------------------------

const REPLY_CTX: RightsReplyContext = { ...CTX, self: "east", expectedDonor: "west" };
const DONOR = 1;
const SELF = 0;

/** A consistent reply from west to east: a grant with west's counter, or a refusal. */
const replyArb: fc.Arbitrary<RightsReplyValue> = fc.oneof(
  fc
    .record({ granted: amountArb, extra: fc.bigInt({ min: 0n, max: 1000n }), counter: fc.array(slotValueArb, { minLength: WIDTH, maxLength: WIDTH }), donorRights: int64Arb })
    .map(({ granted, extra, counter, donorRights }) => {
      const transferredTotal = granted + extra > INT64_MAX ? granted : granted + extra;
      const accountCounter = [...counter];
      accountCounter[DONOR * N + SELF] = transferredTotal;
      return { donor: "west", granted, transferredTotal, donorRights, accountCounter };
    }),
  int64Arb.map((donorRights) => ({ donor: "west", granted: 0n, transferredTotal: 0n, donorRights, accountCounter: [] })),
);

function decodeReplyChecked(bytes: Uint8Array): void {
  const result = neverThrows(() => decodeRightsReply(bytes, REPLY_CTX));
  if (!result.ok) return;
  const reply = result.value;
  ensure(reply.donor === "west", "donor");
  ensure(reply.granted >= 0n && reply.granted <= INT64_MAX, "granted");
  checkSlotValue(reply.transferredTotal);
  ensure(reply.transferredTotal >= reply.granted, "total covers grant");
  ensure(reply.accountCounter.length === 0 || reply.accountCounter.length === WIDTH, "counter length");
  ensure(reply.granted === 0n || reply.accountCounter.length === WIDTH, "grant carries counter");
  reply.accountCounter.forEach(checkSlotValue);
}

describe("rights reply codec", () => {
  it("decodes what encodeRightsReply wrote", () => {
    fc.assert(
      fc.property(replyArb, (reply) => {
        const result = decodeRightsReply(encodeRightsReply(reply, IDENTITY), REPLY_CTX);
        if (!result.ok) expect.fail(result.reason);
        expect(result.value).to.deep.equal(reply);
      }),
    );
  });

  it("refuses a donor that is unknown (\"mars\"), this node, or not the peer asked", () => {
    const refusal: RightsReplyValue = { donor: "west", granted: 0n, transferredTotal: 0n, donorRights: 0n, accountCounter: [] };
    for (const donor of ["mars", ...HOSTILE_NAMES]) {
      expectRejected(decodeRightsReply(encodeRightsReply({ ...refusal, donor }, IDENTITY), REPLY_CTX), "sender");
    }
    expectRejected(decodeRightsReply(encodeRightsReply({ ...refusal, donor: "east" }, IDENTITY), REPLY_CTX), "sender", "this node");
    expectRejected(decodeRightsReply(encodeRightsReply({ ...refusal, donor: "central" }, IDENTITY), REPLY_CTX), "sender", "not the peer asked");
  });

  it("refuses amounts beyond int64, a counter of the wrong length, and inconsistent totals", () => {
    const counter = Array.from({ length: WIDTH }, () => 0n);
    counter[DONOR * N + SELF] = 10n;
    const grant: RightsReplyValue = { donor: "west", granted: 10n, transferredTotal: 10n, donorRights: 0n, accountCounter: counter };
    expect(decodeRightsReply(encodeRightsReply(grant, IDENTITY), REPLY_CTX).ok).to.equal(true);
    const wire = RightsReply.decode(encodeRightsReply(grant, IDENTITY));
    const again = (change: Partial<RightsReply>): Uint8Array => RightsReply.encode({ ...wire, ...change }).finish();
    expectRejected(decodeRightsReply(again({ granted: INT64_MAX + 1n }), REPLY_CTX), "field", "granted");
    expectRejected(decodeRightsReply(again({ transferredTotal: UINT64_MAX }), REPLY_CTX), "field", "transferred_total");
    expectRejected(decodeRightsReply(again({ transferredTotal: 9n }), REPLY_CTX), "field", "below granted");
    expectRejected(decodeRightsReply(again({ accountCounter: counter.slice(1) }), REPLY_CTX), "field", "account_counter");
    expectRejected(decodeRightsReply(again({ accountCounter: [] }), REPLY_CTX), "field", "account_counter");
    expectRejected(decodeRightsReply(again({ accountCounter: counter.map(() => UINT64_MAX) }), REPLY_CTX), "field", "account_counter");
    expectRejected(decodeRightsReply(again({ transferredTotal: 11n }), REPLY_CTX), "field", "P[west][east]");
    expectRejected(decodeRightsReply(encodeRightsReply(grant, REORDERED), REPLY_CTX), "identity", "[west,east,central]", "[east,west,central]");
  });

  it("never throws on arbitrary bytes, truncations, byte and field mutations", () => {
    fc.assert(fc.property(bytesArb, decodeReplyChecked), { numRuns: 1_000 });
    fc.assert(
      fc.property(replyArb, byteMutationArb, (reply, mutations) => {
        const bytes = encodeRightsReply(reply, IDENTITY);
        for (const cut of truncations(bytes)) decodeReplyChecked(cut);
        decodeReplyChecked(mutateBytes(bytes, mutations));
      }),
      { numRuns: 100 },
    );
    const mutation = fc.oneof(
      fc.record({ donor: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }),
      fc.record({ granted: fc.constantFrom(...EDGE_U64) }),
      fc.record({ transferredTotal: fc.constantFrom(...EDGE_U64) }),
      fc.record({ donorRights: fc.constantFrom(...EDGE_I64) }),
      fc.record({ accountCounter: fc.array(fc.constantFrom(...EDGE_U64), { maxLength: WIDTH + 2 }) }),
      fc.record({ cluster: fc.constantFrom(...WRONG_IDENTITIES) }),
    );
    fc.assert(
      fc.property(replyArb, fc.array(mutation, { minLength: 1, maxLength: 3 }), (reply, mutations) => {
        const wire = mutations.reduce<RightsReply>((m, change) => ({ ...m, ...change }), RightsReply.decode(encodeRightsReply(reply, IDENTITY)));
        decodeReplyChecked(RightsReply.encode(wire).finish());
      }),
      { numRuns: 1_000 },
    );
  });
});
