// gRPC clients of the nodes named on the command line, with promise helpers.
// They present the local cluster's "ops" client certificate (operator +
// auditor) from `tally up`'s data directory unless told otherwise.

import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { credentials, Metadata, type CallOptions, type ChannelCredentials, type ChannelOptions, type ServiceError } from "@grpc/grpc-js";
import { AdminClient } from "../generated/tally/v1/admin";

export const DEFAULT_NODES = "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053";

export const CLIENT_TLS_HELP = `  --tls-dir DIR       certificates of \`tally up\` (TALLY_TLS_DIR)  [.tally/tls]
  --cert FILE         client certificate (TALLY_CLIENT_CERT)      [DIR/grpc-client-ops.crt]
  --key FILE          its key (TALLY_CLIENT_KEY)                  [DIR/grpc-client-ops.key]
  --ca FILE           CA that signed the nodes (TALLY_CLIENT_CA)  [DIR/ca.crt]
  --insecure          plaintext, for nodes started with --insecure
`;

/** parseArgs options of the client TLS flags, shared by every verb that calls a node. */
export const CLIENT_TLS_FLAGS = {
  "tls-dir": { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  ca: { type: "string" },
  insecure: { type: "boolean" },
} as const;

export interface ClientTlsValues {
  readonly "tls-dir"?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly ca?: string | undefined;
  readonly insecure?: boolean | undefined;
}

/** The client credentials the flags (or their variables, or `tally up`'s defaults) name; an error says which file is missing. */
export function clientCredentials(values: ClientTlsValues, env: NodeJS.ProcessEnv = process.env): ChannelCredentials {
  if (values.insecure === true || env.TALLY_INSECURE === "1" || env.TALLY_INSECURE === "true") return credentials.createInsecure();
  const dir = resolve(values["tls-dir"] ?? env.TALLY_TLS_DIR ?? join(".tally", "tls"));
  const files = {
    "--cert (TALLY_CLIENT_CERT)": values.cert ?? env.TALLY_CLIENT_CERT ?? join(dir, "grpc-client-ops.crt"),
    "--key (TALLY_CLIENT_KEY)": values.key ?? env.TALLY_CLIENT_KEY ?? join(dir, "grpc-client-ops.key"),
    "--ca (TALLY_CLIENT_CA)": values.ca ?? env.TALLY_CLIENT_CA ?? join(dir, "ca.crt"),
  };
  for (const [flag, file] of Object.entries(files)) {
    if (!existsSync(file)) {
      throw new Error(`no client TLS file ${file} (${flag}): start the local cluster with \`npm start\` (tally up), or point --tls-dir / --cert / --key / --ca at your certificates`);
    }
  }
  const [cert, key, ca] = Object.values(files).map((file) => readFileSync(file));
  return credentials.createSsl(ca, key, cert);
}

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

/**
 * A loopback IP is verified as "localhost" (the local certificates name both):
 * TLS must not send an IP literal as the server name (RFC 6066; Node warns on
 * stderr at every call). Other addresses are verified as written.
 */
export function tlsNameOptions(address: string): ChannelOptions {
  const host = address.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  return host === "127.0.0.1" || host === "::1" ? { "grpc.ssl_target_name_override": "localhost" } : {};
}

export function adminClient(address: string, channelCredentials: ChannelCredentials): AdminClient {
  return new AdminClient(address, channelCredentials, tlsNameOptions(address));
}
