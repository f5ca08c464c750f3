// Moves escrow rights between regions on demand. A debit short of rights asks
// every peer (richest first, one request per account at a time so concurrent
// shortfalls join it); a donor gives from its own rights only, as a durable
// write to its own row, before it replies. Every decision (how much to ask,
// how much to give, when to ask ahead) is the pure RightsPolicy's; this class
// does the asking and waiting over a RightsTransport.

import { performance } from "node:perf_hooks";
import type { DurableWrite } from "../core/durable-write";
import type { ReplicaState } from "../core/replica-state";
import type { RightsAsk, RightsGift, RightsTransport } from "../core/rights-messages";
import { RightsPolicy } from "../core/rights-policy";
import type { BalanceWatchHub } from "./balance-watch";

/** What the broker needs from its node. */
export interface RightsHost {
  readonly region: string;
  readonly state: ReplicaState;
  readonly watches: BalanceWatchHub;
  /** False while recovering, fenced or stopping: a donor gives nothing then. */
  readonly writable: boolean;
  /** Makes a write to this region's own row durable. */
  commit(write: DurableWrite): Promise<unknown>;
}

export interface RightsEvents {
  asked(result: "granted" | "refused" | "expired"): void;
  transferred(direction: "in" | "out", amount: bigint): void;
  donationFailed(error: unknown): void;
  /** A gift carried values no donor could have produced; nothing of it was merged. */
  giftRejected?(donor: string, error: unknown): void;
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

interface Acquisition {
  readonly needed: bigint;
  readonly done: Promise<void>;
}

export class RightsBroker {
  readonly policy: RightsPolicy;
  private readonly acquiring = new Map<string, Acquisition>();
  private stopServing: (() => void) | undefined;
  private stopped = false;

  constructor(
    private readonly host: RightsHost,
    private readonly transport: RightsTransport,
    private readonly events: RightsEvents,
    private readonly clock: BrokerClock,
    /** How long a background ask (ahead of need, or after a bulk refusal) may take. */
    private readonly backgroundAskMs: number,
  ) {
    this.policy = new RightsPolicy(host.state);
  }

  get asksInFlight(): number {
    return this.acquiring.size;
  }

  start(): void {
    this.stopServing = this.transport.serve((ask) => this.donate(ask));
  }

  stop(): void {
    this.stopped = true;
    this.stopServing?.();
  }

  /** A local debit was approved: feeds demand, and asks ahead when this region falls below its share. */
  afterLocalDebit(accountId: string, amount: bigint, nowMs: number): void {
    const want = this.policy.afterLocalDebit(accountId, amount, nowMs);
    if (want > 0n && !this.acquiring.has(accountId)) void this.startAsk(accountId, want, nowMs + this.backgroundAskMs);
  }

  afterPeerDebit(accountId: string, replica: number, amount: bigint, nowMs: number): void {
    this.policy.afterPeerDebit(accountId, replica, amount, nowMs);
  }

  /** A debit was refused without waiting (bulk path): ask in the background for the next one. */
  afterShortfall(accountId: string, amount: bigint): void {
    if (this.acquiring.has(accountId)) return;
    const deficit = amount - this.host.state.rights(accountId);
    if (deficit > 0n) void this.startAsk(accountId, deficit, this.clock.now() + this.backgroundAskMs);
  }

  /**
   * One round of asking: joins the account's request in flight or starts one,
   * and resolves when this caller's `deficit` is covered, the request ends, or
   * the deadline passes. The debit path decides whether to ask again.
   */
  async acquire(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const { state, watches } = this.host;
    if (this.stopped || deficit <= 0n || this.clock.now() >= deadlineMs) return;
    const target = state.rights(accountId) + deficit;
    // A waiting debit resolves as soon as its own need is covered (any merge
    // that raises this region's rights notifies the account's watchers).
    let wake: () => void = () => undefined;
    const covered = new Promise<void>((resolve) => (wake = resolve));
    const unwatch = watches.watch(
      accountId,
      () => {
        if (state.rights(accountId) >= target) wake();
      },
      () => wake(),
      true,
    );
    const timeout = this.clock.wait(Math.max(0, deadlineMs - this.clock.now()));
    try {
      const existing = this.acquiring.get(accountId);
      const asking =
        existing !== undefined && existing.needed >= deficit
          ? existing.done
          : this.startAsk(accountId, this.policy.askSize(accountId, deficit), deadlineMs);
      await Promise.race([asking, covered, timeout.done]);
    } finally {
      timeout.cancel();
      unwatch();
    }
  }

