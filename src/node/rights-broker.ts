// Moves escrow rights between regions on demand. A debit short of rights asks
// the peers (richest first, in parallel, one request per account at a time so
// concurrent shortfalls are batched); a donor gives from its own rights only,
// as a durable write to its own row, before it replies. Shares follow demand:
// busy regions ask, idle donors give more than asked, and a region that falls
// below half of its fair share asks ahead of need.

import type { NatsConnection, Subscription } from "nats";
import { RightsReply, RightsRequest } from "../generated/tally/replication/v1/replication";
import { rightsSubject } from "../replication/subjects";
import type { TallyMetrics } from "../metrics/tally-metrics";
import type { Logger } from "./logger";
import { donorGrant, DemandTracker, DonorRateLimiter, proactiveNeed } from "../core/rebalance";
import type { ReplicaSet } from "../core/replica-set";
import type { ReplicaState, SlotChange } from "../core/replica-state";
import type { BalanceWatchHub } from "./balance-watch";
import type { NodeConfig } from "./node-config";

/** What the broker needs from its node. */
export interface RightsHost {
  readonly config: NodeConfig;
  readonly state: ReplicaState;
  readonly replicas: ReplicaSet;
  readonly watches: BalanceWatchHub;
  readonly ready: boolean;
  commitSlots(slots: SlotChange[]): Promise<void>;
}

interface Acquisition {
  readonly needed: bigint;
  readonly done: Promise<void>;
}

export class RightsBroker {
  private subscription: Subscription | undefined;
  private readonly acquiring = new Map<string, Acquisition>();
  private readonly demand: DemandTracker;
  private readonly limiter = new DonorRateLimiter({ windowMs: 2, maxEntries: 100_000 });
  private stopped = false;

  constructor(
    private readonly node: RightsHost,
    private readonly connection: NatsConnection,
    private readonly metrics: TallyMetrics,
    private readonly logger: Logger,
    private readonly now: () => number,
  ) {
    this.demand = new DemandTracker({
      replicaCount: node.replicas.size,
      halfLifeMs: 2_000,
      maxAccounts: 100_000,
      idleMs: 60_000,
    });
  }

  start(): void {
    this.subscription = this.connection.subscribe(rightsSubject(this.node.config.region), {
      callback: (error, message) => {
        if (error !== null) return;
        this.donate(RightsRequest.decode(message.data)).then(
          (reply) => message.respond(RightsReply.encode(reply).finish()),
          (donateError: unknown) => {
            this.logger.warn("rights donation failed", { error: String(donateError) });
            message.respond(
              RightsReply.encode({
                donor: this.node.config.region,
                granted: 0n,
                transferredTotal: 0n,
                donorRights: 0n,
                accountCounter: [],
                cluster: undefined,
              }).finish(),
            );
          },
        );
      },
    });
  }

  stop(): void {
    this.stopped = true;
    this.subscription?.unsubscribe();
  }

  /** Local debit seen: feeds demand tracking and proactive rebalancing. */
  observeDebit(accountId: string, amount: bigint, nowMs: number, rightsAfter: bigint, balanceAfter: bigint): void {
    const state = this.node.state;
    if (state.replicas.size === 1) return;
    this.demand.record(accountId, state.self, amount, nowMs);
    const want = proactiveNeed(rightsAfter, balanceAfter, state.replicas.size, this.demand.share(accountId, state.self));
    if (want > 0n && !this.acquiring.has(accountId)) {
      void this.startAsk(accountId, want, nowMs + this.node.config.maxRightsWaitMs);
    }
  }

  /** Debits merged from a peer's row: demand there, so its fair share grows. */
  observePeerDebit(accountId: string, replica: number, amount: bigint, nowMs: number): void {
    this.demand.record(accountId, replica, amount, nowMs);
  }

  /** A debit was refused without waiting (bulk path): ask in the background for the next one. */
  onShortfall(accountId: string, amount: bigint): void {
    if (this.acquiring.has(accountId)) return;
    const deficit = amount - this.node.state.rights(accountId);
    if (deficit > 0n) void this.startAsk(accountId, deficit, this.now() + this.node.config.maxRightsWaitMs);
  }

