// Reads of the settled state a settlement builds on: where each replica's
// column lives in the settled arrays, and whether a cut is new, the same, or
// stale compared with the last settlement.

import type { PoolClient } from "pg";
import { StaleCutError } from "./errors";
import * as sql from "./settle-statements";

/** Gives new replicas array positions and returns where every replica lives. */
export async function placeReplicas(client: PoolClient, replicas: string[], settlementId: string): Promise<sql.ReplicaLayout> {
  let positions = await settledPositions(client);
  const fresh = replicas.filter((r) => !positions.has(r));
  if (fresh.length > 0) {
    await client.query(sql.PLACE_REPLICAS, [fresh, settlementId]);
    positions = await settledPositions(client);
  }
  const input = replicas.map((name) => {
    const position = positions.get(name);
    if (position === undefined) throw new Error(`replica "${name}" has no position after placing it`);
    return { name, position };
  });
  const extra = [...positions]
    .filter(([name]) => !replicas.includes(name))
    .map(([name, position]) => ({ name, position }));
  return { input, extra };
}

async function settledPositions(client: PoolClient): Promise<Map<string, number>> {
  const { rows } = await client.query<{ replica: string; position: number }>(sql.SETTLED_REPLICAS);
  return new Map(rows.map((r) => [r.replica, r.position]));
}

export async function one<R extends object>(client: PoolClient, text: string, params: unknown[] = []): Promise<R> {
  const row = (await client.query<R>(text, params)).rows[0];
  if (row === undefined) throw new Error(`expected one row from: ${text.trim().split("\n")[0] ?? text}`);
  return row;
}

export function sameCut(settled: Readonly<Record<string, bigint>>, offered: ReadonlyMap<string, bigint>): boolean {
  const keys = Object.keys(settled);
  if (keys.length !== offered.size) return false;
  return keys.every((replica) => offered.get(replica) === settled[replica]);
}

/** A cut behind the last settlement for any replica means a stale source: refuse it. */
export function checkNotStale(settled: Readonly<Record<string, bigint>>, offered: ReadonlyMap<string, bigint>): void {
  for (const [replica, seq] of offered) {
    const previous = settled[replica];
    if (previous !== undefined && seq < previous) throw new StaleCutError(replica, previous, seq);
  }
}
