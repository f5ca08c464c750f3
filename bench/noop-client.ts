// A client of the no-op baseline service, sharing another client's channel so
// both see the same connection.

import { credentials, makeGenericClientConstructor, type Client, type ServiceError } from "@grpc/grpc-js";
import type { DebitBatchRequest, DebitBatchResponse, DebitRequest, DebitResponse } from "../src/generated/tally/v1/balances";
import { NoopService } from "../src/server/noop-service";

export type NoopClient = Client & {
  debit(request: DebitRequest, callback: (error: ServiceError | null, response: DebitResponse) => void): void;
  debitBatch(request: DebitBatchRequest, callback: (error: ServiceError | null, response: DebitBatchResponse) => void): void;
};

export function noopClientBeside(address: string, client: Client): NoopClient {
  // The credentials are never used: the channel (and its TLS) is the other client's.
  const Noop = makeGenericClientConstructor(NoopService, "Noop");
  return new Noop(address, credentials.createInsecure(), { channelOverride: client.getChannel() }) as unknown as NoopClient;
}
