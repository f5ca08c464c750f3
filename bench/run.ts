// `npm run bench [-- --quick]`: every benchmark side by side in one run, with
// real servers on loopback. Prints readable tables with progress, checks the
// bars against the measured figures, and writes bench/results.json and
// docs/benchmarks.md (full mode only).

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { runAllowanceBench } from "./allowance-bench";
import { burstTable, runTrafficShiftBench } from "./traffic-shift-bench";
import { runConvergenceBench } from "./convergence-bench";
import type { MemoryBenchResult } from "./memory-bench";
import type { SnapshotBenchResult } from "./snapshot-bench";
import { runPostgresLedgerBench } from "./postgres-ledger-bench";
import { runRedisBench } from "./redis-bench";
import { runSettlementBench } from "./settlement-bench";
import { fmt, progress, table, type LatencySummary } from "./stats";
import { getBalanceTable, runGetBalanceBench } from "./getbalance-bench";
import { runUnaryBench } from "./unary-bench";
import { mtlsTable, runMtlsBench } from "./mtls-bench";
import { ledgerAdvantage, p99Ratio, runWanBench, wanTable } from "./wan-bench";
import { runWatchBench, watchBenchReport } from "./watch-bench";

interface Bar {
  readonly bar: string;
  readonly measured: string;
  readonly pass: boolean;
}

const ROOT = resolve(__dirname, "..", "..");

function row(name: string, s: LatencySummary): string[] {
  return [name, fmt(s.perSecond, 0), fmt(s.p50Ms, 3), fmt(s.p99Ms, 3)];
}

function memoryBench(accounts: number, requestIds: number): MemoryBenchResult {
  // A fresh process with --expose-gc, so the measurement sees only the state.
  const out = execFileSync(process.execPath, ["--expose-gc", resolve(__dirname, "memory-bench.js"), String(accounts), String(requestIds)], { encoding: "utf8" });
  return JSON.parse(out) as MemoryBenchResult;
}

