// The node's side of holds and refunds: admission (idempotency, as for
// debits), the pure decisions of core/hold-path, durability before every
// answer, and the timeout sweep that expires pending holds on this region's
// clock, writing each expiry through the stream like any other write.

import { DebitOutcome, type Answer } from "../core/answer";
import type { DurableWrite } from "../core/durable-write";
import { HoldNotFoundError, InvalidArgumentError, WrongRegionError } from "../core/errors";
import { holdIdOf, HoldStatus, parseHoldId, type HoldRecord } from "../core/hold-book";
import {
  captureFingerprint,
  checkEarlierResolution,
  debitedBy,
  holdFingerprint,
  placeHold,
  recallHold,
  refundDebit,
  refundFingerprint,
  resolveHold,
  resolutionRefusal,
  voidFingerprint,
  type ResolutionKind,
} from "../core/hold-path";
import type { ReplicaState } from "../core/replica-state";
import type { RequestTime } from "../core/request-log";
import type { Admission, WritePath } from "../core/write-path";
import type { TallyMetrics } from "../metrics/tally-metrics";
import type { Logger } from "./logger";

export interface HoldAnswer {
  readonly answer: Answer;
  /** The hold placed (undefined when refused). */
  readonly record: HoldRecord | undefined;
  readonly replayed: boolean;
}

export interface ResolutionAnswer {
  readonly record: HoldRecord;
  readonly balance: bigint;
  readonly localRights: bigint;
  readonly replayed: boolean;
}

export interface RefundAnswer {
  readonly debitRequestId: string;
  readonly refundedTotal: bigint;
  readonly refundable: bigint;
  readonly balance: bigint;
  readonly localRights: bigint;
  readonly replayed: boolean;
}

/** What the desk needs of its node. */
export interface HoldDeskNode {
  readonly region: string;
  readonly state: ReplicaState;
  readonly writes: WritePath;
  readonly metrics: TallyMetrics;
  readonly logger: Logger;
  readonly requestRetentionMs: number;
  /** Admits a request (throws when the node does not accept writes). */
  admit(requestId: string, fingerprint: string): Admission;
  /** Resolves once `write` is durable. */
  commit(write: DurableWrite): Promise<number>;
  /** Resolves once everything committed before is durable. */
  barrier(): Promise<number>;
  time(): RequestTime;
  /** Local monotonic time (waits). */
  monotonic(): number;
  readonly writable: boolean;
  notify(accountId: string): void;
  /** One round of asking other regions for rights (the rights broker), until covered or `deadlineMs` (monotonic). */
  acquireRights(accountId: string, deficit: bigint, deadlineMs: number): Promise<void>;
  /** Demand seen here: an approved hold (rights flow to where they are set aside) or a shortfall. */
  demand(accountId: string, amount: bigint, approved: boolean): void;
}

/** How often refund tallies are checked against the request log (a scan of them all; a late drop is harmless). */
const TALLY_EXPIRY_EVERY_MS = 10_000;

export class HoldDesk {
  private sweeping = false;
  private talliesCheckedAtMs = Number.NEGATIVE_INFINITY;

  constructor(private readonly node: HoldDeskNode) {}

  async hold(accountId: string, amount: bigint, requestId: string, timeoutMs: number, maxWaitMs = 0): Promise<HoldAnswer> {
    const { node } = this;
    const state = node.state;
    const admission = node.admit(requestId, holdFingerprint(accountId, amount, timeoutMs));
    const holdId = holdIdOf(node.region, requestId);
    if (admission.kind === "replay") {
      const record = state.holds.get(holdId);
      // An approved hold this region does not hold was placed by the region that decided the id
      // (a failover retry after the original replicated): only that region knows the hold.
      const origin = state.requestRecord(requestId)?.origin;
      if (record === undefined && admission.answer.outcome !== DebitOutcome.InsufficientCredit && origin !== undefined && origin !== state.self) {
        const holder = state.replicas.nameOf(origin);
        throw new WrongRegionError(holder, `hold "${holdIdOf(holder, requestId)}" was placed by region "${holder}", which alone answers for it`);
      }
      await node.barrier();
      return { answer: admission.answer, record, replayed: true };
    }
    if (admission.kind === "joined") {
      const answer = await admission.decision;
      return { answer, record: state.holds.get(holdId), replayed: true };
    }
    try {
      // The hold outlived the request log's memory of the call: the retry still gets it.
      const earlier = recallHold(state, { accountId, amount, requestId, timeoutMs });
      if (earlier !== undefined) {
        await node.barrier();
        const answer = currentAnswer(state, accountId, node.time().stampMs);
        admission.ticket.resolve(answer);
        return { answer, record: earlier, replayed: true };
      }
      if (maxWaitMs > 0 && state.spendableRights(accountId, node.time().stampMs) < amount) await this.waitForRights(accountId, amount, maxWaitMs);
      const decision = placeHold(state, { accountId, amount, requestId, timeoutMs, time: node.time() });
      node.demand(accountId, amount, decision.write !== undefined);
      if (decision.write !== undefined) {
        node.notify(accountId);
        await node.commit(decision.write);
        node.metrics.holds.inc({ result: "approved" });
        node.metrics.holdsOutstanding.set(state.holds.pending);
      } else {
        node.metrics.holds.inc({ result: "insufficient" });
      }
      admission.ticket.resolve(decision.answer);
      return { answer: decision.answer, record: decision.record, replayed: false };
    } catch (error) {
      admission.ticket.reject(error);
      throw error;
    }
  }

