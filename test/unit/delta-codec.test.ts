// Tests of the guarded stream-message codec: a delta round-trips with its
// cluster identity, and whatever bytes arrive, decodeDelta never throws and
// accepts only deltas of this cluster's layout from the stream's owner with
// every field in range.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../src/core/amounts";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { ReplicaSet } from "../../src/core/replica-set";
import {
  decodeDelta,
  decodeDeltaOrThrow,
  encodeDelta,
  fromWireOutcome,
  requestFromWire,
  type DecodedDelta,
  type DeltaContext,
} from "../../src/replication/delta-codec";
import { clusterToWire, InboundRejectedError } from "../../src/replication/inbound";
import { ReplicaDelta } from "../../src/generated/tally/replication/v1/replication";
import {
  ACCOUNT_ID,
  batchArb,
  byteMutationArb,
  bytesArb,
  checkPolicy,
  checkRequest,
  checkSlotValue,
  checkTimestampValue,
  CTX,
  EDGE_I64,
  ensure,
  EDGE_U64,
  expectRejected,
  hexDigestArb,
  HOSTILE_ACCOUNTS,
  HOSTILE_NAMES,
  mutateBytes,
  N,
  neverThrows,
  REORDERED,
  REPLICAS,
  timestampArb,
  truncations,
} from "./support/codec-fixtures";

const WEST = 1;
const DELTA_CTX: DeltaContext = { ...CTX, expectedWriter: "west" };

function checkDelta(delta: DecodedDelta): void {
  ensure(delta.writer === WEST, "writer");
  checkTimestampValue(delta.publishedAtMs);
  ensure(/^(?:[0-9a-f]{16})?$/.test(delta.rowDigest), "row digest");
  for (const s of delta.slots) {
    ensure(ACCOUNT_ID.test(s.accountId), "slot account id");
    ensure(s.writer === WEST, "slot writer");
    ensure(Number.isInteger(s.column) && s.column >= 0 && s.column <= N + 3, "slot column");
    checkSlotValue(s.value);
  }
  for (const c of delta.context) {
    ensure(ACCOUNT_ID.test(c.accountId), "context account id");
    ensure(c.writer !== WEST && c.writer >= 0 && c.writer < N, "context writer");
    ensure(Number.isInteger(c.column) && c.column >= 0 && c.column <= N + 3, "context column");
    checkSlotValue(c.value);
  }
  delta.requests.forEach(checkRequest);
  for (const p of delta.policies) checkPolicy(p, "west");
}

/** Decodes; an accepted delta must pass every check. Returns whether it was accepted. */
function decodeChecked(bytes: Uint8Array, ctx: DeltaContext = DELTA_CTX): boolean {
  const result = neverThrows(() => decodeDelta(bytes, ctx));
  if (result.ok) checkDelta(result.value);
  return result.ok;
}

const validArb = fc.record({ batch: batchArb(WEST), publishedAtMs: timestampArb, digest: hexDigestArb });

function validWire(): fc.Arbitrary<ReplicaDelta> {
  return validArb.map(({ batch, publishedAtMs, digest }) => ReplicaDelta.decode(encodeDelta(REPLICAS, WEST, batch, publishedAtMs, digest)));
}

const encode = (delta: ReplicaDelta): Uint8Array => ReplicaDelta.encode(delta).finish();

describe("delta codec - round trip", () => {
  it("delta codec - context slots of other rows round-trip; the writer's own row is refused as context", () => {
    const context = [
      { accountId: "a", writer: 0, column: 0, value: 50n },
      { accountId: "a", writer: 2, column: N, value: 7n },
    ];
    const batch = { slots: [{ accountId: "a", writer: WEST, column: N, value: 3n }], requests: [], policies: [], context };
    const decoded = decodeDelta(encodeDelta(REPLICAS, WEST, batch, 1, ""), DELTA_CTX);
    if (!decoded.ok) expect.fail(decoded.reason);
    expect(decoded.value.context).to.deep.equal(context);
    const own = { ...batch, context: [{ accountId: "a", writer: WEST, column: 0, value: 1n }] };
    const refused = decodeDelta(encodeDelta(REPLICAS, WEST, own, 1, ""), DELTA_CTX);
    expect(refused.ok).to.equal(false);
  });

  it("decodes what encodeDelta wrote, identity included", () => {
    fc.assert(
      fc.property(validArb, ({ batch, publishedAtMs, digest }) => {
        const result = decodeDelta(encodeDelta(REPLICAS, WEST, batch, publishedAtMs, digest), DELTA_CTX);
        if (!result.ok) expect.fail(result.reason);
        expect(result.value).to.deep.equal({
          writer: WEST,
          publishedAtMs,
          rowDigest: digest,
          slots: batch.slots,
          requests: batch.requests,
          policies: batch.policies,
          context: [],
          holds: [],
          refunds: [],
        });
      }),
    );
  });

  it("writes the sender's cluster identity into every delta", () => {
    const wire = ReplicaDelta.decode(encodeDelta(REPLICAS, WEST, { slots: [], requests: [], policies: [] }, 1, ""));
    expect(wire.cluster).to.deep.equal(clusterToWire(clusterIdentity(["east", "west", "central"])));
  });

  it("accepts slot values up to int64 max and column n (the debit column)", () => {
    const bytes = encodeDelta(REPLICAS, WEST, { slots: [{ accountId: "a", writer: WEST, column: N, value: INT64_MAX }], requests: [], policies: [] }, 1, "");
    const result = decodeDelta(bytes, DELTA_CTX);
    expect(result.ok).to.equal(true);
  });
});

