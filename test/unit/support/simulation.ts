// A deterministic, seeded simulation of three replicas over a faulty network
// (loss, duplication, reordering, delay, partitions) with crashes that rebuild a
// replica from its own durable log only. Each replica runs the production write
// rules (WritePath) and the production RightsBroker and RightsPolicy, wired to an
// in-memory RightsTransport over the simulated network, a BrokerClock driven by
// simulated time and a host whose commit is the simulated group commit. After
// every step the escrow invariants are checked; at the end the network heals and
// every replica must converge. Everything is driven by one seed, so any failure
// replays exactly.
//
// The broker is promise-based. Nothing here uses real timers or I/O: the only
// asynchrony is microtasks, which run in a fixed order, and after every event
// that may resolve a promise the run drains them (`settle`) before it goes on.

import { Mode, type PolicyWrite } from "../../../src/core/policy";
import { ReplicaSet } from "../../../src/core/replica-set";
import { DebitOutcome, ReplicaState, type SlotChange } from "../../../src/core/replica-state";
import type { DurableWrite } from "../../../src/core/durable-write";
import type { RightsBatchAsk, RightsBatchGift, RightsTransport } from "../../../src/core/rights-messages";
import { debitFingerprint, WritePath, type DebitItem, type DebitStep } from "../../../src/core/write-path";
import { BalanceWatchHub } from "../../../src/node/balance-watch";
import { RightsBroker, type BrokerClock, type RightsEvents, type RightsHost } from "../../../src/node/rights-broker";
import { Prng } from "./prng";

export interface SimulationOptions {
  readonly seed: number;
  readonly steps?: number;
  readonly accounts?: number;
  /** False: no broker; a short debit is decided at once (a baseline for measuring false rejections). */
  readonly rebalance?: boolean;
  /** Microtask turns drained after each event (the default is ample; tests compare against a deeper drain). */
  readonly drainTurns?: number;
  /**
   * Fail when a replica's own view shows a STRICT account below zero (its view is
   * not causally closed). On by default: every replication message carries the
   * other rows of its accounts as context, as in production; `false` only counts
   * such views in `causalGaps`.
   */
  readonly requireCausalViews?: boolean;
  /** Deliberate bug for self-tests of the checker: replication messages carry no causal context. */
  readonly omitContext?: boolean;
  /** Spread every grant's rights over the regions (NodeConfig.spreadGrants); off by default, see WritePath.grant. */
  readonly spreadGrants?: boolean;
  /** Deliberate bug for self-tests of the checker: a crashed replica comes back with an empty own row. */
  readonly forgetOwnRowOnCrash?: boolean;
  /** Deliberate bug for self-tests of the checker: the host's commit resolves before the change is durable. */
  readonly giftBeforeDurable?: boolean;
  readonly trace?: (line: string) => void;
}

export interface SimulationStats {
  grants: number;
  debitsApproved: number;
  debitsOverdraft: number;
  debitsRejected: number;
  /** Rejected (STRICT) while the fully merged balance could have covered the debit. */
  falseRejections: number;
  /** Client debits that waited for rights (RightsBroker.acquire). */
  debitsWaited: number;
  /** Debits that got their rights while waiting and were approved. */
  debitsApprovedAfterWait: number;
  /** Client calls cut short by a crash of their replica (never acknowledged). */
  debitsAbandoned: number;
  /** Bulk-path debits refused without waiting (RightsBroker.afterShortfall). */
  bulkShortfalls: number;
  /** Asks the broker started ahead of need (after a local debit or a bulk refusal). */
  backgroundAsks: number;
  /** RightsTransport.ask calls (one batch per donor asked). */
  asksSent: number;
  /** Batches that carried more than one account (asks of one window coalesced). */
  batchesOfSeveral: number;
  asksGranted: number;
  asksRefused: number;
  asksExpired: number;
  rightsGifts: number;
  /** A donor's commit failed (it crashed before the gift was durable): nothing was given. */
  donationsFailed: number;
  crashes: number;
  lostUnflushed: number;
  partitions: number;
  /** Checks (replica, STRICT account, step) where the replica's own view showed a balance below zero. */
  causalGaps: number;
  messagesSent: number;
  messagesLost: number;
  messagesDuplicated: number;
  messagesDelivered: number;
  maxOverspend: bigint;
}

export interface SimulationReport {
  readonly seed: number;
  readonly stats: SimulationStats;
  /** Final converged balance per account. */
  readonly balances: readonly bigint[];
}

/** An invariant broke; `step` is -1 for the final phase. */
export class SimulationViolation extends Error {
  override readonly name = "SimulationViolation";
  constructor(
    readonly seed: number,
    readonly step: number,
    readonly detail: string,
  ) {
    super(`seed ${seed}, step ${step}: ${detail}`);
  }
}

