// A deterministic, seeded simulation of three ReplicaState replicas over a faulty
// network (loss, duplication, reordering, delay, partitions) with crashes that
// rebuild a replica from its own durable log only. Replicas spend and top up at
// random and use rebalance.ts to ask peers for rights. After every step the escrow
// invariants are checked; at the end the network heals and every replica must
// converge. Everything is driven by one seed, so any failure replays exactly.

import { Mode, type PolicyWrite } from "../../../src/core/policy";
import {
  chooseDonors,
  DemandTracker,
  DonorRateLimiter,
  donorGrant,
  proactiveNeed,
  richestPeer,
} from "../../../src/core/rebalance";
import { ReplicaSet } from "../../../src/core/replica-set";
import { DebitOutcome, ReplicaState, type SlotChange } from "../../../src/core/replica-state";
import { Prng } from "./prng";

export interface SimulationOptions {
  readonly seed: number;
  readonly steps?: number;
  readonly accounts?: number;
  /** False disables rights requests (a baseline for measuring false rejections). */
  readonly rebalance?: boolean;
  /** Deliberate bug for self-tests of the checker: a crashed replica comes back with an empty own row. */
  readonly forgetOwnRowOnCrash?: boolean;
  /** Deliberate bug for self-tests of the checker: a donor sends a gift before it is durable. */
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
  rightsRequests: number;
  proactiveRequests: number;
  rightsGifts: number;
  expiredRequests: number;
  rateLimited: number;
  crashes: number;
  lostUnflushed: number;
  partitions: number;
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

/** An invariant broke; `step` is -1 for the final convergence phase. */
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
const REQUEST_TTL_MS = 25;
/** How long a debit may wait for rights before it is rejected or overdraws. */
const DEBIT_WAIT_MS = 40;

type Payload =
  | { readonly kind: "row"; readonly changes: readonly SlotChange[] }
  | { readonly kind: "ask"; readonly accountId: string; readonly amount: bigint; readonly expiresAtMs: number }
  | { readonly kind: "gift"; readonly accountId: string; readonly changes: readonly SlotChange[] };

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

interface WaitingDebit {
  readonly account: number;
  readonly amount: bigint;
  readonly deadlineMs: number;
}

interface SimNode {
  readonly index: number;
  state: ReplicaState;
  /** The durable log: every change this replica published, in order. */
  log: SlotChange[];
  /** The durable value of every own slot: durable[account][column]. */
  durable: bigint[][];
  /** The in-memory value of every own slot (durable plus pending), mirrored for cheap checks. */
  memory: bigint[][];
  /** Applied in memory, not yet durable (group commit window). */
  pending: SlotChange[];
  pendingAcks: PendingAck[];
  /** Debits waiting for rights (the client is still blocked on them). */
  waiting: WaitingDebit[];
  limiter: DonorRateLimiter;
  demand: DemandTracker;
  /** Outstanding rights request per account: its expiry. */
  asked: Map<string, number>;
  downUntilStep: number;
}

class Simulation {
  private readonly prng: Prng;
  private readonly replicaSet = new ReplicaSet(NAMES);
  private readonly accountIds: string[];
  private readonly policies: PolicyWrite[];
  private readonly nodes: SimNode[];
  private readonly network: Message[] = [];
  private readonly cut = new Set<string>();
  /** Acknowledged (durable) client operations: acked[node][account]. */
  private readonly ackedGrants: bigint[][];
  private readonly ackedDebits: bigint[][];
  private readonly rebalance: boolean;
  private nowMs = 0;
  private step = 0;
  readonly stats: SimulationStats = {
    grants: 0,
    debitsApproved: 0,
    debitsOverdraft: 0,
    debitsRejected: 0,
    falseRejections: 0,
    rightsRequests: 0,
    proactiveRequests: 0,
    rightsGifts: 0,
    expiredRequests: 0,
    rateLimited: 0,
    crashes: 0,
    lostUnflushed: 0,
    partitions: 0,
    messagesSent: 0,
    messagesLost: 0,
    messagesDuplicated: 0,
    messagesDelivered: 0,
    maxOverspend: 0n,
  };