  /**
   * Asks other regions for rights until this region's cover `amount` or the
   * wait ends; gives up at once when nothing arrives and the balance known
   * here cannot cover it (as a debit's wait does).
   */
  private async waitForRights(accountId: string, amount: bigint, maxWaitMs: number): Promise<void> {
    const { node } = this;
    const state = node.state;
    const deadline = node.monotonic() + maxWaitMs;
    // Over the lots spendable here now, by this region's clock, as a debit's wait.
    const spendable = (): bigint => state.spendableRights(accountId, node.time().stampMs);
    while (spendable() < amount && node.monotonic() < deadline && node.writable) {
      const before = spendable();
      await node.acquireRights(accountId, amount - before, deadline);
      if (spendable() > before) continue;
      if (state.accountBalance(accountId, node.time().stampMs) < amount) return;
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(5, deadline - node.monotonic()))));
    }
  }

  capture(holdId: string, amount: bigint, requestId: string, accountId: string | undefined): Promise<ResolutionAnswer> {
    return this.resolve(holdId, "capture", amount, requestId, accountId);
  }

  void(holdId: string, requestId: string, accountId: string | undefined): Promise<ResolutionAnswer> {
    return this.resolve(holdId, "void", 0n, requestId, accountId);
  }

  private async resolve(holdId: string, kind: "capture" | "void", amount: bigint, requestId: string, accountId: string | undefined): Promise<ResolutionAnswer> {
    const { node } = this;
    const state = node.state;
    const { region } = parseHoldId(holdId);
    if (!state.replicas.has(region)) throw new HoldNotFoundError(holdId, `no region "${region}" in this cluster`);
    if (region !== node.region) {
      throw new WrongRegionError(region, `hold "${holdId}" is held by region "${region}", which alone resolves it`);
    }
    const existing = state.holds.get(holdId);
    if (accountId !== undefined && existing !== undefined && existing.accountId !== accountId) {
      throw new InvalidArgumentError("account_id", `"${accountId}" is not the account of hold "${holdId}"`);
    }
    const fingerprint = kind === "capture" ? captureFingerprint(holdId, amount) : voidFingerprint(holdId);
    const admission = node.admit(requestId, fingerprint);
    if (admission.kind === "replay" || admission.kind === "joined") {
      const answer = admission.kind === "replay" ? admission.answer : await admission.decision;
      await node.barrier();
      const record = state.holds.get(holdId) ?? forgottenResolution(holdId, kind, amount);
      return { record, balance: answer.balance, localRights: answer.localRights, replayed: true };
    }
    try {
      const step = resolveHold(state, { holdId, kind, amount, requestId, time: node.time() });
      if (step.kind === "already") {
        // What this answer repeats (or refuses on) must be durable first: it may be in the commit in flight.
        await node.barrier();
        const record = checkEarlierResolution(step.record, kind, amount);
        const answer = currentAnswer(state, record.accountId, node.time().stampMs);
        admission.ticket.resolve(answer);
        return { record, balance: answer.balance, localRights: answer.localRights, replayed: true };
      }
      node.notify(step.record.accountId);
      await node.commit(step.write);
      this.counted(step.record);
      if (step.kind === "expired") {
        // The expiry is durable; the capture or void itself is refused.
        throw resolutionRefusal(step.record, kind);
      }
      admission.ticket.resolve(step.answer);
      return { record: step.record, balance: step.answer.balance, localRights: step.answer.localRights, replayed: false };
    } catch (error) {
      admission.ticket.reject(error);
      throw error;
    }
  }

  async refund(debitRequestId: string, amount: bigint, requestId: string, accountId: string | undefined): Promise<RefundAnswer> {
    const { node } = this;
    const state = node.state;
    const admission = node.admit(requestId, refundFingerprint(debitRequestId, amount));
    const tallyOf = (answer: Answer, replayed: boolean): RefundAnswer => {
      const tally = state.refundTallies.get(debitRequestId);
      const record = state.requestRecord(debitRequestId);
      const debited = record === undefined ? undefined : debitedBy(state, record.fingerprint);
      const refundedTotal = tally?.refunded ?? amount;
      const debitAmount = tally?.debitAmount ?? debited?.amount ?? refundedTotal;
      return { debitRequestId, refundedTotal, refundable: debitAmount - refundedTotal, balance: answer.balance, localRights: answer.localRights, replayed };
    };
    if (admission.kind === "replay" || admission.kind === "joined") {
      // A refund another region decided (a failover retry after it replicated): only that region
      // keeps the debit's refund tally, so only it can say what is refunded and left.
      const origin = admission.kind === "replay" ? state.requestRecord(requestId)?.origin : undefined;
      if (origin !== undefined && origin !== state.self) {
        const decider = state.replicas.nameOf(origin);
        throw new WrongRegionError(decider, `refund "${requestId}" of debit "${debitRequestId}" was decided by region "${decider}", which alone answers for it`);
      }
      const answer = admission.kind === "replay" ? admission.answer : await admission.decision;
      await node.barrier();
      return tallyOf(answer, true);
    }
    try {
      if (accountId !== undefined) {
        const record = state.requestRecord(debitRequestId);
        const debited = record === undefined ? undefined : debitedBy(state, record.fingerprint);
        if (debited?.accountId !== undefined && debited.accountId !== accountId) {
          throw new InvalidArgumentError("account_id", `"${accountId}" is not the account of debit "${debitRequestId}"`);
        }
      }
      const decision = refundDebit(state, { debitRequestId, amount, requestId, time: node.time() }, `the request-id window of ${describeMs(node.requestRetentionMs)}`);
      node.notify(decision.tally.accountId);
      await node.commit(decision.write);
      node.metrics.refunds.inc();
      node.metrics.refundedAmount.inc(Number(amount));
      admission.ticket.resolve(decision.answer);
      return tallyOf(decision.answer, false);
    } catch (error) {
      admission.ticket.reject(error);
      throw error;
    }
  }

  /**
   * Expires every pending hold whose timeout passed on this region's clock,
   * each durable through the stream; forgets resolved holds and refund
   * tallies past the request-id window. One sweep at a time.
   */
  async sweep(): Promise<number> {
    const { node } = this;
    if (this.sweeping || !node.writable) return 0;
    this.sweeping = true;
    try {
      const state = node.state;
      const time = node.time();
      state.holds.forgetResolved(time.stampMs, node.requestRetentionMs);
      if (time.nowMs - this.talliesCheckedAtMs >= TALLY_EXPIRY_EVERY_MS) {
        this.talliesCheckedAtMs = time.nowMs;
        state.expireRefundTallies();
      }
      const due = state.holds.due(time.stampMs);
      const commits: Array<Promise<number>> = [];
      for (const record of due) {
        const step = resolveHold(state, { holdId: record.holdId, kind: "timeout" satisfies ResolutionKind, amount: 0n, requestId: undefined, time });
        if (step.kind === "already") continue;
        node.notify(step.record.accountId);
        this.counted(step.record);
        commits.push(node.commit(step.write));
      }
      await Promise.all(commits);
      return commits.length;
    } finally {
      this.sweeping = false;
      this.node.metrics.holdsOutstanding.set(this.node.state.holds.pending);
    }
  }

  private counted(record: HoldRecord): void {
    const kind = record.status === HoldStatus.Captured ? "captured" : record.status === HoldStatus.Voided ? "voided" : "expired";
    this.node.metrics.holdResolutions.inc({ kind });
    this.node.metrics.holdsOutstanding.set(this.node.state.holds.pending);
  }
}

/** The account as it stands: its balance over live lots, and this region's rights over the lots spendable now. */
function currentAnswer(state: ReplicaState, accountId: string, clockMs: number): Answer {
  return { kind: "debit", outcome: DebitOutcome.Approved, balance: state.accountBalance(accountId, clockMs), localRights: state.spendableRights(accountId, clockMs) };
}

/** A replayed call whose hold record was forgotten since: the resolution its fingerprint names. */
function forgottenResolution(holdId: string, kind: "capture" | "void", amount: bigint): HoldRecord {
  return {
    holdId,
    accountId: "",
    amount,
    expiresAtMs: 0,
    status: kind === "capture" ? HoldStatus.Captured : HoldStatus.Voided,
    captured: kind === "capture" ? amount : 0n,
    createdAtMs: 0,
    resolvedAtMs: 0,
  };
}

function describeMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`;
}
