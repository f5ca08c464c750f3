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

/** Cumulative bucket counts (le -> count) of a Prometheus histogram, summed over several /metrics texts. */
export function histogramBuckets(texts: readonly string[], name: string): Map<number, number> {
  const pattern = new RegExp(`^${name}_bucket\\{(?:.*,)?le="([^"]+)".*\\} (\\d+)`);
  const buckets = new Map<number, number>();
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const bucket = pattern.exec(line);
      if (bucket === null) continue;
      const le = bucket[1] === "+Inf" ? Number.POSITIVE_INFINITY : Number(bucket[1]);
      buckets.set(le, (buckets.get(le) ?? 0) + Number(bucket[2]));
    }
  }
  return buckets;
}

/**
 * Count observed between two scrapes and the upper bound (seconds) of the
 * bucket holding quantile `q` of them; 0 when nothing was observed.
 */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): { count: number; upperBoundSeconds: number } {
  const ordered = [...after.entries()].map(([le, c]) => [le, c - (before.get(le) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const count = ordered[ordered.length - 1]?.[1] ?? 0;
  const hit = ordered.find(([, cumulative]) => cumulative >= q * count);
  return { count, upperBoundSeconds: count === 0 ? 0 : (hit?.[0] ?? Number.POSITIVE_INFINITY) };
}
