// Tests of the guarded snapshot codec: a frozen state round-trips through the
// chunked encoding with its cluster identity; a snapshot of another layout,
// another replica, or with bad values is refused as a whole (InboundRejectedError),
// and the pure chunk and header decoders never throw.

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../src/core/amounts";
import { clusterIdentity } from "../../src/core/cluster-identity";
import { Mode } from "../../src/core/policy";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState, type FrozenState } from "../../src/core/replica-state";
import { SnapshotChunk, SnapshotHeader } from "../../src/generated/tally/replication/v1/replication";
import { clusterToWire, InboundRejectedError } from "../../src/replication/inbound";
import {
  decodeSnapshotChunk,
  decodeSnapshotHeader,
  type SnapshotChunkValue,
  type SnapshotContext,
  type SnapshotHeaderValue,
} from "../../src/replication/snapshot-decoder";
import { encodeSnapshot, encodeSnapshotHeader } from "../../src/replication/snapshot-encoder";
import { readSnapshot } from "../../src/replication/snapshot-reader";
import { SNAPSHOT_FORMAT_SEALED } from "../../src/replication/snapshot-seal";
import {
  ACCOUNT_ID,
  accountIdArb,
  bytesArb,
  checkPolicy,
  checkRequest,
  checkSequenceValue,
  checkSlotValue,
  checkTimestampValue,
  CTX,
  EDGE_I64,
  EDGE_U64,
  ensure,
  expectRejected,
  HOSTILE_NAMES,
  N,
  NAMES,
  neverThrows,
  REORDERED,
  REPLICAS,
} from "./support/codec-fixtures";

const SNAP_CTX: SnapshotContext = { ...CTX, expectedReplica: "west" };
const WIDTH = N * N + 4 * N;
const LEGACY_WIDTH = N * N + N;

function header(accounts: number, replicas: readonly string[] = NAMES): SnapshotHeader {
  return {
    replica: "west",
    replicas: [...replicas],
    replayFrom: 8n,
    durableSequence: 9n,
    applied: { east: 3n, central: 4n },
    takenAtMs: 1_700_000_000_000n,
    accounts: BigInt(accounts),
    cluster: undefined,
    requests: 0n,
    policies: 0n,
    format: 0,
    holds: 0n,
    refunds: 0n,
  };
}

/** A replica state of west built from grants, debits, transfers, remembered answers and policies. */
function westState(ops: ReadonlyArray<{ account: string; amount: bigint; kind: number }>, names: readonly string[] = NAMES): FrozenState {
  const state = new ReplicaState({ replicas: new ReplicaSet(names), self: "west" });
  ops.forEach((op, k) => {
    if (op.kind === 0) state.remember(`g-${k}`, `g|${op.account}|${op.amount}`, state.grant(op.account, op.amount).answer, { stampMs: 1_000 + k, nowMs: 1_000 + k });
    else if (op.kind === 1) state.remember(`d-${k}`, `d|${op.account}|${op.amount}`, state.debit(op.account, op.amount, false).answer, { stampMs: 1_000 + k, nowMs: 1_000 + k });
    else if (op.kind === 2 && state.rights(op.account) >= op.amount) state.transfer(op.account, 2, op.amount);
    else state.applyPolicy(op.account, { mode: Mode.Overdraft, overdraftLimit: op.amount, lowWaterMark: 0n, writtenAtMs: 5 + k, logical: 0, replica: "west" });
  });
  return state.freeze();
}

function emptyChunk(): SnapshotChunk {
  return { header: undefined, accounts: [], requests: [], policies: [], trailer: undefined, seal: Buffer.alloc(0), holds: [], refunds: [] };
}

/** Chunks framed as writers before seals wrote them: length prefix, body, nothing else. */
function unsealed(chunks: readonly SnapshotChunk[]): Uint8Array {
  const parts = chunks.map((c) => SnapshotChunk.encode(c).finish());
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    new DataView(out.buffer).setUint32(offset, p.length);
    out.set(p, offset + 4);
    offset += 4 + p.length;
  }
  return out;
}

