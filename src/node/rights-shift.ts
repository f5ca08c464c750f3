// Runs planned shifts of rights from this region to another (Admin.ShiftRights):
// every account this region holds rights for, in chunks whose transfers share
// group commits, each chunk durable before its progress is reported. A shift
// id runs once at a time and keeps its parameters; re-running a finished or
// interrupted shift moves only what is left (core/shift-plan.ts).

import { InvalidArgumentError } from "../core/errors";
import { rowOwner } from "../core/lot-rows";
import { isExpired } from "../core/lot-writes";
import type { ReplicaState } from "../core/replica-state";
import { shiftAmount, shiftFractionPpm } from "../core/shift-plan";
import { validateAccountId } from "../core/validation";

export interface ShiftProgress {
  readonly shiftId: string;
  readonly accountsDone: number;
  readonly accountsTotal: number;
  readonly accountsMoved: number;
  readonly amountMoved: bigint;
  readonly complete: boolean;
}

/** What the shifter needs from its node. */
export interface ShiftHost {
  readonly region: string;
  readonly state: ReplicaState;
  /** Wall clock: a lot expired by it is not shifted (its rights can never be spent). */
  readonly now: () => number;
  /** Moves `amount` of this region's rights to `toRegion`; durable on return (joins the group commit). */
  transfer(accountId: string, toRegion: string, amount: bigint): Promise<unknown>;
}

export class ShiftAlreadyRunningError extends Error {
  override readonly name = "ShiftAlreadyRunningError";
  constructor(readonly shiftId: string) {
    super(`shift ${shiftId} is already running`);
  }
}

export class ShiftParametersError extends Error {
  override readonly name = "ShiftParametersError";
  constructor(readonly shiftId: string) {
    super(`shift ${shiftId} was started with other parameters; use a new shift id`);
  }
}

/** Accounts whose transfers are issued together (they share group commits). */
const CHUNK = 1_000;
/** Shift ids remembered (their parameters), least recent first out. */
const MAX_REMEMBERED = 1_000;

export class RightsShifter {
  private readonly known = new Map<string, string>();
  private readonly running = new Set<string>();

  constructor(private readonly host: ShiftHost) {}

  /** Validates, then runs the shift, calling `report` after each durable chunk and at the end. */
  async run(shiftId: string, toRegion: string, fraction: number, report: (progress: ShiftProgress) => void): Promise<ShiftProgress> {
    const { state, region } = this.host;
    validateAccountId(shiftId, "shift_id");
    if (toRegion === "") throw new InvalidArgumentError("to_region", "is required");
    if (!state.replicas.has(toRegion)) throw new InvalidArgumentError("to_region", `"${toRegion}" is not a region of this cluster`);
    if (toRegion === region) throw new InvalidArgumentError("to_region", "must differ from this node's region");
    const ppm = shiftFractionPpm(fraction);
    const parameters = `${toRegion} ${ppm}`;
    const earlier = this.known.get(shiftId);
    if (earlier !== undefined && earlier !== parameters) throw new ShiftParametersError(shiftId);
    if (this.running.has(shiftId)) throw new ShiftAlreadyRunningError(shiftId);
    this.known.delete(shiftId);
    this.known.set(shiftId, parameters);
    while (this.known.size > MAX_REMEMBERED) this.known.delete(this.known.keys().next().value as string);
    this.running.add(shiftId);
    try {
      return await this.shift(shiftId, toRegion, ppm, report);
    } finally {
      this.running.delete(shiftId);
    }
  }

  private async shift(shiftId: string, toRegion: string, ppm: bigint, report: (progress: ShiftProgress) => void): Promise<ShiftProgress> {
    const { state } = this.host;
    const to = state.replicas.indexOf(toRegion);
    // The account list at the start: accounts created during the shift are not part of it.
    const accounts: string[] = [];
    // Rows, lot rows included (each lot's rights move by the same fraction), but
    // not a lot already expired here: its rights could never be spent anywhere.
    const clockMs = this.host.now();
    for (const [accountId] of state.accounts()) {
      if (state.rights(accountId) <= 0n) continue;
      const lot = rowOwner(accountId)?.lot;
      if (lot !== undefined && isExpired(lot.terms, clockMs, state.lotGuardMs)) continue;
      accounts.push(accountId);
    }
    let done = 0;
    let moved = 0;
    let amount = 0n;
    const progress = (complete: boolean): ShiftProgress => ({ shiftId, accountsDone: done, accountsTotal: accounts.length, accountsMoved: moved, amountMoved: amount, complete });
    for (let start = 0; start < accounts.length; start += CHUNK) {
      const writes: Array<Promise<unknown>> = [];
      for (const accountId of accounts.slice(start, start + CHUNK)) {
        // Decided now, on the rights held now; each transfer is applied before the next is decided.
        const move = shiftAmount(state.rights(accountId), state.rights(accountId, to), ppm);
        if (move <= 0n) continue;
        writes.push(this.host.transfer(accountId, toRegion, move));
        moved++;
        amount += move;
      }
      await Promise.all(writes);
      done = Math.min(accounts.length, start + CHUNK);
      report(progress(false));
    }
    const final = progress(true);
    report(final);
    return final;
  }
}