describe("delta codec - cluster identity", () => {
  const bytes = encodeDelta(new ReplicaSet(["west", "east", "central"]), 0, { slots: [{ accountId: "a", writer: 0, column: 0, value: 5n }], requests: [], policies: [] }, 1, "");

  it("refuses a delta written under a different replica order, naming both lists", () => {
    const result = decodeDelta(bytes, DELTA_CTX);
    expectRejected(result, "identity", "[west,east,central]", "[east,west,central]");
  });

  it("refuses a delta without identity unless explicitly allowed (pre-identity streams)", () => {
    const wire = ReplicaDelta.decode(encodeDelta(REPLICAS, WEST, { slots: [], requests: [], policies: [] }, 1, ""));
    const legacy = encode({ ...wire, cluster: undefined });
    expectRejected(decodeDelta(legacy, DELTA_CTX), "identity", "no cluster identity", "[east,west,central]");
    expect(decodeDelta(legacy, { ...DELTA_CTX, acceptMissingIdentity: true }).ok).to.equal(true);
  });

  it("refuses an identity whose hash does not go with its list", () => {
    const wire = ReplicaDelta.decode(encodeDelta(REPLICAS, WEST, { slots: [], requests: [], policies: [] }, 1, ""));
    const forged = encode({ ...wire, cluster: { hash: REORDERED.hash, replicas: ["east", "west", "central"] } });
    expectRejected(decodeDelta(forged, DELTA_CTX), "identity");
  });

  it("refuses a context whose identity is not its replica set's", () => {
    const good = encodeDelta(REPLICAS, WEST, { slots: [], requests: [], policies: [] }, 1, "");
    expectRejected(decodeDelta(good, { ...DELTA_CTX, identity: REORDERED }), "identity", "inconsistent");
  });
});

