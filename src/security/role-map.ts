// The principal → roles (and optional account prefixes) mapping, read from a
// JSON file and validated whole at start: an error names the file and the
// entry. Format (docs/api.md):
//   { "principals": { "spiffe://tally.local/client/ops": { "roles": ["operator", "auditor"] },
//                     "CN-or-URI": { "roles": ["spender"], "accountPrefixes": ["acme/"] } } }

import { readFileSync } from "node:fs";
import { ACCOUNT_ID_PATTERN } from "../core/validation";
import { isRole, ROLES, type Role } from "./method-access";

export interface Grant {
  readonly roles: ReadonlySet<Role>;
  /** Accounts the principal may name; undefined = every account. */
  readonly accountPrefixes: readonly string[] | undefined;
}

export type RoleMap = ReadonlyMap<string, Grant>;

/** The role file cannot be read or breaks the format; the message names the file and the entry. */
export class RoleFileError extends Error {
  override readonly name = "RoleFileError";
}

const ENTRY_KEYS = new Set(["roles", "accountPrefixes"]);

/** Checks a parsed role file; `where` names it in errors. */
export function parseRoleMap(document: unknown, where: string): RoleMap {
  const fail = (detail: string): never => {
    throw new RoleFileError(`${where}: ${detail}`);
  };
  if (typeof document !== "object" || document === null || Array.isArray(document)) return fail('must be a JSON object {"principals": {...}}');
  const extra = Object.keys(document).filter((k) => k !== "principals");
  if (extra.length > 0) fail(`unknown key "${extra[0] ?? ""}" (only "principals")`);
  const principals = (document as { principals?: unknown }).principals;
  if (typeof principals !== "object" || principals === null || Array.isArray(principals)) return fail('"principals" must be an object of principal → {roles, accountPrefixes?}');
  const map = new Map<string, Grant>();
  for (const [principal, entry] of Object.entries(principals)) {
    const at = `principal "${principal}"`;
    if (principal.trim() === "") fail("a principal name is empty");
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) fail(`${at} must be an object {roles, accountPrefixes?}`);
    const record = entry as Record<string, unknown>;
    const unknownKey = Object.keys(record).find((k) => !ENTRY_KEYS.has(k));
    if (unknownKey !== undefined) fail(`${at}: unknown key "${unknownKey}" (roles, accountPrefixes)`);
    const roles = record.roles;
    if (!Array.isArray(roles) || roles.length === 0) fail(`${at}: "roles" must be a non-empty list of ${ROLES.join(", ")}`);
    const held = new Set<Role>();
    (roles as unknown[]).forEach((role, i) => {
      if (!isRole(role)) fail(`${at}: roles[${i}] ${JSON.stringify(role)} is not a role (${ROLES.join(", ")})`);
      else if (held.has(role)) fail(`${at}: roles[${i}] "${role}" is listed twice`);
      else held.add(role);
    });
    let accountPrefixes: string[] | undefined;
    if (record.accountPrefixes !== undefined) {
      const prefixes = record.accountPrefixes;
      if (!Array.isArray(prefixes) || prefixes.length === 0) fail(`${at}: "accountPrefixes" must be a non-empty list of account-id prefixes (omit it for every account)`);
      accountPrefixes = (prefixes as unknown[]).map((prefix, i) => {
        if (typeof prefix !== "string" || prefix === "" || !ACCOUNT_ID_PATTERN.test(prefix)) {
          return fail(`${at}: accountPrefixes[${i}] ${JSON.stringify(prefix)} must be a non-empty account-id prefix matching ${ACCOUNT_ID_PATTERN.source}`);
        }
        return prefix;
      });
    }
    map.set(principal, { roles: held, accountPrefixes });
  }
  return map;
}

/** Reads and checks the role file. */
export function loadRoleMap(file: string): RoleMap {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new RoleFileError(`cannot read role file ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new RoleFileError(`role file ${file} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  return parseRoleMap(document, `role file ${file}`);
}