const NAMES = ["r0", "r1", "r2"];
const N = NAMES.length;
const COLUMNS = N + 1;
/** How long a debit may wait for rights before it is rejected or overdraws. */
const DEBIT_WAIT_MS = 40;
/** How long a background ask may take (TallyNode passes maxRightsWaitMs). */
const BACKGROUND_ASK_MS = 40;
/** The pause after a round that brought nothing (TallyNode.decideDebit: at most 5 ms). */
const STALL_PAUSE_MS = 5;
/** Microtask turns per drain: twice the longest chain one event starts (6 turns, measured; see the drain test). */
const DEFAULT_DRAIN_TURNS = 12;
/** Simulated time the final phase gives waiting debits, asks and donations to finish. */
const QUIESCE_MS = 400;

type Payload =
  | { readonly kind: "row"; readonly changes: readonly SlotChange[]; readonly context: readonly SlotChange[] }
  | { readonly kind: "ask"; readonly id: number; readonly life: number; readonly batch: RightsBatchAsk }
  | { readonly kind: "reply"; readonly id: number; readonly life: number; readonly gift: RightsBatchGift };

interface Message {
  readonly from: number;
  readonly to: number;
  readonly deliverAtMs: number;
  readonly payload: Payload;
}

interface PendingAck {
  readonly kind: "grant" | "debit";
  readonly account: number;
  readonly amount: bigint;
}

interface Timer {
  readonly dueMs: number;
  readonly life: Process;
  readonly fire: () => void;
  cancelled: boolean;
}

/** One run of a replica's process, from start to crash: everything here dies with it. */
interface Process {
  readonly id: number;
  alive: boolean;
  readonly state: ReplicaState;
  readonly writes: WritePath;
  readonly watches: BalanceWatchHub;
  /** The broker's ask handler while it serves. */
  serve: ((batch: RightsBatchAsk) => Promise<RightsBatchGift>) | undefined;
  /** Asks this process sent that still wait for a reply, by ask id. */
  readonly inbox: Map<number, (gift: RightsBatchGift) => void>;
  /** Host commits waiting for the next group commit. */
  commits: Array<{ resolve: () => void; reject: (error: Error) => void }>;
  /** Client debits in progress (waiting for rights). */
  waiting: number;
}

interface Life extends Process {
  readonly broker: RightsBroker;
}

interface SimNode {
  readonly index: number;
  life: Life;
  /** The durable log: every change this replica published, in order. */
  log: SlotChange[];
  /** The durable value of every own slot: durable[account][column]. */
  durable: bigint[][];
  /** The in-memory value of every own slot (durable plus pending), mirrored for cheap checks. */
  memory: bigint[][];
  /** Applied in memory, not yet durable (group commit window). */
  pending: SlotChange[];
  pendingAcks: PendingAck[];
  downUntilStep: number;
}

class Simulation {
  private readonly prng: Prng;
  private readonly replicaSet = new ReplicaSet(NAMES);
  private readonly accountIds: string[];
  private readonly policies: PolicyWrite[];
  private readonly spreadGrants: boolean;
  private readonly nodes: SimNode[];
  private readonly network: Message[] = [];
  private readonly cut = new Set<string>();
  private timers: Timer[] = [];
  /** Acknowledged (durable) client operations: acked[node][account]. */
  private readonly ackedGrants: bigint[][];
  private readonly ackedDebits: bigint[][];
  private readonly rebalance: boolean;
  private readonly drainTurns: number;
  private nowMs = 0;
  private step = 0;
  private lives = 0;
  private asks = 0;
  private requests = 0;
  /** Faults are off in the final phase. */
  private reliable = false;
  /** Something may have resolved a promise since the last drain. */
  private touched = false;
  /** The first error thrown inside a promise chain (a violation found there, or a bug). */
  private asyncError: Error | undefined;
  readonly stats: SimulationStats = {
    grants: 0,
    debitsApproved: 0,
    debitsOverdraft: 0,
    debitsRejected: 0,
    falseRejections: 0,
    debitsWaited: 0,
    debitsApprovedAfterWait: 0,
    debitsAbandoned: 0,
    bulkShortfalls: 0,
    backgroundAsks: 0,
    asksSent: 0,
    batchesOfSeveral: 0,
    asksGranted: 0,
    asksRefused: 0,
    asksExpired: 0,
    rightsGifts: 0,
    donationsFailed: 0,
    crashes: 0,
    lostUnflushed: 0,
    partitions: 0,
    causalGaps: 0,
    messagesSent: 0,
    messagesLost: 0,
    messagesDuplicated: 0,
    messagesDelivered: 0,
    maxOverspend: 0n,
  };

