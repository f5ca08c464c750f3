// gRPC handlers of tally.v1.Balances: validate at the edge, call the node,
// map answers and errors. Insufficient credit is an ordinary OK answer.

import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import { validateAccountId } from "../core/validation";
import { InvalidArgumentError } from "../core/errors";
import { INT64_MAX } from "../core/amounts";
import {
  BalancesService,
  WatchBalanceResponse,
  type BalancesServer,
  type DebitRequest,
  type DebitResponse,
  type WatchBalanceRequest,
} from "../generated/tally/v1/balances";
import type { ChangeRound } from "../node/balance-watch";
import type { BalanceView } from "../node/node-views";
import type { TallyNode, Decision } from "../node/tally-node";
import { batchItems, captureInputs, debitItem, grantInputs, holdInputs, refundInputs, voidInputs, waitMs, type GrantInputs } from "./request-validation";
import { DeadlineExpiredError, statusLabel, toStatus } from "./status-mapping";
import { balanceToWire, debitResponse as answerToWire, holdResponse, resolutionToWire, refundResponse } from "./wire";

function debitResponse(decision: Decision): DebitResponse {
  return answerToWire(decision.answer, decision.replayed);
}

function fail<T>(callback: sendUnaryData<T>, error: unknown): void {
  callback(toStatus(error), null);
}

/** Failures are logged with the request id: warn for the node's own errors, debug for client mistakes. */
function logFailure(node: TallyNode, rpc: string, requestId: string, error: unknown): void {
  const label = statusLabel(error);
  const fields = { rpc, request_id: requestId, code: toStatus(error).code, error: error instanceof Error ? error.message : String(error) };
  if (label === "error") node.logger.warn("call failed", fields);
  else node.logger.debug("call refused", fields);
}

/** A call whose deadline already passed (or that the client cancelled) must change nothing. */
function expired(call: { getDeadline(): Date | number; cancelled: boolean }): DeadlineExpiredError | undefined {
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  if (call.cancelled) return new DeadlineExpiredError("the call was cancelled before it was applied");
  if (Number.isFinite(deadlineMs) && deadlineMs <= Date.now()) {
    return new DeadlineExpiredError("the call's deadline passed before it was applied; nothing changed");
  }
  return undefined;
}