const opsArb = fc.array(
  fc.record({ account: accountIdArb, amount: fc.bigInt({ min: 1n, max: 1n << 40n }), kind: fc.integer({ min: 0, max: 3 }) }),
  { maxLength: 30 },
);

async function bytesOf(frozen: FrozenState, h: SnapshotHeader): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const piece of encodeSnapshot(frozen, h)) pieces.push(piece);
  return Uint8Array.from(Buffer.concat(pieces));
}

/** The bytes in pieces cut at the given points, as a stored object would stream them. */
async function* pieces(bytes: Uint8Array, cuts: readonly number[]): AsyncGenerator<Uint8Array> {
  let from = 0;
  for (const cut of [...cuts].map((c) => c % (bytes.length + 1)).sort((a, b) => a - b)) {
    await Promise.resolve();
    yield bytes.subarray(from, Math.max(from, cut));
    from = Math.max(from, cut);
  }
  yield bytes.subarray(from);
}

async function readAll(data: AsyncIterable<Uint8Array>, ctx: SnapshotContext = SNAP_CTX): Promise<SnapshotChunkValue[]> {
  const chunks: SnapshotChunkValue[] = [];
  for await (const chunk of readSnapshot(data, ctx)) chunks.push(chunk);
  return chunks;
}

async function refusal(data: AsyncIterable<Uint8Array>, ctx: SnapshotContext = SNAP_CTX): Promise<InboundRejectedError> {
  try {
    await readAll(data, ctx);
  } catch (error) {
    if (error instanceof InboundRejectedError) return error;
    throw new Error(`readSnapshot threw something else: ${String(error)}`);
  }
  throw new Error("readSnapshot accepted the snapshot");
}

function checkHeaderValue(h: SnapshotHeaderValue): void {
  ensure(h.replica === "west", "replica");
  ensure(h.replicas.join(",") === NAMES.join(","), "replica list");
  checkSequenceValue(h.replayFrom);
  checkSequenceValue(h.durableSequence);
  ensure(h.replayFrom >= 1 && h.replayFrom <= h.durableSequence + 1, "replay_from");
  for (const [name, sequence] of Object.entries(h.applied)) {
    ensure(REPLICAS.has(name), "applied name");
    checkSequenceValue(sequence);
  }
  checkTimestampValue(h.takenAtMs);
  checkSequenceValue(h.accounts);
}

function checkChunkValue(chunk: SnapshotChunkValue): void {
  if (chunk.header !== undefined) checkHeaderValue(chunk.header);
  for (const account of chunk.accounts) {
    ensure(ACCOUNT_ID.test(account.accountId), "account id");
    ensure(account.values.length === WIDTH || account.values.length === LEGACY_WIDTH, "counter width");
    account.values.forEach(checkSlotValue);
  }
  chunk.requests.forEach(checkRequest);
  for (const p of chunk.policies) checkPolicy(p);
}

