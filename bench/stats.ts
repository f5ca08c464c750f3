// Latency statistics and a plain-text table for benchmark output.

export interface LatencySummary {
  readonly count: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function summarize(latenciesNs: readonly number[], seconds: number, operations = latenciesNs.length): LatencySummary {
  const sorted = [...latenciesNs].sort((a, b) => a - b);
  const at = (q: number): number => (sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) / 1e6);
  return {
    count: operations,
    seconds,
    perSecond: operations / seconds,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: sorted.length === 0 ? 0 : (sorted[sorted.length - 1] ?? 0) / 1e6,
  };
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  return [line(headers), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...rows.map(line)].join("\n");
}

export function fmt(value: number, digits = 2): string {
  if (value >= 1000) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(digits);
}

export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}