  constructor(private readonly options: SimulationOptions) {
    this.prng = new Prng(options.seed);
    this.rebalance = options.rebalance ?? true;
    const accounts = options.accounts ?? 3;
    this.accountIds = Array.from({ length: accounts }, (_, k) => `acct-${k}`);
    // Each account is STRICT or OVERDRAFT(1..30), written once before the run.
    this.policies = this.accountIds.map(() => {
      const overdraft = this.prng.chance(0.5);
      const mode = overdraft ? Mode.Overdraft : Mode.Strict;
      const overdraftLimit = overdraft ? this.prng.bigint(1n, 30n) : 0n;
      return { mode, overdraftLimit, lowWaterMark: 0n, writtenAtMs: 0, logical: 0, replica: "r0" };
    });
    this.ackedGrants = NAMES.map(() => this.accountIds.map(() => 0n));
    this.ackedDebits = NAMES.map(() => this.accountIds.map(() => 0n));
    this.nodes = NAMES.map((_, index) => ({
      index,
      state: this.freshState(index),
      log: [],
      durable: this.zeroRows(),
      memory: this.zeroRows(),
      pending: [],
      pendingAcks: [],
      waiting: [],
      limiter: this.freshLimiter(),
      demand: this.freshDemand(),
      asked: new Map(),
      downUntilStep: -1,
    }));
  }

  run(): SimulationReport {
    const steps = this.options.steps ?? 250;
    for (this.step = 0; this.step < steps; this.step++) {
      this.nowMs += this.prng.int(1, 3);
      this.weather();
      this.deliverDue();
      for (const node of this.nodes) {
        if (!this.isUp(node)) continue;
        this.retryWaiting(node);
        this.clientWork(node);
        if (node.pending.length > 0 && this.prng.chance(0.6)) this.flush(node);
        if (this.prng.chance(0.05)) this.antiEntropy(node, this.prng.int(0, N - 1));
      }
      this.checkInvariants();
    }
    this.step = -1;
    this.healAndConverge();
    return {
      seed: this.options.seed,
      stats: this.stats,
      balances: this.accountIds.map((id) => this.nodeAt(0).state.balance(id)),
    };
  }

  // ---- faults ----------------------------------------------------------------

  private weather(): void {
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
      if (this.isUp(node)) this.crash(node);
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

  private crash(node: SimNode): void {
    this.stats.crashes++;
    this.stats.lostUnflushed += node.pending.length;
    node.pending = [];
    node.pendingAcks = [];
    node.waiting = [];
    node.downUntilStep = this.step + this.prng.int(2, 30);
    this.trace(`crash r${node.index} (down until step ${node.downUntilStep})`);
  }

  /** Rebuilds the replica from its own durable log only: peer rows, caches and limiters are gone. */
  private restart(node: SimNode): void {
    node.downUntilStep = -1;
    if (this.options.forgetOwnRowOnCrash === true) {
      node.log = [];
      node.durable = this.zeroRows();
    }
    node.memory = node.durable.map((row) => [...row]);
    node.state = this.freshState(node.index);
    for (const change of node.log) node.state.merge(change.accountId, change.writer, change.column, change.value);
    node.limiter = this.freshLimiter();
    node.demand = this.freshDemand();
    node.asked.clear();
    this.trace(`restart r${node.index} from ${node.log.length} logged changes`);
  }

  private isUp(node: SimNode): boolean {
    return node.downUntilStep < 0;
  }

  // ---- network ---------------------------------------------------------------

  private send(from: number, to: number, payload: Payload): void {
    if (from === to) return;
    this.stats.messagesSent++;
    if (!this.connected(from, to) || this.prng.chance(0.1)) {
      this.stats.messagesLost++;
      return;
    }
    const copies = this.prng.chance(0.05) ? 2 : 1;
    if (copies === 2) this.stats.messagesDuplicated++;
    for (let k = 0; k < copies; k++) {
      const delay = this.prng.chance(0.05) ? this.prng.int(30, 200) : this.prng.int(1, 20);
      this.network.push({ from, to, deliverAtMs: this.nowMs + delay, payload });
    }
  }

  private deliverDue(): void {
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
    }
  }

  private receive(node: SimNode, message: Message): void {
    const payload = message.payload;
    switch (payload.kind) {
      case "row":
        this.mergeRow(node, payload.changes);
        break;
      case "gift":
        this.mergeRow(node, payload.changes);
        node.asked.delete(payload.accountId);
        break;
      case "ask":
        this.answerAsk(node, message.from, payload.accountId, payload.amount, payload.expiresAtMs);
        break;
    }
  }

  private mergeRow(node: SimNode, changes: readonly SlotChange[]): void {
    for (const c of changes) {
      const before = node.state.slot(c.accountId, c.writer, c.column);
      node.state.merge(c.accountId, c.writer, c.column, c.value);
      // Peer spending seen through its debit counter feeds the demand estimate.
      if (c.column === N && c.writer !== node.index && c.value > before) {
        node.demand.record(c.accountId, c.writer, c.value - before, this.nowMs);
      }
    }
  }

  // ---- rights requests ---------------------------------------------------------

