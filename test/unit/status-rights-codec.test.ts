// Tests of the guarded status codec (the rights codec: rights-codec.test.ts): round trips carry the cluster
// identity; decoders never throw and refuse foreign layouts, unknown or
// self-naming peers, sequences beyond safe integers and amounts beyond int64.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../src/core/amounts";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { NodeStatus } from "../../src/generated/tally/replication/v1/replication";
import { clusterToWire } from "../../src/replication/inbound";
import { decodeNodeStatus, encodeNodeStatus, type NodeStatusValue, type StatusContext } from "../../src/replication/status-codec";
import {
  byteMutationArb,
  bytesArb,
  checkSequenceValue,
  checkTimestampValue,
  CTX,
  EDGE_I64,
  EDGE_U64,
  ensure,
  expectRejected,
  hexDigestArb,
  HOSTILE_NAMES,
  mutateBytes,
  NAMES,
  neverThrows,
  REORDERED,
  REPLICAS,
  sequenceArb,
  timestampArb,
  truncations,
} from "./support/codec-fixtures";

const IDENTITY = CTX.identity;
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