  constructor(private readonly options: SimulationOptions) {
    this.prng = new Prng(options.seed);
    this.rebalance = options.rebalance ?? true;
    this.drainTurns = options.drainTurns ?? DEFAULT_DRAIN_TURNS;
    const accounts = options.accounts ?? 3;
    this.accountIds = Array.from({ length: accounts }, (_, k) => `acct-${k}`);
    // Each account is STRICT or OVERDRAFT(1..30), written once before the run.
    this.policies = this.accountIds.map(() => {
      const overdraft = this.prng.chance(0.5);
      const mode = overdraft ? Mode.Overdraft : Mode.Strict;
      const overdraftLimit = overdraft ? this.prng.bigint(1n, 30n) : 0n;
      return { mode, overdraftLimit, lowWaterMark: 0n, writtenAtMs: 0, logical: 0, replica: "r0" };
    });
    this.spreadGrants = options.spreadGrants ?? false;
    this.ackedGrants = NAMES.map(() => this.accountIds.map(() => 0n));
    this.ackedDebits = NAMES.map(() => this.accountIds.map(() => 0n));
    this.nodes = [];
    for (let index = 0; index < N; index++) {
      this.nodes.push({
        index,
        life: this.startLife(index, this.freshState(index)),
        log: [],
        durable: this.zeroRows(),
        memory: this.zeroRows(),
        pending: [],
        pendingAcks: [],
        downUntilStep: -1,
      });
    }
  }

  async run(): Promise<SimulationReport> {
    const steps = this.options.steps ?? 250;
    for (this.step = 0; this.step < steps; this.step++) {
      this.nowMs += this.prng.int(1, 3);
      await this.weather();
      this.fireTimers();
      await this.settle();
      await this.deliverDue();
      for (const node of this.nodes) {
        if (!this.isUp(node)) continue;
        this.clientWork(node);
        await this.settle();
        if (node.pending.length > 0 && this.prng.chance(0.6)) {
          this.flush(node);
          await this.settle();
        }
        if (this.prng.chance(0.05)) this.antiEntropy(node, this.prng.int(0, N - 1));
      }
      this.checkInvariants();
    }
    this.step = -1;
    await this.healAndConverge();
    return {
      seed: this.options.seed,
      stats: this.stats,
      balances: this.accountIds.map((id) => this.nodeAt(0).life.state.balance(id)),
    };
  }

  // ---- driving the promises ----------------------------------------------------

  /**
   * Runs every microtask the last events queued: a fixed number of turns, so the
   * run is the same for a seed whatever else the process does. Rethrows an error
   * raised inside a promise chain (a violation found there).
   */
  private async settle(): Promise<void> {
    while (this.touched) {
      this.touched = false;
      for (let turn = 0; turn < this.drainTurns; turn++) await Promise.resolve();
    }
    if (this.asyncError !== undefined) throw this.asyncError;
  }

  /** Runs a promise chain started by the simulation; an error in it ends the run at the next drain. */
  private spawn(work: Promise<void>): void {
    this.touched = true;
    work.catch((error: unknown) => {
      this.asyncError ??= error instanceof Error ? error : new Error(String(error));
    });
  }

  private clockFor(life: Process): BrokerClock {
    return {
      now: () => this.nowMs,
      wait: (ms) => {
        let fire: () => void = () => undefined;
        const done = new Promise<void>((resolve) => (fire = resolve));
        const timer: Timer = { dueMs: this.nowMs + Math.max(0, ms), life, fire, cancelled: false };
        this.timers.push(timer);
        return { done, cancel: () => void (timer.cancelled = true) };
      },
    };
  }

  /** Resolves every live timer the clock has passed, earliest first (creation order breaks ties). */
  private fireTimers(): void {
    const due: Timer[] = [];
    const later: Timer[] = [];
    for (const timer of this.timers) {
      if (timer.cancelled || !timer.life.alive) continue;
      (timer.dueMs <= this.nowMs ? due : later).push(timer);
    }
    this.timers = later;
    due.sort((a, b) => a.dueMs - b.dueMs);
    for (const timer of due) timer.fire();
    if (due.length > 0) this.touched = true;
  }

  // ---- a replica's process -------------------------------------------------------

  /** A process of replica `index` over `state`, with its own broker (started unless rebalancing is off). */
  private startLife(index: number, state: ReplicaState): Life {
    const watches = new BalanceWatchHub();
    const process: Process = {
      id: ++this.lives,
      alive: true,
      state,
      writes: new WritePath(state),
      watches,
      serve: undefined,
      inbox: new Map(),
      commits: [],
      waiting: 0,
    };
    const host: RightsHost = {
      region: this.replicaSet.nameOf(index),
      state,
      watches,
      get writable() {
        return process.alive;
      },
      commit: (write) => this.commit(this.nodeAt(index), process, write),
    };
    const events: RightsEvents = {
      asked: (result) => {
        if (result === "granted") this.stats.asksGranted++;
        else if (result === "refused") this.stats.asksRefused++;
        else this.stats.asksExpired++;
      },
      transferred: (direction, amount) => {
        if (direction === "out") this.stats.rightsGifts++;
        this.trace(`r${index} ${direction === "out" ? "gave" : "received"} ${amount} rights`);
      },
      donationFailed: (error) => {
        this.stats.donationsFailed++;
        this.trace(`r${index} donation failed: ${String(error)}`);
      },
    };
    const broker = new RightsBroker(host, this.transportFor(index, process), events, this.clockFor(process), BACKGROUND_ASK_MS);
    if (this.rebalance) broker.start();
    return Object.assign(process, { broker });
  }