describe("snapshot codec - round trip", () => {
  it("reads back every account, answer and policy of a frozen state, however the bytes are split", async () => {
    await fc.assert(
      fc.asyncProperty(opsArb, fc.array(fc.nat(), { maxLength: 6 }), async (ops, cuts) => {
        const frozen = westState(ops);
        const chunks = await readAll(pieces(await bytesOf(frozen, header(frozen.ids.length)), cuts));
        expect(chunks[0]?.header).to.deep.equal({
          replica: "west",
          replicas: [...NAMES],
          replayFrom: 8,
          durableSequence: 9,
          applied: { east: 3, central: 4 },
          takenAtMs: 1_700_000_000_000,
          accounts: frozen.ids.length,
          requests: frozen.requests.size,
          policies: frozen.policies.length,
          format: SNAPSHOT_FORMAT_SEALED,
          holds: 0,
          refunds: 0,
        });
        const accounts = chunks.flatMap((c) => c.accounts);
        expect(accounts.map((a) => a.accountId)).to.deep.equal(frozen.ids);
        accounts.forEach((a, k) => expect(a.values).to.deep.equal(Array.from(frozen.slots.subarray(k * WIDTH, (k + 1) * WIDTH))));
        expect(chunks.flatMap((c) => c.requests)).to.deep.equal(frozen.requests.toArray());
        expect(chunks.flatMap((c) => c.policies)).to.deep.equal(frozen.policies.map(([accountId, write]) => ({ accountId, write })));
      }),
      { numRuns: 50 },
    );
  });

  it("writes the cluster identity into the header", async () => {
    const frozen = westState([]);
    const bytes = await bytesOf(frozen, header(0));
    const first = SnapshotChunk.decode(bytes.subarray(4));
    expect(first.header?.cluster).to.deep.equal(clusterToWire(clusterIdentity(NAMES)));
    expect(SnapshotHeader.decode(encodeSnapshotHeader(header(0))).cluster).to.deep.equal(clusterToWire(clusterIdentity(NAMES)));
  });

  it("refuses to encode a header whose replica list is not the state's", async () => {
    let error: unknown;
    try {
      await bytesOf(westState([]), header(0, ["west", "east", "central"]));
    } catch (e) {
      error = e;
    }
    expect(String(error)).to.contain("[west,east,central]").and.contain("[east,west,central]");
  });
});

