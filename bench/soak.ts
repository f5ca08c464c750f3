// `npm run soak [-- --minutes N]`: a 3-region local cluster under steady load
// for a long while (default 30 minutes), sampled at fixed intervals, to show
// whether anything drifts: RSS, heap after a full GC and open fds of every node
// process, Debit p50/p99 per interval, and each region's JetStream store on disk.
//
// Load: paced unary Debits at every region (each worker waits for its slot, so
// the rate is steady unless the machine cannot keep up), a few Grants per second
// spread over the regions, and the nodes' periodic snapshots (default every 60 s).
//
// Heap after GC: the nodes run with NODE_OPTIONS="--expose-gc --require <this
// file>", and TALLY_SOAK_GC_DIR set. Preloaded that way, this file only opens a
// Unix socket in that directory; a request there runs a full GC and answers
// process.memoryUsage(). No change to the node itself.
//
// Options: --minutes N (30), --every S (seconds per row; 60, or less for short
// runs), --rate N (Debits/s per region, 100), --concurrency N (per region, 8),
// --accounts N (1000), --snapshot-seconds N (60), --keep (leave the data
// directory), --no-docs (do not write docs/soak.md and the Soak section of
// docs/benchmarks.md).

import type { ServiceError } from "@grpc/grpc-js";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LocalCluster } from "../src/devcluster/local-cluster";
import { REGIONS } from "../src/devcluster/nats-supercluster";
import { BalancesClient, DebitOutcome, type DebitRequest, type DebitResponse } from "../src/generated/tally/v1/balances";
import { fmt, progress, summarize, table } from "./stats";
import { tlsNameOptions } from "../src/cli/node-clients";

const GC_DIR_ENV = "TALLY_SOAK_GC_DIR";

// ---------------------------------------------------------------------------
// The hook inside each node process (only when preloaded with the env set).

function installGcHook(dir: string): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  const server = createServer((_req, res) => {
    const before = process.memoryUsage();
    const started = performance.now();
    gc?.();
    const gcMs = performance.now() - started;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ before, after: process.memoryUsage(), gcMs, exposed: gc !== undefined }));
  });
  const path = join(dir, `gc-${process.pid}.sock`);
  server.listen(path);
  server.unref();
}

// ---------------------------------------------------------------------------
// Sampling.

interface MemoryAfterGc {
  readonly before: NodeJS.MemoryUsage;
  readonly after: NodeJS.MemoryUsage;
  readonly gcMs: number;
  readonly exposed: boolean;
}

function gcAndMeasure(dir: string, pid: number): Promise<MemoryAfterGc | undefined> {
  return new Promise((resolveMeasure) => {
    const req = httpRequest({ socketPath: join(dir, `gc-${pid}.sock`), path: "/", method: "GET", timeout: 30_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => {
        try {
          resolveMeasure(JSON.parse(body) as MemoryAfterGc);
        } catch {
          resolveMeasure(undefined);
        }
      });
    });
    req.on("error", () => resolveMeasure(undefined));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return Number(kb ?? 0) * 1024;
  } catch {
    return 0;
  }
}

function openFds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Disk usage (allocated blocks, as du counts them) under `dir`, split by what the path holds. */
function storeUsage(dir: string, region: string): StoreUsage {
  const usage = { total: 0, ownStream: 0, snapshots: 0, raft: 0, other: 0 };
  const own = `/TALLY_${region.toUpperCase()}/`;
  const snap = `/OBJ_TALLY_SNAP_${region.toUpperCase()}/`;
  const walk = (path: string): void => {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return; // removed while we walked (a purge or a compaction)
    }
    if (st.isDirectory()) {
      let entries: string[];
      try {
        entries = readdirSync(path);
      } catch {
        return;
      }
      for (const entry of entries) walk(join(path, entry));
      return;
    }
    const bytes = st.blocks * 512;
    usage.total += bytes;
    const p = `${path}/`;
    if (p.includes("/_js_/") || p.includes("/_meta_/")) usage.raft += bytes;
    else if (p.includes(own)) usage.ownStream += bytes;
    else if (p.includes(snap)) usage.snapshots += bytes;
    else usage.other += bytes;
  };
  walk(dir);
  return usage;
}