  /** The host's commit: the write joins the group commit and resolves when it is durable. */
  private commit(node: SimNode, life: Process, write: DurableWrite): Promise<void> {
    if (!life.alive || node.life !== life) return Promise.reject(new Error(`r${node.index} is down`));
    this.writeOwn(node, write.slots);
    // The deliberate bug: the donor replies before its transfer is durable.
    if (this.options.giftBeforeDurable === true) return Promise.resolve();
    return new Promise<void>((resolve, reject) => life.commits.push({ resolve, reject }));
  }

  /** Request/reply over the simulated network, like NATS: the first reply wins; none within the timeout is undefined. */
  private transportFor(index: number, life: Process): RightsTransport {
    return {
      ask: (donor, batch, timeoutMs) => {
        const id = ++this.asks;
        this.stats.asksSent++;
        if (batch.asks.length > 1) this.stats.batchesOfSeveral++;
        this.trace(`r${index} asks ${donor} for ${batch.asks.map((a) => `${a.deficit} of ${a.accountId}${a.urgent ? "!" : ""}`).join(", ")}`);
        return new Promise<RightsBatchGift | undefined>((resolve) => {
          const timeout = this.clockFor(life).wait(timeoutMs);
          const finish = (gift: RightsBatchGift | undefined): void => {
            if (!life.inbox.delete(id)) return;
            timeout.cancel();
            resolve(gift);
          };
          life.inbox.set(id, finish);
          void timeout.done.then(() => finish(undefined));
          this.send(index, NAMES.indexOf(donor), { kind: "ask", id, life: life.id, batch });
        });
      },
      serve: (donate) => {
        life.serve = donate;
        return () => {
          if (life.serve === donate) life.serve = undefined;
        };
      },
    };
  }

  // ---- faults ----------------------------------------------------------------

  private async weather(): Promise<void> {
    if (this.prng.chance(0.02)) {
      this.cut.clear();
      if (this.prng.chance(0.5)) {
        const isolated = this.prng.int(0, N - 1);
        for (let other = 0; other < N; other++) if (other !== isolated) this.cutLink(isolated, other);
        this.trace(`partition: r${isolated} isolated`);
      } else {
        const a = this.prng.int(0, N - 1);
        const b = (a + this.prng.int(1, N - 1)) % N;
        this.cutLink(a, b);
        this.trace(`partition: link r${a}-r${b} cut`);
      }
      this.stats.partitions++;
    } else if (this.cut.size > 0 && this.prng.chance(0.05)) {
      this.cut.clear();
      this.trace("partition healed");
    }
    if (this.prng.chance(0.006)) {
      const node = this.nodeAt(this.prng.int(0, N - 1));
      if (this.isUp(node)) {
        this.crash(node);
        await this.settle();
      }
    }
    for (const node of this.nodes) {
      if (node.downUntilStep >= 0 && this.step >= node.downUntilStep) this.restart(node);
    }
  }

  private cutLink(a: number, b: number): void {
    this.cut.add(`${Math.min(a, b)}-${Math.max(a, b)}`);
  }

  private connected(a: number, b: number): boolean {
    return !this.cut.has(`${Math.min(a, b)}-${Math.max(a, b)}`);
  }

  /** The process dies: undurable changes, waiting calls, asks in flight and timers are gone. */
  private crash(node: SimNode): void {
    this.stats.crashes++;
    this.stats.lostUnflushed += node.pending.length;
    node.pending = [];
    node.pendingAcks = [];
    const life = node.life;
    life.alive = false;
    life.broker.stop();
    life.inbox.clear();
    for (const waiter of life.commits) waiter.reject(new Error(`r${node.index} crashed before the commit was durable`));
    life.commits = [];
    // Wakes the debits waiting for rights; they find the process dead and end unanswered.
    life.watches.closeAll();
    this.touched = true;
    node.downUntilStep = this.step + this.prng.int(2, 30);
    this.trace(`crash r${node.index} (down until step ${node.downUntilStep})`);
  }

  /** Rebuilds the replica from its own durable log only: peer rows, demand and limiters are gone. */
  private restart(node: SimNode): void {
    node.downUntilStep = -1;
    if (this.options.forgetOwnRowOnCrash === true) {
      node.log = [];
      node.durable = this.zeroRows();
    }
    node.memory = node.durable.map((row) => [...row]);
    const state = this.freshState(node.index);
    for (const change of node.log) state.merge(change.accountId, change.writer, change.column, change.value);
    node.life = this.startLife(node.index, state);
    this.trace(`restart r${node.index} from ${node.log.length} logged changes`);
  }

  private isUp(node: SimNode): boolean {
    return node.downUntilStep < 0;
  }

  // ---- network ---------------------------------------------------------------

  private send(from: number, to: number, payload: Payload): void {
    if (from === to || to < 0) return;
    this.stats.messagesSent++;
    if (!this.reliable && (!this.connected(from, to) || this.prng.chance(0.1))) {
      this.stats.messagesLost++;
      return;
    }
    const copies = !this.reliable && this.prng.chance(0.05) ? 2 : 1;
    if (copies === 2) this.stats.messagesDuplicated++;
    for (let k = 0; k < copies; k++) {
      const delay = this.prng.chance(0.05) ? this.prng.int(30, 200) : this.prng.int(1, 20);
      this.network.push({ from, to, deliverAtMs: this.nowMs + delay, payload });
    }
  }

