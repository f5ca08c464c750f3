// gRPC clients of the nodes named on the command line, with promise helpers.

import { credentials, Metadata, type CallOptions, type ServiceError } from "@grpc/grpc-js";
import { AdminClient } from "../generated/tally/v1/admin";

export const DEFAULT_NODES = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

export function nodeAddresses(value: string | undefined): string[] {
  return (value ?? process.env.TALLY_NODES ?? DEFAULT_NODES)
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a !== "");
}

/** Runs one unary call with a deadline: `call((md, opts, cb) => client.clusterStatus({}, md, opts, cb))`. */
export function call<Res>(
  invoke: (metadata: Metadata, options: Partial<CallOptions>, callback: (error: ServiceError | null, response: Res) => void) => unknown,
  timeoutMs = 5_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke(new Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

export function adminClient(address: string): AdminClient {
  return new AdminClient(address, credentials.createInsecure());
}