interface StoreUsage {
  readonly total: number;
  readonly ownStream: number;
  readonly snapshots: number;
  readonly raft: number;
  readonly other: number;
}

interface StreamState {
  readonly messages: number;
  readonly bytes: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Messages removed inside first..last (interior deletes). */
  readonly deleted: number;
}

/** State of the named streams as their server reports them on /jsz. */
async function streamStates(monitorUrl: string, names: readonly string[]): Promise<Array<StreamState | undefined>> {
  const found = new Map<string, StreamState>();
  try {
    const res = await fetch(`${monitorUrl}/jsz?accounts=true&streams=true`);
    const body = (await res.json()) as {
      account_details?: Array<{ stream_detail?: Array<{ name: string; state: { messages: number; bytes: number; first_seq: number; last_seq: number; num_deleted?: number } }> }>;
    };
    for (const account of body.account_details ?? []) {
      for (const stream of account.stream_detail ?? []) {
        const st = stream.state;
        found.set(stream.name, { messages: st.messages, bytes: st.bytes, firstSeq: st.first_seq, lastSeq: st.last_seq, deleted: st.num_deleted ?? 0 });
      }
    }
  } catch {
    // no answer this time
  }
  return names.map((name) => found.get(name));
}

async function metricValues(url: string, names: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const text = await (await fetch(url)).text();
    for (const name of names) out[name] = Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? "NaN");
  } catch {
    for (const name of names) out[name] = Number.NaN;
  }
  return out;
}

interface RegionSample {
  readonly region: string;
  readonly nodeRss: number;
  readonly heapBeforeGc: number;
  readonly heapAfterGc: number;
  readonly externalAfterGc: number;
  readonly gcMs: number;
  readonly fds: number;
  readonly natsRss: number;
  readonly store: StoreUsage;
  readonly stream: StreamState | undefined;
  /** The region's snapshot bucket (object store stream). */
  readonly bucket: StreamState | undefined;
  readonly snapshots: number;
  readonly snapshotBytes: number;
  readonly rememberedRequests: number;
}

interface Sample {
  readonly seconds: number;
  readonly regions: readonly RegionSample[];
  /** Debits completed in the interval ending here (all regions), and their latency. */
  readonly debits: number;
  readonly errors: number;
  readonly rejected: number;
  readonly grants: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly perSecond: number;
}

// ---------------------------------------------------------------------------
// Load.

function parseArgs(argv: readonly string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("--")) continue;
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith("--")) {
      out[arg.slice(2)] = next;
      i++;
    } else out[arg.slice(2)] = true;
  }
  return out;
}

