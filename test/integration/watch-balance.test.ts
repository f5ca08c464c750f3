// WatchBalance with a real grpc-js client: the current value first, then
// changes, low-balance flags; a reader that stops reading is coalesced to the
// latest value (bounded memory), and cancellation frees the watch.

import { expect } from "chai";
import type { ClientReadableStream } from "@grpc/grpc-js";
import { runNode, type RunningNode } from "../../src/app/run-node";
import type { WatchBalanceResponse } from "../../src/generated/tally/v1/balances";
import { jsonLogger } from "../../src/node/logger";
import { clients, unary, type Clients } from "../support/grpc-clients";
import { useStandaloneNats } from "../support/nats";

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
    running = await runNode({ region: "east", regions: ["east"], natsUrl: nats().url, grpcAddress: "127.0.0.1:0", logger: jsonLogger("east", "error") });
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
});
