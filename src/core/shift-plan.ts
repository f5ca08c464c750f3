// Planned traffic shifts (issue 15), pure: how much of one account's rights a
// region moves to another so that the receiver holds a fraction of the pair's
// rights. A goal, not a delta: computed from the current state, so running a
// shift again (after a crash, or a retry with the same id) moves only what is
// left, and moves nothing once the goal is met.

import { InvalidArgumentError } from "./errors";

/** Fractions are applied in parts per million: exact bigint arithmetic, fine enough for any shift. */
const PPM = 1_000_000n;

/** Parts per million of a fraction in (0, 1]; 0 (unset on the wire) means 1. */
export function shiftFractionPpm(fraction: number): bigint {
  if (fraction === 0) return PPM;
  if (!Number.isFinite(fraction) || fraction <= 0 || fraction > 1) throw new InvalidArgumentError("fraction", `is ${fraction}; must be in (0, 1]`);
  const ppm = BigInt(Math.round(fraction * 1_000_000));
  return ppm < 1n ? 1n : ppm;
}

/**
 * What `from` moves to `to` for one account: enough that `to` holds
 * ⌈fraction × (fromRights + toRights)⌉ (negative rights count as 0), never
 * more than `from` holds, never negative.
 */
export function shiftAmount(fromRights: bigint, toRights: bigint, fractionPpm: bigint): bigint {
  if (fromRights <= 0n) return 0n;
  const held = toRights > 0n ? toRights : 0n;
  const goal = ((fromRights + held) * fractionPpm + PPM - 1n) / PPM;
  const move = goal - toRights;
  if (move <= 0n) return 0n;
  return move < fromRights ? move : fromRights;
}
