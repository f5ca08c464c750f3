// Moves escrow rights between regions on demand, in batches. Every account
// short in one window (a waiting debit, a bulk-path refusal, an ask ahead of
// need) joins one batch sent to every peer, so a burst of thousands of
// accounts costs a few round trips; concurrent shortfalls of one account
// join its ask. A donor answers a batch with one durable group commit of all
// its gifts, before it replies. Every decision (how much to ask, how much to
// give, when to ask ahead) is the pure RightsPolicy's; this class does the
// asking and waiting over a RightsTransport.

import { performance } from "node:perf_hooks";
import type { DurableWrite } from "../core/durable-write";
import type { ReplicaState } from "../core/replica-state";
import { MAX_RIGHTS_BATCH, type RightsBatchAsk, type RightsBatchGift, type RightsGift, type RightsTransport } from "../core/rights-messages";
import { RightsPolicy, type LotHoldings } from "../core/rights-policy";
import type { SlotChange } from "../core/slot-change";
import type { BalanceWatchHub } from "./balance-watch";
import { PeerRightsMemory } from "./peer-rights-memory";
import { INT64_MAX } from "../core/amounts";
import { rowOwner } from "../core/lot-rows";
import { liveBalance, localSpendable } from "../core/lot-writes";
import { planDonation } from "../core/lots";

/** What the broker needs from its node. */
export interface RightsHost {
  readonly region: string;
  readonly state: ReplicaState;
  readonly watches: BalanceWatchHub;
  /** False while recovering, fenced or stopping: a donor gives nothing then. */
  readonly writable: boolean;
  /** Makes a write to this region's own row durable. */
  commit(write: DurableWrite): Promise<unknown>;
  /** This region's wall clock, which alone judges its credit lots (Date.now when absent). */
  wallClock?(): number;
}

export interface RightsEvents {
  asked(result: "granted" | "refused" | "expired"): void;
  transferred(direction: "in" | "out", amount: bigint): void;
  donationFailed(error: unknown): void;
  /** A gift carried values no donor could have produced; nothing of it was merged. */
  giftRejected?(donor: string, error: unknown): void;
  /** A batch of `size` accounts was sent to a donor ("ask") or answered by this donor ("give"). */
  batch?(role: "ask" | "give", size: number): void;
  /** Batches this donor is answering now (each waits for its group commit). */
  donorQueue?(depth: number): void;
}

/** Time for the broker: the clock and a cancellable wait (real timers, or the simulation's). */
export interface BrokerClock {
  now(): number;
  wait(ms: number): { readonly done: Promise<void>; cancel(): void };
}

/** Monotonic: deadlines and rates must not move when the wall clock is stepped. */
export const REAL_CLOCK: BrokerClock = {
  now: () => performance.now(),
  wait: (ms) => {
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    return { done, cancel: () => clearTimeout(timer) };
  },
};

export interface BatchingOptions {
  /** How long a window collects short accounts before its batch is sent. */
  readonly windowMs: number;
  /** Most accounts in one batch; a fuller window is sent at once. */
  readonly maxBatch: number;
}

export const DEFAULT_BATCHING: BatchingOptions = { windowMs: 2, maxBatch: 250 };

/** One account's ask: queued in the window, then in flight to every peer. */
interface Acquisition {
  readonly accountId: string;
  needed: bigint;
  urgent: boolean;
  deadlineMs: number;
  readonly done: Promise<void>;
  finish(): void;
  /** Peers that have not answered yet (set when the batch is sent). */
  outstanding: number;
  target: bigint;
  sent: boolean;
}

