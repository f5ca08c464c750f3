// Runs one fuzz program (test/support/fuzz-program.ts) against a real
// 3-region cluster, records every call with its parameters and status,
// resolves unknown outcomes by retrying the same request id, and checks the
// API contract (proto/tally/v1 comments, docs/api.md) against what happened.
// Holds and refunds have their own bookkeeping (test/support/fuzz-holds.ts);
// their held, captured and refunded amounts are part of the exact totals here.

import { status, type CallOptions } from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REGIONS, type RegionName } from "../../src/devcluster/nats-supercluster";
import { DebitOutcome, type DebitRequest, type GetBalanceResponse } from "../../src/generated/tally/v1/balances";
import { PolicyMode } from "../../src/generated/tally/v1/common";
import type { TestCluster } from "./cluster";
import { unary, type Clients } from "./grpc-clients";
import { buildProgram, SHARE, type Op, type Program, type ProgramOptions, type Step, type WriteSpec } from "./fuzz-program";
import { HoldsFuzz, type DebitFacts, type HoldRpc, type HoldsHost, type HoldTotals } from "./fuzz-holds";

type Rpc = "Grant" | "Debit" | "DebitBatch" | "GetBalance" | "TransferAllowance" | "SetAccountPolicy" | "ClusterStatus" | HoldRpc;
/** `holds`: every placed hold's state read at its region once the due ones expired. */
type Phase = "run" | "resolve" | "holds" | "diagnose" | "sweep" | "alive";

// Every status the proto comments (and the brief's list) allow per RPC.
const WRITE_CODES: readonly status[] = [
  status.OK,
  status.INVALID_ARGUMENT,
  status.ALREADY_EXISTS,
  status.RESOURCE_EXHAUSTED,
  status.OUT_OF_RANGE,
  status.DEADLINE_EXCEEDED,
  status.UNAVAILABLE,
];
const ADMIN_CODES: readonly status[] = [
  status.OK,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.NOT_FOUND,
  status.OUT_OF_RANGE,
  status.DEADLINE_EXCEEDED,
  status.UNAVAILABLE,
];
/** Captures, voids and refunds: also NOT_FOUND (unknown hold or debit) and FAILED_PRECONDITION (wrong region, resolved hold, refused or exhausted debit). */
const RESOLVE_CODES: readonly status[] = [...WRITE_CODES, status.NOT_FOUND, status.FAILED_PRECONDITION];
const DOCUMENTED: Record<Rpc, readonly status[]> = {
  // FAILED_PRECONDITION: a retry of a hold another region placed (it names that region).
  Hold: [...WRITE_CODES, status.FAILED_PRECONDITION],
  CaptureHold: RESOLVE_CODES,
  VoidHold: RESOLVE_CODES,
  Refund: RESOLVE_CODES,
  Grant: WRITE_CODES,
  Debit: WRITE_CODES,
  DebitBatch: WRITE_CODES,
  GetBalance: [status.OK, status.INVALID_ARGUMENT, status.DEADLINE_EXCEEDED, status.UNAVAILABLE],
  TransferAllowance: ADMIN_CODES,
  SetAccountPolicy: ADMIN_CODES,
  ClusterStatus: [status.OK, status.DEADLINE_EXCEEDED, status.UNAVAILABLE],
};
/** The outcome of a call that ended with one of these is unknown: it is resolved by retrying the same request. */
const UNKNOWN_OUTCOME: ReadonlySet<number> = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.CANCELLED, status.INTERNAL, status.UNKNOWN]);
/** A fresh application in a second region this long after the first was acknowledged is not the documented failover window. */
const REPLICATION_WINDOW_MS = 5_000;

export interface CallRecord {
  readonly n: number;
  readonly phase: Phase;
  readonly rpc: Rpc;
  readonly region: RegionName;
  /** Incarnation of the region's node when the call was sent (restarts count up). */
  readonly epoch: number;
  readonly request: unknown;
  /** Milliseconds since the run started. */
  readonly sentAt: number;
  doneAt: number;
  /** gRPC status; undefined when the call failed without one. */
  code: number | undefined;
  details: string;
  /** Trailer `tally-region` of a refusal (the region that decides a hold or refund). */
  trailer?: string;
  response?: unknown;
}

type Granted = "granted";
type AttemptResult =
  | { readonly kind: "answer"; readonly replayed: boolean; readonly outcome: DebitOutcome | Granted; readonly balance: bigint; readonly localRights: bigint }
  | { readonly kind: "refused"; readonly code: number }
  | { readonly kind: "unknown"; readonly code: number | undefined };

/** One request id sent once (a Grant, a Debit or one DebitBatch item). */
export interface Attempt {
  readonly call: CallRecord;
  readonly write: WriteSpec;
  readonly result: AttemptResult;
}

interface PolicyAttempt {
  readonly accountId: string;
  readonly mode: PolicyMode;
  readonly limit: bigint;
  readonly call: CallRecord;
}

export interface FuzzReport {
  readonly seed: number;
  readonly violations: readonly string[];
  readonly notes: readonly string[];
  readonly summary: string;
  readonly logFile: string | undefined;
}

export interface FuzzOptions extends ProgramOptions {
  /** Most ids re-sent to every region after convergence. */
  readonly sweepIds: number;
}

const fp = (w: WriteSpec): string => `${w.kind}|${w.accountId}|${w.amount}${w.lot === undefined ? "" : `|p${w.lot.priority}.e${w.lot.expiresAtMs}`}`;
const isApplication = (a: Attempt): boolean =>
  a.result.kind === "answer" &&
  !a.result.replayed &&
  (a.result.outcome === "granted" || a.result.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED || a.result.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT);
