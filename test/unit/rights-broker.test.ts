// The rights broker (src/node/rights-broker.ts) between regions, over real
// ReplicaStates and BalanceWatchHubs; the transport, the clock and the
// durable commit are fakes the tests drive by hand: a batch is answered only
// when a test delivers it, time moves only when a test advances it (the
// batching window included), and a donor's commit completes only when a test
// releases it.

import { expect } from "chai";
import type { DurableWrite } from "../../src/core/durable-write";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { lotRowId } from "../../src/core/lot-rows";
import type { RightsBatchAsk, RightsBatchGift, RightsGift, RightsTransport } from "../../src/core/rights-messages";
import { BalanceWatchHub } from "../../src/node/balance-watch";
import { RightsBroker, type BrokerClock, type RightsEvents, type RightsHost } from "../../src/node/rights-broker";
import { track, turns } from "./support/conditions";

const NAMES = ["r0", "r1", "r2"] as const;
const WINDOW_MS = 2;

interface SentAsk {
  readonly donor: string;
  readonly batch: RightsBatchAsk;
  readonly timeoutMs: number;
  resolve(gift: RightsBatchGift | undefined): void;
  reject(error: unknown): void;
}

type Donate = (batch: RightsBatchAsk) => Promise<RightsBatchGift>;

class FakeTransport implements RightsTransport {
  readonly sent: SentAsk[] = [];
  serving: Donate | undefined;
  stops = 0;

  ask(donor: string, batch: RightsBatchAsk, timeoutMs: number): Promise<RightsBatchGift | undefined> {
    return new Promise((resolve, reject) => this.sent.push({ donor, batch, timeoutMs, resolve, reject }));
  }

  serve(donate: Donate): () => void {
    this.serving = donate;
    return () => {
      this.serving = undefined;
      this.stops++;
    };
  }
}

class FakeClock implements BrokerClock {
  nowMs = 10_000;
  private waits: Array<{ readonly at: number; readonly fire: () => void }> = [];

  now(): number {
    return this.nowMs;
  }

  wait(ms: number): { readonly done: Promise<void>; cancel(): void } {
    let fire: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (fire = resolve));
    const entry = { at: this.nowMs + ms, fire };
    this.waits.push(entry);
    return { done, cancel: () => (this.waits = this.waits.filter((w) => w !== entry)) };
  }

  get pendingWaits(): number {
    return this.waits.length;
  }

  advance(ms: number): void {
    this.nowMs += ms;
    const due = this.waits.filter((w) => w.at <= this.nowMs);
    this.waits = this.waits.filter((w) => w.at > this.nowMs);
    for (const w of due) w.fire();
  }
}

class FakeHost implements RightsHost {
  readonly watches = new BalanceWatchHub();
  writable = true;
  /** The region's wall clock, which judges its credit lots. */
  clockMs = 50_000;
  /** When set, commits wait for release(); otherwise they are durable at once. */
  gated = false;
  readonly commits: DurableWrite[] = [];
  private readonly held: Array<{ resolve(): void; reject(error: unknown): void }> = [];

  constructor(
    readonly region: string,
    readonly state: ReplicaState,
  ) {}

  wallClock(): number {
    return this.clockMs;
  }

  commit(write: DurableWrite): Promise<unknown> {
    this.commits.push(write);
    if (!this.gated) return Promise.resolve(this.commits.length);
    return new Promise((resolve, reject) => this.held.push({ resolve: () => resolve(this.commits.length), reject }));
  }

  release(): void {
    this.held.shift()?.resolve();
  }

  fail(error: unknown): void {
    this.held.shift()?.reject(error);
  }
}

class RecordedEvents implements RightsEvents {
  readonly asks: string[] = [];
  readonly batches: Array<[string, number]> = [];
  readonly transfers: Array<[string, bigint]> = [];
  readonly failures: unknown[] = [];
  asked(result: "granted" | "refused" | "expired"): void {
    this.asks.push(result);
  }
  transferred(direction: "in" | "out", amount: bigint): void {
    this.transfers.push([direction, amount]);
  }
  donationFailed(error: unknown): void {
    this.failures.push(error);
  }
  batch(role: "ask" | "give", size: number): void {
    this.batches.push([role, size]);
  }
}

interface Region {
  readonly name: string;
  readonly state: ReplicaState;
  readonly host: FakeHost;
  readonly transport: FakeTransport;
  readonly events: RecordedEvents;
  readonly broker: RightsBroker;
}