  private ask(node: SimNode, accountId: string, amount: bigint, proactive: boolean): void {
    if (!this.rebalance || amount <= 0n) return;
    const expires = node.asked.get(accountId);
    if (expires !== undefined && expires > this.nowMs) return;
    const seen = NAMES.map((_, i) => node.state.rights(accountId, i));
    // Proactive requests go to the richest peer (PotionDB); a waiting debit asks as
    // many peers as its deficit needs, or a random one when it sees no rights anywhere.
    const richest = richestPeer(seen, node.index);
    let donors = proactive ? (richest === undefined ? [] : [richest]) : chooseDonors(seen, node.index, amount);
    if (donors.length === 0) donors = [(node.index + this.prng.int(1, N - 1)) % N];
    const expiresAtMs = this.nowMs + REQUEST_TTL_MS;
    node.asked.set(accountId, expiresAtMs);
    if (proactive) this.stats.proactiveRequests++;
    else this.stats.rightsRequests++;
    for (const donor of donors) {
      this.trace(`r${node.index} asks r${donor} for ${amount} of ${accountId}${proactive ? " (proactive)" : ""}`);
      this.send(node.index, donor, { kind: "ask", accountId, amount, expiresAtMs });
    }
  }

  private answerAsk(node: SimNode, requester: number, accountId: string, amount: bigint, expiresAtMs: number): void {
    if (expiresAtMs < this.nowMs) {
      this.stats.expiredRequests++;
      return;
    }
    if (!node.limiter.allows(accountId, requester, this.nowMs)) {
      this.stats.rateLimited++;
      return;
    }
    const idle = node.demand.isIdle(accountId, node.index, this.nowMs);
    const gift = donorGrant(node.state.rights(accountId), amount, idle);
    if (gift <= 0n) return;
    node.limiter.tryAcquire(accountId, requester, this.nowMs);
    const changes = node.state.transfer(accountId, requester, gift);
    this.writeOwn(node, changes);
    // Durable before it leaves: the gift (and everything before it) is flushed first.
    if (this.options.giftBeforeDurable !== true) this.flush(node);
    this.stats.rightsGifts++;
    this.trace(`r${node.index} gives ${gift} of ${accountId} to r${requester}${idle ? " (idle)" : ""}`);
    this.send(node.index, requester, { kind: "gift", accountId, changes });
  }

  // ---- client work -------------------------------------------------------------

  private clientWork(node: SimNode): void {
    const roll = this.prng.next();
    // Spending is skewed: an account is mostly spent at its home replica
    // (account index mod N), while grants land anywhere.
    const home = this.accountIds.map((_, account) => account).filter((account) => account % N === node.index);
    const account =
      roll >= 0.1 && roll < 0.45 && home.length > 0 && this.prng.chance(0.7)
        ? this.prng.pick(home)
        : this.prng.int(0, this.accountIds.length - 1);
    const accountId = this.accountIdAt(account);
    if (roll < 0.1) {
      const amount = this.prng.bigint(1n, 50n);
      const result = node.state.grant(accountId, amount);
      this.writeOwn(node, result.changes);
      node.pendingAcks.push({ kind: "grant", account, amount });
      this.stats.grants++;
    } else if (roll < 0.45) {
      this.debit(node, account, this.prng.bigint(1n, 15n));
    } else if (roll < 0.5) {
      const balance = node.state.balance(accountId);
      const share = node.demand.share(accountId, node.index);
      this.ask(node, accountId, proactiveNeed(node.state.rights(accountId), balance, N, share), true);
    }
  }

  /** A new client debit: spend now, or ask for rights and wait up to DEBIT_WAIT_MS. */
  private debit(node: SimNode, account: number, amount: bigint): void {
    const accountId = this.accountIdAt(account);
    const result = node.state.debit(accountId, amount, false);
    if (result.answer.outcome !== DebitOutcome.InsufficientCredit) {
      this.approved(node, account, amount, result.answer.outcome, result.changes);
      return;
    }
    node.waiting.push({ account, amount, deadlineMs: this.nowMs + DEBIT_WAIT_MS });
    // Batch the deficit of every debit waiting on this account into one request.
    let wanted = 0n;
    for (const wait of node.waiting) if (wait.account === account) wanted += wait.amount;
    const rights = node.state.rights(accountId);
    this.ask(node, accountId, wanted - (rights > 0n ? rights : 0n), false);
  }

  /** Retries waiting debits; at the deadline STRICT rejects and OVERDRAFT may spend beyond rights. */
  private retryWaiting(node: SimNode): void {
    const still: WaitingDebit[] = [];
    for (const wait of node.waiting) {
      const accountId = this.accountIdAt(wait.account);
      const expired = wait.deadlineMs <= this.nowMs;
      const overdraft = expired && this.policyOf(wait.account).mode === Mode.Overdraft;
      const result = node.state.debit(accountId, wait.amount, overdraft);
      if (result.answer.outcome !== DebitOutcome.InsufficientCredit) {
        this.approved(node, wait.account, wait.amount, result.answer.outcome, result.changes);
      } else if (!expired) {
        still.push(wait);
      } else {
        this.trace(`r${node.index} rejects a debit of ${wait.amount} on ${accountId} after waiting`);
        this.stats.debitsRejected++;
        if (this.mergedBalance(wait.account, "memory") >= wait.amount) this.stats.falseRejections++;
      }
    }
    node.waiting = still;
  }

