// The one table from domain errors to gRPC statuses (src/server/status-mapping.ts):
// each error class gets its documented code and keeps its message.

import { status } from "@grpc/grpc-js";
import { expect } from "chai";
import {
  AmountOutOfRangeError,
  InvalidArgumentError,
  RequestConflictError,
  TransferRefusedError,
  UnknownReplicaError,
} from "../../src/core/errors";
import { NodeUnavailableError } from "../../src/node/node-errors";
import { DeadlineExpiredError, LimitExceededError, NotConfiguredError, statusLabel, toStatus } from "../../src/server/status-mapping";
import {
  AppendOnlyViolationError,
  MigrationError,
  RegressedTotalsError,
  SettlementConflictError,
  SettlementDuplicateError,
  SettlementStoreError,
  SettlementUnavailableError,
  StaleCutError,
} from "../../src/settlement/errors";

const CASES: ReadonlyArray<[string, Error, status]> = [
  ["InvalidArgumentError", new InvalidArgumentError("debits[3].amount", "must be positive"), status.INVALID_ARGUMENT],
  ["AmountOutOfRangeError", new AmountOutOfRangeError("amount", "the balance would exceed int64"), status.INVALID_ARGUMENT],
  ["RequestConflictError", new RequestConflictError("req-7"), status.ALREADY_EXISTS],
  ["LimitExceededError", new LimitExceededError("debits: 10001 items; at most 10000 per batch"), status.RESOURCE_EXHAUSTED],
  ["TransferRefusedError", new TransferRefusedError("acct", "needs 5 spare rights, region has 2"), status.FAILED_PRECONDITION],
  ["UnknownReplicaError", new UnknownReplicaError("mars"), status.NOT_FOUND],
  ["NodeUnavailableError", new NodeUnavailableError("node is starting"), status.UNAVAILABLE],
  ["DeadlineExpiredError", new DeadlineExpiredError("deadline passed before the debit was applied"), status.DEADLINE_EXCEEDED],
  ["SettlementUnavailableError", new SettlementUnavailableError("postgres is restarting", "57P03"), status.UNAVAILABLE],
  ["StaleCutError", new StaleCutError("east", 10n, 9n), status.FAILED_PRECONDITION],
  ["RegressedTotalsError", new RegressedTotalsError("acct", "east"), status.FAILED_PRECONDITION],
  ["NotConfiguredError", new NotConfiguredError("settlement needs --postgres"), status.UNIMPLEMENTED],
];

describe("status mapping - domain errors", () => {
  for (const [name, error, code] of CASES) {
    it(`status mapping - ${name} is ${status[code]} and keeps its message`, () => {
      const mapped = toStatus(error);
      expect(mapped.code, status[mapped.code ?? -1]).to.equal(code);
      expect(mapped.details).to.equal(error.message);
      expect(mapped.metadata).to.not.equal(undefined);
    });
  }

  it("status mapping - a serialization conflict is UNAVAILABLE and tells the client to retry", () => {
    const mapped = toStatus(new SettlementConflictError("could not serialize access", "40001"));
    expect(mapped.code).to.equal(status.UNAVAILABLE);
    expect(mapped.details).to.equal("could not serialize access; retry");
  });

  it("status mapping - an invalid argument keeps the field name first in the message", () => {
    expect(toStatus(new InvalidArgumentError("debits[3].amount", "must be positive")).details).to.match(/^debits\[3\]\.amount: /);
  });
});

describe("status mapping - unknown errors", () => {
  const unknown: ReadonlyArray<[string, unknown, string]> = [
    ["a plain Error", new Error("boom"), "internal error: boom"],
    ["a thrown string", "bad state", "internal error: bad state"],
    ["a duplicate ledger row", new SettlementDuplicateError("duplicate key", "ledger_pkey"), "internal error: duplicate key"],
    ["an append-only violation", new AppendOnlyViolationError("ledger is append-only", "ledger"), "internal error: ledger is append-only"],
    ["a failed migration", new MigrationError(3, "overspends", "syntax error"), "internal error: migration 3 (overspends): syntax error"],
    ["another store failure", new SettlementStoreError("disk full", "53100"), "internal error: disk full"],
  ];
  for (const [what, error, details] of unknown) {
    it(`status mapping - ${what} is INTERNAL and keeps its message`, () => {
      expect(toStatus(error)).to.deep.include({ code: status.INTERNAL, details });
    });
  }
});

describe("status mapping - metric labels", () => {
  it("status mapping - input errors are labelled invalid, id reuse conflict, anything else error", () => {
    expect(statusLabel(new InvalidArgumentError("a", "b"))).to.equal("invalid");
    expect(statusLabel(new AmountOutOfRangeError("a", "b"))).to.equal("invalid");
    expect(statusLabel(new LimitExceededError("too many"))).to.equal("invalid");
    expect(statusLabel(new RequestConflictError("r"))).to.equal("conflict");
    expect(statusLabel(new NodeUnavailableError("stopping"))).to.equal("error");
    expect(statusLabel("text")).to.equal("error");
  });
});