function cluster(): { regions: Region[]; clock: FakeClock; at(name: string): Region } {
  const replicas = new ReplicaSet(NAMES);
  const clock = new FakeClock();
  const regions = NAMES.map((name): Region => {
    const state = new ReplicaState({ replicas, self: name });
    const host = new FakeHost(name, state);
    const transport = new FakeTransport();
    const events = new RecordedEvents();
    const broker = new RightsBroker(host, transport, events, clock, 100, { windowMs: WINDOW_MS, maxBatch: 3 });
    broker.start();
    return { name, state, host, transport, events, broker };
  });
  const at = (name: string): Region => {
    const region = regions.find((r) => r.name === name);
    if (region === undefined) throw new Error(`no region ${name}`);
    return region;
  };
  return { regions, clock, at };
}

/** Grants `amount` of `account` at `donor`, and lets `viewers` see that grant (as replication would). */
function grantAt(donor: Region, amount: bigint, ...viewers: Region[]): void {
  grantOf("a", donor, amount, ...viewers);
}

function grantOf(account: string, donor: Region, amount: bigint, ...viewers: Region[]): void {
  donor.state.grant(account, amount);
  const self = donor.state.self;
  for (const viewer of viewers) viewer.state.merge(account, self, self, donor.state.slot(account, self, self));
}

/** Lets the addressed donor serve the batch and hands its answer back to the asker. */
async function deliver(sent: SentAsk, donor: Region): Promise<RightsBatchGift> {
  const serve = donor.transport.serving;
  if (serve === undefined) throw new Error(`${donor.name} is not serving`);
  const gift = await serve(sent.batch);
  sent.resolve(gift);
  return gift;
}

function sentTo(region: Region, donor: string): SentAsk {
  const sent = region.transport.sent.find((s) => s.donor === donor);
  if (sent === undefined) throw new Error(`no ask sent to ${donor}`);
  return sent;
}

function only(gift: RightsBatchGift): RightsGift {
  expect(gift.gifts).to.have.length(1);
  return gift.gifts[0]!;
}

/** Ends the batching window: the queued asks are sent. */
async function closeWindow(clock: FakeClock): Promise<void> {
  clock.advance(WINDOW_MS);
  await turns(2);
}

const ask = (deficit: bigint, urgent = true, accountId = "a"): RightsBatchAsk => ({ requester: "r0", asks: [{ accountId, deficit, urgent }] });

