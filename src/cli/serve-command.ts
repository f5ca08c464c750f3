// `tally serve`: runs one regional node until SIGINT/SIGTERM. Prints one JSON
// line {"event":"ready",...} on stdout when it serves, for scripts and tests.

import { parseArgs } from "node:util";
import { Mode } from "../core/policy";
import { runNode } from "../app/run-node";
import { levelFromEnv } from "../node/logger";

export const SERVE_HELP = `tally serve - run one regional node

  --region NAME            this node's region (env TALLY_REGION)              [required]
  --regions A,B,C          every region, same order on every node (TALLY_REGIONS) [default: --region]
  --nats URL               NATS server of this region (TALLY_NATS_URL)         [nats://127.0.0.1:4222]
  --grpc HOST:PORT         gRPC listen address (TALLY_GRPC_ADDR)               [127.0.0.1:50051]
  --metrics-port PORT      /metrics port (TALLY_METRICS_PORT)                  [9464]
  --metrics-host HOST      /metrics listen host (TALLY_METRICS_HOST)           [127.0.0.1]
  --postgres URL           enables settlement (TALLY_POSTGRES_URL)
  --settle-interval-ms N   periodic settlement (TALLY_SETTLE_INTERVAL_MS)      [0 = on demand]
  --place-by-region        place each region's stream in the NATS cluster of that name
  --default-mode M         strict | overdraft (TALLY_DEFAULT_MODE)             [strict]
  --default-overdraft N    default overdraft limit (TALLY_DEFAULT_OVERDRAFT)   [0]
  --rights-wait-ms N       default wait for rights (TALLY_RIGHTS_WAIT_MS)      [50]
  --spread-grants          spread each grant's rights evenly over all regions (TALLY_SPREAD_GRANTS=1)
  --noop-service           also serve the no-op baseline RPC used by benchmarks
`;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      region: { type: "string" },
      regions: { type: "string" },
      nats: { type: "string" },
      grpc: { type: "string" },
      "metrics-port": { type: "string" },
      "metrics-host": { type: "string" },
      postgres: { type: "string" },
      "settle-interval-ms": { type: "string" },
      "place-by-region": { type: "boolean" },
      "default-mode": { type: "string" },
      "default-overdraft": { type: "string" },
      "rights-wait-ms": { type: "string" },
      "noop-service": { type: "boolean" },
      "spread-grants": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  const env = process.env;
  const region = values.region ?? env.TALLY_REGION;
  if (region === undefined || region === "") throw new Error("--region is required\n" + SERVE_HELP);
  const regions = (values.regions ?? env.TALLY_REGIONS ?? region).split(",").map((r) => r.trim()).filter((r) => r !== "");
  const mode = (values["default-mode"] ?? env.TALLY_DEFAULT_MODE ?? "strict") === "overdraft" ? Mode.Overdraft : Mode.Strict;
  const overdraft = BigInt(values["default-overdraft"] ?? env.TALLY_DEFAULT_OVERDRAFT ?? "0");
  const rightsWait = Number(values["rights-wait-ms"] ?? env.TALLY_RIGHTS_WAIT_MS ?? "50");
  const running = await runNode({
    region,
    regions,
    natsUrl: values.nats ?? env.TALLY_NATS_URL ?? "nats://127.0.0.1:4222",
    grpcAddress: values.grpc ?? env.TALLY_GRPC_ADDR ?? "127.0.0.1:50051",
    metricsPort: Number(values["metrics-port"] ?? env.TALLY_METRICS_PORT ?? "9464"),
    metricsHost: values["metrics-host"] ?? env.TALLY_METRICS_HOST ?? "127.0.0.1",
    postgresUrl: values.postgres ?? env.TALLY_POSTGRES_URL,
    settleIntervalMs: Number(values["settle-interval-ms"] ?? env.TALLY_SETTLE_INTERVAL_MS ?? "0"),
    placeStreamsByRegion: values["place-by-region"] ?? env.TALLY_PLACE_BY_REGION === "1",
    defaultPolicy: { mode, overdraftLimit: mode === Mode.Overdraft ? overdraft : 0n, lowWaterMark: 0n },
    logLevel: levelFromEnv(env.TALLY_LOG),
    config: { defaultRightsWaitMs: rightsWait, spreadGrants: values["spread-grants"] ?? env.TALLY_SPREAD_GRANTS === "1" },
    noopService: values["noop-service"] ?? false,
  });
  process.stdout.write(
    `${JSON.stringify({ event: "ready", region, grpcPort: running.grpcPort, metricsPort: running.metricsPort, sequence: running.node.sequence })}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      running.stop().then(resolve, resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
