// Traffic shifts on three real regions (issue 15): a burst of N concurrent
// debits of 10 at west, each on its own account holding 100, once with the
// funds already at west and once with them at east (cold: every debit needs
// rights moved), side by side in one run; max_wait_ms 200, a 5 s deadline.
// Then how far a debit waits past max_wait_ms when no rights can come (east
// cut off), and, when given, a planned `shift` of many accounts.
//
//   node dist/bench/traffic-shift-bench.js [N ...] [--shift ACCOUNTS]   (default 500 2000 5000; no shift)

import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalCluster } from "../src/devcluster/local-cluster";
import { AdminClient, type ShiftRightsResponse } from "../src/generated/tally/v1/admin";
import { BalancesClient, DebitOutcome, type DebitResponse } from "../src/generated/tally/v1/balances";
import { closedLoop } from "./load";
import { fmt, progress, summarize, table } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

const FUNDS = 100n;
const DEBIT = 10n;
const MAX_WAIT_MS = 200;
const DEADLINE_MS = 5_000;

export interface BurstResult {
  readonly accounts: number;
  readonly funds: "local" | "cold";
  readonly approved: number;
  readonly refused: number;
  readonly deadlineExceeded: number;
  readonly otherErrors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** tally_false_rejections_total at west over the burst. */
  readonly falseRejectionsCounted: number;
  /** Rights batches west sent over the burst (tally_rights_batch_size, role ask). */
  readonly batchesSent: number;
  /** Accounts whose balance at west after the burst is not 100 − 10 × approved, or is negative. */
  readonly wrongBalances: number;
}

export interface OvershootResult {
  readonly debits: number;
  readonly refused: number;
  /** Client-seen latency beyond max_wait_ms, ms: p50, p99, max. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface PlannedShiftResult {
  readonly accounts: number;
  readonly seconds: number;
  readonly progressMessages: number;
  readonly accountsMoved: number;
  readonly amountMoved: string;
  /** Sampled accounts whose rights at west are not the whole balance after the shift. */
  readonly wrongRights: number;
}

export interface TrafficShiftBenchResult {
  readonly bursts: BurstResult[];
  readonly overshoot: OvershootResult;
  readonly shift?: PlannedShiftResult;
}

type Outcome = { readonly answer: DebitResponse } | { readonly code: status };

function debit(client: BalancesClient, accountId: string, requestId: string, maxWaitMs: number): Promise<Outcome> {
  return new Promise((resolve) =>
    client.debit({ accountId, amount: DEBIT, requestId, maxWaitMs }, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (e: ServiceError | null, r) =>
      resolve(e ? { code: e.code } : { answer: r }),
    ),
  );
}

function metricSum(text: string, name: string, labelFilter = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) if ((line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && line.includes(labelFilter)) sum += Number(line.split(" ").pop());
  return sum;
}

async function grantAll(client: BalancesClient, accounts: readonly string[]): Promise<void> {
  await closedLoop(accounts.length, 64, (i) =>
    new Promise<void>((resolve, reject) =>
      client.grant({ accountId: accounts[i]!, amount: FUNDS, requestId: `g-${accounts[i]!}` }, (e) => (e ? reject(e) : resolve())),
    ),
  );
}

const balanceOf = (client: BalancesClient, accountId: string): Promise<bigint> =>
  new Promise((resolve, reject) => client.getBalance({ accountId }, (e, r) => (e ? reject(e) : resolve(r.balance))));

/** Polls until west sees every grant (its view of the last account granted). */
async function untilVisible(client: BalancesClient, accounts: readonly string[]): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const seen = await Promise.all([accounts[0]!, accounts[accounts.length - 1]!].map((a) => balanceOf(client, a)));
    if (seen.every((b) => b === FUNDS)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("grants never became visible at west");
}