function snapshotBench(args: readonly string[]): SnapshotBenchResult {
  // A fresh process: the large state it fills must not weigh on the other benches.
  const out = execFileSync(process.execPath, [resolve(__dirname, "snapshot-bench.js"), ...args], { encoding: "utf8", maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as SnapshotBenchResult;
}

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const command = `npm run bench${quick ? " -- --quick" : ""}`;
  const size = quick
    ? { calls: 3_000, rounds: 1, accounts: 1_000, batchSize: 500, batches: 20, pgCalls: 2_000, wanCalls: 1_000, wanCentralCalls: 300, getBalanceCalls: 3_000, listCalls: 20, convDebits: 100, memAccounts: 100_000, memRequestIds: 200_000, settleAccounts: 50_000 }
    : { calls: 20_000, rounds: 3, accounts: 10_000, batchSize: 1_000, batches: 100, pgCalls: 10_000, wanCalls: 4_000, wanCentralCalls: 2_000, getBalanceCalls: 20_000, listCalls: 50, convDebits: 500, memAccounts: 1_000_000, memRequestIds: 2_000_000, settleAccounts: 1_000_000 };
  const concurrency = 32;
  const sections: string[] = [];
  const results: Record<string, unknown> = { command, date: new Date().toISOString(), cpus: cpus().length, loadAverageAtStart: loadavg()[0] };
  const bars: Bar[] = [];
  const print = (title: string, text: string): void => {
    process.stdout.write(`\n${title}\n${text}\n`);
    sections.push(`## ${title}\n\n${text}\n`);
  };

  progress("1/8 single node: Debit and DebitBatch vs the no-op RPC (same server, same client)");
  const unary = await runUnaryBench({ calls: size.calls, concurrency, rounds: size.rounds, accounts: size.accounts, batchSize: size.batchSize, batches: size.batches });
  results.unary = unary;
  const ratio = (s: LatencySummary, base: LatencySummary): string[] => [fmt(s.perSecond / base.perSecond, 2), fmt(s.p99Ms / base.p99Ms, 2)];
  print(
    `Single node, durable: Debit vs no-op (concurrency ${concurrency}, ${size.rounds} interleaved round(s))`,
    table(
      ["call", "ops/s", "p50 ms", "p99 ms", "throughput vs no-op", "p99 vs no-op"],
      [
        [...row("no-op unary RPC", unary.noop), "1.00", "1.00"],
        [...row(`Debit, ${size.accounts} accounts`, unary.debit), ...ratio(unary.debit, unary.noop)],
        [...row("Debit, one hot account", unary.debitHot), ...ratio(unary.debitHot, unary.noop)],
        [...row(`no-op batch RPC (${unary.batchSize}/call; ops = items)`, unary.noopBatch), "1.00", "1.00"],
        [...row(`DebitBatch (${unary.batchSize}/call; ops = debits)`, unary.debitBatch), ...ratio(unary.debitBatch, unary.noopBatch)],
      ],
    ) +
      "\n\nWhere the time goes (busy share of one core during the unary runs; 2 cores in all):\n\n" +
      table(
        ["unary call", "client (bench process)", "node", "nats-server"],
        (["noop", "debit", "hot"] as const).map((kind) => {
          const shares = unary.cpu[kind];
          const pct = (name: string): string => `${fmt(shares[name] ?? 0, 0)}%`;
          return [{ noop: "no-op", debit: "Debit (spread)", hot: "Debit (hot)" }[kind], pct("client"), pct("node"), pct("nats-server")];
        }),
      ) +
      `\n\nDuring the unary Debit runs ${unary.commits.publishes.toLocaleString("en-US")} group commits carried ${unary.commits.debits.toLocaleString("en-US")} debits ` +
      `(${fmt(unary.commits.publishes > 0 ? unary.commits.debits / unary.commits.publishes : 0, 1)} per publish); mean publish-to-ack as the node saw it: ${fmt(unary.commits.meanAckMs, 2)} ms. ` +
      "Neither core is saturated: a closed loop at fixed concurrency moves in cohorts, and each Debit cohort also waits for one JetStream round trip, " +
      "which the node's single event loop sees late while it decodes the next cohort's requests.",
  );
  bars.push({
    bar: "Unary Debit throughput >= 0.9x no-op",
    measured: `${fmt(unary.debit.perSecond / unary.noop.perSecond, 2)}x`,
    pass: unary.debit.perSecond >= 0.9 * unary.noop.perSecond,
  });
  bars.push({
    bar: "Unary Debit p99 <= 1.5x no-op p99",
    measured: `${fmt(unary.debit.p99Ms / unary.noop.p99Ms, 2)}x`,
    pass: unary.debit.p99Ms <= 1.5 * unary.noop.p99Ms,
  });
  bars.push({ bar: "Bulk path >= 50,000 durable debits/s", measured: `${fmt(unary.debitBatch.perSecond, 0)}/s`, pass: unary.debitBatch.perSecond >= 50_000 });

  progress("1b/8 single node: unary Debit over mutual TLS vs plaintext (two nodes, interleaved rounds)");
  const mtls = await runMtlsBench({ calls: size.calls, rounds: size.rounds, concurrency, accounts: size.accounts });
  results.mtls = mtls;
  print(`Unary Debit over mutual TLS vs plaintext (concurrency ${concurrency}, ${size.rounds} interleaved round(s))`, mtlsTable(mtls));
  bars.push({ bar: "Unary Debit with mTLS >= 0.8x without", measured: `${fmt(mtls.throughputRatio, 2)}x`, pass: mtls.throughputRatio >= 0.8 });

  progress("2/8 alternatives: Postgres ledger (durable) and Redis (Lua check-and-decrement)");
  const pg = await runPostgresLedgerBench({ calls: size.pgCalls, concurrency, accounts: size.accounts });
  const redis = await runRedisBench({ calls: size.pgCalls * 2, concurrency, accounts: size.accounts });
  results.postgresLedger = pg;
  results.redis = redis;
  print(
    `What users would pick instead, same machine, concurrency ${concurrency}`,
    table(
      ["debit via", "ops/s", "p50 ms", "p99 ms"],
      [
        row("Tally Debit (unary, durable JetStream ack)", unary.debit),
        row("Tally Debit, one hot account", unary.debitHot),
        row(`Tally DebitBatch (${unary.batchSize}/call)`, unary.debitBatch),
        row("Postgres UPDATE ... WHERE balance >= $1, spread (fsync on)", pg.spread),
        row("Postgres UPDATE, one hot row (fsync on)", pg.hot),
        row("Redis EVALSHA check-and-decrement, spread (appendfsync everysec)", redis.spread),
        row("Redis EVALSHA, hot key (appendfsync everysec)", redis.hot),
        row("Redis EVALSHA, hot key (appendfsync always)", redis.hotFsyncAlways),
      ],
    ),
  );
  bars.push({
    bar: "Bulk path >= 3x Postgres spread-row baseline",
    measured: `${fmt(unary.debitBatch.perSecond / pg.spread.perSecond, 1)}x`,
    pass: unary.debitBatch.perSecond >= 3 * pg.spread.perSecond,
  });

  progress("3/8 multi-region: local debit with and without 50 ms one way between regions (same run), and a central Postgres ledger across the WAN");
  const wan = await runWanBench({ calls: size.wanCalls, centralCalls: size.wanCentralCalls, concurrency: 8, delayMs: 50, rounds: 2 });
  results.wan = wan;
  const wanRatio = p99Ratio(wan.withDelay.debit, wan.withoutDelay.debit);
  const centralRatio = ledgerAdvantage(wan.centralLedger, wan.withDelay.debit);
  const centralPacedRatio = ledgerAdvantage(wan.centralLedger, wan.withDelay.debitPaced);
  print(
    `Simulated WAN: the same node, client and concurrency (8) without and with ${wan.delayMs} ms one way between regions (${wan.rounds} interleaved rounds)`,
    wanTable(wan) +
      `\n\nThe local debit's floor is its durable group commit: east's JetStream publish-to-ack time was p50 <= ${fmt(wan.withoutDelay.commitP50Ms, 2)} ms, p99 <= ${fmt(wan.withoutDelay.commitP99Ms, 2)} ms without the delay and ` +
      `p50 <= ${fmt(wan.withDelay.commitP50Ms, 2)} ms, p99 <= ${fmt(wan.withDelay.commitP99Ms, 2)} ms with it (histogram bucket bounds), plus a gRPC round trip; nothing crosses the WAN. ` +
      "The no-op rows are the same node, client and concurrency without the durable write: the gRPC floor under this load. Seven processes (three nats-servers, three nodes, the proxy host) and the client share the 2 cores, so the tail at concurrency 8 is CPU queueing; the absolute figures stay in the table, the bar is the ratio.",
  );
  bars.push({
    bar: `WAN: local Debit p99 with ${wan.delayMs} ms delay <= 1.2x without (same run)`,
    measured: `${fmt(wanRatio, 2)}x (${fmt(wan.withDelay.debit.p99Ms, 2)} vs ${fmt(wan.withoutDelay.debit.p99Ms, 2)} ms at c=8; no-op ${fmt(p99Ratio(wan.withDelay.noop, wan.withoutDelay.noop), 2)}x)`,
    pass: wan.withDelay.debit.p99Ms <= 1.2 * wan.withoutDelay.debit.p99Ms,
  });
  bars.push({
    bar: "WAN: >= 10x better p99 than the central ledger, same offered load",
    measured: `${fmt(centralPacedRatio, 1)}x (${fmt(wan.centralLedger.p99Ms, 1)} vs ${fmt(wan.withDelay.debitPaced.p99Ms, 2)} ms at ${fmt(wan.centralLedger.perSecond, 0)}/s)`,
    pass: centralPacedRatio >= 10,
  });
  bars.push({
    bar: "WAN: >= 10x better p99 than the central ledger, same concurrency (Tally at many times the rate)",
    measured: `${fmt(centralRatio, 1)}x (${fmt(wan.centralLedger.p99Ms, 1)} vs ${fmt(wan.withDelay.debit.p99Ms, 2)} ms at c=8: ${fmt(wan.withDelay.debit.perSecond, 0)} vs ${fmt(wan.centralLedger.perSecond, 0)}/s)`,
    pass: centralRatio >= 10,
  });

  progress("4/8 GetBalance on a node whose Postgres is 50 ms one way away, vs the no-op RPC (same node, same client)");
  const getBalance = await runGetBalanceBench({ calls: size.getBalanceCalls, concurrency, delayMs: 50, listCalls: size.listCalls, rounds: Math.max(2, size.rounds) });
  results.getBalance = getBalance;
  print(
    `GetBalance from node memory: settlement configured, ${getBalance.delayMs} ms one way in front of Postgres (concurrency ${concurrency}, ${getBalance.rounds} interleaved rounds)`,
    getBalanceTable(getBalance) +
      `\n\nEvery GetBalance answered with settlement ${getBalance.settlementId}'s totals, which reached the node on the TALLY_SETTLED stream; that settlement took ${fmt(getBalance.settleSeconds, 2)} s through the delay. ` +
      "ListSettlements reads Postgres, so it pays the delay; GetBalance never does.",
  );
  bars.push({
    bar: `GetBalance p99 <= 1.2x no-op p99 with ${getBalance.delayMs} ms in front of Postgres`,
    measured: `${fmt(getBalance.noop.p99Ms > 0 ? getBalance.getBalance.p99Ms / getBalance.noop.p99Ms : 0, 2)}x (${fmt(getBalance.getBalance.p99Ms, 2)} vs ${fmt(getBalance.noop.p99Ms, 2)} ms; ListSettlements p50 ${fmt(getBalance.listSettlements.p50Ms, 1)} ms through the delay)`,
    pass: getBalance.getBalance.p99Ms <= 1.2 * getBalance.noop.p99Ms,
  });

  progress("5/8 convergence across three regions on loopback");
  const conv = await runConvergenceBench({ debits: size.convDebits, spacingMs: 5 });
  results.convergence = conv;
  print(
    `Convergence: debit sent to east -> visible at west/central (${conv.debits} debits, WatchBalance)`,
    table(
      ["to", "p50 ms", "p99 ms", "max ms"],
      [
        ["west", fmt(conv.toWest.p50Ms, 3), fmt(conv.toWest.p99Ms, 3), fmt(conv.toWest.maxMs, 3)],
        ["central", fmt(conv.toCentral.p50Ms, 3), fmt(conv.toCentral.p99Ms, 3), fmt(conv.toCentral.maxMs, 3)],
        ["both", fmt(conv.toBoth.p50Ms, 3), fmt(conv.toBoth.p99Ms, 3), fmt(conv.toBoth.maxMs, 3)],
      ],
    ),
  );
  bars.push({ bar: "Convergence p99 < 100 ms on loopback", measured: `${fmt(conv.toBoth.p99Ms, 2)} ms`, pass: conv.toBoth.p99Ms < 100 });

  progress("5b/8 allowances: skewed steady load and the low-balance endgame");
  const allowance = await runAllowanceBench({ calls: quick ? 3_000 : 20_000, accounts: 100 });
  results.allowances = allowance;
  print(
    "Rights follow demand: grants land in east, 80% of debits in west, 15% central, 5% east (after a warm-up)",
    table(
      ["debits", "approved", "false rejections", "rights waits", "p99 rights wait (bucket bound)", "transfers", "west p50 / p99 ms"],
      [
        [
          String(allowance.debits),
          String(allowance.approved),
          `${allowance.falseRejections} (${fmt(allowance.falseRejectionRate * 100, 3)}%)`,
          String(allowance.rightsWaits),
          `<= ${fmt(allowance.rightsWaitP99Ms, 0)} ms`,
          String(allowance.rightsTransfers),
          `${fmt(allowance.latencyByRegion.west?.p50Ms ?? 0, 2)} / ${fmt(allowance.latencyByRegion.west?.p99Ms ?? 0, 2)}`,
        ],
      ],
    ) +
      `\n\nWarm-up (cold: each account's first debits away from east wait for their first transfer): ${allowance.coldRightsWaits} waits, p99 <= ${fmt(allowance.coldRightsWaitP99Ms, 0)} ms (histogram bucket bound).` +
      `\n\nEndgame: ${allowance.endgame.granted} credits, all three regions spending 1 at a time (STRICT): spent ${allowance.endgame.spent}, final balance ${allowance.endgame.finalBalance}, in ${fmt(allowance.endgame.seconds, 2)} s.`,
  );
  bars.push({ bar: "Skewed load: false rejections < 0.1% of debits", measured: `${fmt(allowance.falseRejectionRate * 100, 3)}%`, pass: allowance.falseRejectionRate < 0.001 });
  bars.push({
    bar: "Skewed load: p99 rights wait < 50 ms",
    measured: `steady: ${allowance.rightsWaits} waits (p99 <= ${fmt(allowance.rightsWaitP99Ms, 0)} ms); cold start: ${allowance.coldRightsWaits} waits, p99 <= ${fmt(allowance.coldRightsWaitP99Ms, 0)} ms`,
    pass: allowance.rightsWaitP99Ms < 50 && allowance.coldRightsWaitP99Ms < 50,
  });
  bars.push({
    bar: "Endgame: STRICT balance reaches exactly 0",
    measured: `final ${allowance.endgame.finalBalance}, spent ${allowance.endgame.spent}/${allowance.endgame.granted}`,
    pass: allowance.endgame.finalBalance === "0" && allowance.endgame.spent === allowance.endgame.granted,
  });

  progress("5b'/8 traffic shifts: cold bursts at west with the funds at east, beside the same bursts with the funds local");
  const shifts = await runTrafficShiftBench(quick ? [500, 2_000] : [500, 2_000, 5_000], quick ? 10_000 : 100_000);
  results.trafficShifts = shifts;
  const largest = shifts.bursts.filter((b) => b.accounts === Math.max(...shifts.bursts.map((x) => x.accounts)));
  const [local, cold] = [largest.find((b) => b.funds === "local"), largest.find((b) => b.funds === "cold")];
  print(
    "Traffic shifts: N concurrent debits of 10 at west, one per account holding 100, max_wait_ms 200, 5 s deadline (command: node dist/bench/traffic-shift-bench.js)",
    burstTable(shifts.bursts) +
      `\n\nHonest waits (east cut off, ${shifts.overshoot.debits} debits at west): past max_wait_ms p50 ${fmt(shifts.overshoot.p50Ms, 1)} ms, p99 ${fmt(shifts.overshoot.p99Ms, 1)} ms, max ${fmt(shifts.overshoot.maxMs, 1)} ms.` +
      (shifts.shift === undefined ? "" : `\n\nPlanned shift (Admin.ShiftRights / tally shift) of ${shifts.shift.accounts} accounts east -> west: ${fmt(shifts.shift.seconds, 1)} s.`),
  );
  if (local !== undefined && cold !== undefined) {
    bars.push({ bar: `Cold burst of ${cold.accounts}: false rejections < 1%`, measured: `${fmt((cold.refused / cold.accounts) * 100, 2)}%`, pass: cold.refused < cold.accounts / 100 });
    bars.push({ bar: "Cold burst p50 <= 2x the funds-local burst (same run)", measured: `${fmt(cold.p50Ms / 1000, 2)} s vs ${fmt(local.p50Ms / 1000, 2)} s`, pass: cold.p50Ms <= 2 * local.p50Ms });
    bars.push({ bar: "Cold burst: no DEADLINE_EXCEEDED at 5 s", measured: String(cold.deadlineExceeded), pass: cold.deadlineExceeded === 0 });
    bars.push({ bar: "Cold burst: STRICT exact balances, none below 0", measured: `${cold.wrongBalances} wrong`, pass: cold.wrongBalances === 0 });
  }
  if (shifts.shift !== undefined) {
    bars.push({ bar: `tally shift of ${shifts.shift.accounts} accounts completes`, measured: `${fmt(shifts.shift.seconds, 1)} s, ${shifts.shift.wrongRights} sampled wrong`, pass: shifts.shift.wrongRights === 0 });
  }

  progress("5c/8 watchers: Debit with and without 1,000 WatchBalance streams on the debited accounts");
  const watch = await runWatchBench({ calls: size.calls, concurrency, rounds: size.rounds, watchers: 1_000, accounts: 100 });
  results.watchers = watch;
  print(`Watchers: Debit with and without ${watch.watchers} open WatchBalance streams on the debited accounts (concurrency ${concurrency}, ${size.rounds} interleaved round(s))`, watchBenchReport(watch, size.calls));
  bars.push({
    bar: "Debit p99 with 1,000 watchers <= 2x without (same run)",
    measured: `${fmt(watch.p99Ratio, 2)}x (${fmt(watch.with.p99Ms, 2)} vs ${fmt(watch.without.p99Ms, 2)} ms)`,
    pass: watch.p99Ratio <= 2,
  });

  progress(`6/8 memory per account (${size.memAccounts} accounts, 3 replicas, every slot set) and per remembered request id (${size.memRequestIds})`);
  const memory = memoryBench(size.memAccounts, size.memRequestIds);
  results.memory = memory;
  const perId = (bytes: number): string => `${fmt(bytes, 0)} B (${fmt((bytes * 2_000_000) / 2 ** 20, 0)} MiB at 2M ids)`;
  print(
    "Node memory per account (3 replicas) and per remembered request id",
    table(
      ["accounts", "bytes/account", "heap", "array buffers", "RSS"],
      [[String(memory.accounts), fmt(memory.bytesPerAccount, 1), fmt(memory.heapBytesPerAccount, 1), fmt(memory.arrayBufferBytesPerAccount, 1), fmt(memory.rssBytesPerAccount, 1)]],
    ) +
      `\n\nRemembered request ids (idempotency; a node admits up to 2,000,000 of its own for 15 minutes by default, and also holds its peers'), ` +
      `${memory.requestIds.toLocaleString("en-US")} ids held on top of the accounts, all after forced GC:\n\n` +
      table(
        ["ids held", "heap + array buffers per id", "RSS per id"],
        [
          ["after one window (ids added)", perId(memory.bytesPerRequestId), perId(memory.rssBytesPerRequestId)],
          ["after a second window (steady state: as many expire as arrive)", perId(memory.steadyBytesPerRequestId), perId(memory.steadyRssBytesPerRequestId)],
        ],
      ) +
      `\n\nOne full GC with the accounts and ids held took ${fmt(memory.fullGcMs, 0)} ms; remembering the ids of both windows took ${fmt(memory.requestSeconds, 1)} s.`,
  );
  bars.push({ bar: "<= 300 bytes per account (3 replicas)", measured: `${fmt(memory.bytesPerAccount, 1)} B`, pass: memory.bytesPerAccount <= 300 });

  const snapArgs = quick ? ["100000", "200000", "20", "32"] : ["500000", "1000000", "120", "32"];
  progress(`6b/8 snapshot cost: ${snapArgs[0]} accounts, ${snapArgs[1]} remembered ids, durable debits while snapshots run`);
  const snap = snapshotBench(snapArgs);
  results.snapshots = snap;
  print(
    `Snapshot cost: Debit latency inside vs outside snapshot windows (${snap.accounts} accounts, ${snap.requestIds} remembered ids, concurrency ${snap.concurrency})`,
    table(
      ["debits", "count", "p50 ms", "p99 ms", "max ms"],
      [
        ["during snapshot windows", String(snap.during.count), fmt(snap.during.p50Ms, 3), fmt(snap.during.p99Ms, 3), fmt(snap.during.maxMs, 1)],
        ["outside snapshot windows", String(snap.outside.count), fmt(snap.outside.p50Ms, 3), fmt(snap.outside.p99Ms, 3), fmt(snap.outside.maxMs, 1)],
      ],
    ) +
      `\n\nSnapshot: ${fmt(snap.snapshotBytes / 1e6, 1)} MB in ${fmt(snap.snapshotMsMedian / 1000, 1)} s (median of ${snap.snapshots}; encoding paced to 25% of the thread); ` +
      `synchronous copy (freeze) ${fmt(snap.freezeMs, 0)} ms. Copying 1M remembered ids as objects (the former freeze) took ${fmt(snap.oldRequestCopyMsPer1M, 0)} ms; as columns ${fmt(snap.columnCopyMsPer1M, 0)} ms.`,
  );
  bars.push({ bar: "Debit p99 during snapshots <= 2x outside", measured: `${fmt(snap.p99Ratio, 2)}x`, pass: snap.p99Ratio <= 2 });

  progress(`7/8 settlement: ${size.settleAccounts} accounts x 3 replicas into Postgres`);
  const settlement = await runSettlementBench({ accounts: size.settleAccounts });
  results.settlement = settlement;
  print(
    `Settlement of ${settlement.accounts} accounts x ${settlement.replicas} replicas (Postgres fsync ${settlement.durable ? "on" : "off"})`,
    table(
      ["phase", "rows offered", "accounts changed", "ledger entries", "seconds", "rows/s"],
      settlement.phases.map((p) => [p.name, String(p.rowsOffered), String(p.accountsChanged), String(p.ledgerEntries), fmt(p.seconds, 2), fmt(p.rowsPerSecond, 0)]),
    ) + `\n\nPeak RSS of the settler: ${fmt(settlement.peakRssMb, 0)} MB.`,
  );
  if (!quick) bars.push({ bar: "Settlement 1M accounts x 3 replicas <= 30 s", measured: `${fmt(settlement.seconds, 1)} s`, pass: settlement.seconds <= 30 });

  progress("8/8 bars");
  const barTable = table(["bar", "measured", "result"], bars.map((b) => [b.bar, b.measured, b.pass ? "PASS" : "FAIL"]));
  print("Bars (DESIGN.md section 8), from the figures above", barTable);
  results.bars = bars;

  const header = `# Benchmarks\n\nEvery figure below comes from one run of \`${command}\` on ${new Date().toISOString().slice(0, 10)}: ${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), Node ${process.version}, 1-minute load average ${fmt(loadavg()[0] ?? 0, 2)} at the end. Servers are real and local: nats-server 2.9 (JetStream, file storage), PostgreSQL 15, Redis; clients and servers share the 2 cores, so absolute numbers are modest — the side-by-side ratios are the point. Raw numbers: \`bench/results.json\`.\n\n`;
  const json = JSON.stringify(results, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);
  if (quick) {
    writeFileSync(resolve(ROOT, "bench/results-quick.json"), json);
    progress("quick mode: docs/benchmarks.md and bench/results.json left unchanged");
  } else {
    mkdirSync(resolve(ROOT, "docs"), { recursive: true });
    writeFileSync(resolve(ROOT, "bench/results.json"), json);
    writeFileSync(resolve(ROOT, "docs/benchmarks.md"), header + sections.join("\n"));
    progress("wrote docs/benchmarks.md and bench/results.json");
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
