// Runs the Quint simulator (TypeScript backend: it works offline; the default
// Rust backend downloads an evaluator on first use) and decodes ITF traces.

import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const ROOT = path.resolve(__dirname, "../../../..");
const QUINT = path.join(ROOT, "node_modules", "@informalsystems", "quint", "dist", "src", "cli.js");

export interface QuintRun {
  readonly ok: boolean;
  readonly seed: string | undefined;
  readonly output: string;
  readonly command: string;
}

/** `quint <args>` with the TypeScript backend; returns the seed it printed. */
export function quint(args: readonly string[]): QuintRun {
  const full = [...args, "--backend=typescript"];
  const result = spawnSync(process.execPath, [QUINT, ...full], { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20 });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`;
  const seed = /--seed=(0x[0-9a-f]+)/.exec(output)?.[1];
  return { ok: result.status === 0, seed, output, command: `npx quint ${full.join(" ")}` };
}

/** A decoded ITF value: bigint, string, boolean, Map, array (sets, tuples, lists) or record. */
export type ItfValue = bigint | string | boolean | ItfValue[] | Map<ItfValue, ItfValue> | { [key: string]: ItfValue };

export function decodeItf(raw: unknown): ItfValue {
  if (typeof raw === "string" || typeof raw === "boolean") return raw;
  if (typeof raw === "number") return BigInt(raw);
  if (Array.isArray(raw)) return raw.map(decodeItf);
  if (raw === null || typeof raw !== "object") throw new Error(`unexpected ITF value ${String(raw)}`);
  const o = raw as Record<string, unknown>;
  if (typeof o["#bigint"] === "string") return BigInt(o["#bigint"]);
  if (Array.isArray(o["#map"])) {
    return new Map((o["#map"] as unknown[][]).map(([k, v]) => [decodeItf(k), decodeItf(v)] as [ItfValue, ItfValue]));
  }
  if (Array.isArray(o["#set"])) return (o["#set"] as unknown[]).map(decodeItf);
  if (Array.isArray(o["#tup"])) return (o["#tup"] as unknown[]).map(decodeItf);
  const out: { [key: string]: ItfValue } = {};
  for (const [k, v] of Object.entries(o)) if (!k.startsWith("#")) out[k] = decodeItf(v);
  return out;
}

/** Map lookup by bigint key (ITF ints decode to bigint). */
export function at(map: ItfValue | undefined, key: bigint | number | string): ItfValue {
  if (!(map instanceof Map)) throw new Error("not a map");
  const k = typeof key === "number" ? BigInt(key) : key;
  for (const [mk, v] of map) if (mk === k) return v;
  throw new Error(`no key ${String(key)}`);
}

export function field(record: ItfValue | undefined, name: string): ItfValue {
  if (record === undefined || typeof record !== "object" || record instanceof Map || Array.isArray(record)) {
    throw new Error(`not a record (field ${name})`);
  }
  const v = record[name];
  if (v === undefined) throw new Error(`no field ${name}`);
  return v;
}

export function int(v: ItfValue): bigint {
  if (typeof v !== "bigint") throw new Error("not an int");
  return v;
}

export function str(v: ItfValue): string {
  if (typeof v !== "string") throw new Error("not a string");
  return v;
}

export function bool(v: ItfValue): boolean {
  if (typeof v !== "boolean") throw new Error("not a bool");
  return v;
}

/** One ITF trace as the simulator writes it. */
export interface ItfTrace {
  readonly states: Array<Record<string, unknown>>;
}

/**
 * Simulates `traces` traces of `spec` with a fresh seed each run
 * (TALLY_SPEC_SEED replays one) and hands each to `check`. When the simulator
 * fails, writes no trace, or `check` throws, the error says how to replay it.
 */
export function forEachSimulatedTrace(spec: string, traces: number, steps: number, check: (trace: ItfTrace) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tally-itf-"));
  const seed = process.env["TALLY_SPEC_SEED"] ?? `0x${Math.floor(Math.random() * 2 ** 48).toString(16)}`;
  try {
    const run = quint([
      "run",
      spec,
      `--max-samples=${traces}`,
      `--n-traces=${traces}`,
      `--max-steps=${steps}`,
      `--out-itf=${path.join(dir, "trace_{seq}.itf.json")}`,
      `--seed=${seed}`,
      "--verbosity=0",
    ]);
    if (!run.ok) throw new Error(`simulating ${spec} failed (${run.command}):\n${run.output}`);
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(".itf.json"));
    if (files.length === 0) throw new Error(`simulating ${spec} wrote no trace (${run.command})`);
    for (const file of files) {
      const trace = JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as ItfTrace;
      try {
        check(trace);
      } catch (error) {
        console.log(`conformance to ${spec} failed on ${file}: replay with TALLY_SPEC_SEED=${seed} (${run.command})`);
        throw error;
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