export function balancesService(node: TallyNode): BalancesServer {
  const { metrics, config } = node;
  const sharedEvents = new SharedWatchEvents(node);
  return {
    debit(call: ServerUnaryCall<DebitRequest, DebitResponse>, callback) {
      const timer = metrics.debitLatency.unary.startTimer();
      let item;
      try {
        item = debitItem(call.request);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        metrics.debitResult[statusLabel(error)].inc();
        logFailure(node, "Debit", call.request.requestId, error);
        fail(callback, error);
        return;
      }
      const wait = waitMs(call.request.maxWaitMs, config.defaultRightsWaitMs, config.maxRightsWaitMs, call.getDeadline());
      node.debit(item, wait).then(
        (decision) => {
          if (decision.replayed) metrics.debitResult.replayed.inc();
          timer();
          callback(null, debitResponse(decision));
        },
        (error: unknown) => {
          metrics.debitResult[statusLabel(error)].inc();
          logFailure(node, "Debit", item.requestId, error);
          fail(callback, error);
        },
      );
    },

    debitBatch(call, callback) {
      const timer = metrics.debitLatency.batch.startTimer();
      let items;
      try {
        items = batchItems(call.request.debits);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        metrics.debitResult[statusLabel(error)].inc();
        fail(callback, error);
        return;
      }
      metrics.batchSize.observe(items.length);
      node.debitBatch(items).then(
        (decisions) => {
          let replayed = 0;
          for (const d of decisions) if (d.replayed) replayed++;
          if (replayed > 0) metrics.debitResult.replayed.inc(replayed);
          timer();
          callback(null, { results: decisions.map(debitResponse) });
        },
        (error: unknown) => {
          metrics.debitResult[statusLabel(error)].inc();
          fail(callback, error);
        },
      );
    },

    grant(call, callback) {
      let inputs: GrantInputs;
      try {
        inputs = grantInputs(call.request, node.state.lotGuardMs);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        metrics.grants.inc({ result: statusLabel(error) });
        fail(callback, error);
        return;
      }
      node.grant(inputs.accountId, inputs.amount, inputs.requestId, inputs.lot).then(
        (decision) => {
          metrics.grants.inc({ result: decision.replayed ? "replayed" : "approved" });
          callback(null, {
            balance: decision.answer.balance,
            localRights: decision.answer.localRights,
            replayed: decision.replayed,
          });
        },
        (error: unknown) => {
          metrics.grants.inc({ result: statusLabel(error) });
          logFailure(node, "Grant", inputs.requestId, error);
          fail(callback, error);
        },
      );
    },

    getBalance(call, callback) {
      let accountId: string;
      try {
        accountId = validateAccountId(call.request.accountId);
      } catch (error) {
        fail(callback, error);
        return;
      }
      // From memory only: the settled part comes from the settlements' stream, never a database round trip.
      callback(null, balanceToWire(accountId, node.views.balanceView(accountId)));
    },

    hold(call, callback) {
      let inputs;
      try {
        inputs = holdInputs(call.request);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        fail(callback, error);
        return;
      }
      const wait = waitMs(inputs.maxWaitMs, config.defaultRightsWaitMs, config.maxRightsWaitMs, call.getDeadline());
      node.holds.hold(inputs.accountId, inputs.amount, inputs.requestId, inputs.timeoutMs, wait).then(
        (held) => callback(null, holdResponse(held)),
        (error: unknown) => {
          logFailure(node, "Hold", call.request.requestId, error);
          fail(callback, error);
        },
      );
    },

    captureHold(call, callback) {
      let inputs;
      try {
        inputs = captureInputs(call.request);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        fail(callback, error);
        return;
      }
      node.holds.capture(inputs.holdId, inputs.amount, inputs.requestId, inputs.accountId).then(
        (resolved) => callback(null, { resolution: resolutionToWire(resolved) }),
        (error: unknown) => {
          logFailure(node, "CaptureHold", call.request.requestId, error);
          fail(callback, error);
        },
      );
    },

    voidHold(call, callback) {
      let inputs;
      try {
        inputs = voidInputs(call.request);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        fail(callback, error);
        return;
      }
      node.holds.void(inputs.holdId, inputs.requestId, inputs.accountId).then(
        (resolved) => callback(null, { resolution: resolutionToWire(resolved) }),
        (error: unknown) => {
          logFailure(node, "VoidHold", call.request.requestId, error);
          fail(callback, error);
        },
      );
    },

    refund(call, callback) {
      let inputs;
      try {
        inputs = refundInputs(call.request);
        const late = expired(call);
        if (late !== undefined) throw late;
      } catch (error) {
        fail(callback, error);
        return;
      }
      node.holds.refund(inputs.debitRequestId, inputs.amount, inputs.requestId, inputs.accountId).then(
        (refunded) => callback(null, refundResponse(refunded)),
        (error: unknown) => {
          logFailure(node, "Refund", call.request.requestId, error);
          fail(callback, error);
        },
      );
    },

    watchBalance(call: ServerWritableStream<WatchBalanceRequest, WatchBalanceResponse>) {
      let accountId: string;
      try {
        accountId = validateAccountId(call.request.accountId);
        if (call.request.lowBalanceThreshold < 0n || call.request.lowBalanceThreshold > INT64_MAX) {
          throw new InvalidArgumentError("low_balance_threshold", "must be between 0 and 9223372036854775807");
        }
      } catch (error) {
        call.emit("error", toStatus(error));
        return;
      }
      watchBalance(node, call, accountId, call.request.lowBalanceThreshold, sharedEvents);
    },
  };
}

/**
 * Streams balance changes with backpressure: while the client is not reading
 * (write() returned false) changes are only counted, and one event with the
 * latest value is written on 'drain'. Memory per watcher is constant.
 * Changes arrive coalesced per tick (BalanceWatchHub); watchers of the same
 * account given the same round share one response object, encoded once.
 */
