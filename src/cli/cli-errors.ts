// How every CLI command reports a failure: one line, the gRPC status by name
// (`INVALID_ARGUMENT: amount: ...`) rather than grpc-js's `3 INVALID_ARGUMENT: ...`.

import { status, type ServiceError } from "@grpc/grpc-js";

export function isServiceError(error: unknown): error is ServiceError {
  if (!(error instanceof Error)) return false;
  const candidate = error as Partial<ServiceError>;
  // Node's system errors carry a string code (ECONNREFUSED); gRPC's is numeric.
  return typeof candidate.code === "number" && typeof candidate.details === "string";
}

/** `STATUS_NAME: details` for a gRPC error, the message for any other error. */
export function formatCliError(error: unknown): string {
  if (isServiceError(error)) {
    const name = status[error.code] ?? `status ${error.code}`;
    // grpc-js ends connection failures with an empty "Resolution note:".
    const details = error.details.replace(/\s*Resolution note:\s*$/, "").trim();
    return details === "" ? name : `${name}: ${details}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** The node gave no answer at all (down, wrong address, or too slow), as opposed to refusing the request. */
export function isUnreachable(error: unknown): boolean {
  return isServiceError(error) && (error.code === status.UNAVAILABLE || error.code === status.DEADLINE_EXCEEDED);
}
