// The rights broker (src/node/rights-broker.ts) between regions, over real
// ReplicaStates and BalanceWatchHubs; the transport, the clock and the
// durable commit are fakes the tests drive by hand: an ask is answered only
// when a test delivers it, time moves only when a test advances it, and a
// donor's commit completes only when a test releases it.

import { expect } from "chai";
import type { DurableWrite } from "../../src/core/durable-write";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import type { RightsAsk, RightsGift, RightsTransport } from "../../src/core/rights-messages";
import { BalanceWatchHub } from "../../src/node/balance-watch";
import { RightsBroker, type BrokerClock, type RightsEvents, type RightsHost } from "../../src/node/rights-broker";
import { track, turns } from "./support/conditions";

const NAMES = ["r0", "r1", "r2"] as const;

interface SentAsk {
  readonly donor: string;
  readonly ask: RightsAsk;
  readonly timeoutMs: number;
  resolve(gift: RightsGift | undefined): void;
  reject(error: unknown): void;
}

type Donate = (ask: RightsAsk) => Promise<RightsGift>;

class FakeTransport implements RightsTransport {
  readonly sent: SentAsk[] = [];
  serving: Donate | undefined;
  stops = 0;

  ask(donor: string, ask: RightsAsk, timeoutMs: number): Promise<RightsGift | undefined> {
    return new Promise((resolve, reject) => this.sent.push({ donor, ask, timeoutMs, resolve, reject }));
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
  /** When set, commits wait for release(); otherwise they are durable at once. */
  gated = false;
  readonly commits: DurableWrite[] = [];
  private readonly held: Array<{ resolve(): void; reject(error: unknown): void }> = [];

  constructor(
    readonly region: string,
    readonly state: ReplicaState,
  ) {}

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
    const broker = new RightsBroker(host, transport, events, clock, 100);
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

/** Grants `amount` of account "a" at `donor`, and lets `viewer` see that grant (as replication would). */
function grantAt(donor: Region, amount: bigint, ...viewers: Region[]): void {
  donor.state.grant("a", amount);
  for (const viewer of viewers) viewer.state.merge("a", donor.state.self, donor.state.self, donor.state.slot("a", donor.state.self, donor.state.self));
}

/** Lets the addressed donor serve the ask and hands its gift back to the asker. */
async function deliver(sent: SentAsk, donor: Region): Promise<RightsGift> {
  const serve = donor.transport.serving;
  if (serve === undefined) throw new Error(`${donor.name} is not serving`);
  const gift = await serve(sent.ask);
  sent.resolve(gift);
  return gift;
}

function sentTo(region: Region, donor: string): SentAsk {
  const sent = region.transport.sent.find((s) => s.donor === donor);
  if (sent === undefined) throw new Error(`no ask sent to ${donor}`);
  return sent;
}

describe("rights broker - asking", () => {
  it("rights broker - acquire asks every peer and resolves once the gifts cover the deficit, not before", async () => {
    const { at, clock } = cluster();
    const [r0, r1, r2] = [at("r0"), at("r1"), at("r2")];
    grantAt(r1, 20n, r0);
    grantAt(r2, 100n, r0);
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    expect(r0.transport.sent.map((s) => s.donor)).to.deep.equal(["r2", "r1"]);
    expect(r0.transport.sent.map((s) => s.ask)).to.deep.equal([
      { accountId: "a", requester: "r0", deficit: 30n },
      { accountId: "a", requester: "r0", deficit: 30n },
    ]);
    expect(r0.transport.sent[0]?.timeoutMs).to.equal(1_000);

    // r1 holds only 20: its gift does not cover 30, so the call keeps waiting.
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect(r0.state.rights("a")).to.equal(20n);
    expect(acquired.current.state).to.equal("pending");

    await deliver(sentTo(r0, "r2"), r2);
    await turns(3);
    expect(acquired.current.state).to.equal("resolved");
    expect(r0.state.rights("a") >= 30n, "rights cover the deficit").to.equal(true);
    expect(r0.events.asks).to.deep.equal(["granted", "granted"]);
    expect(r0.events.transfers.map(([direction]) => direction)).to.deep.equal(["in", "in"]);
    // The view stays causally closed: the donor's whole row came with the gift.
    expect(r0.state.slot("a", 2, 0)).to.equal(r2.state.slot("a", 2, 0));
    expect(r0.state.balance("a")).to.equal(120n);
    expect(clock.pendingWaits).to.equal(0);
    expect(r0.broker.asksInFlight).to.equal(0);
  });

  it("rights broker - the first covering gift ends the wait while other peers have not answered", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
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
    expect(r0.transport.sent).to.have.length(2); // one ask per peer, for all three calls
    expect(r0.broker.asksInFlight).to.equal(1);
    await deliver(sentTo(r0, "r1"), r1);
    await turns(3);
    expect([first, second, third].map((t) => t.current.state)).to.deep.equal(["resolved", "resolved", "resolved"]);
  });

  it("rights broker - a shortfall larger than the ask in flight starts its own ask", () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    void r0.broker.acquire("a", 30n, clock.now() + 1_000);
    void r0.broker.acquire("a", 90n, clock.now() + 1_000);
    expect(r0.transport.sent.map((s) => s.ask.deficit)).to.deep.equal([30n, 30n, 90n, 90n]);
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
    expect(r0.transport.sent).to.have.length(0);
  });
});

