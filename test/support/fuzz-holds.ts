// The holds and refunds part of the API fuzz (test/support/fuzz-run.ts):
// sends Hold, CaptureHold, VoidHold and Refund calls, resolves their unknown
// outcomes by retrying the same request at the same region, reads every
// hold's final state at its holding region, and checks the contract of
// docs/api.md against what happened: a hold resolves at most once and as its
// answers said, captures debit exactly what they captured, refunds never
// exceed their debit, bad input gets the documented status and changes
// nothing. The per-region totals it expects (held, captured, refunded) are
// compared by FuzzRun with the converged views.

import { status, type CallOptions } from "@grpc/grpc-js";
import { REGIONS, type RegionName } from "../../src/devcluster/nats-supercluster";
import {
  DebitOutcome,
  HoldState,
  type CaptureHoldRequest,
  type HoldRequest,
  type HoldResolution,
  type HoldResponse,
  type RefundRequest,
  type RefundResponse,
  type VoidHoldRequest,
} from "../../src/generated/tally/v1/balances";
import type { Clients } from "./grpc-clients";
import { unary } from "./grpc-clients";
import { MAX_HOLD_TIMEOUT_MS, type HoldSpec, type Op } from "./fuzz-program";

export type HoldRpc = "Hold" | "CaptureHold" | "VoidHold" | "Refund";

/** What the holds part needs of the run (fuzz-run.ts's FuzzRun). */
export interface HoldsHost {
  rpc<Res>(
    rpc: HoldRpc,
    region: RegionName,
    request: unknown,
    invoke: (c: Clients, options: Partial<CallOptions>) => Promise<Res>,
    deadlineMs: number,
  ): Promise<{ call: HoldCallRecord; response: Res | undefined }>;
  violation(text: string, ...calls: HoldCallRecord[]): void;
  note(text: string): void;
  /** Checks an answer's balance and rights against the account's STRICT/OVERDRAFT bounds. */
  checkAnswer(accountId: string, balance: bigint | undefined, rights: bigint, call: HoldCallRecord, outcome: DebitOutcome | undefined): void;
  /** Debits (and batch items) sent with this request id: where they were applied or refused, for refunds. */
  debitFacts(requestId: string): DebitFacts | undefined;
  /** Whether the id was sent by Grant/Debit/DebitBatch with other parameters than `fingerprint` before `t`. */
  usedByWrites(requestId: string, t: number): boolean;
  /** Whether the id was sent as a grant. */
  isGrantId(requestId: string): boolean;
  /** Milliseconds since the run started; `started` is its Date.now(). */
  readonly started: number;
  now(): number;
}

/** The part of fuzz-run's CallRecord the holds need. */
export interface HoldCallRecord {
  readonly n: number;
  readonly phase: string;
  readonly rpc: string;
  readonly region: RegionName;
  readonly request: unknown;
  readonly sentAt: number;
  doneAt: number;
  code: number | undefined;
  details: string;
  /** Trailer `tally-region` of a refusal, if any. */
  trailer?: string;
}

export interface DebitFacts {
  readonly accountId: string;
  readonly amount: bigint;
  /** Regions where the debit was applied, with the first time it was known to be (doneAt of its answer). */
  readonly appliedAt: ReadonlyMap<RegionName, number>;
  /** Regions that refused it (INSUFFICIENT_CREDIT) and never applied it. */
  readonly refusedAt: ReadonlySet<RegionName>;
  /** Some attempt's outcome stayed unknown, or the id was used with several parameters: what it debited is not certain. */
  readonly uncertain: boolean;
}

/** Statuses after which the outcome is unknown: resolved by retrying the same request. */
const UNKNOWN: ReadonlySet<number> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED, status.INTERNAL, status.UNKNOWN]);
const isUnknown = (code: number | undefined): boolean => code === undefined || UNKNOWN.has(code);
/** Holds longer than this never expire during a run. */
const LONG_HOLD_MS = 600_000n;
const ACCOUNT_ID = /^[A-Za-z0-9._:@/-]{1,128}$/;

interface HoldAttempt {
  readonly call: HoldCallRecord;
  readonly spec: HoldSpec;
  readonly response: HoldResponse | undefined;
}
interface ResolutionAttempt {
  readonly call: HoldCallRecord;
  readonly kind: "capture" | "void";
  readonly holdId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly accountId: string;
  readonly response: HoldResolution | undefined;
}
interface RefundAttempt {
  readonly call: HoldCallRecord;
  readonly debitRequestId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly accountId: string;
  readonly response: RefundResponse | undefined;
}

interface AppliedRefund {
  readonly debitRequestId: string;
  /** The debit was decided at more than one region (the id sent to two at once): each refunds its own. */
  readonly perRegion: boolean;
  readonly amount: bigint;
  readonly region: RegionName;
  /** The refunded debit's account; undefined when the run cannot tell it for sure. */
  readonly accountId: string | undefined;
}