describe("rights broker - asking", () => {
  it("rights broker - acquire asks every peer after the window and resolves once the gifts cover the deficit, not before", async () => {
    const { at, clock } = cluster();
    const [r0, r1, r2] = [at("r0"), at("r1"), at("r2")];
    grantAt(r1, 20n, r0);
    grantAt(r2, 100n, r0);
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    expect(r0.transport.sent).to.have.length(0);
    await closeWindow(clock);
    expect(r0.transport.sent.map((s) => s.donor).sort()).to.deep.equal(["r1", "r2"]);
    for (const sent of r0.transport.sent) expect(sent.batch).to.deep.equal({ requester: "r0", asks: [{ accountId: "a", deficit: 30n, urgent: true }] });
    expect(r0.transport.sent[0]?.timeoutMs).to.equal(1_000 - WINDOW_MS);

    // r1 holds only 20 and keeps a third of what it knows (6): no cover yet.
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect(r0.state.rights("a")).to.equal(14n);
    expect(acquired.current.state).to.equal("pending");

    await deliver(sentTo(r0, "r2"), r2);
    await turns(3);
    expect(acquired.current.state).to.equal("resolved");
    expect(r0.state.rights("a") >= 30n, "rights cover the deficit").to.equal(true);
    expect(r0.events.asks).to.deep.equal(["granted", "granted"]);
    // The view stays causally closed: the donor's whole row came with the gift.
    expect(r0.state.slot("a", 2, 0)).to.equal(r2.state.slot("a", 2, 0));
    expect(r0.state.balance("a")).to.equal(120n);
    expect(clock.pendingWaits).to.equal(0);
    expect(r0.broker.asksInFlight).to.equal(0);
  });

  it("rights broker - every account short in one window goes in one batch per donor, split at maxBatch", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    const accounts = ["a", "b", "c", "d", "e"];
    for (const account of accounts) grantOf(account, r1, 100n, r0);
    const waits = accounts.map((account) => track(r0.broker.acquire(account, 10n, clock.now() + 1_000)));
    expect(r0.broker.asksInFlight).to.equal(5);
    await closeWindow(clock);
    // maxBatch is 3 here: two batches per donor.
    expect(r0.transport.sent.filter((s) => s.donor === "r1").map((s) => s.batch.asks.map((a) => a.accountId))).to.deep.equal([
      ["a", "b", "c"],
      ["d", "e"],
    ]);
    expect(r0.events.batches.filter(([role]) => role === "ask").map(([, size]) => size)).to.deep.equal([3, 3, 2, 2]);
    for (const sent of r0.transport.sent.filter((s) => s.donor === "r1")) await deliver(sent, r1);
    await turns(3);
    // One durable commit per batch answered, not one per account.
    expect(r1.host.commits).to.have.length(2);
    expect(r1.events.batches).to.deep.equal([
      ["give", 3],
      ["give", 2],
    ]);
    expect(waits.map((w) => w.current.state)).to.deep.equal(["resolved", "resolved", "resolved", "resolved", "resolved"]);
    for (const account of accounts) expect(r0.state.rights(account) >= 10n, account).to.equal(true);
  });

  it("rights broker - a full window is sent at once, without waiting for the timer", () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    for (const account of ["a", "b", "c"]) {
      grantOf(account, r1, 100n, r0);
      void r0.broker.acquire(account, 10n, clock.now() + 1_000);
    }
    expect(r0.transport.sent.map((s) => s.batch.asks.length)).to.deep.equal([3, 3]);
  });

  it("rights broker - the first covering gift ends the wait while other peers have not answered", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    await closeWindow(clock);
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect(acquired.current.state).to.equal("resolved");
    expect(r1.state.slot("a", 1, 0)).to.equal(r0.state.slot("a", 1, 0));
    expect(r1.events.transfers).to.deep.equal([["out", r1.state.slot("a", 1, 0)]]);
  });

  it("rights broker - concurrent shortfalls on one account join one ask", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    const first = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    const second = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    const third = track(r0.broker.acquire("a", 10n, clock.now() + 1_000));
    await closeWindow(clock);
    expect(r0.transport.sent).to.have.length(2); // one ask per peer, for all three calls
    expect(r0.broker.asksInFlight).to.equal(1);
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect([first, second, third].map((t) => t.current.state)).to.deep.equal(["resolved", "resolved", "resolved"]);
  });

  it("rights broker - a larger shortfall in the same window raises the queued ask; after it is sent, starts its own", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    void r0.broker.acquire("a", 30n, clock.now() + 1_000);
    void r0.broker.acquire("a", 40n, clock.now() + 1_000);
    await closeWindow(clock);
    void r0.broker.acquire("a", 90n, clock.now() + 1_000);
    await closeWindow(clock);
    expect(r0.transport.sent.map((s) => s.batch.asks[0]?.deficit)).to.deep.equal([40n, 40n, 90n, 90n]);
  });

  it("rights broker - acquire gives up at its deadline when no peer answers", async () => {
    const { at, clock } = cluster();
    const r0 = at("r0");
    grantAt(at("r1"), 100n, r0);
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 250));
    await turns(3);
    clock.advance(249);
    await turns(3);
    expect(acquired.current.state).to.equal("pending");
    clock.advance(1);
    await turns(3);
    expect(acquired.current.state).to.equal("resolved");
    expect(r0.state.rights("a")).to.equal(0n);
  });

  it("rights broker - acquire does nothing for no deficit or a passed deadline", async () => {
    const { at, clock } = cluster();
    const r0 = at("r0");
    await r0.broker.acquire("a", 0n, clock.now() + 1_000);
    await r0.broker.acquire("a", 10n, clock.now());
    await closeWindow(clock);
    expect(r0.transport.sent).to.have.length(0);
  });

  it("rights broker - what donors said they held makes a refusal count as false", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n); // r0 has not seen the grant: its own view says balance 0
    expect(r0.broker.clusterHeld("a", 10n)).to.equal(false);
    void r0.broker.acquire("a", 10n, clock.now() + 1_000);
    await closeWindow(clock);
    r1.host.writable = false; // r1 refuses, but says what it holds
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect(r0.state.rights("a")).to.equal(0n);
    expect(r0.broker.clusterHeld("a", 10n)).to.equal(true);
    expect(r0.broker.clusterHeld("a", 101n)).to.equal(false);
    clock.advance(60_000);
    expect(r0.broker.clusterHeld("a", 10n), "an old reply says nothing").to.equal(false);
  });
});

