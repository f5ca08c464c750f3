// `tally serve`: runs one regional node until SIGINT/SIGTERM. Prints one JSON
// line {"event":"ready",...} on stdout when it serves, for scripts and tests;
// a writer deposed by another node of its region (--standby) prints
// {"event":"deposed",...} and exits 75 so that its supervisor restarts it.
// Every option is validated (src/app/config.ts) before any connection opens.

import { parseArgs } from "node:util";
import type { RunNodeOptions } from "../app/run-node";
import {
  addressOption,
  adminListenOption,
  grpcSecurityOption,
  booleanOption,
  defaultPolicyOption,
  insecureOption,
  integerOption,
  natsSecurityOption,
  nodeTunables,
  optionSource,
  postgresOption,
  postgresSecurityOption,
  regionsOption,
  streamReplicasOption,
  urlListOption,
} from "../app/config";
import { levelFromEnv } from "../node/logger";

/** Exit code of a writer deposed by another node of its region (EX_TEMPFAIL: start it again). */
export const EXIT_DEPOSED = 75;

export const SERVE_HELP = `tally serve - run one regional node

  --region NAME            this node's region (env TALLY_REGION)              [required]
  --regions A,B,C          every region, same order on every node (TALLY_REGIONS) [default: --region]
  --nats URL[,URL...]      NATS servers of this region (TALLY_NATS_URL)        [nats://127.0.0.1:4222]
  --nats-ca FILE           CA of the NATS servers' certificates (TALLY_NATS_CA) [required unless --insecure]
  --nats-nkey FILE         this node's NATS nkey seed file (TALLY_NATS_NKEY)   [required unless --insecure]
  --insecure               no TLS and no credentials: local experiments only, warned at every start (TALLY_INSECURE=1)
  --grpc HOST:PORT         gRPC listen address (TALLY_GRPC_ADDR)               [127.0.0.1:50051]
  --metrics-port PORT      /metrics port (TALLY_METRICS_PORT)                  [9464]
  --metrics-host HOST      /metrics listen host (TALLY_METRICS_HOST)           [127.0.0.1]
  --postgres URL           enables settlement, as the settler role (TALLY_POSTGRES_URL)
  --postgres-owner-url URL migrations run as this owner role (TALLY_POSTGRES_OWNER_URL) [required with --postgres unless --insecure]
  --postgres-reader-url URL  read-only role for listings and history (TALLY_POSTGRES_READER_URL) [--postgres]
  --postgres-ca FILE       CA of the Postgres server certificate; TLS, host verified (TALLY_POSTGRES_CA) [required unless --insecure]
  --settle-interval-ms N   periodic settlement (TALLY_SETTLE_INTERVAL_MS)      [0 = on demand]
  --place-by-region        place each region's stream in the NATS cluster of that name
  --stream-replicas N      copies of the own stream, snapshot bucket and writer lease: 1, 3 or 5
                           (TALLY_STREAM_REPLICAS) [1; 3 with a region of three NATS servers]
  --default-mode M         strict | overdraft (TALLY_DEFAULT_MODE)             [strict]
  --default-overdraft N    default overdraft limit (TALLY_DEFAULT_OVERDRAFT)   [0]
  --rights-wait-ms N       default wait for rights (TALLY_RIGHTS_WAIT_MS)      [50]
  --max-rights-wait-ms N   longest wait a caller may ask for (TALLY_MAX_RIGHTS_WAIT_MS) [2000]
  --spread-grants          spread each grant's rights evenly over all regions (TALLY_SPREAD_GRANTS=1)
  --standby                one of several nodes of the region: write only while holding the
                           writer lease, else follow and serve reads (TALLY_STANDBY=1)
  --lease-ttl-ms N         writer lease TTL with --standby (TALLY_LEASE_TTL_MS) [10000]
  --standby-poll-ms N      standby's look at the lease and own stream (TALLY_STANDBY_POLL_MS) [250]
  --snapshot-interval-ms N snapshot when changed, every N ms (TALLY_SNAPSHOT_INTERVAL_MS) [60000]
  --max-remembered-requests N  idempotency capacity (TALLY_MAX_REMEMBERED_REQUESTS) [2000000]
  --request-retention-ms N     idempotency and refund window (TALLY_REQUEST_RETENTION_MS) [900000]
  --hold-sweep-ms N        how often pending holds are checked for timeout (TALLY_HOLD_SWEEP_MS) [100]
  --lot-guard-ms N         credit lots stop being spendable N ms before expiry (TALLY_LOT_GUARD_MS) [5000]
  --max-watchers N         WatchBalance streams per node (TALLY_MAX_WATCHERS) [10000]
  --max-watchers-per-account N  WatchBalance streams per account (TALLY_MAX_WATCHERS_PER_ACCOUNT) [100]
  --pg-pool-size N, --pg-connect-timeout-ms N, --pg-statement-timeout-ms N   settlement pool
  --noop-service           also serve the no-op baseline RPC used by benchmarks

  gRPC security (mTLS with client certificates and roles is the default; docs/api.md):
  --grpc-tls-cert FILE     server certificate, PEM (TALLY_GRPC_TLS_CERT)       [required]
  --grpc-tls-key FILE      its private key (TALLY_GRPC_TLS_KEY)                [required]
  --grpc-tls-ca FILE       CAs trusted for client certificates (TALLY_GRPC_TLS_CA) [required]
  --grpc-roles FILE        principal -> roles JSON file (TALLY_GRPC_ROLES)     [required]
                           the three TLS files are re-read when they change (no restart)
  --audit-log FILE         audit lines (JSON) for Grant and Admin calls (TALLY_AUDIT_LOG) [stderr]
  --admin-listen HOST:PORT separate listener for Admin and reflection (TALLY_ADMIN_LISTEN)
  --insecure               plaintext gRPC, no certificates, no roles (TALLY_INSECURE=1);
                           local experiments only, warns at every start
`;