/** A hold that exists: approved at its region. */
interface PlacedHold {
  readonly holdId: string;
  readonly region: RegionName;
  readonly spec: HoldSpec;
  readonly expiresAtMs: number;
  /** When the first approval reached the caller (run ms). */
  readonly knownAt: number;
  /** Its state read at the end at its region; undefined if it could not be read. */
  final?: HoldState;
  /** What its capture debited (from the capture answers). */
  captured?: bigint;
}

/** Expected per-region sums of one account, from the answers: exact values plus amounts whose application is uncertain. */
export interface HoldTotals {
  held: bigint;
  heldUncertain: bigint[];
  captured: bigint;
  capturedUncertain: bigint[];
  refunded: bigint;
  refundedUncertain: bigint[];
}

const fieldOf = (details: string): string => details.slice(0, Math.max(0, details.indexOf(": ")));
const stateName = (s: HoldState | undefined): string => (s === undefined ? "unknown" : (HoldState[s] ?? `state ${s}`));

export class HoldsFuzz {
  private readonly holds: HoldAttempt[] = [];
  private readonly resolutions: ResolutionAttempt[] = [];
  private readonly refunds: RefundAttempt[] = [];
  /** ALREADY_EXISTS answers, checked once every call is recorded (checkConflict). */
  private readonly conflictChecks: Array<() => void> = [];
  private readonly placed = new Map<string, PlacedHold>();
  /** Applied refunds by debit request id: refund request id → what it gave back (each counted once). */
  private readonly appliedRefunds = new Map<string, Map<string, AppliedRefund>>();

  constructor(private readonly host: HoldsHost) {}

  get counts(): string {
    const ok = (xs: ReadonlyArray<{ call: HoldCallRecord }>): number => xs.filter((x) => x.call.code === Number(status.OK)).length;
    return (
      `${this.holds.length} hold calls (${this.placed.size} holds placed), ${this.resolutions.length} capture/void calls (${ok(this.resolutions)} OK), ` +
      `${this.refunds.length} refund calls (${ok(this.refunds)} OK)`
    );
  }

  // ---- calls --------------------------------------------------------------

  async perform(op: Extract<Op, { kind: "hold" | "capture" | "void" | "refund" }>): Promise<void> {
    switch (op.kind) {
      case "hold":
        await this.hold(op.region, op.hold, op.maxWaitMs, op.deadlineMs);
        return;
      case "capture":
        await this.resolve(op.region, "capture", op.holdId, op.amount, op.requestId, op.accountId, op.deadlineMs);
        return;
      case "void":
        await this.resolve(op.region, "void", op.holdId, 0n, op.requestId, op.accountId, op.deadlineMs);
        return;
      case "refund":
        await this.refund(op.region, op.debitRequestId, op.amount, op.requestId, op.accountId, op.deadlineMs);
        return;
    }
  }

  private async hold(region: RegionName, spec: HoldSpec, maxWaitMs: number, deadlineMs: number): Promise<HoldAttempt> {
    const req: HoldRequest = { accountId: spec.accountId, amount: spec.amount, requestId: spec.requestId, timeoutMs: spec.timeoutMs, maxWaitMs };
    const { call, response } = await this.host.rpc("Hold", region, req, (c, o) => unary(c.balances, c.balances.hold, req, o), deadlineMs);
    const attempt: HoldAttempt = { call, spec, response };
    this.holds.push(attempt);
    if (spec.amount <= 0n) this.expectInvalid(call, "amount", "a hold of a non-positive amount");
    else if (spec.timeoutMs < 1n || spec.timeoutMs > MAX_HOLD_TIMEOUT_MS) this.expectInvalid(call, "timeout_ms", `a hold with timeout_ms ${spec.timeoutMs}`);
    if (call.code === Number(status.ALREADY_EXISTS)) {
      this.checkConflict(spec.requestId, `h|${spec.accountId}|${spec.amount}|${spec.timeoutMs}`, call, "Hold");
    }
    if (response === undefined) return attempt;
    const holdId = `${region}:${spec.requestId}`;
    this.host.checkAnswer(spec.accountId, response.balance, response.localRights, call, response.outcome);
    if (response.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED) {
      if (response.holdId !== holdId || response.state === HoldState.HOLD_STATE_UNSPECIFIED || response.expiresAtMs <= 0n) {
        this.host.violation(`an approved hold answered hold_id "${response.holdId}", state ${stateName(response.state)}, expires_at_ms ${response.expiresAtMs} (expected "${holdId}", a state, a timeout)`, call);
        return attempt;
      }
      if (!response.replayed && response.state !== HoldState.HOLD_STATE_PENDING) this.host.violation(`a fresh hold answered state ${stateName(response.state)}`, call);
      if (!response.replayed && response.localRights < 0n) this.host.violation(`a hold took ${region}'s rights to ${response.localRights} (holds never use overdraft)`, call);
      const known = this.placed.get(holdId);
      if (known === undefined) {
        this.placed.set(holdId, { holdId, region, spec, expiresAtMs: Number(response.expiresAtMs), knownAt: call.doneAt });
      } else if (known.expiresAtMs !== Number(response.expiresAtMs)) {
        this.host.violation(`hold ${holdId} answered expires_at_ms ${response.expiresAtMs}, earlier ${known.expiresAtMs}`, call);
      }
    } else if (response.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT) {
      if (response.holdId !== "") this.host.violation(`a refused hold answered hold_id "${response.holdId}"`, call);
    } else {
      this.host.violation(`Hold answered outcome ${DebitOutcome[response.outcome] ?? response.outcome} (a hold never uses overdraft)`, call);
    }
    return attempt;
  }

