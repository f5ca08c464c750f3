// Shared fixtures for the inbound codec tests: a cluster context, arbitraries
// of valid messages, hostile values, and checkers that state what a decoded
// value must satisfy (so fuzz tests can say "refused, or passes every check").

import { expect } from "chai";
import fc from "fast-check";
import { INT64_MAX, UINT64_MAX } from "../../../src/core/amounts";
import { DebitOutcome } from "../../../src/core/answer";
import { clusterIdentity } from "../../../src/core/cluster-identity";
import { Mode } from "../../../src/core/policy";
import { ReplicaSet } from "../../../src/core/replica-set";
import type { SlotChange } from "../../../src/core/replica-state";
import type { CommitBatch, PolicyRecord, RequestRecord } from "../../../src/core/durable-write";
import { DEFAULT_INBOUND_LIMITS, inboundContext, type Decoded, type InboundContext } from "../../../src/replication/inbound";

export const NAMES = ["east", "west", "central"] as const;
export const REPLICAS = new ReplicaSet(NAMES);
export const CTX: InboundContext = inboundContext(REPLICAS);
export const REORDERED = clusterIdentity(["west", "east", "central"]);
export const N = NAMES.length;

export const ACCOUNT_ID = /^[A-Za-z0-9._:@/-]{1,128}$/;
export const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;
export const MAX_TS = DEFAULT_INBOUND_LIMITS.maxTimestampMs;

/** Values at and around the edges of the integer types on the wire. */
export const EDGE_U64: readonly bigint[] = [0n, 1n, INT64_MAX - 1n, INT64_MAX, INT64_MAX + 1n, UINT64_MAX - 1n, UINT64_MAX, BigInt(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER) + 1n];
export const EDGE_I64: readonly bigint[] = [-(1n << 63n), -1n, 0n, 1n, INT64_MAX, BigInt(MAX_TS), BigInt(MAX_TS) + 1n];
export const HOSTILE_NAMES: readonly string[] = ["", "mars", "EAST", "east ", "__proto__", "constructor", "x".repeat(300), "é", "\u0000"];
export const HOSTILE_ACCOUNTS: readonly string[] = ["", "a b", "a|b", "x".repeat(129), "ü", "\n", "ok-account"];

export const accountIdArb = fc.stringMatching(/^[A-Za-z0-9._:@/-]{1,24}$/);
export const requestIdArb = fc.stringMatching(/^[\x21-\x7e]{1,24}$/);
export const timestampArb = fc.bigInt({ min: 0n, max: BigInt(MAX_TS) }).map(Number);
export const slotValueArb = fc.oneof(fc.bigInt({ min: 0n, max: INT64_MAX }), fc.constantFrom(0n, 1n, INT64_MAX));
export const amountArb = fc.bigInt({ min: 1n, max: INT64_MAX });
export const int64Arb = fc.bigInt({ min: -(1n << 63n), max: INT64_MAX });
export const sequenceArb = fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.constant(Number.MAX_SAFE_INTEGER));
export const hexDigestArb = fc.oneof(fc.constant(""), fc.bigInt({ min: 0n, max: UINT64_MAX }).map((d) => d.toString(16).padStart(16, "0")));
/** Arbitrary bytes, biased towards short inputs. */
export const bytesArb = fc.uint8Array({ maxLength: 200 });

export function slotArb(writer: number): fc.Arbitrary<SlotChange> {
  return fc.record({ accountId: accountIdArb, writer: fc.constant(writer), column: fc.integer({ min: 0, max: N }), value: slotValueArb });
}

export const requestArb: fc.Arbitrary<RequestRecord> = fc
  .record({
    requestId: requestIdArb,
    kind: fc.constantFrom("debit" as const, "grant" as const),
    accountId: accountIdArb,
    amount: amountArb,
    outcome: fc.constantFrom(DebitOutcome.Approved, DebitOutcome.InsufficientCredit, DebitOutcome.ApprovedWithOverdraft),
    balance: int64Arb,
    localRights: int64Arb,
    answeredAtMs: timestampArb,
  })
  .map((r) => ({
    requestId: r.requestId,
    fingerprint: `${r.kind === "grant" ? "g" : "d"}|${r.accountId}|${r.amount}`,
    answer: { kind: r.kind, outcome: r.outcome, balance: r.balance, localRights: r.localRights },
    answeredAtMs: r.answeredAtMs,
  }));

export function policyArb(replica: string): fc.Arbitrary<PolicyRecord> {
  return fc
    .record({
      accountId: accountIdArb,
      overdraft: fc.boolean(),
      limit: fc.bigInt({ min: 0n, max: INT64_MAX }),
      lowWaterMark: fc.bigInt({ min: 0n, max: INT64_MAX }),
      writtenAtMs: timestampArb,
    })
    .map((p) => ({
      accountId: p.accountId,
      write: {
        mode: p.overdraft ? Mode.Overdraft : Mode.Strict,
        overdraftLimit: p.overdraft ? p.limit : 0n,
        lowWaterMark: p.lowWaterMark,
        writtenAtMs: p.writtenAtMs,
        logical: 0,
        replica,
      },
    }));
}

