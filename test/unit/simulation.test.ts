// Seeded whole-system simulation of three replicas over a faulty network with
// crashes (see support/simulation.ts). Thousands of seeds run in the unit suite;
// a failure names its seed and how to replay just that one.
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
function simulate(
  seed: number,
  options: { rebalance?: boolean; trace?: (line: string) => void } = {},
): SimulationReport {
  try {
    return runSimulation({ seed, ...options });
  } catch (e) {
    if (e instanceof SimulationViolation) throw new Error(`${e.message}\n      ${replayHint(seed)}`, { cause: e });
    throw new Error(`seed ${seed}: ${String(e)}\n      ${replayHint(seed)}`, { cause: e });
  }
}

function total(reports: readonly SimulationReport[], key: Exclude<keyof SimulationStats, "maxOverspend">): number {
  return reports.reduce((sum, r) => sum + r.stats[key], 0);
}

describe("simulation - three replicas, faulty network, crashes", function () {
  this.timeout(120_000);

  if (ONLY_SEED !== undefined) {
    it(`keeps the invariants and converges for seed ${ONLY_SEED}`, () => {
      const seed = Number(ONLY_SEED);
      const report = simulate(seed, { trace: (line) => console.log(line) });
      console.log(report.stats);
    });
    return;
  }

  const reports: SimulationReport[] = [];

  it(`keeps the escrow invariants at every step and converges after healing (${SEED_COUNT} seeds)`, () => {
    for (let seed = 1; seed <= SEED_COUNT; seed++) reports.push(simulate(seed));
    expect(reports).to.have.length(SEED_COUNT);
  });

  it("exercised every fault and every rebalancing path", function () {
    if (reports.length === 0) this.skip();
    for (const key of [
      "grants",
      "debitsApproved",
      "debitsOverdraft",
      "debitsRejected",
      "rightsRequests",
      "proactiveRequests",
      "rightsGifts",
      "expiredRequests",
      "rateLimited",
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

  it("is deterministic: a seed replays to the same run", () => {
    for (const seed of [7, 99, 1234]) {
      expect(simulate(seed)).to.deep.equal(simulate(seed));
    }
  });

  it("asking peers for rights cuts false rejections", () => {
    const seeds = Array.from({ length: 200 }, (_, k) => k + 1);
    const withRebalance = seeds.map((seed) => simulate(seed));
    const without = seeds.map((seed) => simulate(seed, { rebalance: false }));
    const falseWith = total(withRebalance, "falseRejections");
    const falseWithout = total(without, "falseRejections");
    expect(falseWith, `${falseWith} with rebalancing vs ${falseWithout} without`).to.be.lessThan(falseWithout * 0.6);
  });

  /** The first violation among the first `seeds` seeds with a deliberate bug switched on. */
  function firstViolation(
    bug: "forgetOwnRowOnCrash" | "giftBeforeDurable",
    seeds: number,
  ): SimulationViolation | undefined {
    for (let seed = 1; seed <= seeds; seed++) {
      try {
        runSimulation({ seed, [bug]: true });
      } catch (e) {
        if (!(e instanceof SimulationViolation)) throw e;
        return e;
      }
    }
    return undefined;
  }

  it("catches a replica that forgets its own slot on restart (checker self-test)", () => {
    expect(firstViolation("forgetOwnRowOnCrash", 300)?.detail).to.match(/durable (grants|debits)|holds/);
  });

  it("catches a donor that sends rights before they are durable (checker self-test)", () => {
    expect(firstViolation("giftBeforeDurable", 300)?.detail, "no seed caught it").to.be.a("string");
  });
});