describe("rights broker - replies", () => {
  it("rights broker - a donor replies only after its gift is durable", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    r1.host.gated = true;
    const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
    const reply = track(deliver(sentTo(r0, "r1"), r1));
    await turns(5);
    expect(r1.host.commits).to.have.length(1);
    expect(r1.host.commits[0]?.slots).to.deep.equal([{ accountId: "a", writer: 1, column: 0, value: 50n }]);
    expect(reply.current.state).to.equal("pending");
    expect(r1.events.transfers).to.deep.equal([]);
    expect(acquired.current.state).to.equal("pending");
    expect(r0.state.rights("a")).to.equal(0n);

    r1.host.release();
    await turns(5);
    expect(reply.current).to.deep.include({ state: "resolved" });
    if (reply.current.state !== "resolved") throw new Error("unreachable");
    expect(reply.current.value).to.deep.include({ donor: "r1", granted: 50n, transferredTotal: 50n, donorRights: 50n });
    expect(r1.events.transfers).to.deep.equal([["out", 50n]]);
    expect(acquired.current.state).to.equal("resolved");
    expect(r0.state.rights("a")).to.equal(50n);
  });

  it("rights broker - a donor whose commit fails gives nothing and reports the failure", async () => {
    const { at } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    r1.host.gated = true;
    const serve = r1.transport.serving!;
    const reply = serve({ accountId: "a", requester: "r0", deficit: 10n });
    await turns(2);
    const failure = new Error("log unreachable");
    r1.host.fail(failure);
    expect((await reply).granted).to.equal(0n);
    expect(r1.events.failures).to.deep.equal([failure]);
    expect(r1.events.transfers).to.deep.equal([]);
  });

  const failedReplies: ReadonlyArray<[string, (sent: SentAsk) => void, string]> = [
    ["no reply in time", (sent) => sent.resolve(undefined), "expired"],
    ["a transport error", (sent) => sent.reject(new Error("no responders")), "expired"],
    [
      "a reply that gives nothing",
      (sent) => sent.resolve({ donor: sent.donor, granted: 0n, transferredTotal: 0n, donorRights: 0n, accountCounter: [] }),
      "refused",
    ],
  ];
  for (const [what, answer, counted] of failedReplies) {
    it(`rights broker - ${what} counts as ${counted} and changes nothing`, async () => {
      const { at, clock } = cluster();
      const r0 = at("r0");
      grantAt(at("r1"), 100n, r0);
      const acquired = track(r0.broker.acquire("a", 30n, clock.now() + 1_000));
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

  it("rights broker - a gift from a donor other than the asked peer is refused and not merged", async () => {
    const { at, clock } = cluster();
    const [r0, r1, r2] = [at("r0"), at("r1"), at("r2")];
    grantAt(r2, 100n, r0);
    void r0.broker.acquire("a", 30n, clock.now() + 1_000);
    const r2Serve = r2.transport.serving!;
    const gift = await r2Serve(sentTo(r0, "r2").ask);
    expect(gift.granted > 0n, "r2 gave something").to.equal(true);
    sentTo(r0, "r1").resolve(gift); // r2's gift arrives as the answer of r1
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
      const gift = await r1.transport.serving!({ accountId: "a", requester, deficit: 10n });
      expect(gift).to.deep.equal({ donor: "r1", granted: 0n, transferredTotal: 0n, donorRights: 100n, accountCounter: [] });
      expect(r1.host.commits).to.have.length(0);
      expect(r1.state.rights("a")).to.equal(100n);
    });
  }

  it("rights broker - a donor gives to the same requester once per window", async () => {
    const { at, clock } = cluster();
    const r1 = at("r1");
    grantAt(r1, 100n);
    const serve = r1.transport.serving!;
    const ask: RightsAsk = { accountId: "a", requester: "r0", deficit: 10n };
    expect((await serve(ask)).granted).to.equal(50n);
    expect((await serve(ask)).granted).to.equal(0n);
    clock.advance(1_000);
    expect((await serve(ask)).granted).to.equal(25n);
  });

  it("rights broker - stop() stops serving and a stopped broker neither gives nor asks", async () => {
    const { at, clock } = cluster();
    const [r0, r1] = [at("r0"), at("r1")];
    grantAt(r1, 100n, r0);
    const serve = r1.transport.serving!;
    r1.broker.stop();
    expect(r1.transport.stops).to.equal(1);
    expect(r1.transport.serving).to.equal(undefined);
    const late = await serve({ accountId: "a", requester: "r0", deficit: 10n });
    expect(late.granted).to.equal(0n);
    expect(r1.host.commits).to.have.length(0);

    r0.broker.stop();
    await r0.broker.acquire("a", 10n, clock.now() + 1_000);
    expect(r0.transport.sent).to.have.length(0);
  });
});