export function batchArb(writer: number): fc.Arbitrary<CommitBatch> {
  return fc.record({
    slots: fc.array(slotArb(writer), { maxLength: 8 }),
    requests: fc.array(requestArb, { maxLength: 4 }),
    policies: fc.array(policyArb(REPLICAS.nameOf(writer)), { maxLength: 3 }),
  });
}

/** Every prefix (and a few suffixes) of a valid encoding. */
export function truncations(bytes: Uint8Array): Uint8Array[] {
  const cuts: Uint8Array[] = [];
  for (let k = 0; k < bytes.length; k++) cuts.push(bytes.subarray(0, k));
  for (let k = 1; k < Math.min(bytes.length, 8); k++) cuts.push(bytes.subarray(k));
  return cuts;
}

/** Flips, overwrites or inserts bytes of a valid encoding. */
export const byteMutationArb = fc.array(
  fc.record({ at: fc.nat(), kind: fc.constantFrom("flip", "set", "insert", "delete"), value: fc.integer({ min: 0, max: 255 }) }),
  { minLength: 1, maxLength: 4 },
);

export function mutateBytes(bytes: Uint8Array, mutations: ReadonlyArray<{ at: number; kind: string; value: number }>): Uint8Array {
  const out = [...bytes];
  for (const m of mutations) {
    if (out.length === 0) {
      out.push(m.value);
      continue;
    }
    const at = m.at % out.length;
    if (m.kind === "flip") out[at] = (out[at] ?? 0) ^ (1 << (m.value % 8));
    else if (m.kind === "set") out[at] = m.value;
    else if (m.kind === "insert") out.splice(at, 0, m.value);
    else out.splice(at, 1);
  }
  return Uint8Array.from(out);
}

/** A cheap assertion for hot fuzz loops (chai is too slow for hundreds of thousands of checks). */
export function ensure(condition: boolean, what: string): void {
  if (!condition) throw new Error(`accepted value breaks a rule: ${what}`);
}

const CODES = new Set(["undecodable", "identity", "sender", "field"]);

/** Runs a decoder that must never throw; a refusal must have a code and a reason. */
export function neverThrows<T>(decode: () => Decoded<T>): Decoded<T> {
  let result: Decoded<T>;
  try {
    result = decode();
  } catch (error) {
    throw new Error(`decoder threw: ${String(error)}`);
  }
  if (!result.ok) ensure(CODES.has(result.code) && result.reason.length > 0, "refusal without code or reason");
  return result;
}

export function expectRejected<T>(result: Decoded<T>, code?: string, ...fragments: string[]): void {
  expect(result.ok, result.ok ? "expected a refusal" : "").to.equal(false);
  if (result.ok) return;
  if (code !== undefined) expect(result.code, result.reason).to.equal(code);
  for (const fragment of fragments) expect(result.reason).to.contain(fragment);
}

// ---- what an accepted value must satisfy ------------------------------------

export function checkTimestampValue(value: number): void {
  ensure(Number.isSafeInteger(value) && value >= 0 && value <= MAX_TS, `timestamp ${value}`);
}

export function checkSequenceValue(value: number): void {
  ensure(Number.isSafeInteger(value) && value >= 0, `sequence ${value}`);
}

export function checkSlotValue(value: bigint): void {
  ensure(value >= 0n && value <= INT64_MAX, `slot value ${value}`);
}

export function checkRequest(r: RequestRecord): void {
  ensure(REQUEST_ID.test(r.requestId), "request id");
  ensure([DebitOutcome.Approved, DebitOutcome.InsufficientCredit, DebitOutcome.ApprovedWithOverdraft].includes(r.answer.outcome), "outcome");
  checkTimestampValue(r.answeredAtMs);
}

export function checkPolicy(p: PolicyRecord, writer?: string): void {
  ensure(ACCOUNT_ID.test(p.accountId), "policy account id");
  ensure(p.write.mode === Mode.Strict || p.write.mode === Mode.Overdraft, "policy mode");
  ensure(p.write.overdraftLimit >= 0n && p.write.overdraftLimit <= INT64_MAX, "overdraft limit");
  ensure(p.write.mode !== Mode.Strict || p.write.overdraftLimit === 0n, "strict with overdraft");
  ensure(p.write.lowWaterMark >= 0n && p.write.lowWaterMark <= INT64_MAX, "low-water mark");
  checkTimestampValue(p.write.writtenAtMs);
  ensure(REPLICAS.has(p.write.replica), "policy replica");
  if (writer !== undefined) ensure(p.write.replica === writer, "policy writer");
}
