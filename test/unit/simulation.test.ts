// Seeded whole-system simulation of three replicas over a faulty network with
// crashes, each running the production RightsBroker and RightsPolicy (see
// support/simulation.ts). Thousands of seeds run in the unit suite; a failure
// names its seed and how to replay just that one.
//
//   TALLY_SIM_SEED=1234 npx mocha --no-config dist/test/unit/simulation.test.js   (one seed, traced)
//   TALLY_SIM_SEEDS=20000 ...                                                     (more seeds)

import { expect } from "chai";
import { runSimulation, SimulationViolation, type SimulationReport, type SimulationStats } from "./support/simulation";

const ONLY_SEED = process.env["TALLY_SIM_SEED"];
const SEED_COUNT = Number(process.env["TALLY_SIM_SEEDS"] ?? "2000");

function replayHint(seed: number): string {
  return `replay: TALLY_SIM_SEED=${seed} npx mocha --no-config dist/test/unit/simulation.test.js`;
}

/** Runs one seed; a violation becomes an assertion message with the seed and the replay hint. */
async function simulate(
  seed: number,
  options: { rebalance?: boolean; drainTurns?: number; trace?: (line: string) => void } = {},
): Promise<SimulationReport> {
  try {
    return await runSimulation({ seed, ...options });
  } catch (e) {
    if (e instanceof SimulationViolation) throw new Error(`${e.message}\n      ${replayHint(seed)}`, { cause: e });
    throw new Error(`seed ${seed}: ${String(e)}\n      ${replayHint(seed)}`, { cause: e });
  }
}

function total(reports: readonly SimulationReport[], key: Exclude<keyof SimulationStats, "maxOverspend">): number {
  return reports.reduce((sum, r) => sum + r.stats[key], 0);
}

describe("simulation - three replicas, faulty network, crashes", function () {
  this.timeout(300_000);

  if (ONLY_SEED !== undefined) {
    it(`keeps the invariants and converges for seed ${ONLY_SEED}`, async () => {
      const seed = Number(ONLY_SEED);
      const report = await simulate(seed, { trace: (line) => console.log(line) });
      console.log(report.stats);
    });
    return;
  }

  const reports: SimulationReport[] = [];

  it(`keeps the escrow invariants at every step and converges after healing (${SEED_COUNT} seeds)`, async () => {
    for (let seed = 1; seed <= SEED_COUNT; seed++) reports.push(await simulate(seed));
    expect(reports).to.have.length(SEED_COUNT);
  });

  it("exercised every fault and every path of the broker", function () {
    if (reports.length === 0) this.skip();
    for (const key of [
      "grants",
      "debitsApproved",
      "debitsOverdraft",
      "debitsRejected",
      "debitsWaited",
      "debitsApprovedAfterWait",
      "debitsAbandoned",
      "bulkShortfalls",
      "backgroundAsks",
      "asksSent",
      "batchesOfSeveral",
      "asksGranted",
      "asksRefused",
      "asksExpired",
      "rightsGifts",
      "donationsFailed",
      "crashes",
      "lostUnflushed",
      "partitions",
      "messagesLost",
      "messagesDuplicated",
    ] as const) {
      expect(total(reports, key), key).to.be.greaterThan(0);
    }
    expect(reports.some((r) => r.stats.maxOverspend > 0n), "some overdraft was used").to.equal(true);
  });

  it("is deterministic: a seed replays to the same run and trace", async () => {
    for (const seed of [7, 99, 1234]) {
      const first: string[] = [];
      const second: string[] = [];
      const a = await simulate(seed, { trace: (line) => first.push(line) });
      const b = await simulate(seed, { trace: (line) => second.push(line) });
      expect(a).to.deep.equal(b);
      expect(first).to.deep.equal(second);
    }
  });

  it("every event's promise chains settle within the drain (a much deeper drain runs the same)", async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const deep: string[] = [];
      const usual: string[] = [];
      const a = await simulate(seed, { drainTurns: 200, trace: (line) => deep.push(line) });
      const b = await simulate(seed, { trace: (line) => usual.push(line) });
      expect(b, `seed ${seed}`).to.deep.equal(a);
      expect(usual, `seed ${seed}`).to.deep.equal(deep);
    }
  });

  it("asking peers for rights cuts false rejections", async () => {
    const seeds = Array.from({ length: 200 }, (_, k) => k + 1);
    const withRebalance: SimulationReport[] = [];
    const without: SimulationReport[] = [];
    for (const seed of seeds) {
      withRebalance.push(await simulate(seed));
      without.push(await simulate(seed, { rebalance: false }));
    }
    const falseWith = total(withRebalance, "falseRejections");
    const falseWithout = total(without, "falseRejections");
    expect(falseWith, `${falseWith} with rebalancing vs ${falseWithout} without`).to.be.lessThan(falseWithout * 0.6);
  });

  /** The first violation among the first `seeds` seeds with a deliberate bug switched on. */
  async function firstViolation(
    bug: "forgetOwnRowOnCrash" | "giftBeforeDurable" | "omitContext",
    seeds: number,
  ): Promise<SimulationViolation | undefined> {
    for (let seed = 1; seed <= seeds; seed++) {
      try {
        await runSimulation({ seed, [bug]: true });
      } catch (e) {
        if (!(e instanceof SimulationViolation)) throw e;
        return e;
      }
    }
    return undefined;
  }

  it("catches a replica that forgets its own slot on restart (checker self-test)", async () => {
    expect((await firstViolation("forgetOwnRowOnCrash", 300))?.detail).to.match(/durable (grants|debits)|holds|rights\(r\d\) = -\d+ below/);
  });

  it("catches a view that is not causally closed when messages carry no context (checker self-test)", async () => {
    expect((await firstViolation("omitContext", 300))?.detail).to.match(/not causally closed/);
  });

  it("catches a donor that replies before its transfer is durable (checker self-test)", async () => {
    expect((await firstViolation("giftBeforeDurable", 300))?.detail, "no seed caught it").to.be.a("string");
  });
});
