// Promise wrappers over the ts-proto generated grpc-js clients, for tests.

import { credentials, Metadata, type CallOptions, type ServiceError } from "@grpc/grpc-js";
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

export function clients(address: string): Clients {
  const balances = new BalancesClient(address, credentials.createInsecure());
  const admin = new AdminClient(address, credentials.createInsecure());
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