const STRING_FLAGS = [
  "region",
  "regions",
  "nats",
  "nats-ca",
  "nats-nkey",
  "grpc",
  "metrics-port",
  "metrics-host",
  "postgres",
  "postgres-owner-url",
  "postgres-reader-url",
  "postgres-ca",
  "settle-interval-ms",
  "default-mode",
  "default-overdraft",
  "rights-wait-ms",
  "max-rights-wait-ms",
  "snapshot-interval-ms",
  "max-remembered-requests",
  "request-retention-ms",
  "hold-sweep-ms",
  "lot-guard-ms",
  "max-commit-slots",
  "commit-retry-ms",
  "catch-up-timeout-ms",
  "status-interval-ms",
  "max-retained-messages",
  "max-watchers",
  "max-watchers-per-account",
  "pg-pool-size",
  "pg-connect-timeout-ms",
  "pg-statement-timeout-ms",
  "grpc-tls-cert",
  "grpc-tls-key",
  "grpc-tls-ca",
  "grpc-roles",
  "audit-log",
  "admin-listen",
  "lease-ttl-ms",
  "standby-poll-ms",
  "stream-replicas",
] as const;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...Object.fromEntries(STRING_FLAGS.map((flag) => [flag, { type: "string" as const }])),
      "place-by-region": { type: "boolean" },
      "noop-service": { type: "boolean" },
      "spread-grants": { type: "boolean" },
      standby: { type: "boolean" },
      insecure: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(SERVE_HELP);
    return;
  }
  const env = process.env;
  const read = optionSource(values, env);
  const { region, regions } = regionsOption(read({ flag: "region", env: "TALLY_REGION" }), read({ flag: "regions", env: "TALLY_REGIONS" }));
  const insecure = insecureOption(read);
  const settlerPostgres = postgresOption(read);
  const postgresSecurity = postgresSecurityOption(read, insecure, settlerPostgres?.url);
  const postgres = settlerPostgres === undefined ? undefined : { ...settlerPostgres, ...postgresSecurity };
  const natsSecurity = natsSecurityOption(read, insecure);
  const grpcSecurity = grpcSecurityOption(read);
  const adminAddress = adminListenOption(read);
  const options: RunNodeOptions = {
    region,
    regions,
    natsUrl: urlListOption(read, { flag: "nats", env: "TALLY_NATS_URL" }, "nats://127.0.0.1:4222", ["nats", "tls"]),
    ...(natsSecurity === undefined ? {} : { natsSecurity }),
    grpcAddress: addressOption(read, { flag: "grpc", env: "TALLY_GRPC_ADDR" }, "127.0.0.1:50051"),
    metricsPort: integerOption(read, { flag: "metrics-port", env: "TALLY_METRICS_PORT" }, 9464, 0, 65_535),
    metricsHost: read({ flag: "metrics-host", env: "TALLY_METRICS_HOST" }) ?? "127.0.0.1",
    ...(postgres === undefined ? {} : { postgres }),
    settleIntervalMs: integerOption(read, { flag: "settle-interval-ms", env: "TALLY_SETTLE_INTERVAL_MS" }, 0, 0, 7 * 24 * 3_600_000),
    placeStreamsByRegion: booleanOption(read, { flag: "place-by-region", env: "TALLY_PLACE_BY_REGION" }),
    streamReplicas: streamReplicasOption(read),
    defaultPolicy: defaultPolicyOption(read),
    logLevel: levelFromEnv(env.TALLY_LOG),
    config: nodeTunables(read),
    noopService: values["noop-service"] ?? false,
    grpcSecurity,
    adminAddress,
  };
  // Loaded only once every option is valid: a bad flag exits before the
  // gRPC, NATS and Postgres libraries load, and before any connection opens.
  const { runNode } = await import("../app/run-node");
  const running = await runNode(options);
  process.stdout.write(
    `${JSON.stringify({ event: "ready", region, grpcPort: running.grpcPort, adminPort: running.adminPort, metricsPort: running.metricsPort, sequence: running.node.sequence })}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      running.stop().then(resolve, resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    // A deposed writer (--standby) exits: restarted, it stands by again from the durable state.
    void running.node.deposed.then((reason) => {
      process.stdout.write(`${JSON.stringify({ event: "deposed", region, reason, exitCode: EXIT_DEPOSED })}\n`);
      process.exitCode = EXIT_DEPOSED;
      stop();
    });
  });
}
