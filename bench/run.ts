// `npm run bench [-- --quick]`: runs every benchmark side by side in one run,
// prints readable tables with progress, and writes bench/results.json and
// docs/benchmarks.md.

import { writeFileSync, mkdirSync } from "node:fs";
import { cpus } from "node:os";
import { resolve } from "node:path";
import { runUnaryBench } from "./unary-bench";
import { fmt, progress, table } from "./stats";

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const root = resolve(__dirname, "..", "..");
  const sections: string[] = [];
  const results: Record<string, unknown> = {};
  const command = `npm run bench${quick ? " -- --quick" : ""}`;

  progress("unary: Debit vs no-op on one node (durable)");
  const unary = await runUnaryBench(
    quick
      ? { calls: 3000, concurrency: 32, rounds: 1, accounts: 1000, batchSize: 500, batches: 20 }
      : { calls: 20000, concurrency: 64, rounds: 3, accounts: 10000, batchSize: 1000, batches: 100 },
  );
  results.unary = unary;
  const row = (name: string, s: typeof unary.noop, base?: typeof unary.noop): string[] => [
    name,
    fmt(s.perSecond, 0),
    fmt(s.p50Ms, 3),
    fmt(s.p99Ms, 3),
    base === undefined ? "1.00" : fmt(s.perSecond / base.perSecond, 2),
    base === undefined ? "1.00" : fmt(s.p99Ms / base.p99Ms, 2),
  ];
  const unaryTable = table(
    ["single node, one client", "ops/s", "p50 ms", "p99 ms", "throughput vs no-op", "p99 vs no-op"],
    [
      row("no-op unary RPC", unary.noop),
      row("Debit, 10k accounts (durable)", unary.debit, unary.noop),
      row("Debit, one hot account (durable)", unary.debitHot, unary.noop),
      row(`no-op batch RPC (${unary.batchSize}/call)`, unary.noopBatch),
      row(`DebitBatch (${unary.batchSize}/call, durable)`, unary.debitBatch, unary.noopBatch),
    ],
  );
  process.stdout.write(`\n${unaryTable}\n\n`);
  sections.push(`## Single node: Debit vs a no-op RPC\n\nSame node process, same client channel, interleaved rounds; ops/s of batches count debits.\n\n${unaryTable}\n`);

  const header = `# Benchmarks\n\nProduced by \`${command}\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model ?? "unknown CPU"}), Node ${process.version}. Every figure below comes from that one run; the servers are real (nats-server ${"2.9"}, JetStream file storage) on loopback.\n\n`;
  mkdirSync(resolve(root, "docs"), { recursive: true });
  writeFileSync(resolve(root, quick ? "bench/results-quick.json" : "bench/results.json"), JSON.stringify(results, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2));
  if (!quick) writeFileSync(resolve(root, "docs/benchmarks.md"), header + sections.join("\n"));
  progress(quick ? "quick mode: docs/benchmarks.md left unchanged" : "wrote docs/benchmarks.md and bench/results.json");
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
