// WatchBalance with a real grpc-js client: the current value first, then
// changes, low-balance flags; a reader that stops reading is coalesced to the
// latest value (bounded memory), and cancellation frees the watch. Changes in
// one tick reach each watcher as one event, encoded once for all of them;
// watch limits refuse with RESOURCE_EXHAUSTED; internal watchers still wake
// synchronously.

import { expect } from "chai";
import { status, type ClientReadableStream } from "@grpc/grpc-js";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { WatchBalanceResponse } from "../../src/generated/tally/v1/balances";
import { jsonLogger } from "../../src/node/logger";
import { clients, unary, type Clients, testGrpcSecurity } from "../support/grpc-clients";
import { useStandaloneNats, natsAccess } from "../support/nats";

function nextEvent(stream: ClientReadableStream<WatchBalanceResponse>, predicate: (e: WatchBalanceResponse) => boolean): Promise<WatchBalanceResponse> {
  return new Promise((resolve, reject) => {
    const onData = (event: WatchBalanceResponse): void => {
      if (!predicate(event)) return;
      stream.off("data", onData);
      resolve(event);
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
}

describe("watch balance - live balance stream", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  let running: RunningNode;
  let c: Clients;

  before(async () => {
    running = await runNode({ region: "east", regions: ["east"], ...natsAccess(nats(), "east"), grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(), logger: jsonLogger("east", "error") });
    c = clients(`127.0.0.1:${running.grpcPort}`);
  });
  after(async () => {
    c.close();
    await running.stop();
  });

  it("watch balance - streams the current value, then each change, flagging low balance", async () => {
    await unary(c.balances, c.balances.grant, { accountId: "w-1", amount: 100n, requestId: "w1-g" });
    const stream = c.balances.watchBalance({ accountId: "w-1", lowBalanceThreshold: 50n });
    const first = await nextEvent(stream, () => true);
    expect(first.balance).to.equal(100n);
    expect(first.lowBalance).to.equal(false);
    const low = nextEvent(stream, (e) => e.balance === 40n);
    await unary(c.balances, c.balances.debit, { accountId: "w-1", amount: 60n, requestId: "w1-d", maxWaitMs: 0 });
    expect((await low).lowBalance).to.equal(true);
    stream.cancel();
  });

  it("watch balance - a hold placed and captured each send an event with the held amount", async () => {
    await unary(c.balances, c.balances.grant, { accountId: "w-hold", amount: 100n, requestId: "wh-g" });
    const stream = c.balances.watchBalance({ accountId: "w-hold", lowBalanceThreshold: 0n });
    const first = await nextEvent(stream, () => true);
    expect([first.balance, first.held]).to.deep.equal([100n, 0n]);
    const placed = nextEvent(stream, (e) => e.held === 30n);
    const held = await unary(c.balances, c.balances.hold, { accountId: "w-hold", amount: 30n, requestId: "wh-h", timeoutMs: 60_000n, maxWaitMs: 0 });
    expect([(await placed).balance, (await placed).localRights]).to.deep.equal([100n, 70n]);
    const captured = nextEvent(stream, (e) => e.held === 0n);
    await unary(c.balances, c.balances.captureHold, { holdId: held.holdId, amount: 20n, requestId: "wh-c", accountId: "w-hold" });
    expect([(await captured).balance, (await captured).localRights]).to.deep.equal([80n, 80n]);
    stream.cancel();
  });

  it("watch balance - a reader that stops reading gets the latest value, coalesced, when it resumes", async () => {
    await unary(c.balances, c.balances.grant, { accountId: "w-2", amount: 1_000_000n, requestId: "w2-g" });
    const stream = c.balances.watchBalance({ accountId: "w-2", lowBalanceThreshold: 0n });
    await nextEvent(stream, () => true);
    stream.pause();
    // Far more changes than any transport buffer holds events for.
    for (let start = 0; start < 3_000; start += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, k) =>
          unary(c.balances, c.balances.debit, { accountId: "w-2", amount: 1n, requestId: `w2-d-${start + k}`, maxWaitMs: 0 }),
        ),
      );
    }
    const latest = nextEvent(stream, (e) => e.balance === 1_000_000n - 3_000n);
    const seen: WatchBalanceResponse[] = [];
    stream.on("data", (e: WatchBalanceResponse) => seen.push(e));
    stream.resume();
    const last = await latest;
    expect(last.balance).to.equal(997_000n);
    // Fewer events than changes reached the client: the rest were coalesced, not queued.
    expect(seen.length).to.be.lessThan(3_000);
    expect(seen.some((e) => e.coalesced > 1) || last.coalesced > 1).to.equal(true);
    stream.cancel();
  });

  it("watch balance - cancelling frees the watch", async () => {
    const before = running.node.watches.size;
    const streams = Array.from({ length: 5 }, () => c.balances.watchBalance({ accountId: "w-3", lowBalanceThreshold: 0n }));
    await Promise.all(streams.map((s) => nextEvent(s, () => true)));
    expect(running.node.watches.size).to.equal(before + 5);
    for (const s of streams) {
      s.on("error", () => undefined);
      s.cancel();
    }
    const deadline = Date.now() + 5_000;
    while (running.node.watches.size !== before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(running.node.watches.size).to.equal(before);
  });

  it("watch balance - an invalid account id is INVALID_ARGUMENT", async () => {
    const stream = c.balances.watchBalance({ accountId: "bad id", lowBalanceThreshold: 0n });
    const error = await new Promise<{ code?: number; details?: string }>((resolve) => stream.on("error", resolve));
    expect(error.code).to.equal(3);
    expect(error.details).to.match(/account_id/);
  });

  it("watch balance - changes within one tick reach each watcher as one event counting them, encoded once for all", async () => {
    await unary(c.balances, c.balances.grant, { accountId: "w-4", amount: 1_000n, requestId: "w4-g" });
    const streams = Array.from({ length: 3 }, () => c.balances.watchBalance({ accountId: "w-4", lowBalanceThreshold: 0n }));
    await Promise.all(streams.map((s) => nextEvent(s, () => true)));
    const received = streams.map(() => [] as WatchBalanceResponse[]);
    streams.forEach((s, i) => s.on("data", (e: WatchBalanceResponse) => received[i]!.push(e)));
    // Count encodings of WatchBalance events on the server (same process).
    const encode = WatchBalanceResponse.encode;
    let encodings = 0;
    WatchBalanceResponse.encode = (message, writer) => {
      encodings++;
      return encode(message, writer);
    };
    try {
      // A batch decides all its debits in one synchronous loop: 50 changes in one tick.
      const debits = Array.from({ length: 50 }, (_, k) => ({ accountId: "w-4", amount: 1n, requestId: `w4-b-${k}`, maxWaitMs: 0 }));
      // Events go out when the debits are decided, before the batch is durable and answered.
      const delivered = Promise.all(streams.map((s) => nextEvent(s, (e) => e.balance === 950n)));
      await unary(c.balances, c.balances.debitBatch, { debits });
      await delivered;
      expect(encodings).to.equal(1);
    } finally {
      WatchBalanceResponse.encode = encode;
    }
    // One more change: the next event each watcher gets is that one, so nothing came in between.
    const next = Promise.all(streams.map((s) => nextEvent(s, (e) => e.balance === 949n)));
    await unary(c.balances, c.balances.debit, { accountId: "w-4", amount: 1n, requestId: "w4-d", maxWaitMs: 0 });
    await next;
    for (const events of received) {
      expect(events.map((e) => [e.balance, e.coalesced])).to.deep.equal([
        [950n, 50],
        [949n, 1],
      ]);
    }
    for (const s of streams) {
      s.on("error", () => undefined);
      s.cancel();
    }
  });

  it("watch balance - internal watchers are woken synchronously, before client watchers get the coalesced event", async () => {
    const { node } = running;
    let woken = 0;
    let clientEvents = 0;
    const unwatchInternal = node.watches.watch("w-5", () => woken++, () => undefined, true);
    const unwatchClient = node.watches.watch("w-5", () => clientEvents++, () => undefined);
    try {
      const granted = node.grant("w-5", 10n, "w5-g");
      // The grant notifies before its durable commit: the internal watcher has run already, in this tick.
      expect(woken).to.equal(1);
      expect(clientEvents).to.equal(0);
      await granted;
      await new Promise((r) => setImmediate(r));
      expect(clientEvents).to.equal(1);
      expect(node.watches.size).to.be.greaterThan(0);
    } finally {
      unwatchInternal();
      unwatchClient();
    }
  });
});