  private async deliverDue(): Promise<void> {
    const due: Message[] = [];
    for (let k = this.network.length - 1; k >= 0; k--) {
      const message = this.network[k];
      if (message !== undefined && message.deliverAtMs <= this.nowMs) {
        due.push(message);
        this.network.splice(k, 1);
      }
    }
    for (const message of this.prng.shuffle(due)) {
      const node = this.nodeAt(message.to);
      // In flight across a new partition, or to a replica that is down: lost.
      if (!this.isUp(node) || !this.connected(message.from, message.to)) {
        this.stats.messagesLost++;
        continue;
      }
      this.stats.messagesDelivered++;
      this.receive(node, message);
      await this.settle();
    }
  }

  private receive(node: SimNode, message: Message): void {
    const payload = message.payload;
    const life = node.life;
    switch (payload.kind) {
      case "row":
        this.mergeRow(node, payload.context);
        this.mergeRow(node, payload.changes);
        break;
      case "ask": {
        const serve = life.serve;
        if (serve === undefined) return;
        this.touched = true;
        // Like the NATS transport: answer when the donation settles, if this process still lives.
        serve(payload.batch).then(
          (gift) => {
            if (life.alive) this.send(node.index, message.from, { kind: "reply", id: payload.id, life: payload.life, gift });
          },
          () => undefined,
        );
        break;
      }
      case "reply": {
        // A reply to an earlier process (before a crash) finds no inbox.
        if (payload.life !== life.id) return;
        const finish = life.inbox.get(payload.id);
        if (finish === undefined) return;
        this.touched = true;
        finish(payload.gift);
        break;
      }
    }
  }

  /** As TallyNode.applyDelta: merge, feed peer demand, wake the account's watchers. */
  private mergeRow(node: SimNode, changes: readonly SlotChange[]): void {
    const life = node.life;
    const state = life.state;
    for (const c of changes) {
      // A replica's own row is never taken from another's view of it.
      if (c.writer === node.index) continue;
      const before = state.slot(c.accountId, c.writer, c.column);
      if (!state.merge(c.accountId, c.writer, c.column, c.value)) continue;
      if (c.column === N && c.writer !== node.index) life.broker.afterPeerDebit(c.accountId, c.writer, c.value - before, this.nowMs);
      life.watches.notify(c.accountId);
      if (life.waiting > 0) this.touched = true;
    }
  }

  // ---- client work -------------------------------------------------------------

  private clientWork(node: SimNode): void {
    const roll = this.prng.next();
    // Spending is skewed: an account is mostly spent at its home replica
    // (account index mod N), while grants land anywhere.
    const home = this.accountIds.map((_, account) => account).filter((account) => account % N === node.index);
    const account =
      roll >= 0.1 && roll < 0.5 && home.length > 0 && this.prng.chance(0.7)
        ? this.prng.pick(home)
        : this.prng.int(0, this.accountIds.length - 1);
    const accountId = this.accountIdAt(account);
    const life = node.life;
    if (roll < 0.1) {
      const amount = this.prng.bigint(1n, 50n);
      const granted = life.writes.grant({ accountId, amount, requestId: this.requestId(node), time: { stampMs: this.nowMs, nowMs: this.nowMs }, spread: this.spreadGrants });
      life.watches.notify(accountId);
      this.writeOwn(node, granted.write.slots);
      node.pendingAcks.push({ kind: "grant", account, amount });
      this.stats.grants++;
    } else if (roll < 0.45) {
      this.spawn(this.debit(node, account, this.prng.bigint(1n, 15n)));
    } else if (roll < 0.5) {
      this.bulkDebit(node, account, this.prng.bigint(1n, 15n));
    }
  }

  /** A client Debit, as TallyNode.decideDebit: spend now, or ask and wait up to DEBIT_WAIT_MS. */
  private async debit(node: SimNode, account: number, amount: bigint): Promise<void> {
    const life = node.life;
    const { state, writes, broker } = life;
    const accountId = this.accountIdAt(account);
    const item: DebitItem = { accountId, amount, requestId: this.requestId(node) };
    const fingerprint = debitFingerprint(accountId, amount);
    let step: DebitStep = writes.debit({ item, fingerprint, time: { stampMs: this.nowMs, nowMs: this.nowMs }, final: !this.rebalance });
    if (step.kind === "short") {
      const deadline = this.nowMs + DEBIT_WAIT_MS;
      this.stats.debitsWaited++;
      life.waiting++;
      try {
        while (step.kind === "short") {
          const before = state.rights(accountId);
          await broker.acquire(accountId, amount - before, deadline);
          if (!life.alive) return this.abandon(node, accountId);
          const stalled = state.rights(accountId) <= before;
          // Nothing came and the balance known here cannot cover it: refuse now.
          const hopeless = stalled && state.balance(accountId) < amount;
          step = writes.debit({ item, fingerprint, time: { stampMs: this.nowMs, nowMs: this.nowMs }, final: this.nowMs >= deadline || hopeless });
          if (step.kind === "short" && stalled) {
            await this.clockFor(life).wait(Math.max(0, Math.min(STALL_PAUSE_MS, deadline - this.nowMs))).done;
            if (!life.alive) return this.abandon(node, accountId);
          }
        }
      } finally {
        life.waiting--;
      }
      if (step.answer.outcome !== DebitOutcome.InsufficientCredit) this.stats.debitsApprovedAfterWait++;
    }
    this.decided(node, account, amount, step);
  }