  private async resolve(region: RegionName, kind: "capture" | "void", holdId: string, amount: bigint, requestId: string, accountId: string, deadlineMs: number): Promise<ResolutionAttempt> {
    let call: HoldCallRecord;
    let response: HoldResolution | undefined;
    if (kind === "capture") {
      const req: CaptureHoldRequest = { holdId, amount, requestId, accountId };
      ({ call, response } = await this.host.rpc("CaptureHold", region, req, async (c, o) => (await unary(c.balances, c.balances.captureHold, req, o)).resolution, deadlineMs));
    } else {
      const req: VoidHoldRequest = { holdId, requestId, accountId };
      ({ call, response } = await this.host.rpc("VoidHold", region, req, async (c, o) => (await unary(c.balances, c.balances.voidHold, req, o)).resolution, deadlineMs));
    }
    const attempt: ResolutionAttempt = { call, kind, holdId, amount, requestId, accountId, response };
    this.resolutions.push(attempt);
    const what = `a ${kind} of ${holdId} at ${region}`;
    const colon = holdId.indexOf(":");
    const holder = holdId.slice(0, colon);
    const wellFormed = colon > 0 && /^[a-z][a-z0-9-]{0,31}$/.test(holder) && /^[\x21-\x7e]{1,128}$/.test(holdId.slice(colon + 1));
    if (!wellFormed) this.expectInvalid(call, "hold_id", `${what} (a malformed hold id)`);
    else if (kind === "capture" && amount <= 0n) this.expectInvalid(call, "amount", `${what} of ${amount}`);
    else if (accountId !== "" && !ACCOUNT_ID.test(accountId)) this.expectInvalid(call, "account_id", `${what} with a malformed account_id`);
    else if (!(REGIONS as readonly string[]).includes(holder)) this.expectCode(call, [status.NOT_FOUND], `${what} (no region "${holder}")`);
    else if (holder !== region) {
      this.expectCode(call, [status.FAILED_PRECONDITION], `${what}, held by ${holder}`);
      if (call.code === Number(status.FAILED_PRECONDITION) && (call.trailer !== holder || !call.details.includes(`"${holder}"`))) {
        this.host.violation(`${what}: FAILED_PRECONDITION does not name the holding region ${holder} (trailer ${call.trailer ?? "none"})`, call);
      }
    }
    const fingerprint = kind === "capture" ? `c|${holdId}|${amount}` : `v|${holdId}`;
    if (call.code === Number(status.ALREADY_EXISTS)) this.checkConflict(requestId, fingerprint, call, what);
    if (response !== undefined) {
      const want = kind === "capture" ? HoldState.HOLD_STATE_CAPTURED : HoldState.HOLD_STATE_VOIDED;
      if (response.holdId !== holdId || response.state !== want || response.captured !== (kind === "capture" ? amount : 0n)) {
        this.host.violation(`${what} answered hold ${response.holdId} ${stateName(response.state)} captured ${response.captured} (asked ${kind === "capture" ? amount : "a void"})`, call);
      }
    }
    return attempt;
  }

  private async refund(region: RegionName, debitRequestId: string, amount: bigint, requestId: string, accountId: string, deadlineMs: number): Promise<RefundAttempt> {
    const req: RefundRequest = { debitRequestId, amount, requestId, accountId };
    const { call, response } = await this.host.rpc("Refund", region, req, (c, o) => unary(c.balances, c.balances.refund, req, o), deadlineMs);
    const attempt: RefundAttempt = { call, debitRequestId, amount, requestId, accountId, response };
    this.refunds.push(attempt);
    const what = `a refund of ${amount} of ${debitRequestId} at ${region}`;
    if (amount <= 0n) this.expectInvalid(call, "amount", what);
    else if (accountId !== "" && !ACCOUNT_ID.test(accountId)) this.expectInvalid(call, "account_id", `${what} with a malformed account_id`);
    if (call.code === Number(status.ALREADY_EXISTS)) this.checkConflict(requestId, `r|${debitRequestId}|${amount}`, call, what);
    if (response !== undefined) {
      if (response.debitRequestId !== debitRequestId || response.refundedTotal < amount || response.refundable < 0n) {
        this.host.violation(`${what} answered ${response.debitRequestId}: refunded_total ${response.refundedTotal}, refundable ${response.refundable}`, call);
      }
    }
    return attempt;
  }

  private expectInvalid(call: HoldCallRecord, field: string, why: string): void {
    if (isUnknown(call.code)) return;
    if (call.code !== Number(status.INVALID_ARGUMENT) || fieldOf(call.details) !== field) {
      this.host.violation(`${why}: expected INVALID_ARGUMENT naming ${field}, got ${status[call.code ?? 0] ?? call.code} "${call.details}"`, call);
    }
  }

