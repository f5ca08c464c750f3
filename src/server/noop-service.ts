// A do-nothing service with the same messages as Debit: the baseline that
// benchmarks compare Debit against (same server, same client, same encoding).
// Registered only when a node is started with --noop-service.

import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { DebitBatchRequest, DebitBatchResponse, DebitOutcome, DebitRequest, DebitResponse } from "../generated/tally/v1/balances";

export const NoopService = {
  debit: {
    path: "/tally.bench.v1.Noop/Debit",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: DebitRequest): Buffer => Buffer.from(DebitRequest.encode(value).finish()),
    requestDeserialize: (value: Buffer): DebitRequest => DebitRequest.decode(value),
    responseSerialize: (value: DebitResponse): Buffer => Buffer.from(DebitResponse.encode(value).finish()),
    responseDeserialize: (value: Buffer): DebitResponse => DebitResponse.decode(value),
  },
  debitBatch: {
    path: "/tally.bench.v1.Noop/DebitBatch",
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: DebitBatchRequest): Buffer => Buffer.from(DebitBatchRequest.encode(value).finish()),
    requestDeserialize: (value: Buffer): DebitBatchRequest => DebitBatchRequest.decode(value),
    responseSerialize: (value: DebitBatchResponse): Buffer => Buffer.from(DebitBatchResponse.encode(value).finish()),
    responseDeserialize: (value: Buffer): DebitBatchResponse => DebitBatchResponse.decode(value),
  },
} as const satisfies ServiceDefinition;

const APPROVED: DebitResponse = { outcome: DebitOutcome.DEBIT_OUTCOME_APPROVED, balance: 0n, localRights: 0n, replayed: false };

export const noopImplementation: UntypedServiceImplementation = {
  debit: (_call: unknown, callback: (error: null, value: DebitResponse) => void) => callback(null, APPROVED),
  debitBatch: (call: { request: DebitBatchRequest }, callback: (error: null, value: DebitBatchResponse) => void) =>
    callback(null, { results: call.request.debits.map(() => APPROVED) }),
};