  /** A DebitBatch item: decided at once; a refusal asks in the background for the next one. */
  private bulkDebit(node: SimNode, account: number, amount: bigint): void {
    const life = node.life;
    const accountId = this.accountIdAt(account);
    const item: DebitItem = { accountId, amount, requestId: this.requestId(node) };
    const step = life.writes.debit({ item, fingerprint: debitFingerprint(accountId, amount), time: { stampMs: this.nowMs, nowMs: this.nowMs }, final: true });
    if (step.kind !== "decided") throw new Error("a final debit step is always decided");
    this.decided(node, account, amount, step);
    if (step.write === undefined && this.rebalance) {
      this.stats.bulkShortfalls++;
      this.background(life, () => life.broker.afterShortfall(accountId, amount));
    }
  }

  private abandon(node: SimNode, accountId: string): void {
    this.stats.debitsAbandoned++;
    this.trace(`r${node.index}: a debit on ${accountId} ended with its process`);
  }

  /** As TallyNode.account, then the write joins the group commit (acknowledged when durable). */
  private decided(node: SimNode, account: number, amount: bigint, step: Extract<DebitStep, { kind: "decided" }>): void {
    const life = node.life;
    const accountId = this.accountIdAt(account);
    if (step.answer.outcome === DebitOutcome.InsufficientCredit) {
      this.trace(`r${node.index} rejects a debit of ${amount} on ${accountId}`);
      this.stats.debitsRejected++;
      if (this.mergedBalance(account, "memory") >= amount) this.stats.falseRejections++;
      return;
    }
    if (step.answer.outcome === DebitOutcome.ApprovedWithOverdraft) this.stats.debitsOverdraft++;
    else this.stats.debitsApproved++;
    if (this.rebalance) this.background(life, () => life.broker.afterLocalDebit(accountId, amount, this.nowMs));
    life.watches.notify(accountId);
    if (step.write !== undefined) {
      this.writeOwn(node, step.write.slots);
      node.pendingAcks.push({ kind: "debit", account, amount });
    }
  }

  /** Runs a broker call that may start an ask ahead of need, and counts it if it did. */
  private background(life: Life, call: () => void): void {
    const before = life.broker.asksInFlight;
    call();
    if (life.broker.asksInFlight > before) {
      this.stats.backgroundAsks++;
      this.touched = true;
    }
  }

  private writeOwn(node: SimNode, changes: readonly SlotChange[]): void {
    for (const c of changes) {
      if (c.writer !== node.index) this.fail(`r${node.index} wrote a slot of row ${c.writer}`);
      this.rowAt(node.memory, this.accountIndex(c.accountId))[c.column] = c.value;
    }
    node.pending.push(...changes);
  }

  /** Group commit: append every pending change to the durable log, then acknowledge and publish. */
  private flush(node: SimNode): void {
    const changes = node.pending;
    node.pending = [];
    for (const c of changes) {
      node.log.push(c);
      const row = this.rowAt(node.durable, this.accountIndex(c.accountId));
      row[c.column] = c.value;
    }
    for (const ack of node.pendingAcks) {
      const ledger = ack.kind === "grant" ? this.ackedGrants : this.ackedDebits;
      const row = this.rowAt(ledger, node.index);
      row[ack.account] = (row[ack.account] ?? 0n) + ack.amount;
    }
    node.pendingAcks = [];
    // Like production: each message carries the other rows of its accounts (its
    // causal context), durable with it, so a restart from the log is closed too.
    const context = this.options.omitContext === true ? [] : node.life.state.otherRows(new Set(changes.map((c) => c.accountId)));
    for (const c of context) node.log.push(c);
    // A JetStream consumer applies a writer's messages in order and without
    // gaps, so it holds the writer's whole row up to each message; this network
    // loses and reorders, so each message carries the durable row of its accounts.
    const accounts = new Set(changes.map((c) => this.accountIndex(c.accountId)));
    const rows: SlotChange[] = [];
    for (const account of accounts) {
      this.rowAt(node.durable, account).forEach((value, column) => {
        if (value !== 0n) rows.push({ accountId: this.accountIdAt(account), writer: node.index, column, value });
      });
    }
    if (changes.length > 0) for (let to = 0; to < N; to++) this.send(node.index, to, { kind: "row", changes: rows, context });
    const commits = node.life.commits;
    node.life.commits = [];
    for (const waiter of commits) waiter.resolve();
    if (commits.length > 0) this.touched = true;
  }