describe("snapshot codec - refusals", () => {
  it("refuses a snapshot taken under another replica order, naming both lists", async () => {
    const reordered = ["west", "east", "central"];
    const frozen = westState([{ account: "a", amount: 5n, kind: 0 }], reordered);
    const error = await refusal(pieces(await bytesOf(frozen, header(1, reordered)), []));
    expect(error.code).to.equal("identity");
    expect(error.message).to.contain("[west,east,central]").and.contain("[east,west,central]");
  });

  it("accepts a header without identity written before identities (its replica list still checked)", () => {
    const legacy = SnapshotHeader.encode(header(0)).finish();
    expect(decodeSnapshotHeader(legacy, SNAP_CTX).ok).to.equal(true);
    const legacyReordered = SnapshotHeader.encode(header(0, ["west", "east", "central"])).finish();
    expectRejected(decodeSnapshotHeader(legacyReordered, SNAP_CTX), "identity", "[west,east,central]", "[east,west,central]");
  });

  it("refuses a header whose identity disagrees with its replica list", () => {
    const forged = SnapshotHeader.encode({ ...header(0), cluster: clusterToWire(REORDERED) }).finish();
    expectRejected(decodeSnapshotHeader(forged, SNAP_CTX), "identity");
  });

  it("refuses a snapshot of another replica, and bad sequences", () => {
    expectRejected(decodeSnapshotHeader(encodeSnapshotHeader(header(0)), { ...SNAP_CTX, expectedReplica: "east" }), "sender", '"east"');
    const h = header(0);
    const again = (change: Partial<SnapshotHeader>): Uint8Array => encodeSnapshotHeader({ ...h, ...change });
    expectRejected(decodeSnapshotHeader(again({ replica: "mars" }), SNAP_CTX), "sender", "mars");
    expectRejected(decodeSnapshotHeader(again({ replayFrom: 0n }), SNAP_CTX), "field", "replay_from");
    expectRejected(decodeSnapshotHeader(again({ replayFrom: 11n }), SNAP_CTX), "field", "replay_from");
    expectRejected(decodeSnapshotHeader(again({ durableSequence: UINT64_MAX }), SNAP_CTX), "field", "durable_sequence");
    expectRejected(decodeSnapshotHeader(again({ applied: { mars: 1n } }), SNAP_CTX), "sender", "mars");
    expectRejected(decodeSnapshotHeader(again({ applied: { east: UINT64_MAX } }), SNAP_CTX), "field", "applied[east]");
    expectRejected(decodeSnapshotHeader(again({ takenAtMs: -1n }), SNAP_CTX), "field", "taken_at_ms");
  });

  it("refuses chunks with counters of the wrong width or above int64, and unknown outcomes", () => {
    const body = (chunk: Partial<SnapshotChunk>): Uint8Array =>
      SnapshotChunk.encode({ header: undefined, accounts: [], requests: [], policies: [], trailer: undefined, seal: Buffer.alloc(0), holds: [], refunds: [], ...chunk }).finish();
    const values = Array.from({ length: WIDTH }, () => 1n);
    expect(decodeSnapshotChunk(body({ accounts: [{ accountId: "a", values }] }), SNAP_CTX, false).ok).to.equal(true);
    expectRejected(decodeSnapshotChunk(body({ accounts: [{ accountId: "a", values: values.slice(1) }] }), SNAP_CTX, false), "field", "values");
    expectRejected(decodeSnapshotChunk(body({ accounts: [{ accountId: "a", values: values.map(() => INT64_MAX + 1n) }] }), SNAP_CTX, false), "field");
    expectRejected(decodeSnapshotChunk(body({ accounts: [{ accountId: "a b", values }] }), SNAP_CTX, false), "field", "account_id");
    const request = { requestId: "r", fingerprint: "d|a|1", answeredAtMs: 1n, outcome: 0, balance: 0n, localRights: 0n, origin: 0 };
    expectRejected(decodeSnapshotChunk(body({ requests: [request] }), SNAP_CTX, false), "field", "outcome");
    const policy = { accountId: "a", mode: 7, overdraftLimit: 0n, lowWaterMark: 0n, writtenAtMs: 1n, logical: 0n, replica: "east" };
    expectRejected(decodeSnapshotChunk(body({ policies: [policy] }), SNAP_CTX, false), "field", "mode");
    expect(decodeSnapshotChunk(body({ policies: [{ ...policy, mode: 1 }] }), SNAP_CTX, false).ok).to.equal(true);
    expectRejected(decodeSnapshotChunk(body({}), SNAP_CTX, true), "field", "no header");
    expectRejected(decodeSnapshotChunk(body({ header: header(0) }), SNAP_CTX, false), "field", "after the first");
  });

  it("refuses an unsealed (older) snapshot whose account count differs from its header, or with stray bytes", async () => {
    const frozen = westState([{ account: "a", amount: 5n, kind: 0 }]);
    const values = Array.from(frozen.slots.subarray(0, WIDTH));
    const legacy = (accounts: number): Uint8Array =>
      unsealed([
        { ...emptyChunk(), header: { ...header(accounts), cluster: clusterToWire(clusterIdentity(NAMES)) } },
        { ...emptyChunk(), accounts: [{ accountId: "a", values }] },
      ]);
    expect((await readAll(pieces(legacy(1), [3]))).flatMap((c) => c.accounts)).to.have.length(1);
    expect((await refusal(pieces(legacy(2), []))).message).to.contain("holds 1 accounts, its header says 2");
    const bytes = await bytesOf(frozen, header(1));
    expect((await refusal(pieces(Uint8Array.from([...bytes, 0, 0]), []))).code).to.equal("undecodable");
    expect((await refusal(pieces(new Uint8Array(0), []))).message).to.contain("empty");
  });
});