describe("delta codec - refusals", () => {
  const base = ReplicaDelta.decode(
    encodeDelta(
      REPLICAS,
      WEST,
      {
        slots: [{ accountId: "acct", writer: WEST, column: 0, value: 10n }],
        requests: [{ requestId: "r1", fingerprint: "d|acct|5", answer: { kind: "debit", outcome: 1, balance: 5n, localRights: 5n }, answeredAtMs: 1 }],
        policies: [{ accountId: "acct", write: { mode: 2, overdraftLimit: 7n, lowWaterMark: 0n, writtenAtMs: 1, logical: 0, replica: "west" } }],
      },
      1_700_000_000_000,
      "00000000000000ff",
    ),
  );
  const slot = base.slots[0]!;
  const request = base.requests[0]!;
  const policy = base.policies[0]!;

  it("accepts the unmutated base message", () => {
    expect(decodeDelta(encode(base), DELTA_CTX).ok).to.equal(true);
  });

  it("refuses a writer other than the stream's owner, and unknown writers", () => {
    expectRejected(decodeDelta(encode({ ...base, replica: "east" }), DELTA_CTX), "sender", '"east"', '"west"');
    for (const name of HOSTILE_NAMES) expectRejected(decodeDelta(encode({ ...base, replica: name }), DELTA_CTX), "sender");
    expectRejected(decodeDelta(encode(base), { ...DELTA_CTX, expectedWriter: "mars" }), "sender", "mars");
  });

  it("refuses slot values above int64 max, or above a stricter maxSlotValue", () => {
    for (const value of [INT64_MAX + 1n, UINT64_MAX]) {
      expectRejected(decodeDelta(encode({ ...base, slots: [{ ...slot, value }] }), DELTA_CTX), "field", "slots[0].value");
    }
    const strict: DeltaContext = { ...DELTA_CTX, limits: { maxSlotValue: 1_000n } };
    expectRejected(decodeDelta(encode({ ...base, slots: [{ ...slot, value: 1_001n }] }), strict), "field");
    expect(decodeDelta(encode({ ...base, slots: [{ ...slot, value: 1_000n }] }), strict).ok).to.equal(true);
  });

  it("refuses slot columns beyond the layout", () => {
    // Columns n+1..n+3 (HA, HR, RF) are in the layout since holds.
    for (const column of [N + 4, 2 ** 31, 2 ** 32 - 1]) {
      expectRejected(decodeDelta(encode({ ...base, slots: [{ ...slot, column }] }), DELTA_CTX), "field", "column");
    }
  });

  it("refuses invalid account ids in slots and policies", () => {
    for (const accountId of HOSTILE_ACCOUNTS.filter((a) => !ACCOUNT_ID.test(a))) {
      expectRejected(decodeDelta(encode({ ...base, slots: [{ ...slot, accountId }] }), DELTA_CTX), "field", "account_id");
      expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, accountId }] }), DELTA_CTX), "field", "account_id");
    }
  });

  it("refuses unknown outcomes instead of reading them as approved", () => {
    for (const outcome of [0, 4, 99, 2 ** 32 - 1]) {
      expectRejected(decodeDelta(encode({ ...base, requests: [{ ...request, outcome }] }), DELTA_CTX), "field", "outcome");
    }
  });

  it("refuses bad request ids and fingerprints", () => {
    for (const requestId of ["", "has space", "x".repeat(129)]) {
      expectRejected(decodeDelta(encode({ ...base, requests: [{ ...request, requestId }] }), DELTA_CTX), "field", "request_id");
    }
    expectRejected(decodeDelta(encode({ ...base, requests: [{ ...request, fingerprint: "" }] }), DELTA_CTX), "field", "fingerprint");
  });

  it("refuses policies with an unknown mode, out-of-range limits or another writer", () => {
    for (const mode of [0, 3, 2 ** 32 - 1]) {
      expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, mode }] }), DELTA_CTX), "field", "mode");
    }
    expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, overdraftLimit: -1n }] }), DELTA_CTX), "field", "overdraft_limit");
    expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, mode: 1 }] }), DELTA_CTX), "field", "overdraft_limit");
    expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, lowWaterMark: -(1n << 63n) }] }), DELTA_CTX), "field", "low_water_mark");
    expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, replica: "east" }] }), DELTA_CTX), "sender");
    expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, replica: "mars" }] }), DELTA_CTX), "sender", "mars");
  });

  it("refuses negative and absurd timestamps", () => {
    for (const t of [-1n, -(1n << 63n), INT64_MAX, 7_258_118_400_001n]) {
      expectRejected(decodeDelta(encode({ ...base, publishedAtMs: t }), DELTA_CTX), "field", "published_at_ms");
      expectRejected(decodeDelta(encode({ ...base, requests: [{ ...request, answeredAtMs: t }] }), DELTA_CTX), "field", "answered_at_ms");
      expectRejected(decodeDelta(encode({ ...base, policies: [{ ...policy, writtenAtMs: t }] }), DELTA_CTX), "field", "written_at_ms");
    }
  });

  it("refuses a malformed row digest", () => {
    for (const rowDigest of ["xyz", "0".repeat(15), "0".repeat(17), "ABCDEF0123456789"]) {
      expectRejected(decodeDelta(encode({ ...base, rowDigest }), DELTA_CTX), "field", "row_digest");
    }
  });

  it("refuses truncated messages with a reason", () => {
    expectRejected(decodeDelta(encode(base).subarray(0, 3), DELTA_CTX));
  });
});

