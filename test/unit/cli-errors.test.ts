// How CLI commands word failures: gRPC statuses by name, plain errors by message,
// and a status table that names the nodes it could not reach.

import { expect } from "chai";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { formatCliError, isUnreachable } from "../../src/cli/cli-errors";
import { renderStatus } from "../../src/cli/status-command";
import type { ClusterStatusResponse } from "../../src/generated/tally/v1/admin";

/** Shaped as grpc-js builds a client-side call error. */
function serviceError(code: status, details: string): ServiceError {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details, metadata: new Metadata() });
}

const answered = (region: string): ClusterStatusResponse => ({
  region,
  accounts: 3n,
  peers: [{ region, appliedSequence: 7n, reportedSequence: 7n, pending: 0n, lagSeconds: 0, converged: true, digest: "abc", lastHeardMs: 0n }],
  lastSettlement: undefined,
  writesRefused: "",
  writerRole: "",
  leaseHolder: "",
});

describe("cli errors - formatting failures for people", () => {
  it("cli errors - a gRPC error prints its status name and details, not the numeric code", () => {
    const error = serviceError(status.INVALID_ARGUMENT, "amount: must be a positive integer of minor units; got -3");
    expect(formatCliError(error)).to.equal("INVALID_ARGUMENT: amount: must be a positive integer of minor units; got -3");
  });

  it("cli errors - a gRPC error without details prints the status name alone", () => {
    expect(formatCliError(serviceError(status.UNIMPLEMENTED, ""))).to.equal("UNIMPLEMENTED");
  });

  it("cli errors - grpc-js's empty resolution note is dropped", () => {
    const error = serviceError(status.UNAVAILABLE, "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: ");
    expect(formatCliError(error)).to.equal("UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1.");
  });

  it("cli errors - other errors print their message, non-errors their text", () => {
    const system = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(formatCliError(system)).to.equal("connect ECONNREFUSED");
    expect(formatCliError("plain")).to.equal("plain");
  });

  it("cli errors - only no-answer statuses count as unreachable", () => {
    expect(isUnreachable(serviceError(status.UNAVAILABLE, "down"))).to.equal(true);
    expect(isUnreachable(serviceError(status.DEADLINE_EXCEEDED, "slow"))).to.equal(true);
    expect(isUnreachable(serviceError(status.INVALID_ARGUMENT, "bad"))).to.equal(false);
    expect(isUnreachable(new Error("x"))).to.equal(false);
  });

  it("cli errors - status names the unreachable node instead of claiming the cluster has not converged", () => {
    const text = renderStatus([
      { address: "127.0.0.1:50051", status: answered("east") },
      { address: "127.0.0.1:50052", error: "UNAVAILABLE: No connection established.", unreachable: true },
    ]);
    expect(text).to.match(/\n127\.0\.0\.1:50052 +UNREACHABLE\n/);
    expect(text).to.include("UNKNOWN: 1 of 2 nodes did not answer, so convergence cannot be checked:");
    expect(text).to.include("  127.0.0.1:50052 cannot be reached: UNAVAILABLE: No connection established.");
    expect(text).to.not.include("CONVERGED:");
    expect(text).to.not.include("NOT CONVERGED");
  });

  it("status - a standby's refusal of writes is its role, not a fault; a deposed node's or single node's is", () => {
    const writer = { ...answered("east"), writerRole: "writer", leaseHolder: "host-a/1/x" };
    const standby = { ...answered("east"), writerRole: "standby", leaseHolder: "host-a/1/x", writesRefused: "standby: another node of this region writes" };
    const text = renderStatus([
      { address: "127.0.0.1:50051", status: writer },
      { address: "127.0.0.1:50052", status: standby },
    ]);
    expect(text).to.match(/\nCONVERGED: /);
    expect(text).to.include("east: 3 accounts; last settlement none; standby (lease: host-a/1/x)");
    const deposed = { ...answered("east"), writerRole: "deposed", writesRefused: "writer lease of east lost" };
    expect(renderStatus([{ address: "127.0.0.1:50051", status: deposed }])).to.include("NOT CONVERGED: 1 node(s) refuse writes:");
    const single = { ...answered("east"), writesRefused: "another process writes this region's replica" };
    expect(renderStatus([{ address: "127.0.0.1:50051", status: single }])).to.include("NOT CONVERGED: 1 node(s) refuse writes:");
  });

  it("cli errors - status still reports convergence when every node answers", () => {
    const text = renderStatus([{ address: "127.0.0.1:50051", status: answered("east") }]);
    expect(text).to.match(/\nCONVERGED: /);
  });
});
