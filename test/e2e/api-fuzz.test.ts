// API fuzzing against a real 3-region cluster (three nats-servers joined by
// gateways, three node processes): random waves of concurrent Grant, Debit,
// DebitBatch, Hold, CaptureHold, VoidHold, Refund, TransferAllowance,
// SetAccountPolicy and GetBalance calls at any region, int64-edge amounts,
// hold timeouts from 1 ms to 30 days (and invalid ones), captures full,
// partial and over the held amount, refunds of debits and captures partial and
// beyond what they took, holds resolved and debits refunded at the wrong
// region, unknown holds and debits, concurrent duplicates, conflicting request
// ids and node restarts (SIGKILL and SIGTERM). Unknown outcomes are resolved
// by retrying the same request id; then statuses, convergence, exact totals
// (granted, debited with captures, held, refunded per region), STRICT and
// OVERDRAFT bounds, replays, each hold placed once and resolved at most once
// (its final state read at its region), refunds within their debit and
// liveness are checked (test/support/fuzz-run.ts, test/support/fuzz-holds.ts).
//
// Each run is a seeded program (test/support/fuzz-program.ts); a failure names
// its seed. The program replays exactly; the interleaving of calls and
// restarts is real concurrency and may differ.
//
//   TALLY_FUZZ_SEED=1234 npx mocha --no-config --timeout 300000 --exit dist/test/e2e/api-fuzz.test.js   (replay one seed)
//   TALLY_FUZZ_RUNS=20 ...                                                                            (more seeds, one cluster)
//   TALLY_FUZZ_SEED=random TALLY_FUZZ_RUNS=10 ...                                                     (10 seeds from a random one)
//   TALLY_FUZZ_WAVES=400 ...                                                                          (longer programs)

import { expect } from "chai";
import { TestCluster } from "../support/cluster";
import { runFuzz, type FuzzReport } from "../support/fuzz-run";

const ONLY_SEED = process.env["TALLY_FUZZ_SEED"] || undefined;
const RUNS = Number(process.env["TALLY_FUZZ_RUNS"] ?? "1");
const WAVES = Number(process.env["TALLY_FUZZ_WAVES"] ?? "110");
const RESTARTS = Number(process.env["TALLY_FUZZ_RESTARTS"] ?? "3");
// `npm test` replays one known seed so CI is deterministic; TALLY_FUZZ_SEED=random
// (or any seed) explores. Seed 381716785 was once noted as finding a violation;
// on 2026-12-02 it passed 5 replays out of 5 and 11 other seeds passed (before
// holds were fuzzed), and it passed again with holds: no violation reproduced.
// With holds, seeds 1265970967 (the default) and 1265970968 found two bugs
// (a Hold, and a Refund, retried at a region that did not decide it), fixed.
const FIRST_SEED =
  ONLY_SEED === "random" ? Math.floor(Math.random() * 2 ** 31) : ONLY_SEED !== undefined ? Number(ONLY_SEED) : 1265970967;

function replayHint(seed: number): string {
  return `replay: TALLY_FUZZ_SEED=${seed} npx mocha --no-config --timeout 300000 --exit dist/test/e2e/api-fuzz.test.js`;
}

describe("api fuzz - random API calls against three regions with restarts", function () {
  this.timeout(120_000 + RUNS * 120_000);
  let cluster: TestCluster;

  before(async function () {
    this.timeout(120_000);
    // Frequent snapshots, so restarts recover from a snapshot plus a stream tail.
    cluster = await TestCluster.start({ extraArgs: ["--snapshot-interval-ms", "1000"] });
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
  });

  // One given seed replays alone; `random` (like no seed) runs TALLY_FUZZ_RUNS consecutive seeds from the first.
  const seeds = ONLY_SEED !== undefined && ONLY_SEED !== "random" ? [FIRST_SEED] : Array.from({ length: RUNS }, (_, i) => FIRST_SEED + i);

  it(`api fuzz - statuses, convergence, exact totals, STRICT/OVERDRAFT bounds, replays, holds and refunds hold (seed${seeds.length > 1 ? "s" : ""} ${seeds[0]}${seeds.length > 1 ? `..${seeds.at(-1)}` : ""})`, async () => {
    const failures: string[] = [];
    for (const seed of seeds) {
      console.log(`      api fuzz: seed ${seed} (${replayHint(seed)})`);
      let report: FuzzReport;
      try {
        report = await runFuzz(cluster, seed, { waves: WAVES, restarts: RESTARTS, sweepIds: 150 });
      } catch (error) {
        throw new Error(`seed ${seed}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n      ${replayHint(seed)}`, { cause: error });
      }
      console.log(`      ${report.summary}`);
      const noted = [...new Set(report.notes)];
      if (noted.length > 0) console.log(`      ${noted.length} notes, e.g. ${noted.slice(0, 3).join("; ")}`);
      if (report.violations.length > 0) {
        failures.push(
          `seed ${seed}: ${report.violations.length} violations (all calls: ${report.logFile}):\n` +
            report.violations.slice(0, 25).map((v, i) => `  ${i + 1}. ${v}`).join("\n") +
            (report.violations.length > 25 ? `\n  … ${report.violations.length - 25} more` : "") +
            `\n  ${replayHint(seed)}`,
        );
      }
    }
    expect(failures, failures.join("\n\n")).to.deep.equal([]);
  });
});
