// Settlement is optional per node: wired only when a Postgres URL is given.

import type { Logger } from "../node/logger";
import type { TallyNode } from "../node/tally-node";
import type { SettlementAdmin } from "../server/admin-service";
import type { SettledBalanceSource } from "../server/balances-service";

export interface RunningSettlement {
  readonly admin: SettlementAdmin & SettledBalanceSource;
  stop(): Promise<void>;
}

export function startSettlement(
  _node: TallyNode,
  _postgresUrl: string,
  _intervalMs: number,
  _logger: Logger,
): Promise<RunningSettlement> {
  return Promise.reject(new Error("settlement wiring is not available yet"));
}