describe("rights broker - replies", () => {
  it("rights broker - a donor replies only after the batch's gifts are durable, in one commit", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    r1.host.gated = true;
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    await closeWindow(clock);
    const reply = track(deliver(sentTo(r0, "r1"), r1));
    await turns(5);
    expect(r1.host.commits).to.have.length(1);
    // r1 keeps its fair share (a third of 100): its 67 spare covers the ask of 30.
    expect(r1.host.commits[0]?.slots).to.deep.equal([{ accountId: "a", writer: 1, column: 0, value: 30n }]);
    expect(reply.current.state).to.equal("pending");
    expect(r1.broker.donorQueueDepth).to.equal(1);
    expect(r1.events.transfers).to.deep.equal([]);
    expect(acquired.current.state).to.equal("pending");
    expect(r0.state.rights("a")).to.equal(0n);

    r1.host.release();
    await turns(5);
    expect(reply.current).to.deep.include({ state: "resolved" });
    if (reply.current.state !== "resolved") throw new Error("unreachable");
    expect(only(reply.current.value)).to.deep.include({ accountId: "a", granted: 30n, transferredTotal: 30n, donorRights: 70n });
    expect(r1.broker.donorQueueDepth).to.equal(0);
    expect(r1.events.transfers).to.deep.equal([["out", 30n]]);
    expect(acquired.current.state).to.equal("resolved");
    expect(r0.state.rights("a")).to.equal(30n);
  });

  it("rights broker - a donor whose commit fails gives nothing and reports the failure", async () => {
    const { at } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    r1.host.gated = true;
    const serve = r1.transport.serving!;
    const reply = serve(ask(10n));
    await turns(2);
    const failure = new Error("log unreachable");
    r1.host.fail(failure);
    expect(only(await reply).granted).to.equal(0n);
    expect(r1.events.failures).to.deep.equal([failure]);
    expect(r1.events.transfers).to.deep.equal([]);
  });

  const failedReplies: ReadonlyArray<[string, (sent: SentAsk) => void, string]> = [
    ["no reply in time", (sent) => sent.resolve(undefined), "expired"],
    ["a transport error", (sent) => sent.reject(new Error("no responders")), "expired"],
    [
      "a reply that gives nothing",
      (sent) => sent.resolve({ donor: sent.donor, gifts: [{ accountId: "a", granted: 0n, transferredTotal: 0n, donorRights: 0n, accountCounter: [] }] }),
      "refused",
    ],
  ];
  for (const [what, answer, counted] of failedReplies) {
    it(`rights broker - ${what} counts as ${counted} and changes nothing`, async () => {
      const { at, clock } = cluster();
      const r0 = at("r0");
      grantAt(at("r1"), 100n, r0);
      const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
      await closeWindow(clock);
      for (const sent of r0.transport.sent) answer(sent);
      await turns(3);
      expect(r0.events.asks).to.deep.equal([counted, counted]);
      expect(r0.events.transfers).to.deep.equal([]);
      expect(r0.state.rights("a")).to.equal(0n);
      // Every peer answered: the round ends before the deadline.
      expect(acquired.current.state).to.equal("resolved");
      expect(r0.broker.asksInFlight).to.equal(0);
    });
  }
});

describe("rights broker - forged replies", () => {
  it("rights broker - a batch answered by a donor other than the asked peer is refused whole and not merged", async () => {
    const { at, clock } = cluster();
    const [r0, r1, r2] = [at("r0"), at("r1"), at("r2")];
    grantAt(r2, 100n, r0);
    void r0.broker.acquire("a", 30n, clock.now() + 1_000);
    await closeWindow(clock);
    const gift = await r2.transport.serving!(sentTo(r0, "r2").batch);
    expect(only(gift).granted > 0n, "r2 gave something").to.equal(true);
    sentTo(r0, "r1").resolve(gift); // r2's answer arrives as the answer of r1
    await turns(3);
    expect(r0.events.asks).to.deep.equal(["refused"]);
    expect(r0.state.rights("a")).to.equal(0n);
    expect(r0.state.slot("a", 2, 0)).to.equal(0n);
    expect(r1.host.commits).to.have.length(0);
  });
});

