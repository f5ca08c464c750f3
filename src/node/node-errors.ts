// Errors of the node as a whole (not of one request's input).

/** The node is starting, shutting down or fenced; nothing was acknowledged, the call may be retried elsewhere. */
export class NodeUnavailableError extends Error {
  override readonly name = "NodeUnavailableError";
}
