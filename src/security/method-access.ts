// Which roles may call each gRPC method, which accounts a request touches (for
// prefix scoping) and which calls are audited. Pure data: the interceptor reads
// it, docs/api.md shows it as a table, and a test checks every cell on a node.

export const ROLES = ["spender", "granter", "reader", "operator", "auditor"] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

/** Accounts a request names, or "every" for a call that spans all accounts (refused to scoped principals). */
export type AccountsOf = (request: unknown) => readonly string[] | "every";

export interface MethodAccess {
  /** Roles allowed; "any-principal" = any caller with a trusted certificate, even one holding no role. */
  readonly roles: readonly Role[] | "any-principal" | "any-role";
  readonly accounts: AccountsOf;
  /** Creates or destroys credit, or changes how the cluster runs: one audit line per call. */
  readonly audited: boolean;
}

function field(request: unknown, name: string): unknown {
  return typeof request === "object" && request !== null ? (request as Record<string, unknown>)[name] : undefined;
}

const oneAccount: AccountsOf = (request) => {
  const id = field(request, "accountId");
  return [typeof id === "string" ? id : ""];
};

const batchAccounts: AccountsOf = (request) => {
  const debits = field(request, "debits");
  if (!Array.isArray(debits)) return [];
  return debits.map((d: unknown) => {
    const id = field(d, "accountId");
    return typeof id === "string" ? id : "";
  });
};

const everyAccount: AccountsOf = () => "every";
const noAccount: AccountsOf = () => [];

/** ListOverspends filters by account when one is given; without it, it lists every account (so do CaptureHold, VoidHold and Refund). */
const optionalAccount: AccountsOf = (request) => {
  const id = field(request, "accountId");
  return typeof id === "string" && id !== "" ? [id] : "every";
};

const SPEND: readonly Role[] = ["spender"];
const READ: readonly Role[] = ["spender", "reader"];
const GRANT: readonly Role[] = ["granter"];
const OPERATE: readonly Role[] = ["operator"];
const AUDIT: readonly Role[] = ["operator", "auditor"];

export const METHOD_ACCESS: Readonly<Record<string, MethodAccess>> = {
  "/tally.v1.Balances/Debit": { roles: SPEND, accounts: oneAccount, audited: false },
  "/tally.v1.Balances/DebitBatch": { roles: SPEND, accounts: batchAccounts, audited: false },
  "/tally.v1.Balances/GetBalance": { roles: READ, accounts: oneAccount, audited: false },
  "/tally.v1.Balances/WatchBalance": { roles: READ, accounts: oneAccount, audited: false },
  "/tally.v1.Balances/Grant": { roles: GRANT, accounts: oneAccount, audited: true },
  "/tally.v1.Balances/Hold": { roles: SPEND, accounts: oneAccount, audited: false },
  // Capture turns held credit into a debit, void gives it back; a call without
  // account_id spans every account (refused to scoped principals).
  "/tally.v1.Balances/CaptureHold": { roles: SPEND, accounts: optionalAccount, audited: true },
  "/tally.v1.Balances/VoidHold": { roles: SPEND, accounts: optionalAccount, audited: true },
  // A refund creates credit: granters only, audited like Grant.
  "/tally.v1.Balances/Refund": { roles: GRANT, accounts: optionalAccount, audited: true },
  "/tally.v1.Admin/GetAccountPolicy": { roles: OPERATE, accounts: oneAccount, audited: true },
  "/tally.v1.Admin/SetAccountPolicy": { roles: OPERATE, accounts: oneAccount, audited: true },
  "/tally.v1.Admin/TransferAllowance": { roles: OPERATE, accounts: oneAccount, audited: true },
  "/tally.v1.Admin/Settle": { roles: OPERATE, accounts: everyAccount, audited: true },
  "/tally.v1.Admin/ListSettlements": { roles: AUDIT, accounts: everyAccount, audited: true },
  "/tally.v1.Admin/ListOverspends": { roles: AUDIT, accounts: optionalAccount, audited: true },
  "/tally.v1.Admin/GetAccountHistory": { roles: AUDIT, accounts: oneAccount, audited: true },
  "/tally.v1.Admin/ClusterStatus": { roles: OPERATE, accounts: everyAccount, audited: true },
  "/tally.v1.Admin/ShiftRights": { roles: OPERATE, accounts: everyAccount, audited: true },
  // The benchmarks' baseline service (served only with --noop-service) costs what Debit costs.
  "/tally.bench.v1.Noop/Debit": { roles: SPEND, accounts: oneAccount, audited: false },
  "/tally.bench.v1.Noop/DebitBatch": { roles: SPEND, accounts: batchAccounts, audited: false },
  // Health answers any trusted certificate: probes need no role.
  "/grpc.health.v1.Health/Check": { roles: "any-principal", accounts: noAccount, audited: false },
  "/grpc.health.v1.Health/Watch": { roles: "any-principal", accounts: noAccount, audited: false },
  // Reflection describes the contract only; any principal holding a role may read it.
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": { roles: "any-role", accounts: noAccount, audited: false },
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": { roles: "any-role", accounts: noAccount, audited: false },
};

/** Whether a principal holding `roles` may call `access`'s method (scope aside). */
export function rolesAllow(access: MethodAccess, roles: ReadonlySet<Role>): boolean {
  if (access.roles === "any-principal") return true;
  if (access.roles === "any-role") return roles.size > 0;
  return access.roles.some((role) => roles.has(role));
}

/** The first account outside the prefixes, "every" for an all-accounts call, undefined when in scope. */
export function scopeViolation(accounts: readonly string[] | "every", prefixes: readonly string[]): string | undefined {
  if (accounts === "every") return "every";
  return accounts.find((account) => !prefixes.some((prefix) => account.startsWith(prefix)));
}
