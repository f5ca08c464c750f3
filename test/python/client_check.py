#!/usr/bin/env python3
"""Drives a live Tally node from Python through stubs generated from proto/.

Proves the contract works outside TypeScript: exact int64 amounts, idempotent
retries, insufficient credit as an OK outcome, and the documented error
statuses. Used by test/integration/python-client.test.ts.

usage: client_check.py ADDRESS STUB_DIR [ACCOUNT_PREFIX [CA CERT KEY]]

  ADDRESS         host:port of the node's gRPC server
  STUB_DIR        folder holding tally/v1/*_pb2*.py, generated with
                  python3 -m grpc_tools.protoc -I proto --python_out=DIR
                  --grpc_python_out=DIR proto/tally/v1/*.proto
  ACCOUNT_PREFIX  prefix for the account ids used (default "py")
  CA CERT KEY     PEM files for mutual TLS: the CA that signed the node, and
                  this client's certificate and key (needs spender and
                  granter). Without them the channel is plaintext (a node
                  started with --insecure).

Prints one JSON object on stdout. int64 values are printed as decimal strings
so that readers without 64-bit integers (JavaScript) keep them exact. Exits 0
only when every check passed; 1 when a check failed; 2 on bad usage.
"""

import json
import sys
import uuid

BIG = 2**53 + 1  # not representable as an IEEE double
CALL_TIMEOUT_S = 10.0


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    address, stub_dir = argv[1], argv[2]
    prefix = argv[3] if len(argv) > 3 else "py"
    tls_files = argv[4:7] if len(argv) >= 7 else None
    sys.path.insert(0, stub_dir)

    import grpc
    from tally.v1 import balances_pb2 as pb
    from tally.v1 import balances_pb2_grpc as pb_grpc

    checks = []
    values = {}

    def check(name, ok, detail=""):
        checks.append({"name": name, "ok": bool(ok), "detail": str(detail)})

    def rid(label):
        return "{}-{}-{}".format(prefix, label, uuid.uuid4().hex)

    def expect_error(call, request, code, field):
        """Calls expecting a failure status whose details name `field`."""
        try:
            call(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:  # a grpc.Call as well: code(), details()
            return {
                "code": error.code().name,
                "details": error.details() or "",
                "ok": error.code() == code and field in (error.details() or ""),
            }
        return {"code": "OK", "details": "", "ok": False}

    # Loopback: never route through an HTTP proxy from the environment.
    options = [("grpc.enable_http_proxy", 0)]
    if tls_files is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        ca, cert, key = (open(path, "rb").read() for path in tls_files)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
        channel = grpc.secure_channel(address, credentials, options=options)
        # The same node over plaintext: refused before any call is read.
        plain = pb_grpc.BalancesStub(grpc.insecure_channel(address, options=options))
        try:
            plain.GetBalance(pb.GetBalanceRequest(account_id=prefix + "-plain"), timeout=CALL_TIMEOUT_S)
            check("a plaintext channel is refused", False, "answered")
        except grpc.RpcError as error:
            check("a plaintext channel is refused", error.code() == grpc.StatusCode.UNAVAILABLE, error.code().name)
    grpc.channel_ready_future(channel).result(timeout=CALL_TIMEOUT_S)
    stub = pb_grpc.BalancesStub(channel)

    # Grant and debit with amounts above 2^53: exact end to end.
    big_account = prefix + "-big"
    granted = stub.Grant(
        pb.GrantRequest(account_id=big_account, amount=BIG, request_id=rid("grant")),
        timeout=CALL_TIMEOUT_S,
    )
    check("grant returns the exact balance above 2^53", granted.balance == BIG, granted.balance)
    check("grant is not a replay", not granted.replayed)

    debit_id = rid("debit")
    debit_request = pb.DebitRequest(account_id=big_account, amount=2, request_id=debit_id)
    spent = stub.Debit(debit_request, timeout=CALL_TIMEOUT_S)
    check(
        "debit is approved",
        spent.outcome == pb.DEBIT_OUTCOME_APPROVED,
        pb.DebitOutcome.Name(spent.outcome),
    )
    check("debit returns the exact balance", spent.balance == BIG - 2, spent.balance)
    check("debit is not a replay", not spent.replayed)

    read = stub.GetBalance(pb.GetBalanceRequest(account_id=big_account), timeout=CALL_TIMEOUT_S)
    own = [r for r in read.regions if r.granted > 0]
    check("get balance is exact", read.balance == BIG - 2, read.balance)
    check("get balance echoes the account id", read.account_id == big_account, read.account_id)
    check(
        "get balance shows the region's exact contribution",
        len(own) == 1 and own[0].granted == BIG and own[0].debited == 2,
        [(r.region, r.granted, r.debited) for r in read.regions],
    )
    values["big_account"] = big_account
    values["big_balance"] = str(read.balance)
    values["big_granted"] = str(own[0].granted) if own else ""
    values["region"] = own[0].region if own else ""

    # An idempotent retry: same request_id, same parameters.
    retry = stub.Debit(debit_request, timeout=CALL_TIMEOUT_S)
    check("retry with the same request_id is a replay", retry.replayed)
    check("retry returns the original answer", retry.balance == spent.balance and retry.outcome == spent.outcome)
    after_retry = stub.GetBalance(pb.GetBalanceRequest(account_id=big_account), timeout=CALL_TIMEOUT_S)
    check("retry changes nothing", after_retry.balance == BIG - 2, after_retry.balance)
    values["retry_replayed"] = retry.replayed
    values["balance_after_retry"] = str(after_retry.balance)

    # Insufficient credit is an OK answer with an outcome, not an error.
    poor_account = prefix + "-poor"
    stub.Grant(pb.GrantRequest(account_id=poor_account, amount=10, request_id=rid("grant")), timeout=CALL_TIMEOUT_S)
    refused = stub.Debit(
        pb.DebitRequest(account_id=poor_account, amount=11, request_id=rid("debit")),
        timeout=CALL_TIMEOUT_S,
    )
    poor_after = stub.GetBalance(pb.GetBalanceRequest(account_id=poor_account), timeout=CALL_TIMEOUT_S)
    check(
        "insufficient credit is an outcome",
        refused.outcome == pb.DEBIT_OUTCOME_INSUFFICIENT_CREDIT,
        pb.DebitOutcome.Name(refused.outcome),
    )
    check("insufficient credit changes nothing", poor_after.balance == 10, poor_after.balance)
    values["insufficient_outcome"] = pb.DebitOutcome.Name(refused.outcome)
    values["poor_balance"] = str(poor_after.balance)

    # Errors: INVALID_ARGUMENT names the field; nothing changes.
    bad_account = expect_error(
        stub.Debit,
        pb.DebitRequest(account_id="bad account!", amount=1, request_id=rid("bad")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "account_id",
    )
    check("malformed account_id is INVALID_ARGUMENT naming the field", bad_account["ok"], bad_account)
    bad_amount = expect_error(
        stub.Debit,
        pb.DebitRequest(account_id=poor_account, amount=0, request_id=rid("bad")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "amount",
    )
    check("zero amount is INVALID_ARGUMENT naming the field", bad_amount["ok"], bad_amount)
    bad_batch = expect_error(
        stub.DebitBatch,
        pb.DebitBatchRequest(
            debits=[
                pb.DebitRequest(account_id=poor_account, amount=1, request_id=rid("batch")),
                pb.DebitRequest(account_id=poor_account, amount=-1, request_id=rid("batch")),
            ]
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "debits[1].amount",
    )
    check("a batch with one bad item is INVALID_ARGUMENT naming the item", bad_batch["ok"], bad_batch)
    values["invalid_argument"] = bad_account

    # ALREADY_EXISTS: a request_id reused with a different amount.
    conflict = expect_error(
        stub.Debit,
        pb.DebitRequest(account_id=big_account, amount=3, request_id=debit_id),
        grpc.StatusCode.ALREADY_EXISTS,
        "request_id",
    )
    check("request_id reused with another amount is ALREADY_EXISTS", conflict["ok"], conflict)
    values["already_exists"] = conflict

    after_errors = [
        stub.GetBalance(pb.GetBalanceRequest(account_id=a), timeout=CALL_TIMEOUT_S).balance
        for a in (big_account, poor_account)
    ]
    check("errors change nothing", after_errors == [BIG - 2, 10], after_errors)

    # DebitBatch: decided in order, one answer per item.
    batch = stub.DebitBatch(
        pb.DebitBatchRequest(
            debits=[
                pb.DebitRequest(account_id=poor_account, amount=4, request_id=rid("batch")),
                pb.DebitRequest(account_id=poor_account, amount=4, request_id=rid("batch")),
                pb.DebitRequest(account_id=poor_account, amount=4, request_id=rid("batch")),
            ]
        ),
        timeout=CALL_TIMEOUT_S,
    )
    outcomes = [pb.DebitOutcome.Name(r.outcome) for r in batch.results]
    check(
        "debit batch is decided in order",
        outcomes
        == ["DEBIT_OUTCOME_APPROVED", "DEBIT_OUTCOME_APPROVED", "DEBIT_OUTCOME_INSUFFICIENT_CREDIT"],
        outcomes,
    )
    values["batch_outcomes"] = outcomes

    # WatchBalance: the current value first, then the change, low balance flagged.
    watch = stub.WatchBalance(
        pb.WatchBalanceRequest(account_id=poor_account, low_balance_threshold=1),
        timeout=CALL_TIMEOUT_S,
    )
    first = next(watch)
    stub.Debit(pb.DebitRequest(account_id=poor_account, amount=1, request_id=rid("debit")), timeout=CALL_TIMEOUT_S)
    second = next(watch)
    watch.cancel()
    check("watch starts with the current balance", first.balance == 2 and not first.low_balance, first)
    check("watch streams the change with the low-balance flag", second.balance == 1 and second.low_balance, second)
    values["watch_balances"] = [str(first.balance), str(second.balance)]

    # Credit lots and holds: a grant into a lot, a hold across two lots, its
    # capture (the lot burns first), and a refund going back to that lot.
    lot_account = "{}-lots-{}".format(prefix, uuid.uuid4().hex[:12])
    approved = pb.DebitOutcome.Value("DEBIT_OUTCOME_APPROVED")
    stub.Grant(
        pb.GrantRequest(account_id=lot_account, amount=30, request_id=rid("lot"), lot=pb.LotTerms(priority=1)),
        timeout=CALL_TIMEOUT_S,
    )
    stub.Grant(pb.GrantRequest(account_id=lot_account, amount=20, request_id=rid("base")), timeout=CALL_TIMEOUT_S)
    held = stub.Hold(
        pb.HoldRequest(account_id=lot_account, amount=40, request_id=rid("hold"), timeout_ms=60000),
        timeout=CALL_TIMEOUT_S,
    )
    check("a hold across two lots is approved", held.outcome == approved and held.hold_id != "", held)
    capture_id = rid("capture")
    captured = stub.CaptureHold(
        pb.CaptureHoldRequest(hold_id=held.hold_id, amount=35, request_id=capture_id), timeout=CALL_TIMEOUT_S
    ).resolution
    check(
        "a capture debits 35 and releases 5",
        [captured.captured, captured.released, captured.balance] == [35, 5, 15],
        captured,
    )
    lots = [(lot.key, lot.remaining) for lot in stub.GetBalance(pb.GetBalanceRequest(account_id=lot_account), timeout=CALL_TIMEOUT_S).lots]
    check("the lot burnt before the base lot", lots == [("p1.enever.s0", 0), ("base", 15)], lots)
    refunded = stub.Refund(
        pb.RefundRequest(debit_request_id=capture_id, amount=10, request_id=rid("refund")), timeout=CALL_TIMEOUT_S
    )
    lots_after = [(lot.key, lot.remaining) for lot in stub.GetBalance(pb.GetBalanceRequest(account_id=lot_account), timeout=CALL_TIMEOUT_S).lots]
    check(
        "a refund goes back to the lot it most likely came from",
        refunded.balance == 25 and lots_after == [("p1.enever.s0", 10), ("base", 15)],
        lots_after,
    )
    values["lots_after_refund"] = [[key, str(remaining)] for key, remaining in lots_after]

    channel.close()
    failed = [c for c in checks if not c["ok"]]
    print(json.dumps({"ok": not failed, "checks": checks, "failed": failed, "values": values}))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