const isRefusalAnswer = (a: Attempt): boolean => a.result.kind === "answer" && a.result.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT;
const statusName = (code: number | undefined): string => (code === undefined ? "no status (transport failure)" : (status[code] ?? `code ${code}`));

export function json(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v));
}

function grpcCode(error: unknown): number | undefined {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "number") return error.code;
  return undefined;
}

function trailerOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null || !("metadata" in error)) return undefined;
  const metadata: unknown = error.metadata;
  if (typeof metadata !== "object" || metadata === null || !("get" in metadata) || typeof metadata.get !== "function") return undefined;
  const values: unknown = (metadata.get as (key: string) => unknown).call(metadata, "tally-region");
  return Array.isArray(values) && typeof values[0] === "string" ? values[0] : undefined;
}

function errorText(error: unknown): string {
  if (typeof error === "object" && error !== null && "details" in error && typeof error.details === "string") return error.details;
  return error instanceof Error ? error.message : String(error);
}

const clip = (text: string, max = 600): string => (text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text);

function describeCall(call: CallRecord): string {
  const answer = call.code === status.OK ? `OK ${clip(json(call.response))}` : `${statusName(call.code)} "${call.details}"`;
  return `#${call.n} ${call.phase} ${call.rpc} @${call.region} (incarnation ${call.epoch}, t=${call.sentAt}..${call.doneAt} ms) ${clip(json(call.request))} -> ${answer}`;
}

/** Sums a subset of `amounts` can reach (all of them when few; else only the range is checked). */
function reachable(amounts: readonly bigint[], diff: bigint): boolean {
  if (amounts.length > 16) return diff >= 0n && diff <= amounts.reduce((s, a) => s + a, 0n);
  for (let mask = 0; mask < 1 << amounts.length; mask++) {
    let s = 0n;
    for (let i = 0; i < amounts.length; i++) if ((mask >> i) & 1) s += amounts[i]!;
    if (s === diff) return true;
  }
  return false;
}

export async function runFuzz(cluster: TestCluster, seed: number, options: FuzzOptions): Promise<FuzzReport> {
  const run = new FuzzRun(cluster, buildProgram(seed, options), options);
  return run.execute();
}

class FuzzRun implements HoldsHost {
  readonly started = Date.now();
  private readonly calls: CallRecord[] = [];
  private readonly attempts: Attempt[] = [];
  private readonly byId = new Map<string, Attempt[]>();
  private readonly policies: PolicyAttempt[] = [];
  private readonly violations: string[] = [];
  private readonly notes: string[] = [];
  private readonly epochs = new Map<RegionName, number>(REGIONS.map((r) => [r, 0]));
  /** Requests refused with an error status at a region whose totals do not add up: were they applied after all? */
  private readonly suspects = new Map<string, Attempt>();
  private phase: Phase = "run";
  private restarts = 0;
  private readonly holds = new HoldsFuzz(this);

  constructor(
    private readonly cluster: TestCluster,
    private readonly program: Program,
    private readonly options: FuzzOptions,
  ) {}