  /** One request to the peers for an account; concurrent shortfalls join it. */
  private startAsk(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const done = this.askPeers(accountId, deficit, deadlineMs);
    const entry = { needed: deficit, done };
    this.acquiring.set(accountId, entry);
    void done.finally(() => {
      if (this.acquiring.get(accountId) === entry) this.acquiring.delete(accountId);
    });
    return done;
  }

  /** Resolves when every asked peer answered or gave up, or this region's rights reached the target. */
  private async askPeers(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const { state, region } = this.host;
    const donors = this.policy.donors(accountId);
    const timeoutMs = Math.max(1, deadlineMs - this.clock.now());
    const target = state.rights(accountId) + deficit;
    const ask: RightsAsk = { accountId, requester: region, deficit };
    await new Promise<void>((resolve) => {
      let outstanding = donors.length;
      if (outstanding === 0) resolve();
      const settle = (): void => {
        outstanding--;
        if (outstanding === 0 || state.rights(accountId) >= target) resolve();
      };
      for (const donor of donors) {
        this.transport.ask(donor, ask, timeoutMs).then(
          (gift) => {
            this.receive(accountId, donor, gift);
            settle();
          },
          () => {
            this.events.asked("expired");
            settle();
          },
        );
      }
    });
  }

  private receive(accountId: string, donor: string, gift: RightsGift | undefined): void {
    if (gift === undefined) {
      this.events.asked("expired");
      return;
    }
    if (gift.granted <= 0n || gift.donor !== donor) {
      this.events.asked("refused");
      return;
    }
    const { state, watches } = this.host;
    try {
      // The whole counter first, so the view never holds the gift without what it depended on.
      state.mergeAccount(accountId, gift.accountCounter);
      state.merge(accountId, state.replicas.indexOf(donor), state.self, gift.transferredTotal);
    } catch (error) {
      // Values no donor could have produced: refused whole (merge checks before it changes anything).
      this.events.asked("refused");
      this.events.giftRejected?.(donor, error);
      return;
    }
    watches.notify(accountId);
    this.events.asked("granted");
    this.events.transferred("in", gift.granted);
  }

  private async donate(ask: RightsAsk): Promise<RightsGift> {
    const { state, region, watches } = this.host;
    const nothing: RightsGift = { donor: region, granted: 0n, transferredTotal: 0n, donorRights: state.rights(ask.accountId), accountCounter: [] };
    if (this.stopped || !this.host.writable || !state.replicas.has(ask.requester) || ask.requester === region) return nothing;
    const to = state.replicas.indexOf(ask.requester);
    const give = this.policy.donation(ask.accountId, to, ask.deficit, this.clock.now());
    if (give <= 0n) return nothing;
    const changes = state.transfer(ask.accountId, to, give);
    // The reply is built now, at the transfer: every own-row value in it was
    // written before this commit, so all of it is durable when the commit is.
    // (Built after the await, it could carry later changes not yet durable.)
    const gift: RightsGift = {
      donor: region,
      granted: give,
      transferredTotal: state.slot(ask.accountId, state.self, to),
      donorRights: state.rights(ask.accountId),
      accountCounter: state.exportAccount(ask.accountId),
    };
    try {
      await this.host.commit({ slots: changes });
    } catch (error) {
      this.events.donationFailed(error);
      return nothing;
    }
    watches.notify(ask.accountId);
    this.events.transferred("out", give);
    return gift;
  }
}
