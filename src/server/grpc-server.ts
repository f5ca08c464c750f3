// Builds the gRPC server of a node: Balances, Admin, standard health and
// server reflection, with message-size limits. Binds loopback by default.

import { Server, ServerCredentials } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { resolve } from "node:path";
import { AdminService } from "../generated/tally/v1/admin";
import { BalancesService } from "../generated/tally/v1/balances";
import type { TallyNode } from "../node/tally-node";
import { adminService, type SettlementAdmin } from "./admin-service";
import { balancesService, type SettledBalanceSource } from "./balances-service";
import { NoopService, noopImplementation } from "./noop-service";

export const PROTO_DIR = resolve(__dirname, "..", "..", "..", "proto");
/** Largest request accepted (a full 10,000-item batch fits comfortably). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface RunningServer {
  readonly server: Server;
  readonly port: number;
  readonly health: HealthImplementation;
  stop(): Promise<void>;
}

export async function startGrpcServer(
  node: TallyNode,
  address: string,
  options: { settlement?: SettlementAdmin & SettledBalanceSource; noopService?: boolean } = {},
): Promise<RunningServer> {
  const server = new Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  });
  server.addService(BalancesService, balancesService(node, options.settlement));
  server.addService(AdminService, adminService(node, options.settlement));
  if (options.noopService === true) server.addService(NoopService, noopImplementation);
  const health = new HealthImplementation({
    "": "SERVING",
    "tally.v1.Balances": "SERVING",
    "tally.v1.Admin": "SERVING",
  });
  health.addToServer(server);
  // Reflection only describes the contract; it is loaded once, never on the hot path.
  const definitions = loadSync(["tally/v1/balances.proto", "tally/v1/admin.proto"], {
    includeDirs: [PROTO_DIR],
    longs: String,
    keepCase: true,
  });
  new ReflectionService(definitions).addToServer(server);
  const port = await new Promise<number>((resolvePort, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolvePort(bound)));
  });
  return {
    server,
    port,
    health,
    stop: () =>
      new Promise<void>((resolveStop) => {
        health.setStatus("", "NOT_SERVING");
        const force = setTimeout(() => server.forceShutdown(), 5_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolveStop();
        });
      }),
  };
}