describe("snapshot codec - fuzz", () => {
  it("chunk and header decoders never throw on arbitrary bytes, and accept only checked values", () => {
    fc.assert(
      fc.property(bytesArb, fc.boolean(), (bytes, first) => {
        const chunk = neverThrows(() => decodeSnapshotChunk(bytes, SNAP_CTX, first));
        if (chunk.ok) checkChunkValue(chunk.value);
        const h = neverThrows(() => decodeSnapshotHeader(bytes, SNAP_CTX));
        if (h.ok) checkHeaderValue(h.value);
      }),
      { numRuns: 2_000 },
    );
  });

  it("header field mutations are refused or checked", () => {
    const mutation = fc.oneof(
      fc.record({ replica: fc.constantFrom(...HOSTILE_NAMES, ...NAMES) }),
      fc.record({ replicas: fc.constantFrom<string[][]>([...NAMES], ["west", "east", "central"], ["east", "west"], []).map((r) => [...r]) }),
      fc.record({ replayFrom: fc.constantFrom(...EDGE_U64) }),
      fc.record({ durableSequence: fc.constantFrom(...EDGE_U64) }),
      fc.record({ applied: fc.dictionary(fc.constantFrom(...NAMES, ...HOSTILE_NAMES), fc.constantFrom(...EDGE_U64)) }),
      fc.record({ takenAtMs: fc.constantFrom(...EDGE_I64) }),
      fc.record({ accounts: fc.constantFrom(...EDGE_U64) }),
      fc.record({ cluster: fc.constantFrom(undefined, clusterToWire(REORDERED), clusterToWire(clusterIdentity(NAMES))) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (mutations) => {
        const wire = mutations.reduce<SnapshotHeader>((m, change) => ({ ...m, ...change }), header(0));
        const result = neverThrows(() => decodeSnapshotHeader(SnapshotHeader.encode(wire).finish(), SNAP_CTX));
        if (result.ok) checkHeaderValue(result.value);
      }),
      { numRuns: 1_000 },
    );
  });

  it("a cut or corrupted snapshot stream fails only with InboundRejectedError, never merges unchecked values", async () => {
    await fc.assert(
      fc.asyncProperty(opsArb, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }), async (ops, cutAt, flipAt, value) => {
        const frozen = westState(ops);
        const bytes = await bytesOf(frozen, header(frozen.ids.length));
        const corrupted = Uint8Array.from(bytes);
        corrupted[flipAt % corrupted.length] = value;
        for (const data of [bytes.subarray(0, cutAt % bytes.length), corrupted]) {
          try {
            for await (const chunk of readSnapshot(pieces(data, [cutAt]), SNAP_CTX)) checkChunkValue(chunk);
          } catch (error) {
            if (!(error instanceof InboundRejectedError)) throw error;
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("snapshot codec - seals, trailer and counts", function () {
  this.timeout(60_000);
  /** A west state spanning several chunks of each kind: 2,500 accounts, 4,500 remembered answers, 3 policies. */
  function bigState(): FrozenState {
    const state = new ReplicaState({ replicas: REPLICAS, self: "west" });
    for (let k = 0; k < 2_500; k++) state.grant(`acct-${k}`, BigInt(100 + k));
    for (let k = 0; k < 4_500; k++) {
      const answer = state.debit(`acct-${k % 2_500}`, 1n, false).answer;
      state.remember(`req-${k}`, `d|acct-${k % 2_500}|1`, answer, { stampMs: 1_000 + k, nowMs: 1_000 + k });
    }
    for (let k = 0; k < 3; k++) {
      state.applyPolicy(`acct-${k}`, { mode: Mode.Overdraft, overdraftLimit: 5n, lowWaterMark: 0n, writtenAtMs: 10, logical: 0, replica: "west" });
    }
    return state.freeze();
  }

  /** Offsets of every framed chunk of `bytes`. */
  function frames(bytes: Uint8Array): Array<{ start: number; end: number }> {
    const out: Array<{ start: number; end: number }> = [];
    for (let offset = 0; offset < bytes.length; ) {
      const length = new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0);
      out.push({ start: offset, end: offset + 4 + length });
      offset += 4 + length;
    }
    return out;
  }

  const without = (bytes: Uint8Array, frame: { start: number; end: number }): Uint8Array =>
    Uint8Array.from([...bytes.subarray(0, frame.start), ...bytes.subarray(frame.end)]);

  let frozen: FrozenState;
  let bytes: Uint8Array;
  before(async () => {
    frozen = bigState();
    bytes = await bytesOf(frozen, header(frozen.ids.length));
  });

  it("writes a sealed header with every count, and reads back every account, request and policy", async () => {
    const chunks = await readAll(pieces(bytes, [7, 5_000, 70_000]));
    const h = chunks[0]?.header;
    expect(h).to.include({ format: SNAPSHOT_FORMAT_SEALED, accounts: 2_500, requests: frozen.requests.size, policies: 3 });
    expect(chunks.flatMap((c) => c.accounts)).to.have.length(2_500);
    expect(chunks.flatMap((c) => c.requests)).to.deep.equal(frozen.requests.toArray());
    expect(chunks.flatMap((c) => c.policies)).to.have.length(3);
    expect(chunks.at(-1)?.trailer).to.deep.equal({ accounts: 2_500, requests: frozen.requests.size, policies: 3, chunks: chunks.length - 1, holds: 0, refunds: 0 });
    expect(frames(bytes).length).to.be.greaterThan(6);
  });

  it("refuses a snapshot cut at any chunk boundary (e.g. its request and policy chunks missing)", async () => {
    for (const frame of frames(bytes).slice(0, -1)) {
      const error = await refusal(pieces(bytes.subarray(0, frame.end), []));
      expect(error.message).to.contain("snapshot of west").and.contain("without its trailer");
    }
  });

  it("refuses a snapshot cut inside a chunk", async () => {
    for (const cut of [1, 5, 100, 9_999, Math.floor(bytes.length / 2), bytes.length - 1]) {
      const error = await refusal(pieces(bytes.subarray(0, cut), []));
      expect(error.message).to.contain("snapshot of west");
    }
  });

  it("refuses a snapshot with any chunk removed (first, middle, last) before yielding anything after the gap", async () => {
    const all = frames(bytes);
    for (const [k, frame] of all.entries()) {
      const seen: SnapshotChunkValue[] = [];
      let error: unknown;
      try {
        for await (const chunk of readSnapshot(pieces(without(bytes, frame), []), SNAP_CTX)) seen.push(chunk);
      } catch (e) {
        error = e;
      }
      expect(error, `chunk ${k} removed`).to.be.instanceOf(InboundRejectedError);
      expect(seen.length, `chunk ${k} removed`).to.be.at.most(k);
    }
  });

  it("refuses two chunks swapped", async () => {
    const [, a, b] = frames(bytes);
    const swapped = Uint8Array.from([...bytes.subarray(0, a!.start), ...bytes.subarray(b!.start, b!.end), ...bytes.subarray(a!.start, a!.end), ...bytes.subarray(b!.end)]);
    expect((await refusal(pieces(swapped, []))).message).to.contain("fails its seal");
  });

  it("refuses any single flipped byte, never yielding the altered chunk", async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), async (at, mask) => {
        const altered = Uint8Array.from(bytes);
        altered[at] = altered[at]! ^ mask;
        const frame = frames(bytes).findIndex((f) => at >= f.start && at < f.end);
        const seen: SnapshotChunkValue[] = [];
        let error: unknown;
        try {
          for await (const chunk of readSnapshot(pieces(altered, []), SNAP_CTX)) seen.push(chunk);
        } catch (e) {
          error = e;
        }
        ensure(error instanceof InboundRejectedError, `byte ${at} flipped: accepted`);
        ensure(seen.length <= frame, `byte ${at} flipped: the altered chunk ${frame} was yielded`);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses bytes after the trailer", async () => {
    const extra = Uint8Array.from([...bytes, ...bytes.subarray(frames(bytes)[1]!.start, frames(bytes)[1]!.end)]);
    expect((await refusal(pieces(extra, []))).message).to.contain("after the trailer");
  });
});