function numberArg(args: Record<string, string | true>, name: string, fallback: number): number {
  const value = args[name];
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} wants a positive number, got ${String(value)}`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function call<Req, Res>(fn: (request: Req, callback: (error: ServiceError | null, response: Res) => void) => unknown, request: Req): Promise<Res> {
  return new Promise((res, rej) => fn(request, (error, response) => (error ? rej(error) : res(response))));
}

/** Per-interval recorder, swapped out at every sample. */
class Interval {
  latenciesNs: number[] = [];
  errors = 0;
  rejected = 0;
  grants = 0;
  readonly started = process.hrtime.bigint();
}

const MB = 1024 * 1024;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const minutes = numberArg(args, "minutes", 30);
  const everySeconds = numberArg(args, "every", Math.round(Math.min(60, Math.max(10, (minutes * 60) / 16))));
  const rate = numberArg(args, "rate", 100);
  const concurrency = Math.round(numberArg(args, "concurrency", 8));
  const accounts = Math.round(numberArg(args, "accounts", 1000));
  const snapshotSeconds = numberArg(args, "snapshot-seconds", 60);
  const command = `node dist/bench/soak.js ${process.argv.slice(2).join(" ")}`.trim();
  const root = resolve(__dirname, "..", "..");

  const dir = mkdtempSync(join(tmpdir(), "tally-soak-"));
  const gcDir = join(dir, "gc");
  mkdirSync(gcDir);
  progress(`soak: ${minutes} min, a row every ${everySeconds} s, ${rate} Debits/s per region (concurrency ${concurrency}), ${accounts} accounts, snapshots every ${snapshotSeconds} s; data in ${dir}`);
  const cluster = await LocalCluster.start({
    dir,
    extraArgs: ["--snapshot-interval-ms", String(Math.round(snapshotSeconds * 1000))],
    env: {
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --expose-gc --require ${__filename}`.trim(),
      [GC_DIR_ENV]: gcDir,
    },
  });
  const clients = REGIONS.map((region) => new BalancesClient(cluster.node(region).grpcAddress, cluster.clientCredentials("all"), tlsNameOptions(cluster.node(region).grpcAddress)));
  let stopped = false;
  let current = new Interval();
  const samples: Sample[] = [];
  try {
    progress(`granting ${accounts} accounts in every region`);
    for (let start = 0; start < accounts; start += 250) {
      await Promise.all(
        clients.flatMap((client, r) =>
          Array.from({ length: Math.min(250, accounts - start) }, (_, k) =>
            call(client.grant.bind(client), { accountId: `acct-${start + k}`, amount: 1n << 50n, requestId: `init-${REGIONS[r]}-${start + k}` }),
          ),
        ),
      );
    }

    const sample = async (seconds: number, interval: Interval): Promise<Sample> => {
      const elapsed = Number(process.hrtime.bigint() - interval.started) / 1e9;
      const latency = summarize(interval.latenciesNs, elapsed);
      const regions = await Promise.all(
        REGIONS.map(async (region): Promise<RegionSample> => {
          const node = cluster.node(region);
          const nats = cluster.nats.region(region).nats;
          const pid = node.pid;
          const memory = pid === undefined ? undefined : await gcAndMeasure(gcDir, pid);
          const metrics = await metricValues(node.metricsUrl, ["tally_snapshots_total", "tally_remembered_requests", "tally_snapshot_bytes"]);
          const [stream, bucket] = await streamStates(nats.monitorUrl, [`TALLY_${region.toUpperCase()}`, `OBJ_TALLY_SNAP_${region.toUpperCase()}`]);
          return {
            region,
            nodeRss: rssBytes(pid),
            heapBeforeGc: memory?.before.heapUsed ?? Number.NaN,
            heapAfterGc: memory?.exposed === true ? memory.after.heapUsed : Number.NaN,
            externalAfterGc: memory?.exposed === true ? memory.after.external : Number.NaN,
            gcMs: memory?.gcMs ?? Number.NaN,
            fds: openFds(pid),
            natsRss: rssBytes(nats.pid),
            store: storeUsage(join(nats.options.dataDir, "jetstream"), region),
            stream,
            bucket,
            snapshots: metrics.tally_snapshots_total ?? Number.NaN,
            snapshotBytes: metrics.tally_snapshot_bytes ?? Number.NaN,
            rememberedRequests: metrics.tally_remembered_requests ?? Number.NaN,
          };
        }),
      );
      return {
        seconds,
        regions,
        debits: interval.latenciesNs.length,
        errors: interval.errors,
        rejected: interval.rejected,
        grants: interval.grants,
        p50Ms: latency.p50Ms,
        p99Ms: latency.p99Ms,
        maxMs: latency.maxMs,
        perSecond: latency.perSecond,
      };
    };

    const printRow = (s: Sample): void => progress(rowText(s).join("  "));
    samples.push(await sample(0, current));
    printRow(samples[0]!);

    // Paced debit workers: region r's k-th debit is due at t0 + k / rate.
    const t0 = performance.now();
    let id = 0;
    const workers = clients.flatMap((client, r) => {
      let slot = 0;
      return Array.from({ length: concurrency }, async () => {
        while (!stopped) {
          const due = t0 + (slot++ * 1000) / rate;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          if (stopped) return;
          const n = id++;
          const started = process.hrtime.bigint();
          try {
            const response = await call<DebitRequest, DebitResponse>(client.debit.bind(client), {
              accountId: `acct-${n % accounts}`,
              amount: 1n,
              requestId: `soak-${REGIONS[r]}-${n}`,
              maxWaitMs: 0,
            });
            if (response.outcome === DebitOutcome.DEBIT_OUTCOME_INSUFFICIENT_CREDIT) current.rejected++;
            current.latenciesNs.push(Number(process.hrtime.bigint() - started));
          } catch {
            current.errors++;
          }
        }
      });
    });
    // A few grants per second, rotating over the regions.
    const granter = (async () => {
      let g = 0;
      while (!stopped) {
        await sleep(200);
        const r = g % clients.length;
        const client = clients[r]!;
        try {
          await call(client.grant.bind(client), { accountId: `acct-${(g * 7919) % accounts}`, amount: BigInt(1 + (g % 1000)), requestId: `soak-grant-${g}` });
          current.grants++;
        } catch {
          current.errors++;
        }
        g++;
      }
    })();

    const total = minutes * 60;
    for (let next = everySeconds; next <= total + 1e-9; next += everySeconds) {
      const wait = t0 + next * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
      const finished = current;
      current = new Interval();
      const s = await sample(Math.round(next), finished);
      samples.push(s);
      printRow(s);
    }
    stopped = true;
    await Promise.all([...workers, granter]);
  } finally {
    stopped = true;
    for (const client of clients) client.close();
    await cluster.stop();
    if (args.keep === true) progress(`data kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }

  const report = renderReport(samples, {
    command,
    minutes,
    everySeconds,
    rate,
    concurrency,
    accounts,
    snapshotSeconds,
  });
  process.stdout.write(`\n${report.table}\n\n${report.summary}\n\n${report.store}\n`);
  if (args["no-docs"] !== true) {
    writeDocs(root, report.markdown);
    progress("wrote docs/soak.md and the Soak section of docs/benchmarks.md");
  }
}

// ---------------------------------------------------------------------------
// Report.

const trio = (values: readonly number[], digits = 0): string => values.map((v) => (Number.isFinite(v) ? fmt(v, digits) : "?")).join(" / ");

function rowText(s: Sample): string[] {
  const r = s.regions;
  return [
    `${fmt(s.seconds / 60, 1)}`,
    s.seconds === 0 ? "-" : fmt(s.perSecond, 0),
    s.seconds === 0 ? "-" : fmt(s.p50Ms, 2),
    s.seconds === 0 ? "-" : fmt(s.p99Ms, 2),
    s.seconds === 0 ? "-" : `${s.errors}/${s.rejected}`,
    trio(r.map((x) => x.nodeRss / MB)),
    trio(r.map((x) => x.heapAfterGc / MB), 1),
    trio(r.map((x) => x.externalAfterGc / MB), 1),
    trio(r.map((x) => x.fds)),
    trio(r.map((x) => x.store.total / MB), 1),
    trio(r.map((x) => x.stream?.messages ?? Number.NaN)),
    trio(r.map((x) => x.snapshots)),
    trio(r.map((x) => x.snapshotBytes / MB), 2),
    trio(r.map((x) => x.rememberedRequests / 1000)),
    trio(r.map((x) => x.natsRss / MB)),
  ];
}

const HEADERS = [
  "min",
  "debits/s",
  "p50 ms",
  "p99 ms",
  "errors/rejected",
  "node RSS MB (e/w/c)",
  "heap after GC MB",
  "external after GC MB",
  "node fds",
  "JetStream store MB",
  "own stream msgs",
  "snapshots",
  "last snapshot MB",
  "remembered ids (k)",
  "nats-server RSS MB",
];

/** Least-squares slope of (x, y) per unit of x; NaN with fewer than 2 points. */
function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const p = points.filter(([, y]) => Number.isFinite(y));
  if (p.length < 2) return Number.NaN;
  const mx = p.reduce((s, [x]) => s + x, 0) / p.length;
  const my = p.reduce((s, [, y]) => s + y, 0) / p.length;
  const num = p.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = p.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? Number.NaN : num / den;
}

interface ReportOptions {
  readonly command: string;
  readonly minutes: number;
  readonly everySeconds: number;
  readonly rate: number;
  readonly concurrency: number;
  readonly accounts: number;
  readonly snapshotSeconds: number;
}

function renderReport(samples: readonly Sample[], o: ReportOptions): { table: string; summary: string; store: string; markdown: string } {
  const loaded = samples.filter((s) => s.seconds > 0);
  const perMinute = (pick: (r: RegionSample) => number, from: readonly Sample[]): number[] =>
    REGIONS.map((_, i) => slope(from.map((s) => [s.seconds / 60, pick(s.regions[i]!)] as const)));
  const half = loaded.filter((s) => s.seconds >= (o.minutes * 60) / 2);
  const firstHalf = loaded.filter((s) => s.seconds <= (o.minutes * 60) / 2);
  const rssRate = perMinute((r) => r.nodeRss / MB, loaded);
  const heapRate = perMinute((r) => r.heapAfterGc / MB, loaded);
  // Second half: past the request-id window (15 min by default), whether memory levels off.
  const rssRateSecond = perMinute((r) => r.nodeRss / MB, half);
  const heapRateSecond = perMinute((r) => r.heapAfterGc / MB, half);
  const externalRateSecond = perMinute((r) => r.externalAfterGc / MB, half);
  const fdRate = perMinute((r) => r.fds, loaded);
  const storeRate = perMinute((r) => r.store.total / MB, loaded);
  const storeRateFirst = perMinute((r) => r.store.total / MB, firstHalf);
  const storeRateSecond = perMinute((r) => r.store.total / MB, half);
  const first = loaded[0];
  const last = loaded[loaded.length - 1];
  const totalDebits = loaded.reduce((s, x) => s + x.debits, 0);
  const totalErrors = loaded.reduce((s, x) => s + x.errors, 0);
  const totalRejected = loaded.reduce((s, x) => s + x.rejected, 0);

  const tableText = table(HEADERS, samples.map(rowText));
  const summary =
    `Summary (least-squares growth per minute over the loaded rows, east / west / central): ` +
    `node RSS ${trio(rssRate, 2)} MB/min (second half ${trio(rssRateSecond, 2)}); heap after GC ${trio(heapRate, 2)} MB/min ` +
    `(second half ${trio(heapRateSecond, 2)}); external after GC, second half ${trio(externalRateSecond, 2)} MB/min; fds ${trio(fdRate, 2)}/min; ` +
    `JetStream store ${trio(storeRate, 2)} MB/min (first half ${trio(storeRateFirst, 2)}, second half ${trio(storeRateSecond, 2)}). ` +
    `Debit p99 first interval ${fmt(first?.p99Ms ?? Number.NaN, 2)} ms, last ${fmt(last?.p99Ms ?? Number.NaN, 2)} ms ` +
    `(p50 ${fmt(first?.p50Ms ?? Number.NaN, 2)} -> ${fmt(last?.p50Ms ?? Number.NaN, 2)} ms). ` +
    `${totalDebits.toLocaleString("en-US")} debits, ${totalErrors} errors, ${totalRejected} insufficient-credit answers.`;

  const storeRows = (s: Sample | undefined, label: string): string[][] =>
    s === undefined
      ? []
      : s.regions.map((r) => [
          `${label} ${r.region}`,
          fmt(r.store.total / MB, 2),
          fmt(r.store.ownStream / MB, 2),
          fmt(r.store.snapshots / MB, 2),
          fmt(r.store.raft / MB, 2),
          fmt(r.store.other / MB, 2),
          r.stream === undefined ? "?" : `${r.stream.firstSeq}..${r.stream.lastSeq} (${r.stream.messages} msgs, ${fmt(r.stream.bytes / MB, 2)} MB)`,
          r.bucket === undefined ? "?" : `${r.bucket.messages} msgs, ${fmt(r.bucket.bytes / MB, 2)} MB live, ${r.bucket.deleted} deleted inside`,
        ]);
  const storeText =
    "Where the store's bytes are (MB on disk, du-style allocated blocks), at the first loaded sample and at the end:\n\n" +
    table(
      ["sample", "total", "own stream", "snapshot bucket", "raft (_js_/meta)", "other", "own stream (server's count)", "snapshot bucket (server's count)"],
      [...storeRows(first, `${fmt((first?.seconds ?? 0) / 60, 1)} min`), ...storeRows(last, `${fmt((last?.seconds ?? 0) / 60, 1)} min`)],
    );

  const gcMs = loaded.flatMap((s) => s.regions.map((r) => r.gcMs)).filter(Number.isFinite);
  const markdown =
    `Command: \`npm run build && ${o.command}\` (\`npm run soak\` runs it after setup; \`--minutes\` defaults to 30) on ${new Date().toISOString().slice(0, 10)}: ` +
    `${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), Node ${process.version}, 1-minute load average ${fmt(loadavg()[0] ?? 0, 2)} at the end. ` +
    "The machine is shared with other work and noisy, so latency figures move with its load; the growth rates are the point.\n\n" +
    `Setup: the local 3-region cluster (\`LocalCluster\`: three nats-servers joined by gateways, three node processes), ${o.accounts} accounts granted in every region, ` +
    `then ${o.rate} paced unary Debits/s per region (at most ${o.concurrency} in flight per region, unique request ids), 5 Grants/s rotating over the regions, ` +
    `snapshots every ${o.snapshotSeconds} s (\`--snapshot-interval-ms\`), a row every ${o.everySeconds} s for ${o.minutes} min.\n\n` +
    "Columns: debits/s, p50 and p99 are the Debits completed in the interval ending at that row (all regions, as the client saw them); " +
    "node RSS is VmRSS from /proc; heap after GC is `process.memoryUsage().heapUsed` right after a full `gc()` inside each node " +
    `(nodes run with \`--expose-gc\` and a preloaded hook from bench/soak.ts; each GC took ${fmt(Math.min(...gcMs), 0)}-${fmt(Math.max(...gcMs), 0)} ms); ` +
    "external after GC is `process.memoryUsage().external` at the same moment (memory outside the JS heap: typed arrays, buffers); " +
    "node fds is /proc/<pid>/fd (one of them is the hook's socket); JetStream store is the allocated size of each nats-server's `jetstream` store directory; " +
    "own stream msgs is the region's TALLY_<REGION> stream as its server reports it; remembered ids are request ids the node keeps for idempotency (15 minutes by default). " +
    "Three figures are east / west / central.\n\n" +
    "```\n" +
    tableText +
    "\n```\n\n" +
    summary +
    "\n\n" +
    storeText +
    "\n";
  return { table: tableText, summary, store: storeText, markdown };
}

function writeDocs(root: string, body: string): void {
  const docs = join(root, "docs");
  mkdirSync(docs, { recursive: true });
  writeFileSync(join(docs, "soak.md"), `# Soak\n\n\`npm run soak\` (\`bench/soak.ts\`): the last recorded run.\n\n${body}`);
  const benchPath = join(docs, "benchmarks.md");
  const existing = existsSync(benchPath) ? readFileSync(benchPath, "utf8") : "# Benchmarks\n";
  const at = existing.indexOf("\n## Soak\n");
  const kept = at >= 0 ? existing.slice(0, at) : existing.replace(/\n*$/, "");
  writeFileSync(benchPath, `${kept}\n\n## Soak\n\n${body}`);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
} else if (process.env[GC_DIR_ENV] !== undefined && process.env[GC_DIR_ENV] !== "") {
  installGcHook(process.env[GC_DIR_ENV]);
}
