// Typed domain errors of the pure core. The gRPC edge maps each class to a
// status code in one table (src/server/status-mapping.ts).

/** A request field is malformed. `field` names it as the client sent it (e.g. "debits[3].amount"). */
export class InvalidArgumentError extends Error {
  override readonly name = "InvalidArgumentError";
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** A request id was used before with different parameters. */
export class RequestConflictError extends Error {
  override readonly name = "RequestConflictError";
  constructor(readonly requestId: string) {
    super(`request_id: "${requestId}" was already used with different parameters`);
  }
}

/** A change would push a counter or the balance beyond the int64/uint64 range. */
export class AmountOutOfRangeError extends Error {
  override readonly name = "AmountOutOfRangeError";
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** A rights transfer that the donor cannot make (not enough spare rights, same replica). */
export class TransferRefusedError extends Error {
  override readonly name = "TransferRefusedError";
  constructor(
    readonly accountId: string,
    readonly reason: string,
  ) {
    super(`transfer refused for account "${accountId}": ${reason}`);
  }
}

/** A replica (region) name that is not part of the configured replica set. */
export class UnknownReplicaError extends Error {
  override readonly name = "UnknownReplicaError";
  constructor(readonly replica: string) {
    super(`unknown region "${replica}"`);
  }
}

/**
 * The acknowledged request ids admitted here fill the request log: a new
 * request could not be remembered for its retention window, so it is refused
 * before anything changes (evicting an id early could charge its retry twice).
 */
export class RequestLogFullError extends Error {
  override readonly name = "RequestLogFullError";
  constructor(
    /** Requests that asked for room (a batch asks for all of its new ids at once). */
    readonly requested: number,
    readonly remembered: number,
    readonly capacity: number,
  ) {
    super(
      `request log full: ${remembered} of ${capacity} acknowledged request ids are within their retention window ` +
        `and ${requested} more cannot be remembered`,
    );
  }
}

/**
 * A write would take one of an account's grow-only counters at this region past
 * its int64-safe bound (src/core/bounds.ts). The request is well-formed; it is
 * the account's history at this region that leaves no room for it.
 */
export class BoundExceededError extends Error {
  override readonly name = "BoundExceededError";
  constructor(
    readonly field: string,
    readonly bound: bigint,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/**
 * Replicated data (a peer's slot value or policy write, a snapshot) that no
 * legitimate writer could have produced. It is refused and the state is left
 * unchanged.
 */
export class ReplicaDataRejectedError extends Error {
  override readonly name = "ReplicaDataRejectedError";
  constructor(
    readonly accountId: string,
    readonly item: string,
    readonly reason: string,
  ) {
    super(`refused ${item} of account "${accountId}": ${reason}`);
  }
}

/** No hold of this id is known here: never placed, or resolved longer ago than the window resolved holds are kept. */
export class HoldNotFoundError extends Error {
  override readonly name = "HoldNotFoundError";
  constructor(
    readonly holdId: string,
    readonly reason: string,
  ) {
    super(`hold_id: no hold "${holdId}" here: ${reason}`);
  }
}

/** The hold cannot be resolved this way: it timed out, or was resolved differently before. */
export class HoldStateError extends Error {
  override readonly name = "HoldStateError";
  constructor(
    readonly holdId: string,
    /** "captured", "voided", "expired". */
    readonly state: string,
    reason: string,
  ) {
    super(`hold "${holdId}" is ${state}: ${reason}`);
  }
}

/**
 * The call must go to another region: the hold's or the debit's region
 * decides it alone (no cross-region round trip on the hot path).
 */
export class WrongRegionError extends Error {
  override readonly name = "WrongRegionError";
  constructor(
    /** The region that decides it. */
    readonly region: string,
    reason: string,
  ) {
    super(`${reason}; send it to region "${region}"`);
  }
}

/** No record of the debit here: unknown, or its refund window has passed. */
export class DebitRecordNotFoundError extends Error {
  override readonly name = "DebitRecordNotFoundError";
  constructor(
    readonly debitRequestId: string,
    reason: string,
  ) {
    super(`debit_request_id: no record of debit "${debitRequestId}" here: ${reason}`);
  }
}

/** A grant would open one more credit lot on an account that has as many live lots as allowed. */
export class LotLimitError extends Error {
  override readonly name = "LotLimitError";
  constructor(
    readonly accountId: string,
    readonly limit: number,
  ) {
    super(
      `account "${accountId}" already has ${limit} live credit lots, the most one account may have; ` +
        `grant into one of them (the same lot terms) or to the base lot (no terms); nothing changed`,
    );
  }
}

/** The refund cannot be given: the debit was refused, or its refunds would exceed its amount. */
export class RefundRefusedError extends Error {
  override readonly name = "RefundRefusedError";
  constructor(
    readonly debitRequestId: string,
    reason: string,
  ) {
    super(`refund of debit "${debitRequestId}" refused: ${reason}`);
  }
}