  now(): number {
    return Date.now() - this.started;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  violation(text: string, ...calls: CallRecord[]): void {
    this.violations.push([text, ...calls.slice(0, 6).map((c) => `    ${describeCall(c)}`), ...(calls.length > 6 ? [`    … ${calls.length - 6} more calls`] : [])].join("\n"));
  }

  async execute(): Promise<FuzzReport> {
    const { program } = this;
    let restarting: Promise<void> | undefined;
    let restartFailure: unknown;
    const awaitRestart = async (): Promise<void> => {
      await restarting;
      restarting = undefined;
      if (restartFailure !== undefined) throw restartFailure instanceof Error ? restartFailure : new Error(json(restartFailure));
    };
    let overlap = 0;
    for (const step of program.steps) {
      if (step.kind === "restart") {
        await awaitRestart();
        restarting = this.restart(step).catch((error: unknown) => {
          restartFailure = error;
        });
        overlap = step.overlap;
        continue;
      }
      await Promise.all(step.ops.map((op) => this.perform(op)));
      if (restarting !== undefined && --overlap <= 0) await awaitRestart();
    }
    await awaitRestart();
    const runCalls = this.calls.length;

    this.phase = "resolve";
    const unresolved = (await this.resolveUnknowns()) + (await this.holds.resolveUnknowns((original, send) => this.untilDefinite(original as CallRecord, send)));
    this.phase = "holds";
    await this.holds.readFinalStates();
    this.holds.settle();

    let converged = true;
    try {
      await this.cluster.waitConverged(program.accounts, 60_000);
    } catch (error) {
      converged = false;
      this.violation(`regions did not converge: ${error instanceof Error ? error.message : String(error)}`);
    }
    const views = await this.readViews();
    if (views !== undefined) this.checkFinalViews(views, converged);
    this.phase = "diagnose";
    await this.diagnose();

    this.phase = "sweep";
    await this.sweep();
    this.checkAttempts();
    this.holds.checkHolds();
    this.holds.checkRefunds();
    await this.holds.checkRefundTotals();
    this.phase = "alive";
    await this.checkAlive();

    const histogram = new Map<string, number>();
    for (const c of this.calls) {
      const key = `${c.rpc} ${statusName(c.code)}`;
      histogram.set(key, (histogram.get(key) ?? 0) + 1);
    }
    const summary =
      `seed ${program.seed}: ${runCalls} calls in ${program.steps.filter((s) => s.kind === "wave").length} waves, ` +
      `${this.restarts} restarts, ${unresolved} unknown outcomes resolved, ${this.calls.length} calls in all, ` +
      `${this.violations.length} violations, ${((Date.now() - this.started) / 1000).toFixed(1)} s\n      ` +
      `${this.holds.counts}\n      ` +
      [...histogram.entries()]
        .sort()
        .map(([k, v]) => `${k}: ${v}`)
        .join(", ");
    let logFile: string | undefined;
    if (this.violations.length > 0) {
      logFile = join(tmpdir(), `tally-fuzz-${program.seed}.jsonl`);
      writeFileSync(logFile, this.calls.map((c) => json(c)).join("\n") + "\n");
    }
    return { seed: program.seed, violations: this.violations, notes: this.notes, summary, logFile };
  }

  // ---- calls --------------------------------------------------------------

  async rpc<Res>(
    rpc: Rpc,
    region: RegionName,
    request: unknown,
    invoke: (c: Clients, options: Partial<CallOptions>) => Promise<Res>,
    deadlineMs: number,
  ): Promise<{ call: CallRecord; response: Res | undefined }> {
    const call: CallRecord = {
      n: this.calls.length,
      phase: this.phase,
      rpc,
      region,
      epoch: this.epochs.get(region)!,
      request,
      sentAt: this.now(),
      doneAt: 0,
      code: undefined,
      details: "",
    };
    this.calls.push(call);
    let response: Res | undefined;
    try {
      response = await invoke(this.cluster.region(region).clients, { deadline: Date.now() + deadlineMs });
      call.code = status.OK;
      call.response = response;
    } catch (error) {
      call.code = grpcCode(error);
      call.details = errorText(error);
      const trailer = trailerOf(error);
      if (trailer !== undefined) call.trailer = trailer;
    }
    call.doneAt = this.now();
    if (call.code !== undefined && !DOCUMENTED[rpc].includes(call.code)) {
      this.violation(`${rpc} answered ${statusName(call.code)}, not a status the proto documents for it`, call);
    }
    return { call, response };
  }

  private record(call: CallRecord, write: WriteSpec, answer: Extract<AttemptResult, { kind: "answer" }> | undefined): Attempt {
    const result: AttemptResult =
      answer !== undefined
        ? answer
        : call.code === undefined || UNKNOWN_OUTCOME.has(call.code)
          ? { kind: "unknown", code: call.code }
          : { kind: "refused", code: call.code };
    const attempt: Attempt = { call, write, result };
    this.attempts.push(attempt);
    const list = this.byId.get(write.requestId);
    if (list === undefined) this.byId.set(write.requestId, [attempt]);
    else list.push(attempt);
    if (answer !== undefined) this.checkAnswer(write.accountId, answer.balance, answer.localRights, call, answer.outcome);
    if (answer !== undefined && write.kind === "debit" && !answer.replayed && isApplication(attempt) && write.amount > SHARE) {
      this.violation(`a debit of ${write.amount} > ${SHARE} (the per-region debit cap) was approved`, call);
    }
    if (answer !== undefined && write.kind === "grant" && !answer.replayed && write.amount > SHARE) {
      this.violation(`a grant of ${write.amount} > ${SHARE} (the per-region grant cap) was applied`, call);
    }
    return attempt;
  }

  /** A statically invalid request must get one of `allowed` (or an unknown outcome). */
  private expectStatus(call: CallRecord, allowed: readonly status[], why: string): void {
    if (call.code === undefined || UNKNOWN_OUTCOME.has(call.code)) return;
    if (!allowed.includes(call.code)) {
      this.violation(`${why}: expected ${allowed.map((c) => statusName(c)).join(" or ")}, got ${statusName(call.code)}`, call);
    }
  }

  private async perform(op: Op): Promise<void> {
    switch (op.kind) {
      case "grant":
        await this.grant(op.region, op.write, op.deadlineMs);
        return;
      case "debit":
        await this.debit(op.region, op.write, op.maxWaitMs, op.deadlineMs);
        return;
      case "batch":
        return this.batch(op.region, op.items, op.maxWaitMs, op.deadlineMs);
      case "transfer": {
        const req = { accountId: op.accountId, toRegion: op.toRegion, amount: op.amount };
        const { call, response } = await this.rpc("TransferAllowance", op.region, req, (c, o) => unary(c.admin, c.admin.transferAllowance, req, o), op.deadlineMs);
        if (op.amount <= 0n || op.toRegion === "" || op.toRegion === op.region) this.expectStatus(call, [status.INVALID_ARGUMENT], "an invalid transfer");
        else if (!(REGIONS as readonly string[]).includes(op.toRegion)) this.expectStatus(call, [status.NOT_FOUND], "a transfer to an unknown region");
        if (response !== undefined) this.checkAnswer(op.accountId, undefined, response.localRights, call, undefined);
        return;
      }
      case "policy": {
        const req = { accountId: op.accountId, policy: { mode: op.mode, overdraftLimit: op.overdraftLimit, lowWaterMark: op.lowWaterMark } };
        const { call } = await this.rpc("SetAccountPolicy", op.region, req, (c, o) => unary(c.admin, c.admin.setAccountPolicy, req, o), op.deadlineMs);
        this.policies.push({ accountId: op.accountId, mode: op.mode, limit: op.overdraftLimit, call });
        const invalid =
          op.mode === PolicyMode.POLICY_MODE_UNSPECIFIED ||
          op.overdraftLimit < 0n ||
          op.lowWaterMark < 0n ||
          (op.mode === PolicyMode.POLICY_MODE_STRICT && op.overdraftLimit !== 0n);
        if (invalid) this.expectStatus(call, [status.INVALID_ARGUMENT], "an invalid policy");
        else if (op.overdraftLimit > SHARE) this.expectStatus(call, [status.OUT_OF_RANGE, status.INVALID_ARGUMENT], "an overdraft limit above the per-region cap");
        return;
      }
      case "balance": {
        await this.balance(op.region, op.accountId);
        return;
      }
      case "hold":
      case "capture":
      case "void":
      case "refund":
        return this.holds.perform(op);
    }
  }

  private async grant(region: RegionName, write: WriteSpec, deadlineMs: number): Promise<Attempt> {
    const req = {
      accountId: write.accountId,
      amount: write.amount,
      requestId: write.requestId,
      ...(write.lot === undefined ? {} : { lot: { priority: write.lot.priority, effectiveAtMs: 0n, expiresAtMs: write.lot.expiresAtMs } }),
    };
    const { call, response } = await this.rpc("Grant", region, req, (c, o) => unary(c.balances, c.balances.grant, req, o), deadlineMs);
    if (write.amount <= 0n) this.expectStatus(call, [status.INVALID_ARGUMENT], "a grant of a non-positive amount");
    else if (write.amount > SHARE) this.expectStatus(call, [status.OUT_OF_RANGE, status.INVALID_ARGUMENT, status.ALREADY_EXISTS], "a grant above the per-region cap");
    return this.record(
      call,
      write,
      response && { kind: "answer", replayed: response.replayed, outcome: "granted", balance: response.balance, localRights: response.localRights },
    );
  }

  private async debit(region: RegionName, write: WriteSpec, maxWaitMs: number, deadlineMs: number): Promise<Attempt> {
    const req: DebitRequest = { accountId: write.accountId, amount: write.amount, requestId: write.requestId, maxWaitMs };
    const { call, response } = await this.rpc("Debit", region, req, (c, o) => unary(c.balances, c.balances.debit, req, o), deadlineMs);
    if (write.amount <= 0n) this.expectStatus(call, [status.INVALID_ARGUMENT], "a debit of a non-positive amount");
    return this.record(
      call,
      write,
      response && { kind: "answer", replayed: response.replayed, outcome: response.outcome, balance: response.balance, localRights: response.localRights },
    );
  }

  private async batch(region: RegionName, items: readonly WriteSpec[], maxWaitMs: number, deadlineMs: number): Promise<void> {
    const req = { debits: items.map((w) => ({ accountId: w.accountId, amount: w.amount, requestId: w.requestId, maxWaitMs })) };
    const { call, response } = await this.rpc("DebitBatch", region, req, (c, o) => unary(c.balances, c.balances.debitBatch, req, o), deadlineMs);
    if (items.some((w) => w.amount <= 0n)) this.expectStatus(call, [status.INVALID_ARGUMENT], "a batch with a non-positive amount");
    if (response !== undefined && response.results.length !== items.length) {
      this.violation(`DebitBatch answered ${response.results.length} results for ${items.length} items`, call);
      return;
    }
    items.forEach((w, i) => {
      const r = response?.results[i];
      this.record(call, w, r && { kind: "answer", replayed: r.replayed, outcome: r.outcome, balance: r.balance, localRights: r.localRights });
    });
  }

  private async balance(region: RegionName, accountId: string): Promise<GetBalanceResponse | undefined> {
    const req = { accountId };
    const { call, response } = await this.rpc("GetBalance", region, req, (c, o) => unary(c.balances, c.balances.getBalance, req, o), 3_000);
    if (response !== undefined) {
      this.checkAnswer(accountId, response.balance, response.localRights, call, undefined);
      for (const r of response.regions) {
        this.checkAnswer(accountId, undefined, r.rights, call, undefined, `rights of ${r.region}`);
        if (r.granted > SHARE || r.debited > SHARE || r.granted < 0n || r.debited < 0n || r.held < 0n || r.held > SHARE || r.refunded < 0n || r.refunded > SHARE) {
          this.violation(`${accountId}: region ${r.region} totals outside [0, ${SHARE}]`, call);
        }
      }
      const heldSum = response.regions.reduce((s, r) => s + r.held, 0n);
      if (response.held !== heldSum) this.violation(`${accountId}: held ${response.held} ≠ Σ regions' held ${heldSum}`, call);
      if (this.program.strictOnly.has(accountId) && response.balance - response.held < 0n) {
        this.violation(`STRICT account ${accountId}: balance ${response.balance} − held ${response.held} < 0`, call);
      }
    }
    return response;
  }

  /** The largest valid OVERDRAFT limit sent for the account before `t` (answered OK or unknown). */
  private overdraftLimitBefore(accountId: string, t: number): bigint {
    let max = 0n;
    for (const p of this.policies) {
      if (p.accountId !== accountId || p.mode !== PolicyMode.POLICY_MODE_OVERDRAFT || p.call.sentAt > t) continue;
      if (p.call.code !== status.OK && p.call.code !== undefined && !UNKNOWN_OUTCOME.has(p.call.code)) continue;
      if (p.limit > max && p.limit <= SHARE) max = p.limit;
    }
    return max;
  }

  /** STRICT accounts never show a negative balance or rights; OVERDRAFT ones stay within the limits sent. */
  checkAnswer(
    accountId: string,
    balance: bigint | undefined,
    rights: bigint,
    call: CallRecord,
    outcome: DebitOutcome | Granted | undefined,
    what = "local_rights",
  ): void {
    if (outcome === DebitOutcome.DEBIT_OUTCOME_UNSPECIFIED || outcome === DebitOutcome.UNRECOGNIZED) {
      this.violation(`${call.rpc} answered outcome ${outcome}`, call);
    }
    if (this.program.strictOnly.has(accountId)) {
      if (balance !== undefined && balance < 0n) this.violation(`STRICT account ${accountId}: balance ${balance} < 0`, call);
      if (rights < 0n) this.violation(`STRICT account ${accountId}: ${what} ${rights} < 0`, call);
      if (outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT) this.violation(`STRICT account ${accountId}: a debit used overdraft`, call);
      return;
    }
    const limit = this.overdraftLimitBefore(accountId, call.doneAt);
    const regions = BigInt(REGIONS.length);
    if (balance !== undefined && balance < -regions * limit) {
      this.violation(`${accountId}: balance ${balance} below -(regions × largest overdraft limit ${limit})`, call);
    }
    if (rights < -limit) this.violation(`${accountId}: ${what} ${rights} below -(largest overdraft limit ${limit})`, call);
    if (outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT && limit === 0n) {
      this.violation(`${accountId}: a debit used overdraft though no OVERDRAFT policy with a limit was ever set`, call);
    }
  }

  // ---- what the holds part asks -------------------------------------------

  usedByWrites(requestId: string, t: number): boolean {
    return (this.byId.get(requestId) ?? []).some((a) => a.call.sentAt <= t);
  }

  isGrantId(requestId: string): boolean {
    return (this.byId.get(requestId) ?? []).some((a) => a.write.kind === "grant");
  }

  /** Where a debit id was applied, as its answers (and the retries of its unknown outcomes) tell. */
  debitFacts(requestId: string): DebitFacts | undefined {
    const list = (this.byId.get(requestId) ?? []).filter((a) => a.write.kind === "debit");
    if (list.length === 0) return undefined;
    const sent = list.filter((a) => a.result.kind !== "refused");
    const first = sent[0]?.write ?? list[0]!.write;
    let uncertain = new Set(sent.map((a) => fp(a.write))).size > 1 || (this.byId.get(requestId) ?? []).some((a) => a.write.kind !== "debit");
    const appliedAt = new Map<RegionName, number>();
    const refusedAt = new Set<RegionName>();
    for (const a of sent) {
      if (isApplication(a)) {
        const at = appliedAt.get(a.call.region);
        if (at === undefined || a.call.doneAt < at) appliedAt.set(a.call.region, a.call.doneAt);
      }
    }
    for (const a of sent) {
      const region = a.call.region;
      if (appliedAt.has(region)) continue;
      if (isRefusalAnswer(a)) refusedAt.add(region);
      if (a.result.kind !== "unknown") continue;
      // An unknown outcome: its retry at the same region tells (a replayed approval: the unknown call applied it).
      const resolution = list.filter((x) => x.call.phase === "resolve" && x.call.region === region && x.result.kind === "answer").at(-1);
      if (resolution === undefined) uncertain = true;
      else if (resolution.result.kind === "answer" && resolution.result.replayed && resolution.result.outcome !== DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT) {
        if (sent.some((x) => x.call.region !== region && (isApplication(x) || x.result.kind === "unknown"))) uncertain = true;
        else appliedAt.set(region, resolution.call.doneAt);
      }
    }
    for (const region of appliedAt.keys()) refusedAt.delete(region);
    return { accountId: first.accountId, amount: first.amount, appliedAt, refusedAt, uncertain };
  }

  // ---- restarts -----------------------------------------------------------

  private async restart(step: Extract<Step, { kind: "restart" }>): Promise<void> {
    const handle = this.cluster.region(step.region);
    this.epochs.set(step.region, this.epochs.get(step.region)! + 1);
    this.restarts++;
    if (step.signal === "SIGKILL") await handle.node.kill();
    else await handle.node.stop();
    await handle.node.start();
    const old = handle.clients;
    handle.clients = this.cluster.connect(handle.node);
    old.close();
  }

  // ---- resolution of unknown outcomes ---------------------------------------

  /** Retries every call with an unknown outcome, same request at the same region, until it is answered definitely. */
  private async resolveUnknowns(): Promise<number> {
    const pending = new Map<string, CallRecord>();
    for (const c of this.calls) {
      if (c.rpc !== "Grant" && c.rpc !== "Debit" && c.rpc !== "DebitBatch") continue;
      if (c.code !== undefined && !UNKNOWN_OUTCOME.has(c.code)) continue;
      pending.set(`${c.region} ${c.rpc} ${json(c.request)}`, c);
    }
    const work = [...pending.values()];
    const worker = async (): Promise<void> => {
      for (let c = work.shift(); c !== undefined; c = work.shift()) await this.resolveOne(c);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return pending.size;
  }

  private async resolveOne(original: CallRecord): Promise<void> {
    const writes = this.attempts.filter((a) => a.call === original).map((a) => a.write);
    if (original.rpc === "Grant") {
      await this.untilDefinite(original, async () => (await this.grant(original.region, writes[0]!, 3_000)).call.code);
      return;
    }
    if (original.rpc === "Debit") {
      const maxWaitMs = (original.request as DebitRequest).maxWaitMs;
      await this.untilDefinite(original, async () => (await this.debit(original.region, writes[0]!, maxWaitMs, 3_000)).call.code);
      return;
    }
    const code = await this.untilDefinite(original, async () => {
      const before = this.calls.length;
      await this.batch(original.region, writes, 0, 5_000);
      return this.calls[before]?.code;
    });
    // A batch answer that is neither OK nor a validation error (ALREADY_EXISTS because one of its ids
    // was reused elsewhere since, OUT_OF_RANGE) does not settle the other items: retry each on its own.
    if (code === undefined || code === Number(status.OK) || code === Number(status.INVALID_ARGUMENT)) return;
    const distinct = new Map(writes.map((w) => [`${w.requestId} ${fp(w)}`, w]));
    for (const w of distinct.values()) {
      await this.untilDefinite(original, async () => (await this.debit(original.region, w, 0, 3_000)).call.code);
    }
  }

  /** Sends until the answer is definite; returns its status (undefined when it never was). */
  private async untilDefinite(original: CallRecord, send: () => Promise<number | undefined>): Promise<number | undefined> {
    for (let attempt = 0, backoff = 50; attempt < 60; attempt++, backoff = Math.min(1_000, backoff * 2)) {
      const code = await send();
      if (code !== undefined && !UNKNOWN_OUTCOME.has(code)) return code;
      await new Promise((r) => setTimeout(r, backoff));
    }
    this.violation(`an unknown outcome could not be resolved: 60 retries of the same request got no definite answer`, original);
    return undefined;
  }

  // ---- final state --------------------------------------------------------

  private async readViews(): Promise<Map<string, GetBalanceResponse[]> | undefined> {
    const views = new Map<string, GetBalanceResponse[]>();
    for (const accountId of this.program.accounts) {
      const answers = await Promise.all(REGIONS.map((r) => this.balance(r, accountId)));
      if (answers.some((a) => a === undefined)) {
        this.violation(`GetBalance of ${accountId} failed at the end`, ...this.calls.slice(-REGIONS.length));
        return undefined;
      }
      views.set(accountId, answers as GetBalanceResponse[]);
    }
    return views;
  }

  private checkFinalViews(views: Map<string, GetBalanceResponse[]>, converged: boolean): void {
    for (const [accountId, answers] of views) {
      const shape = (v: GetBalanceResponse): string =>
        json({
          balance: v.balance,
          held: v.held,
          regions: [...v.regions].sort((a, b) => a.region.localeCompare(b.region)).map((r) => [r.region, r.granted, r.debited, r.rights, r.held, r.refunded]),
          policy: v.policy,
        });
      const distinct = new Set(answers.map(shape));
      if (converged && distinct.size > 1) {
        this.violation(`${accountId}: regions disagree after convergence:\n      ${answers.map((v, i) => `${REGIONS[i]}: ${shape(v)}`).join("\n      ")}`);
      }
      const view = answers[0]!;
      const rightsSum = view.regions.reduce((s, r) => s + r.rights, 0n);
      const heldSum = view.regions.reduce((s, r) => s + r.held, 0n);
      // Held credit is in the balance and in no region's rights.
      if (converged && rightsSum + heldSum !== view.balance) {
        this.violation(`${accountId}: Σ rights ${rightsSum} + Σ held ${heldSum} ≠ balance ${view.balance} after convergence`);
      }
      this.checkTotals(accountId, view);
    }
  }

  /** Exact totals per account and region: each application of a request id counted once. */
  private checkTotals(accountId: string, view: GetBalanceResponse): void {
    const expected = new Map<string, { base: bigint; ambiguous: bigint[]; related: Attempt[] }>();
    const slot = (region: RegionName, kind: WriteSpec["kind"]) => {
      const key = `${region}|${kind}`;
      let e = expected.get(key);
      if (e === undefined) expected.set(key, (e = { base: 0n, ambiguous: [], related: [] }));
      return e;
    };
    const mine = this.attempts.filter((a) => a.write.accountId === accountId);
    for (const a of mine) {
      slot(a.call.region, a.write.kind).related.push(a);
      if (isApplication(a)) slot(a.call.region, a.write.kind).base += a.write.amount;
    }
    // Unknown outcomes, grouped by (id, region, parameters): a region applies an id at most once.
    const groups = new Map<string, Attempt[]>();
    for (const a of mine) {
      if (a.result.kind !== "unknown") continue;
      const key = `${a.write.requestId} ${a.call.region} ${fp(a.write)}`;
      groups.set(key, [...(groups.get(key) ?? []), a]);
    }
    for (const group of groups.values()) {
      const { write, call } = group[0]!;
      const sameId = this.byId.get(write.requestId)!;
      if (sameId.some((a) => a.call.region === call.region && isApplication(a))) continue;
      const resolution = sameId.filter((a) => a.call.phase === "resolve" && a.call.region === call.region && fp(a.write) === fp(write) && a.result.kind !== "unknown").at(-1);
      const e = slot(call.region, write.kind);
      if (resolution === undefined) {
        e.ambiguous.push(write.amount);
        continue;
      }
      const replayedApplication =
        resolution.result.kind === "answer" && resolution.result.replayed && resolution.result.outcome !== DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT;
      if (!replayedApplication) continue;
      // Applied here by the unknown call, unless the id was used elsewhere too and the replay is of that use.
      const usedElsewhere = sameId.some(
        (a) => (a.call.region !== call.region || fp(a.write) !== fp(write)) && (isApplication(a) || a.result.kind === "unknown"),
      );
      if (usedElsewhere) e.ambiguous.push(write.amount);
      else e.base += write.amount;
    }
    for (const region of REGIONS) {
      const contribution = view.regions.find((r) => r.region === region);
      const held: HoldTotals = this.holds.totals(accountId, region);
      this.checkHoldTotals(accountId, region, contribution?.held ?? 0n, contribution?.refunded ?? 0n, held);
      for (const kind of ["grant", "debit"] as const) {
        const actual = kind === "grant" ? (contribution?.granted ?? 0n) : (contribution?.debited ?? 0n);
        const e = slot(region, kind);
        if (kind === "debit") {
          // Captures are debits of the holding region.
          e.base += held.captured;
          e.ambiguous.push(...held.capturedUncertain);
        }
        if (!reachable(e.ambiguous, actual - e.base)) {
          for (const a of e.related) {
            // Only ids with no acknowledged use anywhere: a replay then proves this call applied it.
            const acknowledged = this.byId.get(a.write.requestId)!.some((x) => isApplication(x) || x.result.kind === "unknown");
            if (a.result.kind === "refused" && a.result.code !== Number(status.INVALID_ARGUMENT) && !acknowledged) this.suspects.set(`${region} ${a.write.requestId} ${fp(a.write)}`, a);
          }
          const relevant = e.related.filter((a) => a.result.kind !== "answer" || !a.result.replayed);
          this.violation(
            `${accountId}: ${region} ${kind === "grant" ? "granted" : "debited"} ${actual}, but the acknowledged requests add up to ${e.base}` +
              (kind === "debit" && held.captured > 0n ? ` (captures ${held.captured} included)` : "") +
              (e.ambiguous.length > 0 ? ` plus any of [${e.ambiguous.join(", ")}] (unknown outcomes)` : "") +
              ` (difference ${actual - e.base}); the calls at ${region} on this account that were not replays (see the diagnosis below):`,
            ...relevant.map((a) => a.call).filter((c, i, all) => all.indexOf(c) === i),
          );
        }
      }
    }
    const balance = view.balance;
    if (this.program.strictOnly.has(accountId) && balance < 0n) this.violation(`STRICT account ${accountId}: final balance ${balance} < 0`);
    const limit = this.overdraftLimitBefore(accountId, Number.POSITIVE_INFINITY);
    if (balance < -BigInt(REGIONS.length) * limit) this.violation(`${accountId}: final balance ${balance} below -(regions × ${limit})`);
  }

  /** A region's open holds and refunds, exactly as the hold, capture, void and refund answers (and the holds' final states) say. */
  private checkHoldTotals(accountId: string, region: RegionName, held: bigint, refunded: bigint, expected: HoldTotals): void {
    if (!reachable(expected.heldUncertain, held - expected.held)) {
      this.violation(
        `${accountId}: ${region} holds ${held}, but its pending holds add up to ${expected.held}` +
          (expected.heldUncertain.length > 0 ? ` plus any of [${expected.heldUncertain.join(", ")}] (final state unknown)` : ""),
      );
    }
    if (!reachable(expected.refundedUncertain, refunded - expected.refunded)) {
      this.violation(
        `${accountId}: ${region} refunded ${refunded}, but the refunds it applied add up to ${expected.refunded}` +
          (expected.refundedUncertain.length > 0 ? ` plus any of [${expected.refundedUncertain.join(", ")}] (account unknown)` : ""),
      );
    }
  }

  /**
   * Re-sends, one by one and unchanged, every request that was answered with an
   * error status at a region whose totals do not add up. A replayed approval
   * proves the request was applied although its call reported that nothing
   * changed. Not recorded as attempts: they only explain a failure already found.
   */
  private async diagnose(): Promise<void> {
    for (const a of this.suspects.values()) {
      const w = a.write;
      const req = { accountId: w.accountId, amount: w.amount, requestId: w.requestId, maxWaitMs: 0 };
      const { call, response } =
        w.kind === "grant"
          ? await this.rpc("Grant", a.call.region, req, (c, o) => unary(c.balances, c.balances.grant, req, o), 3_000)
          : await this.rpc("Debit", a.call.region, req, (c, o) => unary(c.balances, c.balances.debit, req, o), 3_000);
      const approved = response !== undefined && ("outcome" in response ? response.outcome !== DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT : true);
      if (response !== undefined && response.replayed && approved) {
        this.violation(
          `diagnosis: ${w.kind} ${w.requestId} (${w.accountId}, ${w.amount}) was applied at ${a.call.region} although its ${a.call.rpc} call answered ` +
            `${statusName(a.call.code)}; the same request re-sent now is a replayed approval`,
          a.call,
          call,
        );
      }
    }
  }

  // ---- per request id -----------------------------------------------------

  /** After convergence every region knows every acknowledged id: a retry anywhere is a replay of it. */
  private async sweep(): Promise<void> {
    const ids = [...this.byId.entries()]
      .filter(([, list]) => {
        const apps = list.filter(isApplication);
        // An id a hold (or capture, refund) also used is ALREADY_EXISTS wherever that use came first.
        return apps.length > 0 && new Set(list.filter((a) => a.result.kind !== "refused").map((a) => fp(a.write))).size === 1 && !this.holds.usesId(list[0]!.write.requestId);
      })
      .slice(0, this.options.sweepIds);
    const work = ids.flatMap(([, list]) => REGIONS.map((region) => ({ region, write: list.find(isApplication)!.write })));
    const worker = async (): Promise<void> => {
      for (let w = work.shift(); w !== undefined; w = work.shift()) {
        const a = w.write.kind === "grant" ? await this.grant(w.region, w.write, 3_000) : await this.debit(w.region, w.write, 0, 3_000);
        if (a.result.kind !== "answer" || !a.result.replayed) {
          this.violation(`after convergence ${w.region} does not answer acknowledged id ${w.write.requestId} as a replay`, a.call);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  }

  private checkAttempts(): void {
    for (const [id, list] of this.byId) {
      const apps = list.filter(isApplication);
      // An id decided afresh after it was acknowledged.
      for (const later of list) {
        if (later.result.kind !== "answer" || later.result.replayed) continue;
        for (const first of apps) {
          if (first === later || first.call.doneAt > later.call.sentAt) continue;
          const gap = later.call.sentAt - first.call.doneAt;
          if (first.call.region === later.call.region) {
            this.violation(`${id} was decided again at ${later.call.region} after that region acknowledged it (${gap} ms earlier)`, first.call, later.call);
          } else if (gap > REPLICATION_WINDOW_MS) {
            this.violation(`${id} was decided again at ${later.call.region} ${gap} ms after ${first.call.region} acknowledged it`, first.call, later.call);
          } else if (isApplication(later)) {
            this.notes.push(`${id} applied at ${first.call.region} and again at ${later.call.region} ${gap} ms later (documented failover window)`);
          }
        }
      }
      for (const [i, a] of apps.entries()) {
        for (const b of apps.slice(i + 1)) {
          if (a.call.region !== b.call.region && a.call.doneAt > b.call.sentAt && b.call.doneAt > a.call.sentAt) {
            this.notes.push(`${id} applied concurrently at ${a.call.region} and ${b.call.region} (documented failover window)`);
          }
        }
      }
      // A refusal is remembered by the deciding node until it restarts.
      for (const refusal of list.filter((a) => isRefusalAnswer(a) && a.result.kind === "answer" && !a.result.replayed)) {
        for (const later of list) {
          if (later.call.region !== refusal.call.region || later.call.epoch !== refusal.call.epoch || later.call.sentAt < refusal.call.doneAt) continue;
          if (later.result.kind === "answer" && !later.result.replayed) {
            this.violation(`${id} was refused at ${later.call.region}, then decided afresh there by the same node`, refusal.call, later.call);
          }
        }
      }
      for (const a of list) {
        if (a.result.kind === "refused" && a.result.code === Number(status.ALREADY_EXISTS)) this.checkConflict(a);
        if (a.result.kind === "answer" && a.result.replayed) this.checkReplay(a, list);
      }
    }
  }

  /** ALREADY_EXISTS only when some id of the call was used with other parameters. */
  private checkConflict(a: Attempt): void {
    const items = this.attempts.filter((x) => x.call === a.call);
    const conflicting = items.some(
      (item) =>
        this.byId.get(item.write.requestId)!.some((x) => fp(x.write) !== fp(item.write) && x.call.sentAt <= a.call.doneAt) ||
        this.holds.usesId(item.write.requestId, a.call.doneAt),
    );
    if (!conflicting && items[0] === a) this.violation(`${a.call.rpc} answered ALREADY_EXISTS though no request id of it was used with other parameters`, a.call);
  }

  /** A replay returns the original answer: the same outcome, balance and rights as a decision of that id with the same parameters. */
  private checkReplay(a: Attempt, list: readonly Attempt[]): void {
    if (a.result.kind !== "answer") return;
    const sources = list.filter(
      (x) =>
        x !== a &&
        fp(x.write) === fp(a.write) &&
        x.call.sentAt <= a.call.doneAt &&
        (isApplication(x) || x.result.kind === "unknown" || (isRefusalAnswer(x) && x.call.region === a.call.region && x.result.kind === "answer" && !x.result.replayed)),
    );
    if (sources.length === 0) {
      this.violation(`${a.write.requestId}: a replayed answer with no earlier decision of the same parameters`, a.call, ...list.map((x) => x.call));
      return;
    }
    if (sources.some((x) => x.result.kind === "unknown")) return;
    const r = a.result;
    const same = sources.some(
      (x) => x.result.kind === "answer" && x.result.outcome === r.outcome && x.result.balance === r.balance && x.result.localRights === r.localRights,
    );
    if (!same) this.violation(`${a.write.requestId}: a replayed answer differs from every original decision`, a.call, ...sources.map((x) => x.call));
  }

  /** Every node still serves: a Grant, a Debit and a GetBalance succeed at each region. */
  private async checkAlive(): Promise<void> {
    for (const region of REGIONS) {
      const accountId = `fz${this.program.seed}-alive-${region}`;
      const g = await this.grant(region, { kind: "grant", accountId, amount: 10n, requestId: `fz${this.program.seed}-alive-g-${region}` }, 3_000);
      const d = await this.debit(region, { kind: "debit", accountId, amount: 1n, requestId: `fz${this.program.seed}-alive-d-${region}` }, 0, 3_000);
      const b = await this.balance(region, accountId);
      if (g.result.kind !== "answer") this.violation(`${region} no longer serves Grant`, g.call);
      if (d.result.kind !== "answer" || d.result.outcome !== DebitOutcome.DEBIT_OUTCOME_APPROVED) this.violation(`${region} no longer serves Debit`, d.call);
      if (b === undefined || b.balance !== 9n) this.violation(`${region} no longer serves GetBalance (or reads a wrong balance)`, this.calls.at(-1)!);
    }
  }
}
