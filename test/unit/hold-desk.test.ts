// The node's hold desk (src/node/hold-desk.ts) over a real ReplicaState with
// a gated durable log: no answer (placed, resolved, repeated or refused)
// leaves before what it reports is durable, and the timeout sweep writes each
// expiry through the log.

import { expect } from "chai";
import { HoldStateError, WrongRegionError } from "../../src/core/errors";
import { DebitOutcome } from "../../src/core/answer";
import { holdFingerprint, refundFingerprint } from "../../src/core/hold-path";
import type { DurableWrite } from "../../src/core/durable-write";
import { HoldStatus } from "../../src/core/hold-book";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { WritePath } from "../../src/core/write-path";
import { TallyMetrics } from "../../src/metrics/tally-metrics";
import { HoldDesk } from "../../src/node/hold-desk";
import { jsonLogger } from "../../src/node/logger";
import { track, turns } from "./support/conditions";

/** A durable log whose appends complete only when the test says so, in order. */
class GatedLog {
  readonly writes: DurableWrite[] = [];
  private readonly waiting: Array<() => void> = [];

  commit(write: DurableWrite): Promise<number> {
    this.writes.push(write);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.writes.length)));
  }

  /** Resolves once every write committed before it is durable. */
  barrier(): Promise<number> {
    if (this.waiting.length === 0) return Promise.resolve(this.writes.length);
    return new Promise((resolve) => this.waiting.push(() => resolve(this.writes.length)));
  }

  /** Makes the oldest pending write (or barrier) durable. */
  release(): void {
    this.waiting.shift()?.();
  }

  releaseAll(): void {
    while (this.waiting.length > 0) this.release();
  }
}

function desk(clock: { wall: number }): { desk: HoldDesk; state: ReplicaState; log: GatedLog; metrics: TallyMetrics } {
  const state = new ReplicaState({ replicas: new ReplicaSet(["east", "west"]), self: "east", initialAccounts: 4 });
  const writes = new WritePath(state);
  const log = new GatedLog();
  const metrics = new TallyMetrics("east", { processMetrics: false });
  const d = new HoldDesk({
    region: "east",
    state,
    writes,
    metrics,
    logger: jsonLogger("east", "error", () => undefined),
    requestRetentionMs: 60_000,
    admit: (requestId, fingerprint) => writes.admit(requestId, fingerprint, clock.wall),
    commit: (write) => log.commit(write),
    barrier: () => log.barrier(),
    time: () => ({ stampMs: clock.wall, nowMs: clock.wall }),
    monotonic: () => clock.wall,
    writable: true,
    notify: () => undefined,
    acquireRights: () => Promise.resolve(),
    demand: () => undefined,
  });
  return { desk: d, state, log, metrics };
}