  /**
   * Asks peers for `deficit` rights; resolves when this region's rights grew
   * by it, every asked peer answered, or the deadline passed.
   */
  /**
   * One round of asking: joins the account's request in flight or starts one,
   * and resolves when this caller's `deficit` is covered, the request ends, or
   * the deadline passes. The debit path decides whether to ask again.
   */
  async acquire(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const state = this.node.state;
    const target = state.rights(accountId) + deficit;
    if (this.stopped || deficit <= 0n || this.now() >= deadlineMs) return;
    // A waiting debit resolves as soon as its own need is covered (any merge
    // that raises this region's rights notifies the account's watchers), not
    // when the whole batched request finishes.
    let wake: () => void = () => undefined;
    const covered = new Promise<void>((resolve) => (wake = resolve));
    const unwatch = this.node.watches.watch(
      accountId,
      () => {
        if (state.rights(accountId) >= target) wake();
      },
      () => wake(),
      true,
    );
    try {
      const existing = this.acquiring.get(accountId);
      // Ask for what demand says this region should hold, not just this debit's gap,
      // so the next debits do not wait (AntidoteDB batches requests the same way).
      const wanted = proactiveNeed(state.rights(accountId), state.balance(accountId), state.replicas.size, this.demand.share(accountId, state.self));
      const asking =
        existing !== undefined && existing.needed >= deficit
          ? existing.done
          : this.startAsk(accountId, wanted > deficit ? wanted : deficit, deadlineMs);
      await this.raceDeadline(Promise.race([asking, covered]), deadlineMs);
    } finally {
      unwatch();
    }
  }

  /** One batched request to the peers for an account; concurrent shortfalls join it. */
  private startAsk(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const done = this.ask(accountId, deficit, deadlineMs);
    const entry = { needed: deficit, done };
    this.acquiring.set(accountId, entry);
    void done.finally(() => {
      if (this.acquiring.get(accountId) === entry) this.acquiring.delete(accountId);
    });
    return done;
  }

  private async ask(accountId: string, deficit: bigint, deadlineMs: number): Promise<void> {
    const node = this.node;
    const self = node.config.region;
    const selfIndex = node.state.self;
    const peers = node.replicas.names
      .filter((r) => r !== self)
      .map((r) => ({ region: r, rights: node.state.rights(accountId, node.replicas.indexOf(r)) }))
      .sort((a, b) => (b.rights > a.rights ? 1 : b.rights < a.rights ? -1 : 0));
    const timeout = Math.max(1, deadlineMs - this.now());
    const payload = RightsRequest.encode({ accountId, requester: self, deficit, cluster: undefined }).finish();
    const target = node.state.rights(accountId) + deficit;
    await new Promise<void>((resolve) => {
      let outstanding = peers.length;
      if (outstanding === 0) resolve();
      const settle = (): void => {
        outstanding--;
        if (outstanding === 0 || node.state.rights(accountId) >= target) resolve();
      };
      for (const peer of peers) {
        this.connection.request(rightsSubject(peer.region), payload, { timeout }).then(
          (message) => {
            const reply = RightsReply.decode(message.data);
            if (reply.granted > 0n) {
              node.state.merge(accountId, node.replicas.indexOf(reply.donor), selfIndex, reply.transferredTotal);
              node.state.mergeAccount(accountId, reply.accountCounter);
              node.watches.notify(accountId);
              this.metrics.rightsRequests.inc({ result: "granted" });
              this.metrics.rightsTransfers.inc({ direction: "in" });
              this.metrics.rightsTransferred.inc({ direction: "in" }, Number(reply.granted));
            } else {
              this.metrics.rightsRequests.inc({ result: "refused" });
            }
            settle();
          },
          () => {
            this.metrics.rightsRequests.inc({ result: "expired" });
            settle();
          },
        );
      }
    });
  }

  private async donate(request: RightsRequest): Promise<RightsReply> {
    const node = this.node;
    const region = node.config.region;
    const empty: RightsReply = {
      donor: region,
      granted: 0n,
      transferredTotal: 0n,
      donorRights: node.state.rights(request.accountId),
      accountCounter: [],
      cluster: undefined,
    };
    if (this.stopped || !node.ready || !node.replicas.has(request.requester) || request.requester === region) return empty;
    const nowMs = this.now();
    const to = node.replicas.indexOf(request.requester);
    if (!this.limiter.allows(request.accountId, to, nowMs)) return empty;
    const spare = node.state.rights(request.accountId);
    const idle = this.demand.isIdle(request.accountId, node.state.self, nowMs);
    const give = donorGrant(spare, request.deficit, idle);
    if (give <= 0n) return empty;
    this.limiter.tryAcquire(request.accountId, to, nowMs);
    const changes = node.state.transfer(request.accountId, to, give);
    await node.commitSlots(changes);
    node.watches.notify(request.accountId);
    this.metrics.rightsTransfers.inc({ direction: "out" });
    this.metrics.rightsTransferred.inc({ direction: "out" }, Number(give));
    return {
      donor: region,
      granted: give,
      transferredTotal: node.state.slot(request.accountId, node.state.self, to),
      donorRights: node.state.rights(request.accountId),
      accountCounter: node.state.exportAccount(request.accountId),
      cluster: undefined,
    };
  }

  private async raceDeadline(done: Promise<void>, deadlineMs: number): Promise<void> {
    const wait = Math.max(0, deadlineMs - this.now());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, wait)))]);
    if (timer !== undefined) clearTimeout(timer);
  }
}