  private expectCode(call: HoldCallRecord, allowed: readonly status[], why: string): void {
    if (isUnknown(call.code)) return;
    if (!allowed.includes(call.code ?? -1)) {
      this.host.violation(`${why}: expected ${allowed.map((c) => status[c]).join(" or ")}, got ${status[call.code ?? 0] ?? call.code} "${call.details}"`, call);
    }
  }

  /** The id sent with other parameters (by any RPC) before `t`. */
  /**
   * An ALREADY_EXISTS must have a use of the id with other parameters sent
   * before it was answered. Checked once every call is recorded: a call still
   * in flight when this one was answered (a concurrent debit with the same id)
   * is recorded only when it returns.
   */
  private checkConflict(requestId: string, fingerprint: string, call: HoldCallRecord, what: string): void {
    this.conflictChecks.push(() => {
      if (!this.usedOtherwise(requestId, fingerprint, call.doneAt)) {
        this.host.violation(`${what} answered ALREADY_EXISTS though ${requestId} was not used with other parameters`, call);
      }
    });
  }

  private usedOtherwise(requestId: string, fingerprint: string, t: number): boolean {
    if (this.host.usedByWrites(requestId, t)) return true;
    const before = (c: HoldCallRecord): boolean => c.sentAt <= t;
    return (
      this.holds.some((h) => h.spec.requestId === requestId && before(h.call) && `h|${h.spec.accountId}|${h.spec.amount}|${h.spec.timeoutMs}` !== fingerprint) ||
      this.resolutions.some((r) => r.requestId === requestId && before(r.call) && (r.kind === "capture" ? `c|${r.holdId}|${r.amount}` : `v|${r.holdId}`) !== fingerprint) ||
      this.refunds.some((r) => r.requestId === requestId && before(r.call) && `r|${r.debitRequestId}|${r.amount}` !== fingerprint)
    );
  }

  // ---- unknown outcomes -------------------------------------------------------

