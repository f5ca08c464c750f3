// Observability with real tools: the alert rules under promtool, a live node's
// /metrics under promtool, a real Prometheus scraping a real node through the
// deployed config, and the dashboard and docs held to the metric catalogue.

import { expect } from "chai";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { jsonLogger } from "../../src/node/logger";
import { clients, unary, type Clients, testGrpcSecurity } from "../support/grpc-clients";
import { useStandaloneNats, natsAccess } from "../support/nats";
import { DEPLOY_PROMETHEUS_DIR, PrometheusProcess, promtool, type VectorSample } from "../support/prometheus";

const ROOT = resolve(__dirname, "..", "..", "..");
const read = (path: string): string => readFileSync(join(ROOT, path), "utf8");

/** Metric names defined in src/metrics/tally-metrics.ts, read from its text. */
function catalogue(): string[] {
  const names = [...read("src/metrics/tally-metrics.ts").matchAll(/name:\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"/g)].map((m) => m[1]!);
  expect(names.length, "metric definitions found in tally-metrics.ts").to.be.greaterThan(20);
  return names;
}

/** Polls `probe` until it returns a value, or fails after `timeoutMs`. */
async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === "" ? "" : ` (last error: ${last})`}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The metric family a line of the text exposition format belongs to. */
function familyOf(line: string): string {
  if (line.startsWith("#")) return line.split(" ")[2] ?? "";
  return /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
}

interface AlertRule {
  readonly alert?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}
interface RulesFile {
  readonly groups: ReadonlyArray<{ readonly name: string; readonly rules: readonly AlertRule[] }>;
}
interface RulesTestFile {
  readonly tests: ReadonlyArray<{
    readonly alert_rule_test?: ReadonlyArray<{ readonly alertname: string; readonly exp_alerts?: readonly unknown[] }>;
  }>;
}

interface Dashboard {
  readonly panels: readonly Panel[];
  readonly templating?: { readonly list: ReadonlyArray<{ readonly query?: unknown; readonly definition?: string }> };
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly targets?: ReadonlyArray<{ readonly expr?: string }>;
  readonly panels?: readonly Panel[];
}

describe("observability - rules, dashboard and catalogue", function () {
  this.timeout(30_000);

  it("observability - alert rules pass promtool check and unit tests", async () => {
    const check = await promtool(["check", "rules", join(DEPLOY_PROMETHEUS_DIR, "alerts.yml")]);
    expect(check.code, check.stdout + check.stderr).to.equal(0);
    expect(check.stdout).to.match(/SUCCESS: \d+ rules found/);
    const tests = await promtool(["test", "rules", join(DEPLOY_PROMETHEUS_DIR, "alerts.test.yml")]);
    expect(tests.code, tests.stdout + tests.stderr).to.equal(0);
    expect(tests.stdout).to.include("SUCCESS");

    // Every alert is documented and carries what on-call needs, and the unit
    // tests show every one of them firing.
    const rules = parse(read("deploy/prometheus/alerts.yml")) as RulesFile;
    const alerts = rules.groups.flatMap((g) => g.rules).filter((r): r is AlertRule & { alert: string } => r.alert !== undefined);
    expect(alerts.map((a) => a.alert)).to.include.members([
      "TallyNodeDown",
      "TallyNatsDisconnected",
      "TallyReplicationLagHigh",
      "TallyReplicationPendingGrowing",
      "TallyReplicaNotConverged",
      "TallyReplicaDivergence",
      "TallyInvariantViolation",
      "TallySettlementStale",
      "TallyFalseRejectionsHigh",
    ]);
    const testFile = parse(read("deploy/prometheus/alerts.test.yml")) as RulesTestFile;
    const firing = new Set(
      testFile.tests.flatMap((t) => t.alert_rule_test ?? []).filter((c) => (c.exp_alerts ?? []).length > 0).map((c) => c.alertname),
    );
    const quiet = new Set(
      testFile.tests.flatMap((t) => t.alert_rule_test ?? []).filter((c) => (c.exp_alerts ?? []).length === 0).map((c) => c.alertname),
    );
    const docs = read("docs/metrics.md");
    for (const alert of alerts) {
      expect(["critical", "warning"], `${alert.alert} severity`).to.include(alert.labels?.severity);
      expect(alert.annotations, alert.alert).to.include.keys("summary", "description", "runbook");
      expect(alert.annotations?.runbook).to.equal(`docs/metrics.md#${alert.alert.toLowerCase()}`);
      expect(docs, `runbook section for ${alert.alert}`).to.include(`### ${alert.alert}\n`);
      expect(firing.has(alert.alert), `${alert.alert} has a firing unit test`).to.equal(true);
    }
    expect(quiet.size, "alerts with a not-firing unit test").to.be.greaterThan(0);
  });

  it("observability - the deployed prometheus.yml passes promtool check config", async () => {
    const check = await promtool(["check", "config", join(DEPLOY_PROMETHEUS_DIR, "prometheus.yml")]);
    expect(check.code, check.stdout + check.stderr).to.equal(0);
    const targets = JSON.parse(read("deploy/prometheus/targets/tally.json")) as Array<{ targets: string[] }>;
    expect(targets.flatMap((t) => t.targets)).to.have.members(["tally-east:9464", "tally-west:9464", "tally-central:9464"]);
  });

  it("observability - grafana dashboard references only exported metrics", () => {
    const dashboard = JSON.parse(read("deploy/grafana/dashboards/tally.json")) as Dashboard;
    const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
    expect(new Set(panels.map((p) => p.id)).size, "unique panel ids").to.equal(panels.length);
    const exprs = [
      ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? "")),
      ...(dashboard.templating?.list ?? []).map((v) => v.definition ?? ""),
    ];
    for (const p of panels.filter((p) => p.type !== "row")) {
      expect((p.targets ?? []).length, `panel "${p.title}" has queries`).to.be.greaterThan(0);
    }
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\btally_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ""))));
    const exported = new Set(catalogue());
    expect([...used].filter((name) => !exported.has(name)), "dashboard metrics missing from tally-metrics.ts").to.deep.equal([]);
    // The panels the issue asks for are there.
    for (const name of [
      "tally_replica_converged",
      "tally_replication_pending_updates",
      "tally_replication_lag_seconds",
      "tally_debits_total",
      "tally_debit_duration_seconds",
      "tally_rights_transfers_total",
      "tally_settlement_last_success_timestamp_seconds",
      "tally_overspend_amount_total",
      "tally_invariant_violations_total",
      "tally_nats_connected",
    ]) {
      expect(used.has(name), `dashboard shows ${name}`).to.equal(true);
    }
  });

  it("observability - docs/metrics.md documents every exported metric", () => {
    const docs = read("docs/metrics.md");
    expect(catalogue().filter((name) => !docs.includes(`| \`${name}\` |`))).to.deep.equal([]);
  });
});