  private approved(
    node: SimNode,
    account: number,
    amount: bigint,
    outcome: DebitOutcome,
    changes: readonly SlotChange[],
  ): void {
    const accountId = this.accountIdAt(account);
    node.demand.record(accountId, node.index, amount, this.nowMs);
    // Ask before running dry, so that a steady workload rarely waits.
    const share = node.demand.share(accountId, node.index);
    const need = proactiveNeed(node.state.rights(accountId), node.state.balance(accountId), N, share);
    this.ask(node, accountId, need, true);
    this.writeOwn(node, changes);
    node.pendingAcks.push({ kind: "debit", account, amount });
    if (outcome === DebitOutcome.ApprovedWithOverdraft) this.stats.debitsOverdraft++;
    else this.stats.debitsApproved++;
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
    if (node.pending.length === 0) return;
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
    for (let to = 0; to < N; to++) this.send(node.index, to, { kind: "row", changes });
  }

  /** Re-sends this replica's whole durable row (never undurable values). */
  private antiEntropy(node: SimNode, to: number): void {
    const changes: SlotChange[] = [];
    node.durable.forEach((row, account) =>
      row.forEach((value, column) => {
        if (value !== 0n) changes.push({ accountId: this.accountIdAt(account), writer: node.index, column, value });
      }),
    );
    if (changes.length > 0) this.send(node.index, to, { kind: "row", changes });
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
      for (const [account, accountId] of this.accountIds.entries()) {
        for (const peer of this.nodes) {
          const written = this.rowAt(this.isUp(peer) ? peer.memory : peer.durable, account);
          for (let column = 0; column < COLUMNS; column++) {
            const seen = node.state.slot(accountId, peer.index, column);
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

  private healAndConverge(): void {
    this.cut.clear();
    for (const node of this.nodes) if (!this.isUp(node)) this.restart(node);
    for (const node of this.nodes) this.flush(node);
    // Deliver everything still in flight (rights requests are abandoned), then a
    // full anti-entropy round over a now reliable network, in random order.
    const inFlight = this.prng.shuffle(this.network.splice(0));
    for (const message of inFlight) {
      if (message.payload.kind !== "ask") this.receive(this.nodeAt(message.to), message);
    }
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
    this.checkInvariants();
    this.checkViews();
    const first = this.nodeAt(0);
    for (const node of this.nodes) {
      for (const accountId of this.accountIds) {
        for (let writer = 0; writer < N; writer++) {
          for (let column = 0; column < COLUMNS; column++) {
            const a = first.state.slot(accountId, writer, column);
            const b = node.state.slot(accountId, writer, column);
            if (a !== b) {
              this.fail(`not converged: ${accountId} slot (${writer},${column}) r0=${a} r${node.index}=${b}`);
            }
          }
        }
      }
      for (let writer = 0; writer < N; writer++) {
        if (node.state.rowDigest(writer) !== first.state.rowDigest(writer)) {
          this.fail(`not converged: row ${writer} digest differs at r${node.index}`);
        }
      }
    }
    this.accountIds.forEach((accountId, account) => {
      let acked = 0n;
      for (let i = 0; i < N; i++) {
        acked += (this.rowAt(this.ackedGrants, i)[account] ?? 0n) - (this.rowAt(this.ackedDebits, i)[account] ?? 0n);
      }
      const balance = first.state.balance(accountId);
      if (balance !== acked) this.fail(`${accountId}: converged balance ${balance} != acknowledged ${acked}`);
    });
  }

  // ---- plumbing ------------------------------------------------------------------

  private freshState(index: number): ReplicaState {
    const self = this.replicaSet.nameOf(index);
    const state = new ReplicaState({ replicas: this.replicaSet, self, initialAccounts: 4 });
    this.accountIds.forEach((id, account) => state.applyPolicy(id, this.policyOf(account)));
    return state;
  }

  private freshLimiter(): DonorRateLimiter {
    return new DonorRateLimiter({ windowMs: 10, maxEntries: 64 });
  }

  private freshDemand(): DemandTracker {
    return new DemandTracker({ replicaCount: N, halfLifeMs: 50, maxAccounts: 64, idleMs: 1000 });
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

/** Runs one seeded simulation; throws SimulationViolation when an invariant breaks. */
export function runSimulation(options: SimulationOptions): SimulationReport {
  return new Simulation(options).run();
}
