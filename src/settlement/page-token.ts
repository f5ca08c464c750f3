// Opaque keyset page tokens. A token carries the last key of the previous page
// and a fingerprint of the filters, so it cannot be replayed against another
// query (which would silently skip or repeat rows).

import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../core/errors";

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

interface TokenBody {
  readonly v: 1;
  readonly q: string;
  readonly k: string[];
}

function fingerprint(query: string, filter: unknown): string {
  return createHash("sha256").update(`${query}\0${JSON.stringify(filter)}`).digest("base64url").slice(0, 16);
}

export function encodePageToken(query: string, filter: unknown, key: readonly string[]): string {
  const body: TokenBody = { v: 1, q: fingerprint(query, filter), k: [...key] };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The key after which the page starts, or undefined for the first page. */
export function decodePageToken(
  token: string | undefined,
  query: string,
  filter: unknown,
  arity: number,
  field = "page_token",
): string[] | undefined {
  if (token === undefined || token === "") return undefined;
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw new InvalidArgumentError(field, "is not a token returned by this API");
  }
  if (
    typeof body !== "object" ||
    body === null ||
    (body as TokenBody).v !== 1 ||
    !Array.isArray((body as TokenBody).k) ||
    (body as TokenBody).k.length !== arity ||
    !(body as TokenBody).k.every((part) => typeof part === "string")
  ) {
    throw new InvalidArgumentError(field, "is not a token returned by this API");
  }
  if ((body as TokenBody).q !== fingerprint(query, filter)) {
    throw new InvalidArgumentError(field, "was issued for a different query or filter");
  }
  return (body as TokenBody).k;
}

/** Page size rule shared by every list call: 0 or unset means the default. */
export function pageSizeOf(value: number | undefined, field = "page_size"): number {
  if (value === undefined || value === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(value) || value < 0 || value > MAX_PAGE_SIZE) {
    throw new InvalidArgumentError(field, `must be between 1 and ${MAX_PAGE_SIZE} (0 means ${DEFAULT_PAGE_SIZE})`);
  }
  return value;
}
