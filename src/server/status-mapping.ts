// The one table from domain errors to gRPC statuses. Every status a client can
// receive is listed in the proto comments; anything unexpected is INTERNAL.

import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import {
  AmountOutOfRangeError,
  BoundExceededError,
  DebitRecordNotFoundError,
  HoldNotFoundError,
  HoldStateError,
  InvalidArgumentError,
  LotLimitError,
  RefundRefusedError,
  ReplicaDataRejectedError,
  RequestConflictError,
  RequestLogFullError,
  TransferRefusedError,
  UnknownReplicaError,
  WrongRegionError,
} from "../core/errors";
import { WatchLimitError } from "../node/balance-watch";
import { NodeUnavailableError } from "../node/node-errors";
import { WriterFencedError } from "../replication/replica-writer";
import {
  RegressedTotalsError,
  SettlementConflictError,
  SettlementUnavailableError,
  StaleCutError,
} from "../settlement/errors";

/** A request exceeds a size limit (batch items). */
export class LimitExceededError extends Error {
  override readonly name = "LimitExceededError";
}

/** The call's deadline passed before it was applied. */
export class DeadlineExpiredError extends Error {
  override readonly name = "DeadlineExpiredError";
}

/** A component this node was started without (e.g. settlement without Postgres). */
export class NotConfiguredError extends Error {
  override readonly name = "NotConfiguredError";
}

export function toStatus(error: unknown): Partial<ServiceError> {
  const build = (code: status, details: string): Partial<ServiceError> => ({ code, details, metadata: new Metadata() });
  if (error instanceof InvalidArgumentError) return build(status.INVALID_ARGUMENT, error.message);
  if (error instanceof AmountOutOfRangeError) return build(status.INVALID_ARGUMENT, error.message);
  if (error instanceof RequestConflictError) return build(status.ALREADY_EXISTS, error.message);
  // OUT_OF_RANGE, not INVALID_ARGUMENT: the amount or limit is a valid int64 but
  // lies past the range this deployment keeps exact in every region at once —
  // the account's cumulative counters at this region (or, for an overdraft
  // limit, the replica count) leave no room for it (src/core/bounds.ts). Not
  // FAILED_PRECONDITION: the counters only grow, so no later state makes the same
  // call succeed here, and clients can tell this apart from refused transfers and
  // stale settlement cuts, which use FAILED_PRECONDITION.
  if (error instanceof BoundExceededError) return build(status.OUT_OF_RANGE, error.message);
  // Replicated data (a peer's slot or policy, a snapshot) no legitimate writer
  // could have produced: corrupt or forged. It was refused and nothing changed.
  if (error instanceof ReplicaDataRejectedError) return build(status.DATA_LOSS, error.message);
  if (error instanceof LimitExceededError) return build(status.RESOURCE_EXHAUSTED, error.message);
  if (error instanceof WatchLimitError) return build(status.RESOURCE_EXHAUSTED, error.message);
  if (error instanceof RequestLogFullError) {
    return build(status.RESOURCE_EXHAUSTED, `${error.message}; nothing changed, retry later with backoff`);
  }
  if (error instanceof TransferRefusedError || error instanceof LotLimitError) return build(status.FAILED_PRECONDITION, error.message);
  if (error instanceof HoldNotFoundError || error instanceof DebitRecordNotFoundError) return build(status.NOT_FOUND, error.message);
  if (error instanceof HoldStateError || error instanceof RefundRefusedError) return build(status.FAILED_PRECONDITION, error.message);
  // Holds and refunds are decided by one region: the status names it (message
  // and trailer), so the client sends the call there; no cross-region hop here.
  if (error instanceof WrongRegionError) {
    const refusal = build(status.FAILED_PRECONDITION, error.message);
    refusal.metadata?.set("tally-region", error.region);
    return refusal;
  }
  if (error instanceof UnknownReplicaError) return build(status.NOT_FOUND, error.message);
  if (error instanceof NodeUnavailableError) return build(status.UNAVAILABLE, error.message);
  // Another process appended to this region's stream: this node stopped
  // writing and the change was not acknowledged; retry at the live node.
  if (error instanceof WriterFencedError) return build(status.UNAVAILABLE, `${error.message}; the change was not acknowledged`);
  if (error instanceof DeadlineExpiredError) return build(status.DEADLINE_EXCEEDED, error.message);
  if (error instanceof SettlementUnavailableError) return build(status.UNAVAILABLE, error.message);
  if (error instanceof SettlementConflictError) return build(status.UNAVAILABLE, `${error.message}; retry`);
  if (error instanceof StaleCutError || error instanceof RegressedTotalsError) return build(status.FAILED_PRECONDITION, error.message);
  if (error instanceof NotConfiguredError) return build(status.UNIMPLEMENTED, error.message);
  return build(status.INTERNAL, `internal error: ${error instanceof Error ? error.message : String(error)}`);
}

export function statusLabel(error: unknown): "invalid" | "conflict" | "error" {
  if (error instanceof InvalidArgumentError || error instanceof AmountOutOfRangeError || error instanceof LimitExceededError) {
    return "invalid";
  }
  if (error instanceof RequestConflictError) return "conflict";
  return "error";
}
