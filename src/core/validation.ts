// Input rules shared by every entry point. Each failure names the field.

import { InvalidArgumentError } from "./errors";
import { INT64_MAX } from "./amounts";

const ACCOUNT_ID = /^[A-Za-z0-9._:@/-]{1,128}$/;
/** The account-id syntax, also what a principal's account prefixes must match. */
export const ACCOUNT_ID_PATTERN = ACCOUNT_ID;
const REQUEST_ID = /^[\x21-\x7e]{1,128}$/;

export function validateAccountId(value: string, field = "account_id"): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required");
  if (value.length > 128) throw new InvalidArgumentError(field, `is ${value.length} characters; at most 128 allowed`);
  if (!ACCOUNT_ID.test(value)) throw new InvalidArgumentError(field, "must contain only [A-Za-z0-9._:@/-]");
  return value;
}

export function validateRequestId(value: string, field = "request_id"): string {
  if (value.length === 0) throw new InvalidArgumentError(field, "is required (a client-chosen idempotency key)");
  if (value.length > 128) throw new InvalidArgumentError(field, `is ${value.length} characters; at most 128 allowed`);
  if (!REQUEST_ID.test(value)) throw new InvalidArgumentError(field, "must be printable ASCII without spaces");
  return value;
}

/** A strictly positive int64 amount of minor units. */
export function validateAmount(value: bigint, field = "amount"): bigint {
  if (value <= 0n) throw new InvalidArgumentError(field, `must be a positive integer of minor units; got ${value}`);
  if (value > INT64_MAX) throw new InvalidArgumentError(field, "exceeds int64 max 9223372036854775807");
  return value;
}
