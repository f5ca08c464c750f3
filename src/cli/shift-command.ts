// `tally shift --from east --to west [--fraction F]`: moves rights in bulk
// ahead of a planned traffic move (Admin.ShiftRights on the `from` node), with
// a progress bar on a terminal and plain lines otherwise. The default shift id
// is derived from the parameters, so running the same command again resumes
// an interrupted shift (only what is left moves). `--return` swaps the regions.

import { parseArgs } from "node:util";
import type { ClusterStatusResponse, ShiftRightsResponse } from "../generated/tally/v1/admin";
import { adminClient, call, CLIENT_TLS_FLAGS, CLIENT_TLS_HELP, clientCredentials, nodeAddresses } from "./node-clients";

export const SHIFT_HELP = `tally shift - move rights in bulk before a planned traffic move

  --from REGION   region whose rights move (its node runs the shift)
  --to REGION     region that receives them
  --fraction F    share of the two regions' rights the receiver should hold per account, (0, 1]  [1]
  --return        the opposite shift: from --to back to --from
  --id ID         shift id (re-run with the same id to resume)  [shift-<from>-<to>-<fraction>]
  --nodes A,B,C   node gRPC addresses (TALLY_NODES)  [127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053]
${CLIENT_TLS_HELP}`;

function bar(p: ShiftRightsResponse, width = 30): string {
  const total = Number(p.accountsTotal);
  const ratio = total === 0 ? 1 : Number(p.accountsDone) / total;
  const filled = Math.round(ratio * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}%`;
}

function line(p: ShiftRightsResponse): string {
  return `${p.accountsDone}/${p.accountsTotal} accounts examined, ${p.accountsMoved} moved, ${p.amountMoved} rights moved`;
}

export async function shiftCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      from: { type: "string" },
      to: { type: "string" },
      fraction: { type: "string" },
      return: { type: "boolean" },
      id: { type: "string" },
      nodes: { type: "string" },
      help: { type: "boolean" },
      ...CLIENT_TLS_FLAGS,
    },
  });
  if (values.help === true) {
    process.stdout.write(SHIFT_HELP);
    return;
  }
  if (values.from === undefined || values.to === undefined) throw new Error("--from and --to are required");
  const fraction = values.fraction === undefined ? 1 : Number(values.fraction);
  if (!Number.isFinite(fraction) || fraction <= 0 || fraction > 1) throw new Error(`--fraction ${values.fraction ?? ""} must be in (0, 1]`);
  const [from, to] = values.return === true ? [values.to, values.from] : [values.from, values.to];
  const shiftId = values.id ?? `shift-${from}-${to}-${fraction}`;
  const channelCredentials = clientCredentials(values);

  // The node of `from` runs the shift: find it among the addresses by its region.
  let address: string | undefined;
  for (const candidate of nodeAddresses(values.nodes)) {
    const client = adminClient(candidate, channelCredentials);
    try {
      const status = await call<ClusterStatusResponse>((md, opts, cb) => client.clusterStatus({}, md, opts, cb));
      if (status.region === from) address = candidate;
    } catch {
      // Unreachable nodes are skipped; a missing `from` is reported below.
    } finally {
      client.close();
    }
    if (address !== undefined) break;
  }
  if (address === undefined) throw new Error(`no reachable node serves region "${from}" (--nodes / TALLY_NODES)`);

  const tty = process.stdout.isTTY;
  process.stdout.write(`shift ${shiftId}: rights of ${from} to ${to}, fraction ${fraction}, via ${address}\n`);
  const started = performance.now();
  const client = adminClient(address, channelCredentials);
  try {
    const last = await new Promise<ShiftRightsResponse | undefined>((resolve, reject) => {
      let latest: ShiftRightsResponse | undefined;
      const stream = client.shiftRights({ shiftId, toRegion: to, fraction });
      stream.on("data", (p: ShiftRightsResponse) => {
        latest = p;
        if (tty) process.stdout.write(`\r${bar(p)} ${line(p)}`);
        else process.stdout.write(`${line(p)}\n`);
      });
      stream.on("error", reject);
      stream.on("end", () => resolve(latest));
    });
    if (tty) process.stdout.write("\n");
    const seconds = (performance.now() - started) / 1000;
    if (last?.complete !== true) throw new Error(`shift ${shiftId} ended without completing; run the same command again to resume`);
    process.stdout.write(`shift ${shiftId} complete in ${seconds.toFixed(1)} s: ${line(last)}\n`);
  } finally {
    client.close();
  }
}