describe("observability - a live node", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();
  let running: RunningNode;
  let c: Clients;
  let prometheus: PrometheusProcess | undefined;

  before(async () => {
    running = await runNode({
      region: "east",
      regions: ["east", "west", "central"],
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      metricsPort: 0,
      logger: jsonLogger("east", "error"),
    });
    c = clients(`127.0.0.1:${running.grpcPort}`);
    let n = 0;
    const rid = (): string => `obs-${Date.now()}-${n++}`;
    await unary(c.balances, c.balances.grant, { accountId: "acct-obs", amount: 100n, requestId: rid() });
    await unary(c.balances, c.balances.debit, { accountId: "acct-obs", amount: 30n, requestId: rid(), maxWaitMs: 0 });
    await unary(c.balances, c.balances.debit, { accountId: "acct-obs", amount: 500n, requestId: rid(), maxWaitMs: 0 });
    await unary(c.balances, c.balances.debitBatch, {
      debits: [1n, 2n, 3n].map((amount) => ({ accountId: "acct-obs", amount, requestId: rid(), maxWaitMs: 0 })),
    });
    // Holds: one captured, one left pending; a refund of the first debit.
    const held = await unary(c.balances, c.balances.hold, { accountId: "acct-obs", amount: 5n, requestId: rid(), timeoutMs: 600_000n, maxWaitMs: 0 });
    await unary(c.balances, c.balances.captureHold, { holdId: held.holdId, amount: 4n, requestId: rid(), accountId: "" });
    await unary(c.balances, c.balances.hold, { accountId: "acct-obs", amount: 6n, requestId: rid(), timeoutMs: 600_000n, maxWaitMs: 0 });
    await unary(c.balances, c.balances.debit, { accountId: "acct-obs", amount: 9n, requestId: "obs-refundable", maxWaitMs: 0 });
    await unary(c.balances, c.balances.refund, { debitRequestId: "obs-refundable", amount: 2n, requestId: rid(), accountId: "" });
  });

  after(async () => {
    await prometheus?.stop();
    c?.close();
    await running?.stop();
  });

  const scrape = async (): Promise<string> => {
    const response = await fetch(`http://127.0.0.1:${running.metricsPort}/metrics`);
    expect(response.status).to.equal(200);
    return response.text();
  };

  it("observability - a live node's /metrics passes promtool check metrics", async () => {
    const body = await scrape();

    // Tally's own families lint clean.
    const own = body
      .split("\n")
      .filter((line) => familyOf(line).startsWith("tally_"))
      .join("\n");
    const ownCheck = await promtool(["check", "metrics"], `${own}\n`);
    expect(ownCheck.code, ownCheck.stderr).to.equal(0);
    expect(ownCheck.stderr.trim()).to.equal("");

    // The whole exposition parses (exit 1 would be a parse error); the only lint
    // findings allowed are prom-client's default gauges named *_total.
    const PROM_CLIENT_DEFAULTS_WITH_LINT = new Set(["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]);
    const fullCheck = await promtool(["check", "metrics"], body);
    const findings = fullCheck.stderr.split("\n").filter((l) => l.trim() !== "");
    expect(fullCheck.code, fullCheck.stderr).to.be.oneOf([0, 3]);
    expect(findings.filter((f) => !PROM_CLIENT_DEFAULTS_WITH_LINT.has(f.split(" ")[0] ?? "")), "unexpected lint findings").to.deep.equal([]);

    // Every catalogued metric is exposed, with the series the calls above made.
    const declared = new Set(body.split("\n").filter((l) => l.startsWith("# TYPE ")).map(familyOf));
    expect(catalogue().filter((name) => !declared.has(name)), "catalogued metrics missing from /metrics").to.deep.equal([]);
    expect(body).to.match(/^process_cpu_seconds_total\{region="east"\} /m);
    expect(body).to.match(/^tally_debits_total\{result="approved",region="east"\} [1-9]/m);
    expect(body).to.match(/^tally_debits_total\{result="insufficient",region="east"\} [1-9]/m);
    expect(body).to.match(/^tally_grants_total\{result="approved",region="east"\} 1$/m);
    expect(body).to.match(/^tally_debit_batch_size_count\{region="east"\} 1$/m);
    expect(body).to.match(/^tally_replica_converged\{peer="west",region="east"\} 1$/m);
    expect(body).to.match(/^tally_nats_connected\{region="east"\} 1$/m);
    expect(body).to.match(/^tally_holds_total\{result="approved",region="east"\} 2$/m);
    expect(body).to.match(/^tally_hold_resolutions_total\{kind="captured",region="east"\} 1$/m);
    expect(body).to.match(/^tally_holds_outstanding\{region="east"\} 1$/m);
    expect(body).to.match(/^tally_refunds_total\{region="east"\} 1$/m);
    expect(body).to.match(/^tally_refunded_amount_total\{region="east"\} 2$/m);

    // No per-account labels, and no account id leaked into any series.
    const labelNames = new Set(
      body
        .split("\n")
        .filter((l) => l !== "" && !l.startsWith("#"))
        .flatMap((l) => [...(/\{(.*)\}/.exec(l)?.[1] ?? "").matchAll(/(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((m) => m[1]!)),
    );
    expect([...labelNames].filter((name) => /account|request/i.test(name)), "per-account labels").to.deep.equal([]);
    expect(body).not.to.include("acct-obs");
  });

  it("observability - a real Prometheus scrapes a node", async () => {
    prometheus = await PrometheusProcess.start({
      targets: [{ targets: [`127.0.0.1:${running.metricsPort}`], labels: { region: "east" } }],
      scrapeInterval: "1s",
    });
    const p = prometheus;

    const debits = await eventually("tally_debits_total in Prometheus", 20_000, async () => {
      const series = await p.query('tally_debits_total{job="tally"}');
      return series.some((s) => s.metric.result === "approved") ? series : undefined;
    });
    const approved = debits.find((s: VectorSample) => s.metric.result === "approved");
    expect(approved?.metric).to.include({ job: "tally", region: "east", instance: `127.0.0.1:${running.metricsPort}` });
    expect(approved?.metric).not.to.have.property("exported_region");
    expect(Number(approved?.value[1])).to.be.greaterThan(0);

    const up = await p.query('up{job="tally"}');
    expect(up.map((s) => [s.metric.region, s.value[1]])).to.deep.equal([["east", "1"]]);

    // The deployed rules are loaded and every one evaluates without error.
    const groups = await eventually("every alert rule evaluated", 20_000, async () => {
      const g = await p.ruleGroups();
      return g.length > 0 && g.every((group) => group.rules.every((r) => r.health === "ok")) ? g : undefined;
    });
    expect(groups.map((g) => g.name)).to.include.members(["tally-availability", "tally-replication", "tally-correctness", "tally-settlement"]);
    expect(groups.flatMap((g) => g.rules.map((r) => r.name))).to.include.members(["TallyNodeDown", "TallyReplicaNotConverged", "TallyInvariantViolation"]);

    // A healthy node sets nothing off.
    expect(await p.query('ALERTS{alertstate="firing"}')).to.deep.equal([]);
    expect((await p.query("min(tally_replica_converged)"))[0]?.value[1]).to.equal("1");
  });
});