describe("rights broker - donating", () => {
  const nothingCases: ReadonlyArray<[string, (r1: Region) => void, string]> = [
    ["while not writable", (r1) => (r1.host.writable = false), "r0"],
    ["to itself", () => undefined, "r1"],
    ["to an unknown requester", () => undefined, "elsewhere"],
  ];
  for (const [when, prepare, requester] of nothingCases) {
    it(`rights broker - a donor gives nothing ${when}`, async () => {
      const { at } = cluster();
      const r1 = at("r1");
      grantAt(r1, 100n);
      prepare(r1);
      const gift = await r1.transport.serving!({ requester, asks: [{ accountId: "a", deficit: 10n, urgent: true }] });
      expect(gift).to.deep.equal({ donor: "r1", gifts: [{ accountId: "a", granted: 0n, transferredTotal: 0n, donorRights: 100n, accountCounter: [] }] });
      expect(r1.host.commits).to.have.length(0);
      expect(r1.state.rights("a")).to.equal(100n);
    });
  }

  it("rights broker - ahead of need a donor gives only above its fair share; an urgent ask gets at least half", async () => {
    const { at, clock } = cluster();
    const r1 = at("r1");
    grantAt(r1, 100n);
    const serve = r1.transport.serving!;
    expect(only(await serve(ask(90n, false))).granted).to.equal(67n);
    clock.advance(1_000);
    expect(only(await serve(ask(90n, false))).granted, "at its fair share").to.equal(0n);
    expect(only(await serve(ask(90n, true))).granted, "urgent").to.equal(17n);
  });

  it("rights broker - a donor gives to the same requester once per window", async () => {
    const { at, clock } = cluster();
    const r1 = at("r1");
    grantAt(r1, 100n);
    const serve = r1.transport.serving!;
    expect(only(await serve(ask(10n))).granted).to.equal(10n);
    expect(only(await serve(ask(10n))).granted).to.equal(0n);
    clock.advance(1_000);
    expect(only(await serve(ask(10n))).granted).to.equal(10n);
  });

  it("rights broker - stop() stops serving, ends queued asks, and a stopped broker neither gives nor asks", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    const queued = track(r0.broker.acquire("b", 10n, clock.now() + 1_000));
    const serve = r1.transport.serving!;
    r1.broker.stop();
    expect(r1.transport.stops).to.equal(1);
    expect(r1.transport.serving).to.equal(undefined);
    const late = await serve(ask(10n));
    expect(only(late).granted).to.equal(0n);
    expect(r1.host.commits).to.have.length(0);

    r0.broker.stop();
    await turns(3);
    expect(queued.current.state).to.equal("resolved");
    await r0.broker.acquire("a", 10n, clock.now() + 1_000);
    await closeWindow(clock);
    expect(r0.transport.sent).to.have.length(0);
    expect(r0.broker.asksInFlight).to.equal(0);
  });
});

describe("rights broker - credit lots", () => {
  it("rights broker - a donor gives from its lots in the asker's burn order, never from a dead lot; the asker gets one row per lot", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    // By r1's clock (50 000) the priority-0 lot is dead (expiry 40 000).
    const dead = lotRowId("a", { priority: 0, effectiveAtMs: 0, expiresAtMs: 40_000 });
    const first = lotRowId("a", { priority: 5, effectiveAtMs: 0, expiresAtMs: 900_000 });
    r1.state.grant(dead, 100n);
    r1.state.grant(first, 30n);
    r1.state.grant("a", 100n);
    const acquired = track(r0.broker.acquire("a", 50n, clock.now() + 1_000));
    await closeWindow(clock);
    const gift = await deliver(sentTo(r0, "r1"), r1);
    await deliver(sentTo(r0, "r2"), at("r2"));
    await turns(3);
    expect(gift.gifts.map((g) => [g.accountId, g.granted])).to.deep.equal([
      [first, 30n],
      ["a", 20n],
    ]);
    expect(r1.host.commits.at(-1)?.slots.map((c) => c.accountId)).to.deep.equal([first, "a"]);
    expect(acquired.current.state).to.equal("resolved");
    expect([r0.state.rights(first), r0.state.rights("a"), r0.state.rights(dead)]).to.deep.equal([30n, 20n, 0n]);
    expect(r0.state.spendableRights("a", 50_000)).to.equal(50n);
    expect(r1.state.rights(dead)).to.equal(100n);
  });

  it("rights broker - a donor whose lots are all dead or not started gives nothing", async () => {
    const { at } = cluster();
    const r1 = at("r1");
    r1.state.grant(lotRowId("a", { priority: 0, effectiveAtMs: 0, expiresAtMs: 40_000 }), 100n);
    r1.state.grant(lotRowId("a", { priority: 1, effectiveAtMs: 60_000, expiresAtMs: 900_000 }), 100n);
    const serve = r1.transport.serving;
    if (serve === undefined) throw new Error("r1 is not serving");
    const gift = only(await serve(ask(10n)));
    expect([gift.accountId, gift.granted]).to.deep.equal(["a", 0n]);
    expect(r1.host.commits).to.have.length(0);
  });
});