function watchBalance(
  node: TallyNode,
  call: ServerWritableStream<WatchBalanceRequest, WatchBalanceResponse>,
  accountId: string,
  callThreshold: bigint,
  shared: SharedWatchEvents,
): void {
  let coalesced = 0;
  let blocked = false;
  let ended = false;
  const write = (event: WatchBalanceResponse): void => {
    coalesced = 0;
    blocked = !call.write(event);
  };
  const sendLatest = (): void => {
    if (ended) return;
    write(watchEvent(accountId, node.views.balanceView(accountId), callThreshold, Math.max(1, coalesced)));
  };
  const onChanges = (changes: number, round: ChangeRound): void => {
    if (ended) return;
    coalesced += changes;
    if (!blocked) write(shared.event(round, callThreshold, coalesced));
  };
  let unwatch: () => void;
  try {
    unwatch = node.watches.watch(accountId, onChanges, () => {
      if (ended) return;
      end();
      call.emit("error", { code: status.UNAVAILABLE, details: "node is shutting down" });
    });
  } catch (error) {
    // A watch limit: refused before anything was registered or sent.
    node.logger.debug("call refused", { rpc: "WatchBalance", code: toStatus(error).code, error: error instanceof Error ? error.message : String(error) });
    call.emit("error", toStatus(error));
    return;
  }
  const end = (): void => {
    if (ended) return;
    ended = true;
    unwatch();
    node.metrics.watchers.set(node.watches.size);
  };
  call.on("drain", () => {
    blocked = false;
    if (coalesced > 0) sendLatest();
  });
  call.on("cancelled", end);
  call.on("close", end);
  call.on("error", end);
  node.metrics.watchers.set(node.watches.size);
  sendLatest();
}

function watchEvent(accountId: string, view: BalanceView, callThreshold: bigint, coalesced: number): WatchBalanceResponse {
  const threshold = callThreshold > 0n ? callThreshold : view.policy.lowWaterMark;
  return {
    accountId,
    balance: view.balance,
    localRights: view.localRights,
    lowBalance: threshold > 0n && view.balance <= threshold,
    coalesced,
    held: view.held,
  };
}

/**
 * The events of the round being delivered: the hub calls every watcher of an
 * account in one synchronous loop, so one view serves them all, and watchers
 * that would get equal events (same low-balance flag and count, the usual
 * case) get the same object. Only the latest round is kept.
 */
class SharedWatchEvents {
  private round: ChangeRound | undefined;
  private view: BalanceView | undefined;
  private readonly events = new Map<number, WatchBalanceResponse>();

  constructor(private readonly node: TallyNode) {}

  event(round: ChangeRound, callThreshold: bigint, coalesced: number): WatchBalanceResponse {
    let view = this.view;
    if (round !== this.round || view === undefined) {
      this.round = round;
      view = this.view = this.node.views.balanceView(round.accountId);
      this.events.clear();
    }
    const threshold = callThreshold > 0n ? callThreshold : view.policy.lowWaterMark;
    const key = coalesced * 2 + (threshold > 0n && view.balance <= threshold ? 1 : 0);
    let event = this.events.get(key);
    if (event === undefined) {
      // Frozen: it is written to many streams, and grpc-js may serialize it after this call.
      event = Object.freeze(watchEvent(round.accountId, view, callThreshold, coalesced));
      this.events.set(key, event);
    }
    return event;
  }
}

/**
 * grpc-js serializes each server-stream write with the method's
 * responseSerialize; the generated one encodes every time, and a pre-encoded
 * buffer cannot be written through the generated types. This one encodes a
 * response object once and reuses the bytes for every stream that object is
 * written to (grpc-js copies them into its own frame). Keyed by identity:
 * shared events are frozen.
 */
const encodedWatchEvents = new WeakMap<WatchBalanceResponse, Buffer>();

function serializeWatchEvent(event: WatchBalanceResponse): Buffer {
  let bytes = encodedWatchEvents.get(event);
  if (bytes === undefined) {
    bytes = Buffer.from(WatchBalanceResponse.encode(event).finish());
    encodedWatchEvents.set(event, bytes);
  }
  return bytes;
}

/** The Balances service definition to serve: the generated one, with WatchBalance events encoded once per shared event. */
export const BalancesServiceDefinition: typeof BalancesService = {
  ...BalancesService,
  watchBalance: { ...BalancesService.watchBalance, responseSerialize: serializeWatchEvent },
};