describe("hold desk - answers only what is durable", () => {
  it("a hold is answered once its write is durable; a concurrent retry joins it", async () => {
    const clock = { wall: 1_000 };
    const { desk: d, state, log } = desk(clock);
    state.grant("a", 100n);
    const first = track(d.hold("a", 40n, "h1", 5_000));
    const retry = track(d.hold("a", 40n, "h1", 5_000));
    await turns(3);
    expect(first.current.state).to.equal("pending");
    expect(retry.current.state).to.equal("pending");
    expect(log.writes).to.have.length(1);
    expect(log.writes[0]?.holds?.[0]).to.include({ holdId: "east:h1", status: HoldStatus.Pending });
    log.releaseAll();
    await turns(3);
    expect(first.current).to.deep.include({ state: "resolved" });
    expect(retry.current.state === "resolved" && retry.current.value.replayed).to.equal(true);
  });

  it("a second capture under a new id waits for the first capture's write, then repeats it; nothing is charged twice", async () => {
    const clock = { wall: 1_000 };
    const { desk: d, state, log } = desk(clock);
    state.grant("a", 100n);
    const placing = d.hold("a", 40n, "h1", 5_000);
    log.releaseAll();
    await placing;
    const capture = track(d.capture("east:h1", 30n, "c1", undefined));
    await turns(2);
    const again = track(d.capture("east:h1", 30n, "c2", "a"));
    await turns(3);
    expect(capture.current.state).to.equal("pending");
    expect(again.current.state, "repeated before the capture was durable").to.equal("pending");
    log.release(); // the capture's write
    await turns(3);
    expect(capture.current.state).to.equal("resolved");
    log.releaseAll(); // the second call's barrier
    await turns(3);
    expect(again.current.state === "resolved" && again.current.value.replayed && again.current.value.record.captured).to.equal(30n);
    expect(state.balance("a")).to.equal(70n);
    expect(log.writes.filter((w) => w.slots.length > 0)).to.have.length(2); // the hold and one capture
  });

  it("the sweep expires a due hold through the log; a capture after it is refused once that expiry is durable", async () => {
    const clock = { wall: 1_000 };
    const { desk: d, state, log, metrics } = desk(clock);
    state.grant("a", 100n);
    const placing = d.hold("a", 40n, "h1", 500);
    log.releaseAll();
    await placing;
    clock.wall = 1_499;
    expect(await d.sweep()).to.equal(0);
    clock.wall = 1_500;
    const sweeping = track(d.sweep());
    await turns(2);
    expect(state.holds.get("east:h1")?.status).to.equal(HoldStatus.Expired);
    expect(log.writes.at(-1)?.holds?.[0]?.status).to.equal(HoldStatus.Expired);
    const late = track(d.capture("east:h1", 10n, "c1", undefined));
    await turns(3);
    expect(late.current.state, "refused before the expiry was durable").to.equal("pending");
    log.releaseAll();
    await turns(3);
    expect(sweeping.current).to.deep.include({ state: "resolved", value: 1 });
    expect(late.current.state === "rejected" && late.current.error).to.be.instanceOf(HoldStateError);
    expect(state.rights("a")).to.equal(100n);
    expect((await metrics.registry.getSingleMetricAsString("tally_hold_resolutions_total")).includes('kind="expired",region="east"} 1')).to.equal(true);
  });

  it("a retry of a hold another region placed (its answer replicated here) names the holding region, never an approval without a hold id", async () => {
    const clock = { wall: 1_000 };
    const { desk: d, state, log } = desk(clock);
    state.grant("a", 100n);
    // West approved hold w1 (found by the API fuzz: a failover retry answered APPROVED with hold_id "" and state UNSPECIFIED).
    const approved = { kind: "debit" as const, outcome: DebitOutcome.Approved, balance: 100n, localRights: 60n };
    state.rememberReplicated("w1", holdFingerprint("a", 40n, 5_000), approved, { stampMs: clock.wall, nowMs: clock.wall }, state.replicas.indexOf("west"));
    const retry = track(d.hold("a", 40n, "w1", 5_000));
    await turns(3);
    expect(retry.current.state === "rejected" && retry.current.error).to.be.instanceOf(WrongRegionError);
    expect(retry.current.state === "rejected" && (retry.current.error as WrongRegionError).region).to.equal("west");
    expect(log.writes, "nothing written").to.have.length(0);
    expect(state.rights("a"), "nothing held here").to.equal(100n);
    // The same id refused there stays a refusal here: nothing to point at.
    const refused = { kind: "debit" as const, outcome: DebitOutcome.InsufficientCredit, balance: 100n, localRights: 0n };
    state.rememberReplicated("w2", holdFingerprint("a", 400n, 5_000), refused, { stampMs: clock.wall, nowMs: clock.wall }, state.replicas.indexOf("west"));
    const again = await d.hold("a", 400n, "w2", 5_000);
    expect(again).to.deep.include({ replayed: true, record: undefined });
    expect(again.answer.outcome).to.equal(DebitOutcome.InsufficientCredit);
  });

  it("a retry of a refund another region decided names that region, never totals it cannot know", async () => {
    const clock = { wall: 1_000 };
    const { desk: d, state, log } = desk(clock);
    state.grant("a", 100n);
    // West refunded 11 of its debit d1 (found by the API fuzz, seed 1265970968: a retry elsewhere answered
    // refunded_total 11, refundable 5 while west had refunded 16 in all, 0 left).
    const answer = { kind: "debit" as const, outcome: DebitOutcome.Approved, balance: 100n, localRights: 100n };
    state.rememberReplicated("w-refund", refundFingerprint("d1", 11n), answer, { stampMs: clock.wall, nowMs: clock.wall }, state.replicas.indexOf("west"));
    const retry = track(d.refund("d1", 11n, "w-refund", undefined));
    await turns(3);
    expect(retry.current.state === "rejected" && retry.current.error).to.be.instanceOf(WrongRegionError);
    expect(retry.current.state === "rejected" && (retry.current.error as WrongRegionError).region).to.equal("west");
    expect(log.writes, "nothing written").to.have.length(0);
  });
});
