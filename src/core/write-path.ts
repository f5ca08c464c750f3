// The write rules of one replica, pure: idempotent admission (an earlier
// answer, a call in flight, or new — decided in one synchronous step), the
// debit and overdraft decision, grant spreading, and what must be made
// durable with each answer. No I/O and no clock: time is passed in.

import { DebitOutcome, type Answer, type ReplicaState, type SlotChange } from "./replica-state";
import type { RequestTime } from "./request-log";
import { BoundExceededError, InvalidArgumentError, LotLimitError, RequestConflictError } from "./errors";
import { maxRegionDebitTotal } from "./bounds";
import type { DurableWrite, RequestRecord } from "./durable-write";
import { lotRowId } from "./lot-rows";
import { isExpired } from "./lot-writes";
import { MAX_LIVE_LOTS, type LotTerms } from "./lots";

export interface DebitItem {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
}

export function debitFingerprint(accountId: string, amount: bigint): string {
  return `d|${accountId}|${amount}`;
}

/** A lot grant's fingerprint names its lot row, so a retry with other terms is a conflict. */
export function grantFingerprint(accountId: string, amount: bigint, rowId: string = accountId): string {
  return rowId === accountId ? `g|${accountId}|${amount}` : `g|${accountId}|${amount}|${rowId}`;
}

/** Settles a newly admitted request; until then a retry with the same id joins it. */
export interface Ticket {
  resolve(answer: Answer): void;
  reject(error: unknown): void;
}

export type Admission =
  | { readonly kind: "replay"; readonly answer: Answer }
  | { readonly kind: "joined"; readonly decision: Promise<Answer> }
  | { readonly kind: "new"; readonly ticket: Ticket };

/**
 * A request being decided. Most are never joined, so the ticket itself is
 * the entry and a promise is made only when a duplicate arrives (a batch of
 * thousands then costs no promise per item).
 */
class InFlight implements Ticket {
  private joiners: Array<{ resolve(answer: Answer): void; reject(error: unknown): void }> | undefined;

  constructor(
    private readonly requestId: string,
    readonly fingerprint: string,
    private readonly registry: Map<string, InFlight>,
  ) {}

  private release(): void {
    if (this.registry.get(this.requestId) === this) this.registry.delete(this.requestId);
  }

  join(): Promise<Answer> {
    const joined = new Promise<Answer>((resolve, reject) => (this.joiners ??= []).push({ resolve, reject }));
    // A joiner that stops listening (its call ended) must not leave an unhandled rejection behind.
    joined.catch(() => undefined);
    return joined;
  }

  resolve(answer: Answer): void {
    this.release();
    for (const joiner of this.joiners ?? []) joiner.resolve(answer);
  }

  reject(error: unknown): void {
    this.release();
    for (const joiner of this.joiners ?? []) joiner.reject(error);
  }
}

export interface DebitRequestInput {
  readonly item: DebitItem;
  readonly fingerprint: string;
  /** Wall time of the answer (carried on the wire) and the local monotonic time (retention). */
  readonly time: RequestTime;
  /**
   * Final: a refusal is the answer (remembered and counted) and overdraft may
   * be used. Not final: the caller may still wait for rights, so a shortfall
   * is reported instead and nothing is remembered.
   */
  readonly final: boolean;
}

export type DebitStep =
  | {
      readonly kind: "decided";
      readonly answer: Answer;
      /** What must be durable before the answer is given (undefined: a refusal, nothing to publish). */
      readonly write: DurableWrite | undefined;
      /** Overdraft this debit used (0 when none). */
      readonly overdraftUsed: bigint;
      /** Refused while the balance known here could have covered it. */
      readonly falseRejection: boolean;
    }
  | { readonly kind: "short"; readonly deficit: bigint; readonly coverable: boolean };

export type DecidedDebit = Extract<DebitStep, { kind: "decided" }>;

/** A batch decided: one write for all of it, the tickets to settle once it is durable, the answers in order. */
export interface BatchDecision {
  readonly write: DurableWrite & { readonly slots: readonly SlotChange[] };
  readonly decided: ReadonlyArray<readonly [DebitItem, DecidedDebit]>;
  readonly tickets: ReadonlyArray<readonly [Ticket, Answer]>;
  readonly failure: Error | undefined;
  /** Every item's answer in order (joined ones once their first call is answered; duplicates as replays). */
  results(): Promise<Array<{ answer: Answer; replayed: boolean }>>;
}

export interface GrantInput {
  readonly accountId: string;
  readonly amount: bigint;
  readonly requestId: string;
  readonly time: RequestTime;
  /** Spread the grant's rights evenly over every region in the same commit. */
  readonly spread: boolean;
  /** The lot's terms; undefined for the base lot (the account's plain row). */
  readonly lot?: LotTerms;
}

export class WritePath {
  private readonly inFlight = new Map<string, InFlight>();

  constructor(readonly state: ReplicaState) {}

  get requestsInFlight(): number {
    return this.inFlight.size;
  }

