// Builds the gRPC server of a node: Balances, Admin, standard health and
// server reflection, with message-size limits. Binds loopback by default.

import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer, type AnyDefinition, type EnumTypeDefinition, type MessageTypeDefinition, type PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { DESCRIPTOR_SET_BASE64 } from "../generated/descriptor-set";
import { AdminService } from "../generated/tally/v1/admin";
import type { TallyNode } from "../node/tally-node";
import { adminService, type SettlementAdmin } from "./admin-service";
import { balancesService, BalancesServiceDefinition } from "./balances-service";
import { NoopService, noopImplementation } from "./noop-service";

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
  options: { settlement?: SettlementAdmin; noopService?: boolean } = {},
): Promise<RunningServer> {
  const server = new Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
  });
  server.addService(BalancesServiceDefinition, balancesService(node));
  server.addService(AdminService, adminService(node, options.settlement));
  if (options.noopService === true) server.addService(NoopService, noopImplementation);
  const health = new HealthImplementation({
    "": "SERVING",
    "tally.v1.Balances": "SERVING",
    "tally.v1.Admin": "SERVING",
  });
  health.addToServer(server);
  // Reflection only describes the contract; it is built once here, never on the hot path.
  new ReflectionService(reflectedServices()).addToServer(server);
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

/**
 * Balances, Admin, health and reflection, from the descriptor set that
 * scripts/generate.sh builds with buf (compiled into dist: no file to locate).
 */
function reflectedServices(): PackageDefinition {
  const set = Buffer.from(DESCRIPTOR_SET_BASE64, "base64");
  const files = descriptorSetFiles(set);
  // proto-loader re-encodes each file without its imports (and with malformed map
  // entries), so clients cannot resolve the services (grpc-node #3018):
  // reflection gets buf's files as built.
  return Object.fromEntries(
    Object.entries(loadFileDescriptorSetFromBuffer(set, { keepCase: true })).map(([name, definition]) => [
      name,
      isTypeDefinition(definition) ? { ...definition, fileDescriptorProtos: files } : definition,
    ]),
  );
}

function isTypeDefinition(definition: AnyDefinition): definition is MessageTypeDefinition<object, object> | EnumTypeDefinition {
  return Array.isArray(definition.fileDescriptorProtos);
}

/** The files of a google.protobuf.FileDescriptorSet (field 1), each as encoded. */
function descriptorSetFiles(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}