  /** Re-sends this replica's whole durable row (never undurable values). */
  private antiEntropy(node: SimNode, to: number): void {
    const changes: SlotChange[] = [];
    node.durable.forEach((row, account) =>
      row.forEach((value, column) => {
        if (value !== 0n) changes.push({ accountId: this.accountIdAt(account), writer: node.index, column, value });
      }),
    );
    const context = node.life.state.otherRows(new Set(changes.map((c) => c.accountId)));
    if (changes.length > 0) this.send(node.index, to, { kind: "row", changes, context });
  }

  // ---- invariants ----------------------------------------------------------------

  /**
   * The join of every replica's own row — in memory for live replicas ("memory"),
   * or only what is durable ("durable") — as rows[writer][column].
   */
  private mergedRows(account: number, source: "memory" | "durable"): bigint[][] {
    return this.nodes.map((node) =>
      this.rowAt(source === "memory" && this.isUp(node) ? node.memory : node.durable, account),
    );
  }

  private mergedBalance(account: number, source: "memory" | "durable"): bigint {
    let balance = 0n;
    this.mergedRows(account, source).forEach((row, i) => {
      balance += (row[i] ?? 0n) - (row[N] ?? 0n);
    });
    return balance;
  }

  /** Checked after every step. Computed here independently of escrow-counter.ts. */
  private checkInvariants(): void {
    // With nothing pending anywhere, the durable join equals the in-memory one.
    const sources = this.nodes.some((node) => this.isUp(node) && node.pending.length > 0)
      ? (["memory", "durable"] as const)
      : (["memory"] as const);
    this.accountIds.forEach((accountId, account) => {
      const policy = this.policyOf(account);
      const floor = policy.mode === Mode.Overdraft ? -policy.overdraftLimit : 0n;
      for (const source of sources) {
        const rows = this.mergedRows(account, source);
        let balance = 0n;
        let sum = 0n;
        for (let i = 0; i < N; i++) {
          const own = rows[i] ?? [];
          balance += (own[i] ?? 0n) - (own[N] ?? 0n);
          let rights = (own[i] ?? 0n) - (own[N] ?? 0n);
          for (let j = 0; j < N; j++) if (j !== i) rights += (rows[j]?.[i] ?? 0n) - (own[j] ?? 0n);
          sum += rights;
          if (rights < floor) this.fail(`${accountId}: rights(r${i}) = ${rights} below ${floor} (${source} merge)`);
        }
        if (sum !== balance) this.fail(`${accountId}: Σ rights ${sum} != balance ${balance}`);
        const bound = BigInt(N) * -floor;
        const overspend = balance < 0n ? -balance : 0n;
        if (overspend > this.stats.maxOverspend) this.stats.maxOverspend = overspend;
        if (overspend > bound) {
          this.fail(`${accountId}: overspend ${overspend} exceeds ${bound} (${Mode[policy.mode]}, ${source} merge)`);
        }
      }
      // Causal closure: a replica's own merged view never shows a STRICT account below zero.
      if (policy.mode === Mode.Strict) {
        for (const node of this.nodes) {
          if (!this.isUp(node)) continue;
          const seen = node.life.state.balance(accountId);
          if (seen >= 0n) continue;
          this.stats.causalGaps++;
          if (this.options.requireCausalViews !== false) {
            const view = node.life.state.exportAccount(accountId).join(",");
            this.fail(`${accountId}: r${node.index} sees a STRICT balance of ${seen} (view not causally closed: [${view}])`);
          }
        }
      }
      // What clients were told must be what the durable rows say: no acknowledged change lost.
      let ackedBalance = 0n;
      for (const node of this.nodes) {
        const durable = this.rowAt(node.durable, account);
        const grants = this.rowAt(this.ackedGrants, node.index)[account] ?? 0n;
        const debits = this.rowAt(this.ackedDebits, node.index)[account] ?? 0n;
        if ((durable[node.index] ?? 0n) !== grants) {
          this.fail(`${accountId}: r${node.index} durable grants ${durable[node.index]} != acknowledged ${grants}`);
        }
        if ((durable[N] ?? 0n) !== debits) {
          this.fail(`${accountId}: r${node.index} durable debits ${durable[N]} != acknowledged ${debits}`);
        }
        ackedBalance += grants - debits;
      }
      if (ackedBalance < floor * BigInt(N)) this.fail(`${accountId}: acknowledged balance ${ackedBalance} overspent`);
    });
    if (this.step % 8 === 0) this.checkViews();
  }

  /**
   * Sampled (slot reads are dearer): each replica's own row matches the mirror, and
   * no replica holds a peer's slot above what that peer has written.
   */
  private checkViews(): void {
    for (const node of this.nodes) {
      if (!this.isUp(node)) continue;
      const state = node.life.state;
      for (const [account, accountId] of this.accountIds.entries()) {
        for (const peer of this.nodes) {
          const written = this.rowAt(this.isUp(peer) ? peer.memory : peer.durable, account);
          for (let column = 0; column < COLUMNS; column++) {
            const seen = state.slot(accountId, peer.index, column);
            const value = written[column] ?? 0n;
            if (peer === node ? seen !== value : seen > value) {
              this.fail(`r${node.index} holds ${accountId} slot (${peer.index},${column}) = ${seen}, written ${value}`);
            }
          }
        }
      }
    }
  }

