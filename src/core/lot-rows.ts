// Where a credit lot lives: each lot is its own escrow counter, stored as a
// row whose id is the account id, LOT_SEPARATOR and the lot's key. The base
// lot (a grant with no terms) is the account's plain row, so accounts without
// lots are stored exactly as before. Replication, snapshots, digests, merge
// and rights then work per lot unchanged, and a lot's terms travel in its id.

import { InvalidArgumentError } from "./errors";
import { BASE_TERMS, lotKey, MAX_PRIORITY, NO_EXPIRY, type LotTerms } from "./lots";
import { validateAccountId } from "./validation";

/** Not in the account-id alphabet, so a client can never name a lot row directly. */
export const LOT_SEPARATOR = "#";

/** The key GetBalance reports for the base lot (the account's plain row). */
export const BASE_LOT_KEY = "base";

/** Longest lot key: `p` + 7 digits, `.e` + 16 digits, `.s` + 16 digits. */
const MAX_LOT_KEY_LENGTH = 1 + 7 + 2 + 16 + 2 + 16;
const LOT_KEY = /^p(\d{1,7})\.e(never|\d{1,16})\.s(\d{1,16})$/;

/** True when the terms are the base lot's: such a grant goes to the plain account row. */
export function isBaseTerms(terms: LotTerms): boolean {
  return terms.priority === BASE_TERMS.priority && terms.effectiveAtMs === BASE_TERMS.effectiveAtMs && terms.expiresAtMs === BASE_TERMS.expiresAtMs;
}

/** The row a grant with these terms goes to. */
export function lotRowId(accountId: string, terms: LotTerms): string {
  return isBaseTerms(terms) ? accountId : `${accountId}${LOT_SEPARATOR}${lotKey(terms)}`;
}

/** The terms a lot key stands for, or undefined when it is not a key lotKey() could have made. */
export function parseLotKey(key: string): LotTerms | undefined {
  if (key.length > MAX_LOT_KEY_LENGTH) return undefined;
  const match = LOT_KEY.exec(key);
  if (match === null) return undefined;
  const terms: LotTerms = {
    priority: Number(match[1]),
    expiresAtMs: match[2] === "never" ? NO_EXPIRY : Number(match[2]),
    effectiveAtMs: Number(match[3]),
  };
  if (terms.priority > MAX_PRIORITY || !Number.isSafeInteger(terms.expiresAtMs) || !Number.isSafeInteger(terms.effectiveAtMs)) return undefined;
  // Canonical only (no leading zeros, no base terms spelled as a key): one lot, one row.
  return lotKey(terms) === key && !isBaseTerms(terms) ? terms : undefined;
}

/** A stored row: the account it belongs to and, for a lot row, the lot's key and terms. */
export interface RowOwner {
  readonly accountId: string;
  /** Undefined for the account's plain row (its base lot). */
  readonly lot: { readonly key: string; readonly terms: LotTerms } | undefined;
}

/** Whose row this is; undefined when the id has no valid lot part (only for ids that skipped validateRowId). */
export function rowOwner(rowId: string): RowOwner | undefined {
  const at = rowId.indexOf(LOT_SEPARATOR);
  if (at < 0) return { accountId: rowId, lot: undefined };
  const key = rowId.slice(at + 1);
  const terms = parseLotKey(key);
  return terms === undefined ? undefined : { accountId: rowId.slice(0, at), lot: { key, terms } };
}

/**
 * Checks a row id that comes from replication, a snapshot or settlement: an
 * account id, optionally followed by the separator and a canonical lot key.
 * Clients use validateAccountId, which refuses the separator.
 */
export function validateRowId(value: string, field = "account_id"): string {
  const at = value.indexOf(LOT_SEPARATOR);
  if (at < 0) return validateAccountId(value, field);
  validateAccountId(value.slice(0, at), field);
  if (parseLotKey(value.slice(at + 1)) === undefined) throw new InvalidArgumentError(field, "names a credit lot whose key is not canonical");
  return value;
}
