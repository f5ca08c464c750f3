// `tally up`: a local 3-region cluster on loopback — one nats-server per
// region joined by gateways (deploy/nats/region.conf), Postgres for settlement
// when available, and one node process per region. Ctrl-C stops everything.

import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { LocalCluster } from "../devcluster/local-cluster";
import { REGIONS } from "../devcluster/nats-supercluster";
import { startLocalPostgres, type LocalPostgres } from "../devcluster/postgres-process";

export const UP_HELP = `tally up - local 3-region cluster (east, west, central)

  --data-dir DIR       where NATS and Postgres keep data   [.tally]
  --grpc-base PORT     gRPC ports PORT, PORT+1, PORT+2      [50051]
  --metrics-base PORT  /metrics ports                       [9464]
  --no-postgres        run without settlement
`;

export async function upCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "data-dir": { type: "string" },
      "grpc-base": { type: "string" },
      "metrics-base": { type: "string" },
      "no-postgres": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(UP_HELP);
    return;
  }
  const dataDir = resolve(values["data-dir"] ?? ".tally");
  mkdirSync(dataDir, { recursive: true });
  const grpcBase = Number(values["grpc-base"] ?? "50051");
  const metricsBase = Number(values["metrics-base"] ?? "9464");
  const say = (line: string): void => void process.stdout.write(`${line}\n`);

  let postgres: LocalPostgres | undefined;
  if (values["no-postgres"] !== true) {
    say("starting Postgres ...");
    postgres = await startLocalPostgres(resolve(dataDir, "postgres"), undefined, resolve(dataDir, "tls"));
    if (postgres.relocated !== undefined) say(`Postgres keeps its files in ${postgres.dataRoot}: ${postgres.relocated}.`);
  }
  say(`starting the NATS supercluster (${REGIONS.join(", ")}) and one node per region in ${dataDir} ...`);
  let cluster: LocalCluster;
  try {
    cluster = await LocalCluster.start({
      dir: dataDir,
      grpcPorts: REGIONS.map((_, i) => grpcBase + i),
      metricsPorts: REGIONS.map((_, i) => metricsBase + i),
      env: { TALLY_LOG: "info" },
      ...(postgres?.roles !== undefined
        ? {
            postgresUrl: postgres.roles.settlerUrl,
            postgresSecurity: { ownerUrl: postgres.roles.ownerUrl, readerUrl: postgres.roles.readerUrl, caFile: postgres.roles.caFile },
            extraArgs: ["--settle-interval-ms", "60000"],
          }
        : {}),
    });
  } catch (error) {
    await postgres?.stop();
    throw error;
  }
  const nodes = cluster.nodes;
  const stopAll = async (): Promise<void> => {
    await cluster.stop();
    await postgres?.stop();
  };
  say("");
  say("Tally is up. Endpoints:");
  for (const n of nodes) {
    say(`  ${n.options.region.padEnd(8)} gRPC ${n.grpcAddress}   metrics ${n.metricsUrl}   NATS ${n.options.natsUrl}`);
  }
  if (postgres !== undefined) say(`  postgres ${postgres.roles?.readerUrl.replace(/:[^:@/]*@/, ":***@") ?? postgres.url}   data ${postgres.dataRoot}`);
  say(`credentials (local CA, NATS nkeys and certificates, Postgres role passwords): ${resolve(dataDir, "tls")}`);
  // gRPC security: where the certificates are and how the CLI finds them.
  const tlsDir = cluster.grpcPki.dir;
  const cliTls = tlsDir === resolve(".tally", "tls") ? "" : ` --tls-dir ${tlsDir}`;
  say(`gRPC is mutual TLS. CA ${tlsDir}/ca.crt; client certificates ${tlsDir}/grpc-client-<spender|granter|reader|operator|auditor|ops|all>.crt/.key;`);
  say(`  roles ${cluster.grpcPki.rolesFile}; the CLI uses grpc-client-ops (operator + auditor)${cliTls === "" ? " by default" : `: pass${cliTls}`}.`);
  say(`logs: ${dataDir}/node-<region>.log   status: npm run tally -- status`);
  say("Ctrl-C stops everything.");
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      say("\nstopping ...");
      stopAll().then(resolveStop, resolveStop);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
