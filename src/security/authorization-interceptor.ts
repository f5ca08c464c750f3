// The one place gRPC calls are authorized, deny by default: the caller's
// principal (from its client certificate) must hold a role the method allows,
// and a principal scoped to account prefixes may name only accounts under them.
// A refused call ends here, before any handler runs, so it changes nothing.
// Audited methods leave one JSON line each, whatever their outcome.

import { ServerInterceptingCall, ServerListenerBuilder, status, type ServerInterceptor } from "@grpc/grpc-js";
import type { AuditLog } from "./audit-log";
import { METHOD_ACCESS, rolesAllow, scopeViolation, type MethodAccess } from "./method-access";
import { principalOf } from "./principal";
import type { Grant, RoleMap } from "./role-map";

/** How calls are authorized: by the role map, or not at all (`--insecure`, local experiments). */
export type Authorization = { readonly kind: "roles"; readonly roles: RoleMap } | { readonly kind: "insecure" };

/** The principal recorded for calls on an insecure listener. */
export const INSECURE_PRINCIPAL = "(insecure: no certificate)";

/** OK, PERMISSION_DENIED, ...: the numeric enum's reverse mapping. */
function statusName(code: number): string {
  const name: unknown = (status as unknown as Record<number, unknown>)[code];
  return typeof name === "string" ? name : String(code);
}

interface Refusal {
  readonly code: status;
  readonly details: string;
}

function field(message: unknown, name: string): unknown {
  return typeof message === "object" && message !== null ? (message as Record<string, unknown>)[name] : undefined;
}

function describeRoles(grant: Grant | undefined): string {
  return grant === undefined || grant.roles.size === 0 ? "no role" : `roles ${[...grant.roles].join(",")}`;
}

/** The refusal of a call before its request is read (principal and role), or undefined. */
function checkCaller(principal: string | undefined, grant: Grant | undefined, path: string, access: MethodAccess | undefined): Refusal | undefined {
  if (principal === undefined) {
    return { code: status.UNAUTHENTICATED, details: `call to ${path} refused: the client certificate names no principal (no SAN URI, no CN)` };
  }
  if (access === undefined) {
    return { code: status.PERMISSION_DENIED, details: `principal ${principal} may not call ${path}: no role is granted this method` };
  }
  if (!rolesAllow(access, grant?.roles ?? new Set())) {
    const needed = Array.isArray(access.roles) ? access.roles.join(" or ") : "a role";
    return { code: status.PERMISSION_DENIED, details: `principal ${principal} (${describeRoles(grant)}) may not call ${path}: it needs ${needed}` };
  }
  return undefined;
}

function checkScope(principal: string, grant: Grant | undefined, path: string, access: MethodAccess, message: unknown): Refusal | undefined {
  const prefixes = grant?.accountPrefixes;
  if (prefixes === undefined) return undefined;
  const outside = scopeViolation(access.accounts(message), prefixes);
  if (outside === undefined) return undefined;
  const scope = prefixes.join(", ");
  const what = outside === "every" ? "spans every account" : `names account "${outside}"`;
  return { code: status.PERMISSION_DENIED, details: `principal ${principal} is scoped to accounts under [${scope}]; ${path} ${what}` };
}

export function authorizationInterceptor(authorization: Authorization, audit: AuditLog): ServerInterceptor {
  return (method, call) => {
    const path = method.path;
    const access: MethodAccess | undefined = METHOD_ACCESS[path];
    const audited = access?.audited === true;
    let principal: string | undefined;
    let grant: Grant | undefined;
    let request: unknown;
    const record = (outcome: string, details: string | undefined): void => {
      const amount = field(request, "amount");
      const account = field(request, "accountId");
      const requestId = field(request, "requestId");
      const subject = field(request, "holdId") ?? field(request, "debitRequestId");
      audit.record({
        principal: principal ?? "(none)",
        method: path,
        account: typeof account === "string" && account !== "" ? account : undefined,
        amount: typeof amount === "bigint" ? amount.toString() : undefined,
        requestId: typeof requestId === "string" && requestId !== "" ? requestId : undefined,
        subject: typeof subject === "string" && subject !== "" ? subject : undefined,
        outcome,
        details,
      });
    };
    let refused = false;
    const refuse = (refusal: Refusal): void => {
      if (refused) return;
      refused = true;
      if (audited) record(statusName(refusal.code), refusal.details);
      call.sendStatus({ code: refusal.code, details: refusal.details });
    };
    // An audited call refused for its caller is still read (not run), so its audit line names the account and amount.
    let refusedCaller: Refusal | undefined;
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (authorization.kind === "insecure") {
          principal = INSECURE_PRINCIPAL;
          next(metadata);
          return;
        }
        principal = principalOf(call.getAuthContext().sslPeerCertificate);
        grant = principal === undefined ? undefined : authorization.roles.get(principal);
        const refusal = checkCaller(principal, grant, path, access);
        if (refusal === undefined) next(metadata);
        else if (audited && !method.requestStream) {
          refusedCaller = refusal;
          call.startRead();
        } else refuse(refusal);
      })
      .withOnReceiveMessage((message, next) => {
        request = message;
        if (refusedCaller !== undefined) {
          refuse(refusedCaller);
          return;
        }
        const refusal = authorization.kind === "roles" && principal !== undefined && access !== undefined ? checkScope(principal, grant, path, access, message) : undefined;
        if (refusal === undefined) next(message);
        else refuse(refusal);
      })
      .withOnReceiveHalfClose((next) => {
        if (refusedCaller !== undefined) refuse(refusedCaller);
        else next();
      })
      .build();
    return new ServerInterceptingCall(call, {
      start: (next) => next(listener),
      ...(audited
        ? {
            sendStatus: (outgoing, next) => {
              record(statusName(outgoing.code ?? status.UNKNOWN), outgoing.code === status.OK ? undefined : outgoing.details);
              next(outgoing);
            },
          }
        : {}),
    });
  };
}