  /**
   * Looks the request up and, if new, registers it as in flight — in one
   * synchronous step, so two calls with the same id can never both decide.
   * Throws RequestConflictError when the id was used with other parameters.
   */
  admit(requestId: string, fingerprint: string, monotonicMs: number): Admission {
    const known = this.known(requestId, fingerprint);
    if (known !== undefined) return known;
    // No room to remember one more acknowledged id: refuse rather than forget one.
    this.state.assertRequestRoom(1, monotonicMs);
    return { kind: "new", ticket: this.register(requestId, fingerprint) };
  }

  private known(requestId: string, fingerprint: string): Admission | undefined {
    const pending = this.inFlight.get(requestId);
    if (pending !== undefined) {
      if (pending.fingerprint !== fingerprint) throw new RequestConflictError(requestId);
      return { kind: "joined", decision: pending.join() };
    }
    const recalled = this.state.recall(requestId, fingerprint);
    return recalled === undefined ? undefined : { kind: "replay", answer: recalled };
  }

  /**
   * Admits a batch: every id is checked before any is registered, so a
   * conflict (with an earlier request or inside the batch) changes nothing.
   * A duplicate id later in the batch is answered by its first occurrence.
   */
  admitBatch(items: readonly DebitItem[], monotonicMs: number): Array<Admission | { readonly kind: "duplicate"; readonly of: number }> {
    const fingerprints = items.map((item) => debitFingerprint(item.accountId, item.amount));
    const first = new Map<string, number>();
    const known = new Map<number, Admission>();
    items.forEach((item, index) => {
      const fingerprint = fingerprints[index]!;
      const earlier = first.get(item.requestId);
      if (earlier !== undefined) {
        if (fingerprints[earlier] !== fingerprint) throw new RequestConflictError(item.requestId);
        return;
      }
      first.set(item.requestId, index);
      const admission = this.known(item.requestId, fingerprint);
      if (admission !== undefined) known.set(index, admission);
    });
    // Room for every new id, or the whole batch is refused before anything changes.
    this.state.assertRequestRoom(first.size - known.size, monotonicMs);
    return items.map((item, index) => {
      const of = first.get(item.requestId)!;
      if (of !== index) return { kind: "duplicate", of };
      return known.get(index) ?? { kind: "new", ticket: this.register(item.requestId, fingerprints[index]!) };
    });
  }

  /** Decides one debit against the current state; changes memory only, the caller makes `write` durable. */
  debit(input: DebitRequestInput): DebitStep {
    const { item, fingerprint, time, final } = input;
    // The answer's wall time is the clock that judges which lots are spendable here.
    const result = this.state.debit(item.accountId, item.amount, final, time.stampMs);
    const { answer } = result;
    if (answer.outcome === DebitOutcome.InsufficientCredit) {
      if (!final) {
        return { kind: "short", deficit: item.amount - answer.localRights, coverable: result.globallyCoverable };
      }
      // A refusal changes nothing, so it is remembered here only, not published.
      this.state.remember(item.requestId, fingerprint, answer, time);
      return { kind: "decided", answer, write: undefined, overdraftUsed: 0n, falseRejection: result.globallyCoverable };
    }
    const record: RequestRecord = { requestId: item.requestId, fingerprint, answer, answeredAtMs: time.stampMs, origin: this.state.self };
    this.state.remember(item.requestId, fingerprint, answer, time);
    return {
      kind: "decided",
      answer,
      write: { slots: result.changes, requests: [record] },
      overdraftUsed: overdraftUsed(answer, item.amount),
      falseRejection: false,
    };
  }

  /**
   * Decides a batch's new debits in order, final (no waiting), as one
   * durable write. A decision that throws (a bound) stops the batch: what was
   * decided stays decided and is in `write`; the rest is refused with it.
   */
  debitBatch(items: readonly DebitItem[], admissions: ReturnType<WritePath["admitBatch"]>, time: RequestTime): BatchDecision {
    const answers = new Array<{ answer: Answer; replayed: boolean } | Promise<Answer> | undefined>(items.length);
    const slots: SlotChange[] = [];
    const requests: RequestRecord[] = [];
    const decided: Array<[DebitItem, DecidedDebit]> = [];
    const tickets: Array<[Ticket, Answer]> = [];
    let failure: Error | undefined = this.batchPastCap(items, admissions);
    admissions.forEach((admission, index) => {
      const item = items[index]!;
      if (admission.kind === "duplicate") return;
      if (admission.kind === "replay") answers[index] = { answer: admission.answer, replayed: true };
      else if (admission.kind === "joined") answers[index] = admission.decision;
      else if (failure !== undefined) admission.ticket.reject(failure);
      else {
        let step: DebitStep;
        try {
          step = this.debit({ item, fingerprint: debitFingerprint(item.accountId, item.amount), time, final: true });
        } catch (error) {
          failure = error instanceof Error ? error : new Error(String(error));
          admission.ticket.reject(failure);
          return;
        }
        if (step.kind !== "decided") return;
        decided.push([item, step]);
        if (step.write !== undefined) {
          slots.push(...step.write.slots);
          requests.push(...(step.write.requests ?? []));
        }
        tickets.push([admission.ticket, step.answer]);
        answers[index] = { answer: step.answer, replayed: false };
      }
    });
    const results = async (): Promise<Array<{ answer: Answer; replayed: boolean }>> => {
      // Joined answers are awaited; the usual batch has none and costs no promise per item.
      const own = answers.some((a) => a instanceof Promise)
        ? await Promise.all(answers.map(async (a) => (a instanceof Promise ? { answer: await a, replayed: true } : a)))
        : (answers as Array<{ answer: Answer; replayed: boolean } | undefined>);
      return admissions.map((admission, index) =>
        admission.kind === "duplicate" ? { answer: own[admission.of]!.answer, replayed: true } : own[index]!,
      );
    };
    return { write: { slots, requests }, decided, tickets, failure, results };
  }

