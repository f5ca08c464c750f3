// What every guarded decoder of an inbound message (stream delta, snapshot,
// status, rights request and reply) shares: the result type, the context a
// receiver judges a message against (its replica set and cluster identity),
// the limits, and the field checks. A guarded decoder never throws: anything
// that fails to decode or breaks a rule becomes { ok: false, code, reason }.

import { INT64_MAX } from "../core/amounts";
import {
  clusterIdentity,
  clusterText,
  describeClusterMismatch,
  type ClusterIdentity,
} from "../core/cluster-identity";
import type { ReplicaSet } from "../core/replica-set";
import { validateRowId } from "../core/lot-rows";
import type { ClusterIdentity as WireClusterIdentity } from "../generated/tally/replication/v1/replication";

/** Why a message was refused; low cardinality, fit for a metric label. */
export type RejectCode =
  /** Not a well-formed protobuf message (truncated, wrong wire types, bad framing). */
  | "undecodable"
  /** Missing cluster identity, or one that differs from this node's. */
  | "identity"
  /** Sender/writer/donor/requester unknown, this node itself, or not who it should be. */
  | "sender"
  /** A field breaks a rule (range, enum, account id, length, timestamp). */
  | "field";

export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly code: RejectCode; readonly reason: string };

/** Thrown only by the explicitly throwing wrappers (e.g. decodeDeltaOrThrow, readSnapshot). */
export class InboundRejectedError extends Error {
  override readonly name = "InboundRejectedError";
  constructor(
    readonly code: RejectCode,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export interface InboundLimits {
  /**
   * Largest slot value accepted (every P and D entry). No legitimate writer
   * exceeds int64: grants keep the balance within int64 and counters grow by
   * positive int64 amounts. A stricter bound may be passed.
   */
  readonly maxSlotValue: bigint;
  /** Earliest wall-clock time (ms since the epoch) a message may carry. */
  readonly minTimestampMs: number;
  /** Latest wall-clock time a message may carry; later is absurd (or a forged policy that wins forever). */
  readonly maxTimestampMs: number;
}

export const DEFAULT_INBOUND_LIMITS: InboundLimits = {
  maxSlotValue: INT64_MAX,
  minTimestampMs: 0,
  // 2200-01-01T00:00:00Z.
  maxTimestampMs: 7_258_118_400_000,
};

/** What a receiver judges every inbound message against. */
export interface InboundContext {
  readonly replicas: ReplicaSet;
  /** clusterIdentity(replicas.names); build both with inboundContext(). */
  readonly identity: ClusterIdentity;
  readonly limits?: Partial<InboundLimits>;
}

const identities = new WeakMap<ReplicaSet, ClusterIdentity>();

/** The identity of a replica set, computed once per set. */
export function clusterIdentityOf(replicas: ReplicaSet): ClusterIdentity {
  let identity = identities.get(replicas);
  if (identity === undefined) {
    identity = clusterIdentity(replicas.names);
    identities.set(replicas, identity);
  }
  return identity;
}

export function inboundContext(replicas: ReplicaSet, limits?: Partial<InboundLimits>): InboundContext {
  return limits === undefined ? { replicas, identity: clusterIdentityOf(replicas) } : { replicas, identity: clusterIdentityOf(replicas), limits };
}

export function limitsOf(ctx: InboundContext): InboundLimits {
  return ctx.limits === undefined ? DEFAULT_INBOUND_LIMITS : { ...DEFAULT_INBOUND_LIMITS, ...ctx.limits };
}

/** The wire form of an identity, for encoders. */
export function clusterToWire(identity: ClusterIdentity): WireClusterIdentity {
  return { hash: identity.hash, replicas: [...identity.replicas] };
}

// ---- checks (internal to the codecs: they throw Rejection, caught by guard) ----

/** A rule broken by an inbound message; converted to { ok: false } by guard(). */
export class Rejection extends Error {
  override readonly name = "Rejection";
  constructor(
    readonly code: RejectCode,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Runs a decode that signals problems by throwing, and turns every throw into { ok: false }. */
export function guard<T>(what: string, decode: () => T): Decoded<T> {
  try {
    return { ok: true, value: decode() };
  } catch (error) {
    if (error instanceof Rejection) return { ok: false, code: error.code, reason: `${what}: ${error.reason}` };
    const detail = error instanceof Error ? error.message : String(error);
    return { ok: false, code: "undecodable", reason: `${what}: undecodable (${detail})` };
  }
}

export function reject(code: RejectCode, reason: string): never {
  throw new Rejection(code, reason);
}

/** A remote string made safe to quote in a reason: printable ASCII, at most 64 characters. */
export function shown(value: string): string {
  const clipped = value.length > 64 ? `${value.slice(0, 64)}…` : value;
  return JSON.stringify(clipped.replace(/[^\x20-\x7e…]/g, "?"));
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name, k) => name === b[k]);
}

/** The context itself must be coherent: its identity is that of its replica set. */
export function checkContext(ctx: InboundContext): void {
  if (!sameNames(ctx.identity.replicas, ctx.replicas.names)) {
    reject("identity", `decoder context is inconsistent: identity [${ctx.identity.text}] but replica set [${clusterText(ctx.replicas.names)}]`);
  }
}

/**
 * The sender's identity must equal this node's: the same names in the same
 * order, and the hash that goes with them. The reason names both lists.
 */
export function checkIdentity(ctx: InboundContext, wire: WireClusterIdentity | undefined, allowMissing = false): void {
  checkContext(ctx);
  if (wire === undefined) {
    if (allowMissing) return;
    reject("identity", `carries no cluster identity (sent by a version without identities?); this node has replicas [${ctx.identity.text}]`);
  }
  if (wire.hash === ctx.identity.hash && sameNames(wire.replicas, ctx.identity.replicas)) return;
  const names = wire.replicas.slice(0, 16).map((n) => (/^[a-z0-9-]{1,32}$/.test(n) ? n : shown(n)));
  if (wire.replicas.length > 16) names.push(`…(${wire.replicas.length} names)`);
  const remote: ClusterIdentity = { hash: wire.hash, replicas: names, text: names.join(",") };
  reject("identity", describeClusterMismatch(ctx.identity, remote));
}

/** A replica name this node knows; returns its index. */
export function knownReplica(ctx: InboundContext, name: string, field: string): number {
  if (!ctx.replicas.has(name)) reject("sender", `${field} ${shown(name)} is not a replica of [${ctx.identity.text}]`);
  return ctx.replicas.indexOf(name);
}

/** An account id, or a credit lot's row id (the account id, "#" and the lot key): replicas exchange both. */
export function checkAccountId(value: string, field: string): string {
  try {
    return validateRowId(value, field);
  } catch (error) {
    return reject("field", error instanceof Error ? error.message : `${field}: invalid`);
  }
}

/** A wall-clock time in ms within the limits; returned as a number. */
export function checkTimestamp(limits: InboundLimits, value: bigint, field: string): number {
  if (value < BigInt(limits.minTimestampMs) || value > BigInt(limits.maxTimestampMs)) {
    reject("field", `${field} ${value} is outside ${limits.minTimestampMs}..${limits.maxTimestampMs} ms since the epoch`);
  }
  return Number(value);
}

/** A stream sequence: a non-negative safe integer. */
export function checkSequence(value: bigint, field: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    reject("field", `${field} ${value} is not a sequence (must be 0..${Number.MAX_SAFE_INTEGER})`);
  }
  return Number(value);
}

/** An absolute slot value, within limits.maxSlotValue. */
export function checkSlotValue(limits: InboundLimits, value: bigint, field: string): bigint {
  if (value < 0n || value > limits.maxSlotValue) reject("field", `${field} ${value} is outside 0..${limits.maxSlotValue}`);
  return value;
}

/** An amount within 0..int64 max (or 1.. when positive). */
export function checkAmount(value: bigint, field: string, positive: boolean): bigint {
  const min = positive ? 1n : 0n;
  if (value < min || value > INT64_MAX) reject("field", `${field} ${value} is outside ${min}..${INT64_MAX}`);
  return value;
}

const DIGEST = /^(?:[0-9a-f]{16})?$/;

/** A row digest: empty or 16 lowercase hex digits. */
export function checkDigest(value: string, field: string): string {
  if (!DIGEST.test(value)) reject("field", `${field} ${shown(value)} is not 16 hex digits`);
  return value;
}

/** A per-replica sequence map (status, snapshot header): known names, safe integers. */
export function checkAppliedMap(ctx: InboundContext, applied: Readonly<Record<string, bigint>>, field: string): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [name, sequence] of Object.entries(applied)) {
    if (!ctx.replicas.has(name)) reject("sender", `${field} names ${shown(name)}, not a replica of [${ctx.identity.text}]`);
    result[name] = checkSequence(sequence, `${field}[${name}]`);
  }
  return result;
}
