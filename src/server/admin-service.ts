// gRPC handlers of tally.v1.Admin: policies, manual allowance moves,
// settlement runs and queries, and the node's cluster view.

import { Metadata, status, type sendUnaryData, type ServerWritableStream } from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors";
import { validateAccountId, validateAmount } from "../core/validation";
import type {
  AdminServer,
  GetAccountHistoryResponse,
  ListOverspendsResponse,
  ListSettlementsResponse,
  Settlement,
  SettleResponse,
  ShiftRightsRequest,
  ShiftRightsResponse,
} from "../generated/tally/v1/admin";
import { RightsShifter, ShiftAlreadyRunningError, ShiftParametersError, type ShiftProgress } from "../node/rights-shift";
import type { TallyNode } from "../node/tally-node";
import { accountPolicyFromWire, accountPolicyToWire, peerToWire } from "./wire";
import { NotConfiguredError, toStatus } from "./status-mapping";

/** What the Admin settlement RPCs need; provided when the node has a Postgres URL. */
export interface SettlementAdmin {
  settle(): Promise<SettleResponse>;
  listSettlements(pageSize: number, pageToken: string): Promise<ListSettlementsResponse>;
  listOverspends(filter: {
    accountId: string;
    sinceMs: number;
    untilMs: number;
    pageSize: number;
    pageToken: string;
  }): Promise<ListOverspendsResponse>;
  accountHistory(accountId: string, pageSize: number, pageToken: string): Promise<GetAccountHistoryResponse>;
  lastSettlement(): Promise<Settlement | undefined>;
}

export function pageSize(requested: number, field = "page_size"): number {
  if (requested === 0) return 100;
  if (requested > 1000) throw new InvalidArgumentError(field, `is ${requested}; at most 1000`);
  return requested;
}

function answer<T>(callback: sendUnaryData<T>, work: () => Promise<T>): void {
  let promise: Promise<T>;
  try {
    promise = work();
  } catch (error) {
    callback(toStatus(error), null);
    return;
  }
  promise.then(
    (value) => callback(null, value),
    (error: unknown) => callback(toStatus(error), null),
  );
}

function shiftToWire(p: ShiftProgress): ShiftRightsResponse {
  return {
    shiftId: p.shiftId,
    accountsDone: BigInt(p.accountsDone),
    accountsTotal: BigInt(p.accountsTotal),
    accountsMoved: BigInt(p.accountsMoved),
    amountMoved: p.amountMoved,
    complete: p.complete,
  };
}

/** Streams a shift's progress; a refusal ends the stream with its status (FAILED_PRECONDITION for id conflicts). */
function streamShift(shifter: RightsShifter, call: ServerWritableStream<ShiftRightsRequest, ShiftRightsResponse>): void {
  const { shiftId, toRegion, fraction } = call.request;
  shifter.run(shiftId, toRegion, fraction, (progress) => void call.write(shiftToWire(progress))).then(
    () => call.end(),
    (error: unknown) => {
      const refused = error instanceof ShiftAlreadyRunningError || error instanceof ShiftParametersError;
      call.emit("error", refused ? { code: status.FAILED_PRECONDITION, details: (error as Error).message, metadata: new Metadata() } : toStatus(error));
    },
  );
}

export function adminService(node: TallyNode, settlement?: SettlementAdmin): AdminServer {
  const shifter = new RightsShifter(node);
  const needSettlement = (): SettlementAdmin => {
    if (settlement === undefined) throw new NotConfiguredError("settlement is not configured on this node (no Postgres URL)");
    return settlement;
  };
  return {
    getAccountPolicy(call, callback) {
      answer(callback, () => {
        const accountId = validateAccountId(call.request.accountId);
        return Promise.resolve({
          policy: accountPolicyToWire(node.state.policy(accountId)),
          isDefault: node.state.policyWrite(accountId) === undefined,
        });
      });
    },

    setAccountPolicy(call, callback) {
      answer(callback, async () => {
        const accountId = validateAccountId(call.request.accountId);
        const policy = accountPolicyFromWire(call.request.policy);
        return { policy: accountPolicyToWire(await node.setPolicy(accountId, policy)) };
      });
    },

    transferAllowance(call, callback) {
      answer(callback, async () => {
        const accountId = validateAccountId(call.request.accountId);
        const amount = validateAmount(call.request.amount);
        const to = call.request.toRegion;
        if (to === "") throw new InvalidArgumentError("to_region", "is required");
        if (to === node.region) throw new InvalidArgumentError("to_region", "must differ from this node's region");
        return { localRights: await node.transfer(accountId, to, amount) };
      });
    },

    settle(_call, callback) {
      answer(callback, () => needSettlement().settle());
    },

    listSettlements(call, callback) {
      answer(callback, () => needSettlement().listSettlements(pageSize(call.request.pageSize), call.request.pageToken));
    },

    listOverspends(call, callback) {
      answer(callback, () => {
        const r = call.request;
        if (r.accountId !== "") validateAccountId(r.accountId);
        if (r.sinceMs < 0n) throw new InvalidArgumentError("since_ms", "must be >= 0");
        if (r.untilMs < 0n) throw new InvalidArgumentError("until_ms", "must be >= 0");
        return needSettlement().listOverspends({
          accountId: r.accountId,
          sinceMs: Number(r.sinceMs),
          untilMs: Number(r.untilMs),
          pageSize: pageSize(r.pageSize),
          pageToken: r.pageToken,
        });
      });
    },

    getAccountHistory(call, callback) {
      answer(callback, () => {
        const accountId = validateAccountId(call.request.accountId);
        return needSettlement().accountHistory(accountId, pageSize(call.request.pageSize), call.request.pageToken);
      });
    },

    shiftRights(call) {
      streamShift(shifter, call);
    },

    clusterStatus(_call, callback) {
      answer(callback, async () => {
        const lastSettlement = settlement === undefined ? undefined : await settlement.lastSettlement().catch(() => undefined);
        return {
          region: node.region,
          accounts: BigInt(node.state.accountCount),
          peers: node.views.peerViews().map(peerToWire),
          lastSettlement,
          writesRefused: node.unavailableReason ?? "",
          writerRole: node.writerRole?.kind ?? "",
          leaseHolder: node.leaseHolder ?? "",
        };
      });
    },
  };
}
