// `tally settle | settlements | overspends | history`: run a settlement and
// read the settled ledger through a node's Admin service.

import { parseArgs } from "node:util";
import type {
  GetAccountHistoryResponse,
  ListOverspendsResponse,
  ListSettlementsResponse,
  Settlement,
  SettleResponse,
} from "../generated/tally/v1/admin";
import { PolicyMode } from "../generated/tally/v1/common";
import { formatCliError, isUnreachable } from "./cli-errors";
import { adminClient, call, CLIENT_TLS_FLAGS, CLIENT_TLS_HELP, clientCredentials, nodeAddresses } from "./node-clients";

export const SETTLEMENT_HELP = `tally settle        run a settlement now (one settler at a time across regions)
tally settlements   list settlements, newest first
tally overspends    list recorded overspends  [--account ID] [--since ISO] [--until ISO]
tally history ID    an account's ledger entries, newest first

  --node HOST:PORT    node to ask (TALLY_NODES, first entry)   [127.0.0.1:50051]
  --limit N           page size (1-1000)                        [20]
  --page-token T      continue a listing
  --json              raw JSON
${CLIENT_TLS_HELP}`;

const json = (value: unknown): string => JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2);
const iso = (ms: bigint): string => (ms === 0n ? "-" : new Date(Number(ms)).toISOString());

function settlementLine(s: Settlement): string {
  const cut = Object.entries(s.cut)
    .map(([region, seq]) => `${region}=${seq}`)
    .join(",");
  return `#${s.id}  ${iso(s.finishedAtMs)}  accounts changed ${s.accountsChanged}  overspend ${s.overspendTotal}  cut ${cut}`;
}

export async function settlementCommand(verb: "settle" | "settlements" | "overspends" | "history", argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      node: { type: "string" },
      limit: { type: "string" },
      "page-token": { type: "string" },
      account: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      ...CLIENT_TLS_FLAGS,
    },
  });
  if (values.help === true) {
    process.stdout.write(SETTLEMENT_HELP);
    return;
  }
  const address = values.node ?? nodeAddresses(undefined)[0] ?? "127.0.0.1:50051";
  const client = adminClient(address, clientCredentials(values));
  const pageSize = Number(values.limit ?? "20");
  const pageToken = values["page-token"] ?? "";
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  try {
    switch (verb) {
      case "settle": {
        const r = await call<SettleResponse>((md, o, cb) => client.settle({}, md, o, cb), 600_000);
        if (values.json === true) return out(json(r));
        if (r.skipped) return out("skipped: another settler holds the lock");
        if (r.settlement !== undefined) out(`${r.unchanged ? "unchanged since" : "settled"} ${settlementLine(r.settlement)}`);
        return;
      }
      case "settlements": {
        const r = await call<ListSettlementsResponse>((md, o, cb) => client.listSettlements({ pageSize, pageToken }, md, o, cb));
        if (values.json === true) return out(json(r));
        r.settlements.forEach((s) => out(settlementLine(s)));
        if (r.nextPageToken !== "") out(`more: --page-token ${r.nextPageToken}`);
        return;
      }
      case "overspends": {
        const toMs = (value: string | undefined, flag: string): bigint => {
          if (value === undefined) return 0n;
          const ms = Date.parse(value);
          if (Number.isNaN(ms)) throw new Error(`${flag}: not a date or time: ${value} (e.g. 2024-05-01T00:00:00Z)`);
          return BigInt(ms);
        };
        const r = await call<ListOverspendsResponse>((md, o, cb) =>
          client.listOverspends(
            { accountId: values.account ?? "", sinceMs: toMs(values.since, "--since"), untilMs: toMs(values.until, "--until"), pageSize, pageToken },
            md,
            o,
            cb,
          ),
        );
        if (values.json === true) return out(json(r));
        r.overspends.forEach((o) =>
          out(`${iso(o.recordedAtMs)}  settlement #${o.settlementId}  ${o.accountId}  amount ${o.amount}  regions ${o.regions.join(",")}  mode ${o.mode === PolicyMode.POLICY_MODE_OVERDRAFT ? "OVERDRAFT" : "STRICT"}`),
        );
        if (r.overspends.length === 0) out("no overspends recorded");
        if (r.nextPageToken !== "") out(`more: --page-token ${r.nextPageToken}`);
        return;
      }
      case "history": {
        const accountId = positionals[0];
        if (accountId === undefined) throw new Error("usage: tally history ACCOUNT_ID");
        const r = await call<GetAccountHistoryResponse>((md, o, cb) => client.getAccountHistory({ accountId, pageSize, pageToken }, md, o, cb));
        if (values.json === true) return out(json(r));
        r.entries.forEach((e) =>
          out(`${iso(e.recordedAtMs)}  settlement #${e.settlementId}  ${e.region}  granted +${e.grantedDelta}  debited +${e.debitedDelta}  balance ${e.balanceAfter}`),
        );
        if (r.nextPageToken !== "") out(`more: --page-token ${r.nextPageToken}`);
        return;
      }
    }
  } catch (error) {
    if (isUnreachable(error)) throw new Error(`cannot reach node ${address}: ${formatCliError(error)}`);
    throw error;
  } finally {
    client.close();
  }
}
