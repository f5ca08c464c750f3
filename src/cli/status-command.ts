// `tally status`: what an on-call engineer looks at first — every node's view
// of every region (applied sequence, pending, lag, convergence) and the last
// settlement, read from the nodes' Admin.ClusterStatus.

import { parseArgs } from "node:util";
import type { ClusterStatusResponse } from "../generated/tally/v1/admin";
import { formatCliError, isUnreachable } from "./cli-errors";
import { convergedEverywhere } from "./convergence";
import { adminClient, call, CLIENT_TLS_FLAGS, CLIENT_TLS_HELP, clientCredentials, nodeAddresses } from "./node-clients";

export const STATUS_HELP = `tally status - convergence and settlement at a glance

  --nodes A,B,C   node gRPC addresses (TALLY_NODES)  [127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053]
  --json          print the raw status of each node as JSON
${CLIENT_TLS_HELP}`;

function pad(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i] ?? 0))
    .join("  ")
    .trimEnd();
}

/** One node's answer, or why there is none (`unreachable`: it could not be reached at all). */
export interface NodeStatus {
  readonly address: string;
  readonly status?: ClusterStatusResponse;
  readonly error?: string;
  readonly unreachable?: boolean;
}

export function renderStatus(statuses: readonly NodeStatus[]): string {
  const headers = ["node", "region view", "applied", "pending", "lag s", "converged", "digest", "heard ms ago"];
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const { address, status, unreachable } of statuses) {
    if (status === undefined) {
      rows.push([address, unreachable === true ? "UNREACHABLE" : "ERROR", "", "", "", "", "", ""]);
      continue;
    }
    for (const peer of status.peers) {
      rows.push([
        `${status.region} (${address})`,
        peer.region,
        String(peer.appliedSequence),
        String(peer.pending),
        peer.lagSeconds.toFixed(3),
        peer.converged ? "yes" : "NO",
        peer.digest,
        peer.region === status.region ? "-" : String(peer.lastHeardMs),
      ]);
    }
    const last = status.lastSettlement;
    const role = status.writerRole === "" ? "" : `; ${status.writerRole}${status.leaseHolder === "" ? "" : ` (lease: ${status.leaseHolder})`}`;
    notes.push(
      `${status.region}: ${status.accounts} accounts; last settlement ${
        last === undefined ? "none" : `#${last.id} at ${new Date(Number(last.finishedAtMs)).toISOString()} (${last.accountsChanged} accounts changed)`
      }${role}`,
    );
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const noteLines = notes.length === 0 ? [] : ["", ...notes];
  return [pad(headers, widths), ...rows.map((r) => pad(r, widths)), ...noteLines, "", ...verdict(statuses)].join("\n");
}

function verdict(statuses: readonly NodeStatus[]): string[] {
  const answered = statuses.flatMap((s) => (s.status === undefined ? [] : [s.status]));
  const failed = statuses.filter((s) => s.status === undefined);
  if (failed.length > 0) {
    // Without every node's view, "not converged" would be a guess: name who is missing instead.
    return [
      `UNKNOWN: ${failed.length} of ${statuses.length} nodes did not answer, so convergence cannot be checked:`,
      ...failed.map((s) => `  ${s.address} ${s.unreachable === true ? "cannot be reached" : "failed"}: ${s.error ?? "no answer"}`),
    ];
  }
  // A standby refuses writes by design: only a region's writer (or single node) must accept them.
  const refusing = answered.filter((s) => s.writesRefused !== "" && s.writerRole !== "standby");
  if (refusing.length > 0) {
    return [
      `NOT CONVERGED: ${refusing.length} node(s) refuse writes:`,
      ...refusing.map((s) => `  ${s.region}: ${s.writesRefused}`),
    ];
  }
  return [
    convergedEverywhere(answered)
      ? "CONVERGED: every node holds every region's row at the same sequence and digest."
      : "NOT CONVERGED (yet): compare applied/digest columns per region view.",
  ];
}

export async function statusCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { nodes: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" }, ...CLIENT_TLS_FLAGS },
  });
  if (values.help === true) {
    process.stdout.write(STATUS_HELP);
    return;
  }
  const channelCredentials = clientCredentials(values);
  const statuses = await Promise.all(
    nodeAddresses(values.nodes).map(async (address): Promise<NodeStatus> => {
      const client = adminClient(address, channelCredentials);
      try {
        return { address, status: await call<ClusterStatusResponse>((md, opts, cb) => client.clusterStatus({}, md, opts, cb)) };
      } catch (error) {
        return { address, error: formatCliError(error), unreachable: isUnreachable(error) };
      } finally {
        client.close();
      }
    }),
  );
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(statuses, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}\n`);
  } else {
    process.stdout.write(`${renderStatus(statuses)}\n`);
  }
  if (statuses.some((s) => s.status === undefined)) process.exitCode = 1;
}