async function plannedShift(cluster: LocalCluster, east: BalancesClient, west: BalancesClient, n: number): Promise<PlannedShiftResult> {
  const accounts = Array.from({ length: n }, (_, k) => `planned-${k}`);
  progress(`planned shift: granting ${n} accounts at east`);
  await grantAll(east, accounts);
  const admin = new AdminClient(cluster.nodes[0]!.grpcAddress, cluster.clientCredentials("ops"), tlsNameOptions(cluster.nodes[0]!.grpcAddress));
  try {
    progress(`planned shift: ${n} accounts from east to west (Admin.ShiftRights, fraction 1)`);
    const started = process.hrtime.bigint();
    const messages = await new Promise<ShiftRightsResponse[]>((resolve, reject) => {
      const seen: ShiftRightsResponse[] = [];
      const stream = admin.shiftRights({ shiftId: "bench-shift", toRegion: "west", fraction: 1 });
      stream.on("data", (p: ShiftRightsResponse) => seen.push(p));
      stream.on("error", reject);
      stream.on("end", () => resolve(seen));
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const last = messages.at(-1);
    if (last?.complete !== true) throw new Error("the shift did not complete");
    // West sees the moved rights once it has applied east's stream: poll a sample.
    const sample = accounts.filter((_, k) => k % Math.max(1, Math.floor(n / 200)) === 0);
    let wrongRights = sample.length;
    for (let i = 0; i < 600 && wrongRights > 0; i++) {
      const rights = await Promise.all(sample.map((a) => new Promise<bigint>((resolve, reject) => west.getBalance({ accountId: a }, (e, r) => (e ? reject(e) : resolve(r.localRights))))));
      wrongRights = rights.filter((r) => r !== FUNDS).length;
      if (wrongRights > 0) await new Promise((r) => setTimeout(r, 100));
    }
    return { accounts: n, seconds, progressMessages: messages.length, accountsMoved: Number(last.accountsMoved), amountMoved: last.amountMoved.toString(), wrongRights };
  } finally {
    admin.close();
  }
}

export async function runTrafficShiftBench(sizes: readonly number[], shiftAccounts = 0): Promise<TrafficShiftBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "tally-shift-"));
  const cluster = await LocalCluster.start({ dir });
  const clients = cluster.nodes.map((n) => new BalancesClient(n.grpcAddress, cluster.clientCredentials("all"), { ...tlsNameOptions(n.grpcAddress), "grpc.max_concurrent_streams": 100_000 }));
  const [east, west] = clients as [BalancesClient, BalancesClient, BalancesClient];
  const westMetrics = cluster.nodes[1]!.metricsUrl;
  // Retried: right after a burst the node may be too busy to answer in time.
  const scrape = async (): Promise<string> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await (await fetch(westMetrics, { signal: AbortSignal.timeout(10_000) })).text();
      } catch (error) {
        if (attempt >= 5) throw new Error(`metrics of west unreachable: ${String(error)}`, { cause: error });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  try {
    const bursts: BurstResult[] = [];
    for (const n of sizes) {
      for (const funds of ["local", "cold"] as const) {
        const accounts = Array.from({ length: n }, (_, k) => `${funds}-${n}-${k}`);
        progress(`traffic shift: ${n} accounts, funds ${funds === "local" ? "at west" : "at east"}: granting`);
        await grantAll(funds === "local" ? west : east, accounts);
        await untilVisible(west, accounts);
        const before = await scrape();
        progress(`traffic shift: ${n} concurrent debits of ${DEBIT} at west, max_wait_ms ${MAX_WAIT_MS}`);
        const latenciesNs: number[] = [];
        const started = process.hrtime.bigint();
        const outcomes = await Promise.all(
          accounts.map(async (a) => {
            const t0 = process.hrtime.bigint();
            const outcome = await debit(west, a, `burst-${a}`, MAX_WAIT_MS);
            latenciesNs.push(Number(process.hrtime.bigint() - t0));
            return outcome;
          }),
        );
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const after = await scrape();
        const latency = summarize(latenciesNs, seconds);
        const approvedSet = new Set<string>();
        let refused = 0;
        let deadlineExceeded = 0;
        let otherErrors = 0;
        outcomes.forEach((o, k) => {
          if ("code" in o) {
            if (o.code === status.DEADLINE_EXCEEDED) deadlineExceeded++;
            else otherErrors++;
          } else if (o.answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED) approvedSet.add(accounts[k]!);
          else refused++;
        });
        // STRICT: exact balances at west (its own debits are in its view at once).
        let wrongBalances = 0;
        await closedLoop(n, 64, async (i) => {
          const a = accounts[i]!;
          const balance = await balanceOf(west, a);
          const expected = approvedSet.has(a) ? FUNDS - DEBIT : FUNDS;
          // An unknown answer (deadline) may still have been approved: either balance is exact.
          const unknown = "code" in outcomes[i]!;
          if (balance < 0n || (balance !== expected && !(unknown && balance === FUNDS - DEBIT))) wrongBalances++;
        });
        bursts.push({
          accounts: n,
          funds,
          approved: approvedSet.size,
          refused,
          deadlineExceeded,
          otherErrors,
          p50Ms: latency.p50Ms,
          p99Ms: latency.p99Ms,
          maxMs: Math.max(...latenciesNs) / 1e6,
          falseRejectionsCounted: metricSum(after, "tally_false_rejections_total") - metricSum(before, "tally_false_rejections_total"),
          batchesSent: metricSum(after, "tally_rights_batch_size_count", 'role="ask"') - metricSum(before, "tally_rights_batch_size_count", 'role="ask"'),
          wrongBalances,
        });
      }
    }

    progress("traffic shift: honest waits — east cut off, debits at west wait for rights that cannot come");
    const stranded = Array.from({ length: 200 }, (_, k) => `stranded-${k}`);
    await grantAll(east, stranded);
    await untilVisible(west, stranded);
    await cluster.nats.partition("east");
    const overs: number[] = [];
    let refused = 0;
    await closedLoop(stranded.length, 20, async (i) => {
      const t0 = process.hrtime.bigint();
      const o = await debit(west, stranded[i]!, `stranded-d-${i}`, MAX_WAIT_MS);
      overs.push(Number(process.hrtime.bigint() - t0) / 1e6 - MAX_WAIT_MS);
      if (!("code" in o) && o.answer.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT) refused++;
    });
    await cluster.nats.heal();
    overs.sort((a, b) => a - b);
    const q = (p: number): number => overs[Math.min(overs.length - 1, Math.floor(p * overs.length))]!;
    const overshoot = { debits: overs.length, refused, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: overs[overs.length - 1]! };
    if (shiftAccounts <= 0) return { bursts, overshoot };
    return { bursts, overshoot, shift: await plannedShift(cluster, east, west, shiftAccounts) };
  } finally {
    for (const c of clients) c.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function burstTable(bursts: readonly BurstResult[]): string {
  return table(
    ["N accounts at once", "funds", "approved", "refused", "false rejections counted", "DEADLINE_EXCEEDED (5 s)", "other errors", "p50 s", "p99 s", "rights batches sent", "wrong balances"],
    bursts.map((b) => [
      String(b.accounts),
      b.funds === "local" ? "at west (local)" : "at east (cold)",
      String(b.approved),
      `${b.refused} (${fmt((b.refused / b.accounts) * 100, 2)}%)`,
      String(b.falseRejectionsCounted),
      String(b.deadlineExceeded),
      String(b.otherErrors),
      fmt(b.p50Ms / 1000, 2),
      fmt(b.p99Ms / 1000, 2),
      String(b.batchesSent),
      String(b.wrongBalances),
    ]),
  );
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const shiftAt = args.indexOf("--shift");
  const shiftAccounts = shiftAt >= 0 ? Number(args[shiftAt + 1]) : 0;
  const sizes = args.filter((_, i) => shiftAt < 0 || (i !== shiftAt && i !== shiftAt + 1)).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  runTrafficShiftBench(sizes.length > 0 ? sizes : [500, 2_000, 5_000], shiftAccounts).then(
    (r) => {
      process.stdout.write(`\n${burstTable(r.bursts)}\n\n`);
      const o = r.overshoot;
      process.stdout.write(`Honest waits (east cut off, ${o.debits} debits at west, max_wait_ms ${MAX_WAIT_MS}, ${o.refused} refused): past max_wait_ms p50 ${fmt(o.p50Ms, 1)} ms, p99 ${fmt(o.p99Ms, 1)} ms, max ${fmt(o.maxMs, 1)} ms\n`);
      if (r.shift !== undefined) {
        const sh = r.shift;
        process.stdout.write(`Planned shift of ${sh.accounts} accounts east -> west: ${fmt(sh.seconds, 1)} s, ${sh.accountsMoved} accounts moved (${sh.amountMoved} rights), ${sh.progressMessages} progress messages, ${sh.wrongRights} sampled accounts wrong at west\n`);
      }
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
    (e: unknown) => {
      process.stderr.write(`${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