describe("delta codec - fuzz", () => {
  it("never throws on arbitrary bytes, and accepts only checked deltas", () => {
    fc.assert(
      fc.property(bytesArb, (bytes) => {
        decodeChecked(bytes);
      }),
      { numRuns: 2_000 },
    );
  });

  it("never throws on any truncation of a valid delta", () => {
    fc.assert(
      fc.property(validArb, ({ batch, publishedAtMs, digest }) => {
        for (const cut of truncations(encodeDelta(REPLICAS, WEST, batch, publishedAtMs, digest))) void decodeChecked(cut);
      }),
      { numRuns: 25 },
    );
  });

  it("never throws on byte-level mutations of a valid delta", () => {
    fc.assert(
      fc.property(validArb, byteMutationArb, ({ batch, publishedAtMs, digest }, mutations) => {
        void decodeChecked(mutateBytes(encodeDelta(REPLICAS, WEST, batch, publishedAtMs, digest), mutations));
      }),
      { numRuns: 1_000 },
    );
  });

  it("refuses or checks every field-level mutation (int64 edges, unknown enums, names, identities)", () => {
    const mutation = fc.oneof(
      fc.record({ publishedAtMs: fc.constantFrom(...EDGE_I64) }),
      fc.record({ replica: fc.constantFrom(...HOSTILE_NAMES, "east", "central") }),
      fc.record({ cluster: fc.constantFrom(undefined, clusterToWire(REORDERED), { hash: 0n, replicas: [] }, clusterToWire(clusterIdentity(["east", "west"]))) }),
      fc.record({
        slots: fc.array(
          fc.record({ accountId: fc.constantFrom(...HOSTILE_ACCOUNTS), column: fc.constantFrom(0, N, N + 1, 2 ** 32 - 1), value: fc.constantFrom(...EDGE_U64) }),
          { maxLength: 3 },
        ),
      }),
      fc.record({
        requests: fc.array(
          fc.record({
            requestId: fc.constantFrom("ok", "", "a b"),
            fingerprint: fc.constantFrom("d|a|1", "", "g|a|1"),
            answeredAtMs: fc.constantFrom(...EDGE_I64),
            outcome: fc.constantFrom(0, 1, 2, 3, 4, 2 ** 32 - 1),
            balance: fc.constantFrom(...EDGE_I64),
            localRights: fc.constantFrom(...EDGE_I64),
            origin: fc.constantFrom(0, 1, 3, 255),
          }),
          { maxLength: 2 },
        ),
      }),
      fc.record({
        policies: fc.array(
          fc.record({
            accountId: fc.constantFrom(...HOSTILE_ACCOUNTS),
            mode: fc.constantFrom(0, 1, 2, 3),
            overdraftLimit: fc.constantFrom(...EDGE_I64),
            lowWaterMark: fc.constantFrom(...EDGE_I64),
            writtenAtMs: fc.constantFrom(...EDGE_I64),
            logical: fc.constantFrom(0n, 1n, (1n << 53n) + 1n, (1n << 64n) - 1n),
            replica: fc.constantFrom("west", "east", ...HOSTILE_NAMES),
          }),
          { maxLength: 2 },
        ),
      }),
    );
    const seen = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(validWire(), fc.array(mutation, { minLength: 1, maxLength: 3 }), (wire, mutations) => {
        const mutated = mutations.reduce<ReplicaDelta>((m, change) => ({ ...m, ...change }), wire);
        seen[decodeChecked(encode(mutated)) ? "accepted" : "refused"]++;
      }),
      { numRuns: 1_000 },
    );
    // Both paths were exercised (the mutations include harmless ones).
    expect(seen.accepted).to.be.greaterThan(0);
    expect(seen.refused).to.be.greaterThan(0);
  });
});

describe("delta codec - throwing wrapper and outcomes", () => {
  it("decodeDeltaOrThrow returns the delta or throws InboundRejectedError with the reason", () => {
    const bytes = encodeDelta(REPLICAS, WEST, { slots: [], requests: [], policies: [] }, 1, "");
    expect(decodeDeltaOrThrow(REPLICAS, bytes, "west").writer).to.equal(WEST);
    expect(() => decodeDeltaOrThrow(REPLICAS, bytes, "east")).to.throw(InboundRejectedError, "stream of \"east\"");
    expect(() => decodeDeltaOrThrow(new ReplicaSet(["west", "east", "central"]), bytes, "west"))
      .to.throw(InboundRejectedError)
      .with.property("code", "identity");
    expect(() => decodeDeltaOrThrow(REPLICAS, Uint8Array.of(10, 200), "west")).to.throw(InboundRejectedError).with.property("code", "undecodable");
  });

  it("fromWireOutcome knows 1..3 only, and requestFromWire refuses anything else", () => {
    expect([1, 2, 3].map(fromWireOutcome)).to.deep.equal([1, 2, 3]);
    for (const outcome of [0, 4, 255]) {
      expect(fromWireOutcome(outcome)).to.equal(undefined);
      expect(() => requestFromWire({ requestId: "r", fingerprint: "d|a|1", answeredAtMs: 0n, outcome, balance: 0n, localRights: 0n, origin: 0 })).to.throw(
        InboundRejectedError,
        `outcome ${outcome}`,
      );
    }
  });
});