  /** Retries every hold, capture, void and refund with an unknown outcome, same request at the same region, until it is answered. */
  async resolveUnknowns(untilDefinite: (original: HoldCallRecord, send: () => Promise<number | undefined>) => Promise<number | undefined>): Promise<number> {
    const pending = new Map<string, () => Promise<void>>();
    const key = (c: HoldCallRecord): string => `${c.region} ${c.rpc} ${JSON.stringify(c.request, (_k, v: unknown) => (typeof v === "bigint" ? `${v}` : v))}`;
    for (const h of this.holds) {
      if (!isUnknown(h.call.code)) continue;
      const maxWaitMs = (h.call.request as HoldRequest).maxWaitMs;
      pending.set(key(h.call), async () => void (await untilDefinite(h.call, async () => (await this.hold(h.call.region, h.spec, maxWaitMs, 3_000)).call.code)));
    }
    for (const r of this.resolutions) {
      if (!isUnknown(r.call.code)) continue;
      pending.set(key(r.call), async () => void (await untilDefinite(r.call, async () => (await this.resolve(r.call.region, r.kind, r.holdId, r.amount, r.requestId, r.accountId, 3_000)).call.code)));
    }
    for (const f of this.refunds) {
      if (!isUnknown(f.call.code)) continue;
      pending.set(key(f.call), async () => void (await untilDefinite(f.call, async () => (await this.refund(f.call.region, f.debitRequestId, f.amount, f.requestId, f.accountId, 3_000)).call.code)));
    }
    const work = [...pending.values()];
    const worker = async (): Promise<void> => {
      for (let w = work.shift(); w !== undefined; w = work.shift()) await w();
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return pending.size;
  }

  // ---- final states -----------------------------------------------------------

  /**
   * Reads every placed hold's state at its region by replaying its Hold, until
   * every hold that can time out during a run (all but the long ones) has left
   * PENDING: the holding region's sweep expires it, so nothing changes the
   * held amounts after this read. Long holds stay pending.
   */
  async readFinalStates(): Promise<void> {
    const giveUpAt = Date.now() + 60_000;
    let open = [...this.placed.values()];
    while (open.length > 0) {
      const read = await Promise.all(
        open.map(async (p) => {
          const a = await this.hold(p.region, p.spec, 0, 3_000);
          return { p, state: a.response?.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED ? a.response.state : undefined, call: a.call };
        }),
      );
      open = [];
      for (const { p, state, call } of read) {
        p.final = state;
        if (state === undefined && !isUnknown(call.code)) {
          this.host.note(`hold ${p.holdId}: its final state could not be read (${status[call.code ?? 0]}: ${call.details})`);
          continue;
        }
        if (state !== undefined && (state !== HoldState.HOLD_STATE_PENDING || p.spec.timeoutMs >= LONG_HOLD_MS)) continue;
        // Due for 30 s and still pending (the sweep runs every 100 ms): it was not expired.
        if (state === undefined && Date.now() > giveUpAt) {
          this.host.violation(`hold ${p.holdId}: no definite answer to its replay in 60 s`, call);
        } else if (Date.now() > p.expiresAtMs + 30_000) {
          this.host.violation(`hold ${p.holdId} (timeout ${p.spec.timeoutMs} ms) is still ${stateName(state)} ${Date.now() - p.expiresAtMs} ms after it was due`, call);
        } else open.push(p);
      }
      if (open.length > 0) await new Promise((r) => setTimeout(r, 200));
    }
  }

  // ---- checks -----------------------------------------------------------------

  /** What the answers say each region holds, captured and refunded for `accountId`. */
  totals(accountId: string, region: RegionName): HoldTotals {
    const t: HoldTotals = { held: 0n, heldUncertain: [], captured: 0n, capturedUncertain: [], refunded: 0n, refundedUncertain: [] };
    for (const p of this.placed.values()) {
      if (p.region !== region || p.spec.accountId !== accountId) continue;
      if (p.final === undefined) {
        t.heldUncertain.push(p.spec.amount);
        const c = this.capturedOf(p);
        if (c !== undefined) t.capturedUncertain.push(c);
      } else if (p.final === HoldState.HOLD_STATE_PENDING) t.held += p.spec.amount;
      else if (p.final === HoldState.HOLD_STATE_CAPTURED) {
        const c = this.capturedOf(p);
        if (c === undefined) t.capturedUncertain.push(p.spec.amount);
        else t.captured += c;
      }
    }
    for (const refunds of this.appliedRefunds.values()) {
      for (const r of refunds.values()) {
        if (r.region !== region) continue;
        if (r.accountId === accountId) t.refunded += r.amount;
        else if (r.accountId === undefined) t.refundedUncertain.push(r.amount);
      }
    }
    return t;
  }

  private capturedOf(p: PlacedHold): bigint | undefined {
    return this.resolutions.find((r) => r.holdId === p.holdId && r.call.region === p.region && r.response?.state === HoldState.HOLD_STATE_CAPTURED)?.response?.captured;
  }

  /** Whether a Hold, CaptureHold, VoidHold or Refund was sent with this request id before `t`. */
  usesId(requestId: string, t = Number.POSITIVE_INFINITY): boolean {
    const before = (c: HoldCallRecord): boolean => c.sentAt <= t;
    return (
      this.holds.some((h) => h.spec.requestId === requestId && before(h.call)) ||
      this.resolutions.some((r) => r.requestId === requestId && before(r.call)) ||
      this.refunds.some((r) => r.requestId === requestId && before(r.call))
    );
  }

  /** Once every outcome is known and every final state read: what the totals and checks count. */
  settle(): void {
    for (const p of this.placed.values()) p.captured = this.capturedOf(p);
    this.collectAppliedRefunds();
  }

  /** Per hold: placed once, resolved at most once and as its answers said, timeouts judged right, refusals as documented. */
  checkHolds(): void {
    for (const check of this.conflictChecks.splice(0)) check();
    for (const p of this.placed.values()) {
      const at = (x: { call: HoldCallRecord }): boolean => x.call.region === p.region;
      const placings = this.holds.filter((h) => at(h) && h.spec.requestId === p.spec.requestId && h.response?.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED);
      const fresh = placings.filter((h) => !h.response!.replayed);
      if (fresh.length > 1) this.host.violation(`hold ${p.holdId} was placed ${fresh.length} times`, ...fresh.map((h) => h.call));
      const mine = this.resolutions.filter((r) => at(r) && r.holdId === p.holdId);
      const ok = mine.filter((r) => r.response !== undefined);
      const decided = ok.filter((r) => !r.response!.replayed);
      if (decided.length > 1) this.host.violation(`hold ${p.holdId} was resolved ${decided.length} times`, ...decided.map((r) => r.call));
      const outcomes = new Set(ok.map((r) => `${r.response!.state}|${r.response!.captured}`));
      if (outcomes.size > 1) this.host.violation(`hold ${p.holdId}: its resolutions answered differently (${[...outcomes].join(", ")})`, ...ok.map((r) => r.call));
      for (const r of ok) {
        if (r.response!.released !== p.spec.amount - r.response!.captured) {
          this.host.violation(`hold ${p.holdId} of ${p.spec.amount}: a ${r.kind} captured ${r.response!.captured} and released ${r.response!.released}`, r.call);
        }
        // Decided at or after the timeout, it must have been refused as expired.
        if (!r.response!.replayed && r.call.sentAt + this.host.started >= p.expiresAtMs) {
          this.host.violation(`hold ${p.holdId} was ${r.kind === "capture" ? "captured" : "voided"} by a call sent ${r.call.sentAt + this.host.started - p.expiresAtMs} ms after its timeout`, r.call);
        }
      }
      const final = p.final;
      if (final === undefined) continue;
      const first = ok[0]?.response;
      if (final === HoldState.HOLD_STATE_EXPIRED && ok.length > 0) {
        this.host.violation(`hold ${p.holdId} is EXPIRED although ${ok.length} ${ok[0]!.kind} calls succeeded on it`, ...ok.map((r) => r.call));
      }
      if (final === HoldState.HOLD_STATE_EXPIRED && p.spec.timeoutMs >= LONG_HOLD_MS) this.host.violation(`hold ${p.holdId} of ${p.spec.timeoutMs} ms expired during the run`);
      if ((final === HoldState.HOLD_STATE_CAPTURED || final === HoldState.HOLD_STATE_VOIDED) && first?.state !== final) {
        this.host.violation(`hold ${p.holdId} is ${stateName(final)} at the end, but ${first === undefined ? "no capture or void of it succeeded" : `its resolutions answered ${stateName(first.state)}`}`, ...mine.map((r) => r.call));
      }
      if (final === HoldState.HOLD_STATE_PENDING && ok.length > 0) this.host.violation(`hold ${p.holdId} is still PENDING after a ${ok[0]!.kind} succeeded`, ...ok.map((r) => r.call));
      for (const r of mine) this.checkRefusal(p, r);
    }
    // A retry of a hold at a region that did not place it names the region that did.
    for (const h of this.holds) {
      if (h.call.code !== Number(status.FAILED_PRECONDITION)) continue;
      const holder = h.call.trailer;
      const there = holder === undefined ? undefined : this.placed.get(`${holder}:${h.spec.requestId}`);
      if (holder === h.call.region || there === undefined || !h.call.details.includes(`"${holder}"`)) {
        this.host.violation(`Hold ${h.spec.requestId} at ${h.call.region} answered FAILED_PRECONDITION naming ${holder ?? "no region"}, where no hold of that id was placed`, h.call);
      }
    }
    // Captures and voids answered OK for a hold nobody placed.
    for (const r of this.resolutions) {
      if (r.response !== undefined && !this.placed.has(r.holdId)) this.host.violation(`a ${r.kind} of ${r.holdId}, which was never placed, succeeded`, r.call);
      if (r.call.code === Number(status.NOT_FOUND) && r.call.region === r.holdId.slice(0, r.holdId.indexOf(":"))) {
        const p = this.placed.get(r.holdId);
        if (p !== undefined && p.knownAt < r.call.sentAt) this.host.violation(`a ${r.kind} of ${r.holdId} answered NOT_FOUND, though the hold was placed ${r.call.sentAt - p.knownAt} ms before`, r.call);
      }
    }
  }

  /** A capture or void of a placed hold, at its region, refused: only for the documented reasons. */
  private checkRefusal(p: PlacedHold, r: ResolutionAttempt): void {
    const code = r.call.code;
    if (code === Number(status.OK) || isUnknown(code) || r.call.region !== p.region) return;
    if ((r.kind === "capture" && r.amount <= 0n) || (r.accountId !== "" && !ACCOUNT_ID.test(r.accountId))) return;
    const field = fieldOf(r.call.details);
    const wrongAccount = r.accountId !== "" && r.accountId !== p.spec.accountId;
    const over = r.kind === "capture" && r.amount > p.spec.amount;
    if (code === Number(status.INVALID_ARGUMENT)) {
      if (!((wrongAccount && field === "account_id") || (over && field === "amount"))) {
        this.host.violation(`a ${r.kind} of ${p.holdId} (${p.spec.amount} on ${p.spec.accountId}) answered INVALID_ARGUMENT "${r.call.details}"`, r.call);
      }
      return;
    }
    if (code === Number(status.FAILED_PRECONDITION)) {
      const same = p.final === HoldState.HOLD_STATE_VOIDED ? r.kind === "void" : p.final === HoldState.HOLD_STATE_CAPTURED && r.kind === "capture" && r.amount === p.captured;
      const resolved = p.final !== undefined && p.final !== HoldState.HOLD_STATE_PENDING;
      if (!resolved || same) {
        this.host.violation(`a ${r.kind} of ${p.holdId} (${stateName(p.final)} at the end) answered FAILED_PRECONDITION "${r.call.details}"`, r.call);
      } else if (p.final === HoldState.HOLD_STATE_EXPIRED && r.call.doneAt + this.host.started < p.expiresAtMs) {
        this.host.violation(`a ${r.kind} of ${p.holdId} was refused ${p.expiresAtMs - r.call.doneAt - this.host.started} ms before the hold's timeout`, r.call);
      }
      return;
    }
    if (code === Number(status.ALREADY_EXISTS) || code === Number(status.NOT_FOUND) || code === Number(status.OUT_OF_RANGE)) return;
    this.host.violation(`a ${r.kind} of ${p.holdId} answered ${status[code ?? 0]}`, r.call);
  }

  /** Refunds: only where the debit was decided, never beyond it, refused as documented. */
  checkRefunds(): void {
    for (const f of this.refunds) {
      const code = f.call.code;
      if (isUnknown(code) || f.amount <= 0n || (f.accountId !== "" && !ACCOUNT_ID.test(f.accountId))) continue;
      const source = this.sourceOf(f.debitRequestId);
      const what = `a refund of ${f.amount} of ${f.debitRequestId} at ${f.call.region}`;
      if (source === "grant") {
        if (code !== Number(status.NOT_FOUND) && !(code === Number(status.INVALID_ARGUMENT) && fieldOf(f.call.details) === "debit_request_id")) {
          this.host.violation(`${what} (a grant): expected INVALID_ARGUMENT naming debit_request_id or NOT_FOUND, got ${status[code ?? 0]} "${f.call.details}"`, f.call);
        }
        continue;
      }
      if (source === undefined) {
        if (code !== Number(status.NOT_FOUND)) this.host.violation(`${what} (no such debit): expected NOT_FOUND, got ${status[code ?? 0]} "${f.call.details}"`, f.call);
        continue;
      }
      if (source.uncertain || source.appliedAt.size > 1) continue;
      const [decider] = [...source.appliedAt.keys()];
      const wrongAccount = f.accountId !== "" && f.accountId !== source.accountId;
      if (code === Number(status.OK)) {
        if (decider === undefined) this.host.violation(`${what}: a refund of a debit no region applied succeeded`, f.call);
        else if (f.call.region !== decider && !f.response!.replayed) this.host.violation(`${what}: decided there, but ${decider} decided the debit`, f.call);
        else if (f.call.region === decider && (f.response!.refundedTotal > source.amount || f.response!.refundable !== source.amount - f.response!.refundedTotal)) {
          this.host.violation(`${what}: refunded_total ${f.response!.refundedTotal}, refundable ${f.response!.refundable} of a debit of ${source.amount}`, f.call);
        }
        if (wrongAccount && !f.response!.replayed) this.host.violation(`${what} with account_id ${f.accountId} (the debit's is ${source.accountId}) succeeded`, f.call);
        continue;
      }
      if (code === Number(status.INVALID_ARGUMENT)) {
        if (!(wrongAccount && fieldOf(f.call.details) === "account_id")) this.host.violation(`${what} answered INVALID_ARGUMENT "${f.call.details}"`, f.call);
        continue;
      }
      if (code === Number(status.ALREADY_EXISTS) || code === Number(status.OUT_OF_RANGE)) continue;
      if (decider === undefined) {
        // Refused (or never applied) everywhere: nothing to refund.
        if (code !== Number(status.FAILED_PRECONDITION) && code !== Number(status.NOT_FOUND)) this.host.violation(`${what} (a refused debit) answered ${status[code ?? 0]}`, f.call);
        continue;
      }
      if (f.call.region !== decider) {
        // A region that refused the same id itself (a duplicate sent there too) answers from its own refusal.
        const refusedHere = source.refusedAt.has(f.call.region) && code === Number(status.FAILED_PRECONDITION) && f.call.trailer === undefined;
        if (refusedHere) this.host.note(`${what}: refused as "${f.call.details}" (that region refused the id; ${decider} approved it)`);
        else if (code === Number(status.FAILED_PRECONDITION) && f.call.trailer !== decider) {
          this.host.violation(`${what}: FAILED_PRECONDITION does not name ${decider}, which decided the debit (trailer ${f.call.trailer ?? "none"})`, f.call);
        } else if (code !== Number(status.FAILED_PRECONDITION) && code !== Number(status.NOT_FOUND)) {
          this.host.violation(`${what} (decided by ${decider}) answered ${status[code ?? 0]}`, f.call);
        }
        continue;
      }
      if (code === Number(status.NOT_FOUND)) {
        const knownAt = source.appliedAt.get(decider)!;
        if (knownAt < f.call.sentAt) this.host.violation(`${what}: NOT_FOUND, though ${decider} applied the debit ${f.call.sentAt - knownAt} ms before`, f.call);
        continue;
      }
      if (code === Number(status.FAILED_PRECONDITION)) {
        // Beyond what is left: the refunds applied before this one answered must leave less than its amount.
        const applied = [...(this.appliedRefunds.get(f.debitRequestId)?.entries() ?? [])].filter(([id]) => id !== f.requestId);
        const before = applied.reduce((s, [, r]) => s + r.amount, 0n);
        if (before + f.amount <= source.amount) {
          this.host.violation(`${what}: FAILED_PRECONDITION "${f.call.details}", but every other refund of it adds up to ${before} of ${source.amount}`, f.call);
        }
        continue;
      }
      this.host.violation(`${what} answered ${status[code ?? 0]}`, f.call);
    }
    for (const [debitRequestId, refunds] of this.appliedRefunds) {
      const total = [...refunds.values()].reduce((s, r) => s + r.amount, 0n);
      const source = this.sourceOf(debitRequestId);
      if (source !== undefined && source !== "grant" && !source.uncertain && source.appliedAt.size <= 1 && total > source.amount) {
        this.host.violation(
          `refunds of ${debitRequestId} add up to ${total}, above the ${source.amount} it took`,
          ...this.refunds.filter((f) => f.debitRequestId === debitRequestId && f.call.code === Number(status.OK)).map((f) => f.call),
        );
      }
    }
  }

  /**
   * Each refund request id counts once, at the region that applied it: an OK
   * answer there that was not a replay, or a replayed one after an unknown
   * outcome of that request at that region (the unknown call applied it).
   */
  private collectAppliedRefunds(): void {
    this.appliedRefunds.clear();
    for (const f of this.refunds) {
      if (f.response === undefined) continue;
      const fresh = !f.response.replayed;
      const resolvedUnknown = f.response.replayed && this.refunds.some((u) => u.requestId === f.requestId && u.call.region === f.call.region && isUnknown(u.call.code) && u.amount === f.amount && u.debitRequestId === f.debitRequestId);
      if (!fresh && !resolvedUnknown) continue;
      const source = this.sourceOf(f.debitRequestId);
      const accountId = source === undefined || source === "grant" ? undefined : source.uncertain ? undefined : source.accountId;
      // A debit id decided at two regions (sent to both before either decision
      // replicated) is two debits: a refund of it applies at each of them.
      const perRegion = source !== undefined && source !== "grant" && source.appliedAt.size > 1;
      const key = perRegion ? `${f.debitRequestId}@${f.call.region}` : f.debitRequestId;
      let refunds = this.appliedRefunds.get(key);
      if (refunds === undefined) this.appliedRefunds.set(key, (refunds = new Map<string, AppliedRefund>()));
      const earlier = refunds.get(f.requestId);
      if (earlier !== undefined && (!fresh || earlier.region !== f.call.region)) continue;
      if (earlier !== undefined) {
        this.host.violation(`refund ${f.requestId} was applied twice at ${f.call.region}`, f.call);
        continue;
      }
      refunds.set(f.requestId, { debitRequestId: f.debitRequestId, perRegion, amount: f.amount, region: f.call.region, accountId });
    }
  }

  /** What a debit_request_id names: a debit or capture (with where it was applied), a grant, or nothing the run sent. */
  private sourceOf(requestId: string): DebitFacts | "grant" | undefined {
    const debit = this.host.debitFacts(requestId);
    const captures = this.resolutions.filter((r) => r.kind === "capture" && r.requestId === requestId && r.response !== undefined && !r.response.replayed);
    // A debit's id a hold reused: what a region remembers under it depends on which came first there.
    if (debit !== undefined && this.holds.some((h) => h.spec.requestId === requestId)) return { ...debit, uncertain: true };
    if (debit !== undefined && captures.length === 0) return debit;
    if (debit === undefined && captures.length === 1) {
      const c = captures[0]!;
      const p = this.placed.get(c.holdId);
      return {
        accountId: p?.spec.accountId ?? "",
        amount: c.response!.captured,
        appliedAt: new Map([[c.call.region, c.call.doneAt]]),
        refusedAt: new Set(),
        uncertain: p === undefined || this.resolutions.some((r) => r.requestId === requestId && r.kind === "capture" && (r.amount !== c.amount || r.holdId !== c.holdId)),
      };
    }
    if (debit !== undefined || captures.length > 0) return { accountId: "", amount: 0n, appliedAt: new Map(), refusedAt: new Set(), uncertain: true };
    if (this.host.isGrantId(requestId)) return "grant";
    // A capture whose outcome was never definite, or a hold's id: not a debit the run can account for.
    if (this.resolutions.some((r) => r.requestId === requestId) || this.holds.some((h) => h.spec.requestId === requestId)) {
      return { accountId: "", amount: 0n, appliedAt: new Map(), refusedAt: new Set(), uncertain: true };
    }
    return undefined;
  }

  /** Replays, at the deciding region, one applied refund of every refunded debit: its total must be the sum of the refunds applied. */
  async checkRefundTotals(): Promise<void> {
    for (const refunds of this.appliedRefunds.values()) {
      const [first] = [...refunds.entries()];
      if (first === undefined) continue;
      const [requestId, r] = first;
      const debitRequestId = r.debitRequestId;
      const total = [...refunds.values()].reduce((s, x) => s + x.amount, 0n);
      const a = await this.refund(r.region, debitRequestId, r.amount, requestId, "", 3_000);
      if (a.response === undefined || !a.response.replayed || a.response.refundedTotal !== total) {
        this.host.violation(`refund ${requestId} of ${debitRequestId} replayed at ${r.region}: expected a replay with refunded_total ${total} (the refunds applied)`, a.call);
      }
      // Retried at another region (a failover retry): the same totals, or a refusal naming the region that decides.
      // A debit decided at two regions has two deciders: each one's totals are checked at it, above.
      if (r.perRegion) continue;
      for (const elsewhere of REGIONS.filter((x) => x !== r.region)) {
        const b = await this.refund(elsewhere, debitRequestId, r.amount, requestId, "", 3_000);
        const named = b.call.code === Number(status.FAILED_PRECONDITION) && b.call.trailer === r.region;
        const same = b.response !== undefined && b.response.replayed && b.response.refundedTotal === total && b.response.refundable === a.response?.refundable;
        if (!named && !same) {
          this.host.violation(
            `refund ${requestId} of ${debitRequestId} retried at ${elsewhere}: expected refunded_total ${total}, refundable ${a.response?.refundable} as at ${r.region}, or FAILED_PRECONDITION naming ${r.region}`,
            a.call,
            b.call,
          );
        }
      }
    }
  }
}