  /**
   * A batch is refused whole, before anything is decided, when its new debits
   * of one account could take the region's debit counter past its int64-safe
   * cap (counted as if every one were approved, so nothing is applied).
   */
  private batchPastCap(items: readonly DebitItem[], admissions: ReturnType<WritePath["admitBatch"]>): Error | undefined {
    const totals = new Map<string, bigint>();
    admissions.forEach((admission, index) => {
      if (admission.kind !== "new") return;
      const item = items[index]!;
      totals.set(item.accountId, (totals.get(item.accountId) ?? 0n) + item.amount);
    });
    for (const [accountId, total] of totals) {
      const headroom = this.state.debitHeadroom(accountId);
      if (total > headroom) {
        const cap = maxRegionDebitTotal(this.state.replicas.size);
        return new BoundExceededError(
          "debits",
          cap,
          `the batch's debits of account "${accountId}" (${total}) would take the region's cumulative debits past ${cap} ` +
            `(int64 max / ${this.state.replicas.size} regions; room left ${headroom}); nothing in the batch was applied`,
        );
      }
    }
    return undefined;
  }

  /** Grants credit here; with `spread`, an equal share of its rights moves to every other region in the same write. */
  grant(input: GrantInput): { answer: Answer; write: DurableWrite } {
    const { accountId, amount, requestId, time } = input;
    const state = this.state;
    const rowId = input.lot === undefined ? accountId : lotRowId(accountId, input.lot);
    // Credit dead on arrival is a mistake, most often an expiry in seconds
    // read as milliseconds (1970): refused here, where the clock is known and
    // only for a new request (a retry of a grant taken in time still replays).
    if (input.lot !== undefined && isExpired(input.lot, time.stampMs, state.lotGuardMs)) {
      throw new InvalidArgumentError(
        "lot.expires_at_ms",
        `${input.lot.expiresAtMs} (${new Date(input.lot.expiresAtMs).toISOString()}) is not after this region's clock ` +
          `${time.stampMs} plus the expiry guard (${state.lotGuardMs} ms): the credit would be dead on arrival. Times are milliseconds since the Unix epoch`,
      );
    }
    if (rowId !== accountId && !state.lots.lotsOf(accountId).some((lot) => lot.rowId === rowId)) {
      const live = state.accountLots(accountId, time.stampMs).filter((lot) => lot.rowId !== accountId && !lot.expired).length;
      if (live >= MAX_LIVE_LOTS) throw new LotLimitError(accountId, MAX_LIVE_LOTS);
    }
    // Every cap is checked before anything changes; the spread shares move in the same step.
    const granted = state.grant(rowId, amount, input.spread);
    const changes: SlotChange[] = [...granted.changes];
    // With lots, the answer speaks of the whole account, as GetBalance does.
    const answer: Answer = state.lots.hasLots(accountId)
      ? { ...granted.answer, balance: state.accountBalance(accountId, time.stampMs), localRights: state.spendableRights(accountId, time.stampMs) }
      : granted.answer;
    const fingerprint = grantFingerprint(accountId, amount, rowId);
    state.remember(requestId, fingerprint, answer, time);
    return { answer, write: { slots: changes, requests: [{ requestId, fingerprint, answer, answeredAtMs: time.stampMs, origin: state.self }] } };
  }

  private register(requestId: string, fingerprint: string): Ticket {
    const entry = new InFlight(requestId, fingerprint, this.inFlight);
    this.inFlight.set(requestId, entry);
    return entry;
  }
}

/** How far below zero this debit took the region's rights (the overdraft it used). */
function overdraftUsed(answer: Answer, amount: bigint): bigint {
  if (answer.outcome !== DebitOutcome.ApprovedWithOverdraft) return 0n;
  const before = answer.localRights + amount;
  return before >= 0n ? amount - before : amount;
}

/**
 * The lowest sequence of this replica's stream that must be kept: what the
 * snapshot does not cover, and what a peer has not applied yet — unless a
 * peer lags by more than `maxRetained` messages (it then catches up from the
 * snapshot instead).
 */
export function purgeFloor(replayFrom: number, peersApplied: ReadonlyArray<number | undefined>, maxRetained: number): number {
  let keepFrom = replayFrom;
  for (const applied of peersApplied) keepFrom = Math.min(keepFrom, (applied ?? 0) + 1);
  return replayFrom - keepFrom > maxRetained ? replayFrom : keepFrom;
}
