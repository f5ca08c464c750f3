// Promise wrappers over the ts-proto generated grpc-js clients, for tests, and
// the tests' gRPC certificates: one local CA per test process, whose "all"
// client holds every role (tests of the roles themselves pick narrower ones).

import { rmSync } from "node:fs";
import { join } from "node:path";
import { Metadata, type CallOptions, type ChannelCredentials, type ServiceError } from "@grpc/grpc-js";
import { tlsNameOptions } from "../../src/cli/node-clients";
import { LocalGrpcPki } from "../../src/devcluster/local-grpc-pki";
import type { GrpcSecurityOptions } from "../../src/security/grpc-security";
import { tempDir } from "./nats";
import { AdminClient } from "../../src/generated/tally/v1/admin";
import { BalancesClient } from "../../src/generated/tally/v1/balances";

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown;

/** Calls a generated unary method: `unary(client, client.debit, request)`. */
export function unary<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  request: Req,
  options: Partial<CallOptions> = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method.call(client, request, new Metadata(), options, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

export interface Clients {
  readonly balances: BalancesClient;
  readonly admin: AdminClient;
  close(): void;
}

let sharedPki: LocalGrpcPki | undefined;

/** The test process's gRPC certificates (created on first use, removed at exit). */
export function testPki(): LocalGrpcPki {
  if (sharedPki === undefined) {
    const dir = tempDir("grpc-tls");
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    sharedPki = LocalGrpcPki.ensure(dir);
  }
  return sharedPki;
}

/** runNode's gRPC options for a test node: mTLS with the test CA and its role file; audit lines to a file beside them. */
export function testGrpcSecurity(auditLogFile?: string): GrpcSecurityOptions {
  return testPki().serverSecurity(auditLogFile ?? join(testPki().dir, "audit.log"));
}

/** Clients of a node; by default as the test CA's "all" principal (every role). */
export function clients(address: string, channelCredentials: ChannelCredentials = testPki().clientCredentials("all")): Clients {
  const balances = new BalancesClient(address, channelCredentials, tlsNameOptions(address));
  const admin = new AdminClient(address, channelCredentials, tlsNameOptions(address));
  return {
    balances,
    admin,
    close: () => {
      balances.close();
      admin.close();
    },
  };
}

/** The gRPC error of a call expected to fail. */
export async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail, it succeeded");
}