  // ---- final phase -----------------------------------------------------------------

  /**
   * Heals the network and restarts every replica, lets waiting debits, asks and
   * donations finish over a reliable network, then runs a full anti-entropy round:
   * every replica must hold the same state, and it must be what clients were told.
   */
  private async healAndConverge(): Promise<void> {
    this.cut.clear();
    this.reliable = true;
    for (const node of this.nodes) if (!this.isUp(node)) this.restart(node);
    const end = this.nowMs + QUIESCE_MS;
    while (this.nowMs < end && !this.quiet()) {
      this.nowMs += 1;
      this.fireTimers();
      await this.settle();
      await this.deliverDue();
      for (const node of this.nodes) {
        this.flush(node);
        await this.settle();
      }
      this.checkInvariants();
    }
    if (!this.quiet()) this.fail(`not quiet ${QUIESCE_MS} ms after healing`);
    const rounds: [SimNode, SimNode][] = [];
    for (const from of this.nodes) for (const to of this.nodes) if (from !== to) rounds.push([from, to]);
    for (const [from, to] of this.prng.shuffle(rounds)) {
      for (const [account, row] of from.durable.entries()) {
        const changes: SlotChange[] = [];
        row.forEach((value, column) => {
          if (value !== 0n) changes.push({ accountId: this.accountIdAt(account), writer: from.index, column, value });
        });
        this.mergeRow(to, changes);
      }
    }
    await this.settle();
    this.checkInvariants();
    this.checkViews();
    const first = this.nodeAt(0).life.state;
    for (const node of this.nodes) {
      const state = node.life.state;
      for (const accountId of this.accountIds) {
        for (let writer = 0; writer < N; writer++) {
          for (let column = 0; column < COLUMNS; column++) {
            const a = first.slot(accountId, writer, column);
            const b = state.slot(accountId, writer, column);
            if (a !== b) this.fail(`not converged: ${accountId} slot (${writer},${column}) r0=${a} r${node.index}=${b}`);
          }
        }
      }
      for (let writer = 0; writer < N; writer++) {
        if (state.rowDigest(writer) !== first.rowDigest(writer)) this.fail(`not converged: row ${writer} digest differs at r${node.index}`);
      }
    }
    this.accountIds.forEach((accountId, account) => {
      let acked = 0n;
      for (let i = 0; i < N; i++) {
        acked += (this.rowAt(this.ackedGrants, i)[account] ?? 0n) - (this.rowAt(this.ackedDebits, i)[account] ?? 0n);
      }
      const balance = first.balance(accountId);
      if (balance !== acked) this.fail(`${accountId}: converged balance ${balance} != acknowledged ${acked}`);
    });
  }

  /** Nothing in flight: no message, no waiting debit, no ask, no commit, no live timer. */
  private quiet(): boolean {
    return (
      this.network.length === 0 &&
      this.timers.every((timer) => timer.cancelled || !timer.life.alive) &&
      this.nodes.every((node) => node.pending.length === 0 && node.life.waiting === 0 && node.life.broker.asksInFlight === 0 && node.life.commits.length === 0)
    );
  }

  // ---- plumbing ------------------------------------------------------------------

  private freshState(index: number): ReplicaState {
    const self = this.replicaSet.nameOf(index);
    const state = new ReplicaState({ replicas: this.replicaSet, self, initialAccounts: 4 });
    this.accountIds.forEach((id, account) => state.applyPolicy(id, this.policyOf(account)));
    return state;
  }

  private requestId(node: SimNode): string {
    return `req-${node.index}-${++this.requests}`;
  }

  private zeroRows(): bigint[][] {
    return this.accountIds.map(() => new Array<bigint>(COLUMNS).fill(0n));
  }

  private policyOf(account: number): PolicyWrite {
    const policy = this.policies[account];
    if (policy === undefined) throw new Error(`no policy for account ${account}`);
    return policy;
  }

  private nodeAt(index: number): SimNode {
    const node = this.nodes[index];
    if (node === undefined) throw new Error(`no node ${index}`);
    return node;
  }

  private accountIdAt(account: number): string {
    const id = this.accountIds[account];
    if (id === undefined) throw new Error(`no account ${account}`);
    return id;
  }

  private accountIndex(accountId: string): number {
    return this.accountIds.indexOf(accountId);
  }

  private rowAt(table: bigint[][], index: number): bigint[] {
    const row = table[index];
    if (row === undefined) throw new Error(`no row ${index}`);
    return row;
  }

  private trace(line: string): void {
    this.options.trace?.(`[step ${this.step} t=${this.nowMs}ms] ${line}`);
  }

  private fail(detail: string): never {
    throw new SimulationViolation(this.options.seed, this.step, detail);
  }
}

/** Runs one seeded simulation; rejects with SimulationViolation when an invariant breaks. */
export function runSimulation(options: SimulationOptions): Promise<SimulationReport> {
  return new Simulation(options).run();
}