export class RightsBroker {
  readonly policy: RightsPolicy;
  /** What the latest replies said the peers held, for counting false rejections. */
  readonly peerRights: PeerRightsMemory;
  private readonly acquiring = new Map<string, Acquisition>();
  private window: Acquisition[] = [];
  private windowTimer: { cancel(): void } | undefined;
  private donating = 0;
  private stopServing: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly host: RightsHost,
    private readonly transport: RightsTransport,
    private readonly events: RightsEvents,
    private readonly clock: BrokerClock,
    /** How long a background ask (ahead of need, or after a bulk refusal) may take. */
    private readonly backgroundAskMs: number,
    private readonly batching: BatchingOptions = DEFAULT_BATCHING,
  ) {
    this.policy = new RightsPolicy(host.state);
    this.peerRights = new PeerRightsMemory(host.state.replicas.size);
  }

  /** What this region may spend on the account now: its rights, over its spendable lots when it has lots. */
  private spendable(accountId: string): bigint {
    return this.host.state.spendableRights(accountId, this.wallClock());
  }

  private wallClock(): number {
    return this.host.wallClock?.() ?? Date.now();
  }

  /** This region's holdings over an account's lots; undefined for an account without lots (the policy reads its row). */
  private lotHoldings(accountId: string): LotHoldings | undefined {
    const state = this.host.state;
    if (!state.lots.hasLots(accountId)) return undefined;
    const lots = state.accountLots(accountId, this.wallClock());
    return { rights: localSpendable(lots), balance: liveBalance(lots) };
  }

  get asksInFlight(): number {
    return this.acquiring.size;
  }

  /** Batches this donor is answering now. */
  get donorQueueDepth(): number {
    return this.donating;
  }

  start(): void {
    this.stopServing = this.transport.serve((batch) => this.donate(batch));
  }

  /** Stops asking and giving; every waiting ask ends now. */
  stop(): void {
    this.stopped = true;
    this.stopServing?.();
    this.windowTimer?.cancel();
    this.windowTimer = undefined;
    this.window = [];
    for (const acquisition of this.acquiring.values()) acquisition.finish();
    this.acquiring.clear();
  }

  /** A local debit was approved: feeds demand, and asks ahead when this region falls below its share. */
  afterLocalDebit(accountId: string, amount: bigint, nowMs: number): void {
    const want = this.policy.afterLocalDebit(accountId, amount, nowMs, this.lotHoldings(accountId));
    if (want > 0n && !this.acquiring.has(accountId)) void this.startAsk(accountId, want, nowMs + this.backgroundAskMs, false);
  }

  afterPeerDebit(accountId: string, replica: number, amount: bigint, nowMs: number): void {
    this.policy.afterPeerDebit(accountId, replica, amount, nowMs);
  }

  /** A debit was refused without waiting (bulk path): ask in the background for the next one. */
  afterShortfall(accountId: string, amount: bigint): void {
    if (this.acquiring.has(accountId)) return;
    const deficit = amount - this.spendable(accountId);
    if (deficit > 0n) void this.startAsk(accountId, deficit, this.clock.now() + this.backgroundAskMs, true);
  }

  /**
   * Whether the cluster held `amount` for the account as far as this node
   * knows: its own view of the balance, or its rights plus what the peers'
   * latest replies said they held. A refusal then is a false rejection.
   */
  clusterHeld(accountId: string, amount: bigint): boolean {
    const state = this.host.state;
    if (state.accountBalance(accountId, this.wallClock()) >= amount) return true;
    return this.spendable(accountId) + this.peerRights.total(accountId, state.self, this.clock.now()) >= amount;
  }

  /**
   * One round of asking: joins the account's ask (queued or in flight) or
   * starts one, and resolves when this caller's `deficit` is covered, the
   * ask ends, or the deadline passes. The debit path decides whether to ask again.
   */
  async acquire(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const { watches } = this.host;
    if (this.stopped || deficit <= 0n || this.clock.now() >= deadlineMs) return;
    const target = this.spendable(accountId) + deficit;
    // A waiting debit resolves as soon as its own need is covered (any merge
    // that raises this region's rights notifies the account's watchers).
    let wake: () => void = () => undefined;
    const covered = new Promise<void>((resolve) => (wake = resolve));
    const unwatch = watches.watch(
      accountId,
      () => {
        if (this.spendable(accountId) >= target) wake();
      },
      () => wake(),
      true,
    );
    const timeout = this.clock.wait(Math.max(0, deadlineMs - this.clock.now()));
    try {
      const asking = this.startAsk(accountId, this.policy.askSize(accountId, deficit, this.lotHoldings(accountId)), deadlineMs, true);
      await Promise.race([asking, covered, timeout.done]);
    } finally {
      timeout.cancel();
      unwatch();
    }
  }

  /** Queues the account in the window (or joins its queued or big-enough ask in flight). */
  private startAsk(accountId: string, deficit: bigint, deadlineMs: number, urgent: boolean): Promise<void> {
    const existing = this.acquiring.get(accountId);
    if (existing !== undefined && !existing.sent) {
      if (deficit > existing.needed) existing.needed = deficit;
      existing.urgent ||= urgent;
      existing.deadlineMs = Math.max(existing.deadlineMs, deadlineMs);
      return existing.done;
    }
    if (existing !== undefined && existing.needed >= deficit) return existing.done;
    let finish: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const acquisition: Acquisition = { accountId, needed: deficit, urgent, deadlineMs, done, finish, outstanding: 0, target: 0n, sent: false };
    acquisition.finish = () => {
      if (this.acquiring.get(accountId) === acquisition) this.acquiring.delete(accountId);
      finish();
    };
    this.acquiring.set(accountId, acquisition);
    this.window.push(acquisition);
    if (this.window.length >= this.batching.maxBatch) this.flush();
    else if (this.windowTimer === undefined) {
      const timer = this.clock.wait(this.batching.windowMs);
      this.windowTimer = timer;
      void timer.done.then(() => {
        if (this.windowTimer === timer) this.flush();
      });
    }
    return done;
  }

  /** Sends the window's accounts, one batch per donor per chunk of maxBatch. */
  private flush(): void {
    this.windowTimer?.cancel();
    this.windowTimer = undefined;
    const queued = this.window;
    this.window = [];
    const limit = Math.min(this.batching.maxBatch, MAX_RIGHTS_BATCH);
    for (let start = 0; start < queued.length; start += limit) this.send(queued.slice(start, start + limit));
  }

  private send(chunk: readonly Acquisition[]): void {
    const { state, region } = this.host;
    const donors = state.replicas.names.filter((name) => name !== region);
    const now = this.clock.now();
    let deadlineMs = now;
    for (const a of chunk) {
      a.sent = true;
      a.outstanding = donors.length;
      a.target = this.spendable(a.accountId) + a.needed;
      deadlineMs = Math.max(deadlineMs, a.deadlineMs);
      if (donors.length === 0) a.finish();
    }
    const batch: RightsBatchAsk = { requester: region, asks: chunk.map((a) => ({ accountId: a.accountId, deficit: a.needed, urgent: a.urgent })) };
    const timeoutMs = Math.max(1, deadlineMs - now);
    for (const donor of donors) {
      this.events.batch?.("ask", chunk.length);
      this.transport.ask(donor, batch, timeoutMs).then(
        (reply) => this.answered(donor, chunk, reply),
        () => this.answered(donor, chunk, undefined),
      );
    }
  }

  private answered(donor: string, chunk: readonly Acquisition[], reply: RightsBatchGift | undefined): void {
    if (reply === undefined) {
      for (let i = 0; i < chunk.length; i++) this.events.asked("expired");
    } else if (reply.donor !== donor) {
      // Only the peer asked may answer: nothing of another's gifts is merged.
      for (let i = 0; i < chunk.length; i++) this.events.asked("refused");
      this.events.giftRejected?.(donor, new Error(`reply from ${reply.donor}, not from the peer asked (${donor})`));
    } else {
      for (const gift of reply.gifts) this.receive(donor, gift);
    }
    for (const a of chunk) {
      a.outstanding--;
      if (a.outstanding <= 0 || this.spendable(a.accountId) >= a.target) a.finish();
    }
  }

  private receive(donor: string, gift: RightsGift): void {
    const { state, watches } = this.host;
    const donorIndex = state.replicas.indexOf(donor);
    this.peerRights.remember(gift.accountId, donorIndex, gift.donorRights, this.clock.now());
    if (gift.granted <= 0n) {
      this.events.asked("refused");
      return;
    }
    try {
      // The whole counter first, so the view never holds the gift without what it depended on.
      state.mergeAccount(gift.accountId, gift.accountCounter);
      state.merge(gift.accountId, donorIndex, state.self, gift.transferredTotal);
    } catch (error) {
      // Values no donor could have produced: refused whole (merge checks before it changes anything).
      this.events.asked("refused");
      this.events.giftRejected?.(donor, error);
      return;
    }
    // A lot's gift wakes the account's watchers (a waiting debit watches the account, not its lots).
    watches.notify(rowOwner(gift.accountId)?.accountId ?? gift.accountId);
    this.events.asked("granted");
    this.events.transferred("in", gift.granted);
  }

  /** Answers a batch: every gift in one durable commit, made durable before the reply. */
  private async donate(batch: RightsBatchAsk): Promise<RightsBatchGift> {
    const { state, region, watches } = this.host;
    const nothing = (accountId: string): RightsGift => ({ accountId, granted: 0n, transferredTotal: 0n, donorRights: state.rights(accountId), accountCounter: [] });
    const refuseAll = (): RightsBatchGift => ({ donor: region, gifts: batch.asks.map((ask) => nothing(ask.accountId)) });
    if (this.stopped || !this.host.writable || !state.replicas.has(batch.requester) || batch.requester === region) return refuseAll();
    this.events.batch?.("give", batch.asks.length);
    const to = state.replicas.indexOf(batch.requester);
    const now = this.clock.now();
    const changes: SlotChange[] = [];
    const given: Array<{ accountId: string; amount: bigint }> = [];
    // Each reply entry is built right after its transfer: every own-row value
    // in it was written before the commit below, so all of it is durable when
    // the commit is. (Built after the await, it could carry later changes.)
    const gifts = batch.asks.flatMap((ask): RightsGift[] => {
      if (state.lots.hasLots(ask.accountId)) return this.donateLots(ask, to, now, changes, given);
      const give = this.policy.donation(ask.accountId, to, ask.deficit, ask.urgent, now);
      if (give <= 0n) return [nothing(ask.accountId)];
      changes.push(...state.transfer(ask.accountId, to, give));
      given.push({ accountId: ask.accountId, amount: give });
      return [
        {
          accountId: ask.accountId,
          granted: give,
          transferredTotal: state.slot(ask.accountId, state.self, to),
          donorRights: state.rights(ask.accountId),
          accountCounter: state.exportAccount(ask.accountId),
        },
      ];
    });
    if (changes.length === 0) return { donor: region, gifts };
    this.donating++;
    this.events.donorQueue?.(this.donating);
    try {
      await this.host.commit({ slots: changes });
    } catch (error) {
      this.events.donationFailed(error);
      return refuseAll();
    } finally {
      this.donating--;
      this.events.donorQueue?.(this.donating);
    }
    for (const { accountId, amount } of given) {
      watches.notify(rowOwner(accountId)?.accountId ?? accountId);
      this.events.transferred("out", amount);
    }
    return { donor: region, gifts };
  }

  /**
   * Gives to an account that has lots: the amount is sized by the same rules
   * over this region's spendable lots, then taken lot by lot in the asker's
   * burn order (planDonation, judged by this region's clock), never from a
   * dead lot. One gift per lot row; rights of a lot that dies before the
   * asker spends them stay unspendable there too.
   */
  private donateLots(ask: RightsBatchAsk["asks"][number], to: number, now: number, changes: SlotChange[], given: Array<{ accountId: string; amount: bigint }>): RightsGift[] {
    const state = this.host.state;
    const clockMs = this.wallClock();
    const lots = state.accountLots(ask.accountId, clockMs);
    const spendable = localSpendable(lots);
    const give = this.policy.donation(ask.accountId, to, ask.deficit, ask.urgent, now, { rights: spendable, balance: liveBalance(lots), headroom: INT64_MAX });
    const gifts: RightsGift[] = [];
    for (const take of planDonation(lots, give, clockMs, state.lotGuardMs)) {
      const rowId = lots.find((lot) => lot.key === take.key)!.rowId;
      const headroom = state.transferHeadroom(rowId, to);
      const amount = take.amount < headroom ? take.amount : headroom;
      if (amount <= 0n) continue;
      changes.push(...state.transfer(rowId, to, amount));
      given.push({ accountId: rowId, amount });
      gifts.push({ accountId: rowId, granted: amount, transferredTotal: state.slot(rowId, state.self, to), donorRights: state.rights(rowId), accountCounter: state.exportAccount(rowId) });
    }
    if (gifts.length > 0) return gifts;
    return [{ accountId: ask.accountId, granted: 0n, transferredTotal: 0n, donorRights: spendable, accountCounter: [] }];
  }
}