describe("watch balance - limits", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  let running: RunningNode;
  let c: Clients;
  const open: Array<ClientReadableStream<WatchBalanceResponse>> = [];

  function watch(accountId: string): ClientReadableStream<WatchBalanceResponse> {
    const stream = c.balances.watchBalance({ accountId, lowBalanceThreshold: 0n });
    open.push(stream);
    return stream;
  }

  function refusal(stream: ClientReadableStream<WatchBalanceResponse>): Promise<{ code?: number; details?: string }> {
    return new Promise((resolve, reject) => {
      stream.on("data", () => reject(new Error("a refused watch sent an event")));
      stream.on("error", resolve);
    });
  }

  async function waitForSize(size: number): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (running.node.watches.size !== size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(running.node.watches.size).to.equal(size);
  }

  before(async () => {
    running = await runNode({
      region: "east",
      regions: ["east"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      config: { maxWatchers: 4, maxWatchersPerAccount: 2 },
    });
    c = clients(`127.0.0.1:${running.grpcPort}`);
    for (const id of ["l-a", "l-b", "l-c", "l-d"]) await unary(c.balances, c.balances.grant, { accountId: id, amount: 100n, requestId: `${id}-g` });
  });
  afterEach(async () => {
    for (const s of open.splice(0)) {
      s.on("error", () => undefined);
      s.cancel();
    }
    await waitForSize(0);
  });
  after(async () => {
    c.close();
    await running.stop();
  });

  it("watch balance - past the per-account limit a watch is RESOURCE_EXHAUSTED naming it; the account's open watches and other accounts are unaffected", async () => {
    const kept = [watch("l-a"), watch("l-a")];
    await Promise.all(kept.map((s) => nextEvent(s, () => true)));
    const error = await refusal(watch("l-a"));
    expect(error.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(error.details).to.match(/--max-watchers-per-account 2/);
    expect(running.node.watches.size).to.equal(2);
    // The open watches still stream, and another account can still be watched.
    const changed = kept.map((s) => nextEvent(s, (e) => e.balance === 99n));
    await unary(c.balances, c.balances.debit, { accountId: "l-a", amount: 1n, requestId: "la-d1", maxWaitMs: 0 });
    await Promise.all(changed);
    expect((await nextEvent(watch("l-b"), () => true)).balance).to.equal(100n);
  });

  it("watch balance - past the per-node limit a watch is RESOURCE_EXHAUSTED naming it; closing one frees a place", async () => {
    const kept = [watch("l-a"), watch("l-b"), watch("l-c"), watch("l-c")];
    await Promise.all(kept.map((s) => nextEvent(s, () => true)));
    const error = await refusal(watch("l-d"));
    expect(error.code).to.equal(status.RESOURCE_EXHAUSTED);
    expect(error.details).to.match(/--max-watchers 4/);
    expect(running.node.watches.size).to.equal(4);
    const changed = nextEvent(kept[0]!, (e) => e.balance < 100n);
    await unary(c.balances, c.balances.debit, { accountId: "l-a", amount: 1n, requestId: "la-d2", maxWaitMs: 0 });
    await changed;
    // Debits and reads are not limited by watches.
    const balance = await unary(c.balances, c.balances.getBalance, { accountId: "l-d" });
    expect(balance.balance).to.equal(100n);
    kept[3]!.on("error", () => undefined);
    kept[3]!.cancel();
    await waitForSize(3);
    expect((await nextEvent(watch("l-d"), () => true)).balance).to.equal(100n);
  });

  it("watch balance - internal watchers are not limited", () => {
    const unwatch = [running.node.watches.watch("l-a", () => undefined, () => undefined), running.node.watches.watch("l-a", () => undefined, () => undefined)];
    try {
      const internal = running.node.watches.watch("l-a", () => undefined, () => undefined, true);
      internal();
      expect(() => running.node.watches.watch("l-a", () => undefined, () => undefined)).to.throw(/--max-watchers-per-account 2/);
    } finally {
      for (const u of unwatch) u();
    }
  });
});
