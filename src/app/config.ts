// Every option of a node, validated once before any connection opens: flags
// override environment variables, which override defaults. A bad value is an
// error naming the flag (and its variable) and what it must be.

import { accessSync, constants } from "node:fs";
import type { NatsClientSecurity } from "../security/nats-credentials";
import { readNkeySeed } from "../security/nkey-file";
import { Mode, validatePolicy, type Policy } from "../core/policy";
import { LeaseTimingError, validateLeaseTiming, type LeaseTiming } from "../core/lease-clock";
import { DEFAULT_NODE_CONFIG, type NodeConfig } from "../node/node-config";
import type { GrpcSecurityOptions } from "../security/grpc-security";
import { readTlsFiles } from "../security/reloading-server-credentials";
import { loadRoleMap } from "../security/role-map";

/** A configuration error: the process exits non-zero with this message. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const REGION_NAME = /^[a-z][a-z0-9-]{0,31}$/;

export interface Option {
  readonly flag: string;
  readonly env: string;
}

type Source = (option: Option) => string | undefined;

/** Reads one option: the flag's value, else the variable's. */
export function optionSource(flags: Readonly<Record<string, string | boolean | undefined>>, env: NodeJS.ProcessEnv): Source {
  return (option) => {
    const flag = flags[option.flag];
    if (typeof flag === "string") return flag;
    if (flag === true) return "1";
    const value = env[option.env];
    return value === undefined || value === "" ? undefined : value;
  };
}

function describe(option: Option): string {
  return `--${option.flag} (${option.env})`;
}

/** An integer within [min, max]; `fallback` when unset. */
export function integerOption(read: Source, option: Option, fallback: number, min: number, max: number): number {
  const raw = read(option);
  if (raw === undefined) return fallback;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${describe(option)} must be an integer; got "${raw}"`);
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${describe(option)} must be between ${min} and ${max}; got ${raw}`);
  }
  return value;
}

export function booleanOption(read: Source, option: Option): boolean {
  const raw = read(option);
  if (raw === undefined) return false;
  if (raw === "1" || raw === "true") return true;
  if (raw === "0" || raw === "false") return false;
  throw new ConfigError(`${describe(option)} must be 1/true or 0/false; got "${raw}"`);
}

const REGION_OPTION: Option = { flag: "region", env: "TALLY_REGION" };
const REGIONS_OPTION: Option = { flag: "regions", env: "TALLY_REGIONS" };

/** The ordered region list: unique names, this region among them. */
export function regionsOption(region: string | undefined, listed: string | undefined): { region: string; regions: string[] } {
  if (region === undefined || region === "") throw new ConfigError(`${describe(REGION_OPTION)} is required`);
  if (!REGION_NAME.test(region)) throw new ConfigError(`${describe(REGION_OPTION)} must match ${REGION_NAME.source}; got "${region}"`);
  const regions = (listed ?? region).split(",").map((r) => r.trim());
  const seen = new Set<string>();
  for (const name of regions) {
    if (!REGION_NAME.test(name)) {
      throw new ConfigError(`${describe(REGIONS_OPTION)}: "${name}" must match ${REGION_NAME.source} (list: ${listed ?? region})`);
    }
    if (seen.has(name)) {
      throw new ConfigError(`${describe(REGIONS_OPTION)} names "${name}" twice (list: ${listed ?? region}); each region is one replica`);
    }
    seen.add(name);
  }
  if (!seen.has(region)) throw new ConfigError(`${describe(REGION_OPTION)} ${region} is not in ${describe(REGIONS_OPTION)} ${regions.join(",")}`);
  return { region, regions };
}

/** host:port with a port in 0..65535 (0 picks a free one). */
export function addressOption(read: Source, option: Option, fallback: string): string {
  const value = read(option) ?? fallback;
  const match = /^(.+):(\d+)$/.exec(value);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || !Number.isInteger(port) || port > 65_535) throw new ConfigError(`${describe(option)} must be host:port; got "${value}"`);
  return value;
}

export function urlOption(read: Source, option: Option, fallback: string | undefined, schemes: readonly string[]): string | undefined {
  const value = read(option) ?? fallback;
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${describe(option)} must be a URL (${schemes.join(", ")}); got "${value}"`);
  }
  if (!schemes.includes(url.protocol.replace(/:$/, ""))) {
    throw new ConfigError(`${describe(option)} must use ${schemes.join(" or ")}; got "${value}"`);
  }
  return value;
}

/**
 * A comma-separated list of URLs (the NATS servers of a region: the client
 * tries them all, so a node starts while one server of the region is down).
 * Returned as given, each part checked as urlOption does.
 */
export function urlListOption(read: Source, option: Option, fallback: string, schemes: readonly string[]): string {
  const value = read(option) ?? fallback;
  const parts = value.split(",").map((part) => part.trim());
  if (parts.some((part) => part === "")) throw new ConfigError(`${describe(option)} has an empty entry; got "${value}"`);
  for (const part of parts) urlOption(() => part, option, undefined, schemes);
  return parts.join(",");
}

/**
 * Copies JetStream keeps of the node's own stream, bucket and lease. Odd (a
 * Raft group needs a majority) and at most 5 (what JetStream allows).
 */
export function streamReplicasOption(read: Source): number {
  const option = { flag: "stream-replicas", env: "TALLY_STREAM_REPLICAS" };
  const replicas = integerOption(read, option, 1, 1, 5);
  if (replicas % 2 === 0) throw new ConfigError(`${describe(option)} must be 1, 3 or 5 (a majority of an even count survives no more failures than one copy fewer); got ${replicas}`);
  return replicas;
}

export function defaultPolicyOption(read: Source): Policy {
  const modeOption = { flag: "default-mode", env: "TALLY_DEFAULT_MODE" };
  const rawMode = read(modeOption) ?? "strict";
  if (rawMode !== "strict" && rawMode !== "overdraft") throw new ConfigError(`${describe(modeOption)} must be strict or overdraft; got "${rawMode}"`);
  const limitOption = { flag: "default-overdraft", env: "TALLY_DEFAULT_OVERDRAFT" };
  const rawLimit = read(limitOption) ?? "0";
  if (!/^\d+$/.test(rawLimit)) throw new ConfigError(`${describe(limitOption)} must be a non-negative integer; got "${rawLimit}"`);
  const mode = rawMode === "overdraft" ? Mode.Overdraft : Mode.Strict;
  try {
    return validatePolicy({ mode, overdraftLimit: mode === Mode.Overdraft ? BigInt(rawLimit) : 0n, lowWaterMark: 0n }, "default policy");
  } catch (error) {
    throw new ConfigError(`${describe(limitOption)}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Tunables a node reads from flags or environment, on top of the defaults. */
export function nodeTunables(read: Source): Omit<NodeConfig, "region" | "regions" | "natsUrl" | "defaultPolicy" | "placeStreamsByRegion"> {
  const d = DEFAULT_NODE_CONFIG;
  const int = (flag: string, env: string, fallback: number, min: number, max: number): number => integerOption(read, { flag, env }, fallback, min, max);
  const maxRightsWaitMs = int("max-rights-wait-ms", "TALLY_MAX_RIGHTS_WAIT_MS", d.maxRightsWaitMs, 0, 60_000);
  const defaultRightsWaitMs = int("rights-wait-ms", "TALLY_RIGHTS_WAIT_MS", d.defaultRightsWaitMs, 0, 60_000);
  if (defaultRightsWaitMs > maxRightsWaitMs) {
    throw new ConfigError(`--rights-wait-ms (${defaultRightsWaitMs}) must not exceed --max-rights-wait-ms (${maxRightsWaitMs})`);
  }
  return {
    defaultRightsWaitMs,
    maxRightsWaitMs,
    requestRetentionMs: int("request-retention-ms", "TALLY_REQUEST_RETENTION_MS", d.requestRetentionMs, 1_000, 7 * 24 * 3_600_000),
    maxRememberedRequests: int("max-remembered-requests", "TALLY_MAX_REMEMBERED_REQUESTS", d.maxRememberedRequests, 1, 100_000_000),
    maxCommitSlots: int("max-commit-slots", "TALLY_MAX_COMMIT_SLOTS", d.maxCommitSlots, 1, 100_000),
    commitRetryDelayMs: int("commit-retry-ms", "TALLY_COMMIT_RETRY_MS", d.commitRetryDelayMs, 1, 60_000),
    catchUpTimeoutMs: int("catch-up-timeout-ms", "TALLY_CATCH_UP_TIMEOUT_MS", d.catchUpTimeoutMs, 0, 600_000),
    statusIntervalMs: int("status-interval-ms", "TALLY_STATUS_INTERVAL_MS", d.statusIntervalMs, 50, 60_000),
    snapshotIntervalMs: int("snapshot-interval-ms", "TALLY_SNAPSHOT_INTERVAL_MS", d.snapshotIntervalMs, 0, 24 * 3_600_000),
    maxRetainedMessages: int("max-retained-messages", "TALLY_MAX_RETAINED_MESSAGES", d.maxRetainedMessages, 0, 100_000_000),
    spreadGrants: booleanOption(read, { flag: "spread-grants", env: "TALLY_SPREAD_GRANTS" }),
    maxWatchers: int("max-watchers", "TALLY_MAX_WATCHERS", d.maxWatchers, 1, 1_000_000),
    maxWatchersPerAccount: int("max-watchers-per-account", "TALLY_MAX_WATCHERS_PER_ACCOUNT", d.maxWatchersPerAccount, 1, 1_000_000),
    writerLease: writerLeaseOption(read),
    standbyPollMs: int("standby-poll-ms", "TALLY_STANDBY_POLL_MS", d.standbyPollMs, 10, 60_000),
    holdSweepIntervalMs: int("hold-sweep-ms", "TALLY_HOLD_SWEEP_MS", d.holdSweepIntervalMs, 1, 60_000),
    lotGuardMs: int("lot-guard-ms", "TALLY_LOT_GUARD_MS", d.lotGuardMs, 0, 24 * 3_600_000),
  };
}

/**
 * `--standby`: one of several nodes of its region (DESIGN §12), writing only
 * while it holds the writer lease. The lease TTL sets the rest: renew at 30 %,
 * stop believing at 80 % (by this node's clock).
 */
export function writerLeaseOption(read: Source): LeaseTiming | undefined {
  if (!booleanOption(read, { flag: "standby", env: "TALLY_STANDBY" })) return undefined;
  const ttlMs = integerOption(read, { flag: "lease-ttl-ms", env: "TALLY_LEASE_TTL_MS" }, 10_000, 500, 600_000);
  try {
    return validateLeaseTiming({ ttlMs, renewAfterMs: Math.floor(ttlMs * 0.3), marginMs: Math.floor(ttlMs * 0.2) });
  } catch (error) {
    if (error instanceof LeaseTimingError) throw new ConfigError(`--lease-ttl-ms (TALLY_LEASE_TTL_MS): ${error.message}`);
    throw error;
  }
}

/** Postgres pool settings: size and the timeouts every settlement connection uses. */
export interface PostgresSettings {
  /** The settler's connection (settlements run as this role). */
  readonly url: string;
  /** Migrations (and the settler's and reader's grants) run as this role; the settler's URL when absent. */
  readonly ownerUrl?: string;
  /** The read-only role that serves settlements, overspends and history; the settler's URL when absent. */
  readonly readerUrl?: string;
  /** CA of the server certificate; TLS with host verification on every connection when set. */
  readonly caFile?: string;
  readonly poolSize: number;
  readonly connectTimeoutMs: number;
  readonly statementTimeoutMs: number;
}

export const DEFAULT_POSTGRES = { poolSize: 4, connectTimeoutMs: 5_000, statementTimeoutMs: 120_000 } as const;

export function postgresOption(read: Source): PostgresSettings | undefined {
  const url = urlOption(read, { flag: "postgres", env: "TALLY_POSTGRES_URL" }, undefined, ["postgres", "postgresql"]);
  if (url === undefined) return undefined;
  return {
    url,
    poolSize: integerOption(read, { flag: "pg-pool-size", env: "TALLY_PG_POOL_SIZE" }, DEFAULT_POSTGRES.poolSize, 1, 100),
    connectTimeoutMs: integerOption(read, { flag: "pg-connect-timeout-ms", env: "TALLY_PG_CONNECT_TIMEOUT_MS" }, DEFAULT_POSTGRES.connectTimeoutMs, 100, 600_000),
    statementTimeoutMs: integerOption(read, { flag: "pg-statement-timeout-ms", env: "TALLY_PG_STATEMENT_TIMEOUT_MS" }, DEFAULT_POSTGRES.statementTimeoutMs, 100, 3_600_000),
  };
}

// --- NATS and Postgres security (issue 16) ---

/** `--insecure`: plaintext, unauthenticated links; local experiments only (warned at every start). */
export function insecureOption(read: Source): boolean {
  return booleanOption(read, { flag: "insecure", env: "TALLY_INSECURE" });
}

/** A readable file, named by `option`; undefined when unset. */
export function fileOption(read: Source, option: Option): string | undefined {
  const value = read(option);
  if (value === undefined) return undefined;
  try {
    accessSync(value, constants.R_OK);
  } catch {
    throw new ConfigError(`${describe(option)} must name a readable file; cannot read "${value}"`);
  }
  return value;
}

/** NATS TLS (the CA that signed the servers) and this node's nkey seed file; both required unless insecure. */
export function natsSecurityOption(read: Source, insecure: boolean): NatsClientSecurity | undefined {
  const caOption = { flag: "nats-ca", env: "TALLY_NATS_CA" };
  const nkeyOption = { flag: "nats-nkey", env: "TALLY_NATS_NKEY" };
  const caFile = fileOption(read, caOption);
  const nkeyFile = fileOption(read, nkeyOption);
  // --insecure permits a plaintext link only where no credentials are given; given ones are always used.
  if (insecure && caFile === undefined && nkeyFile === undefined) return undefined;
  if (caFile === undefined) throw new ConfigError(`${describe(caOption)} is required (the CA of the NATS servers), or --insecure for a local experiment`);
  if (nkeyFile === undefined) throw new ConfigError(`${describe(nkeyOption)} is required (this node's nkey seed file), or --insecure for a local experiment`);
  try {
    readNkeySeed(nkeyFile);
  } catch (error) {
    throw new ConfigError(`${describe(nkeyOption)}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return { caFile, nkeyFile };
}

/** Postgres roles and TLS: owner and reader URLs, and the CA (required with --postgres unless insecure). */
export function postgresSecurityOption(read: Source, insecure: boolean, settlerUrl: string | undefined): Pick<PostgresSettings, "ownerUrl" | "readerUrl" | "caFile"> {
  const schemes = ["postgres", "postgresql"];
  const ownerOption = { flag: "postgres-owner-url", env: "TALLY_POSTGRES_OWNER_URL" };
  const readerOption = { flag: "postgres-reader-url", env: "TALLY_POSTGRES_READER_URL" };
  const caOption = { flag: "postgres-ca", env: "TALLY_POSTGRES_CA" };
  const ownerUrl = urlOption(read, ownerOption, undefined, schemes);
  const readerUrl = urlOption(read, readerOption, undefined, schemes);
  const caFile = fileOption(read, caOption);
  if (settlerUrl === undefined) {
    // A CA alone is harmless (shared environments set it for every node); a role URL alone is a mistake.
    const stray = [ownerOption, readerOption].find((o) => read(o) !== undefined);
    if (stray !== undefined) throw new ConfigError(`${describe(stray)} needs --postgres (TALLY_POSTGRES_URL), the settler's connection`);
    return {};
  }
  for (const [option, url] of [[ownerOption, ownerUrl], [readerOption, readerUrl]] as const) {
    if (url !== undefined && new URL(url).username === "") throw new ConfigError(`${describe(option)} must name its role (postgres://ROLE@host/db); got "${url}"`);
    if (url !== undefined && /[?&](sslmode|ssl)=/.test(url)) throw new ConfigError(`${describe(option)}: TLS is set by --postgres-ca (TALLY_POSTGRES_CA), not in the URL; got "${url}"`);
  }
  if (/[?&](sslmode|ssl)=/.test(settlerUrl)) throw new ConfigError(`--postgres (TALLY_POSTGRES_URL): TLS is set by --postgres-ca (TALLY_POSTGRES_CA), not in the URL`);
  if (!insecure && caFile === undefined) {
    throw new ConfigError(`${describe(caOption)} is required with --postgres (the CA of the Postgres server's certificate), or --insecure for a local experiment`);
  }
  if (!insecure && ownerUrl === undefined) {
    // Migrating as the settler would make it the schema's owner, free to drop the ledger's append-only triggers.
    throw new ConfigError(`${describe(ownerOption)} is required with --postgres (migrations run as the owner role, so the settler cannot alter the ledger), or --insecure for a local experiment`);
  }
  return { ...(ownerUrl === undefined ? {} : { ownerUrl }), ...(readerUrl === undefined ? {} : { readerUrl }), ...(caFile === undefined ? {} : { caFile }) };
}

// ---- gRPC security (mTLS, roles, audit, admin listener) -------------------

export const INSECURE_OPTION: Option = { flag: "insecure", env: "TALLY_INSECURE" };
const GRPC_TLS_OPTIONS = {
  certFile: { flag: "grpc-tls-cert", env: "TALLY_GRPC_TLS_CERT" },
  keyFile: { flag: "grpc-tls-key", env: "TALLY_GRPC_TLS_KEY" },
  caFile: { flag: "grpc-tls-ca", env: "TALLY_GRPC_TLS_CA" },
} as const;
const GRPC_ROLES_OPTION: Option = { flag: "grpc-roles", env: "TALLY_GRPC_ROLES" };

/**
 * mTLS with a role file unless --insecure; every file is read and checked here
 * (certificate matches key, role file well-formed) before any connection opens.
 */
export function grpcSecurityOption(read: Source): GrpcSecurityOptions {
  const auditLogFile = read({ flag: "audit-log", env: "TALLY_AUDIT_LOG" });
  // --insecure serves plaintext only when no TLS file is given at all; a partial set is an error either way.
  const given = [...Object.values(GRPC_TLS_OPTIONS), GRPC_ROLES_OPTION].some((option) => read(option) !== undefined);
  if (booleanOption(read, INSECURE_OPTION) && !given) return { kind: "insecure", auditLogFile };
  const required = (option: Option): string => {
    const value = read(option);
    if (value === undefined) throw new ConfigError(`${describe(option)} is required (mTLS is the default; ${describe(INSECURE_OPTION)} serves plaintext for local experiments)`);
    return value;
  };
  const tls = { certFile: required(GRPC_TLS_OPTIONS.certFile), keyFile: required(GRPC_TLS_OPTIONS.keyFile), caFile: required(GRPC_TLS_OPTIONS.caFile) };
  const rolesFile = required(GRPC_ROLES_OPTION);
  try {
    readTlsFiles(tls);
  } catch (error) {
    const flags = Object.values(GRPC_TLS_OPTIONS).map(describe).join(", ");
    throw new ConfigError(`${flags}: ${error instanceof Error ? error.message : String(error)}`);
  }
  try {
    loadRoleMap(rolesFile);
  } catch (error) {
    throw new ConfigError(`${describe(GRPC_ROLES_OPTION)}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return { kind: "mtls", tls, rolesFile, auditLogFile };
}

/** host:port of the separate Admin + reflection listener, if asked for. */
export function adminListenOption(read: Source): string | undefined {
  const option = { flag: "admin-listen", env: "TALLY_ADMIN_LISTEN" };
  return read(option) === undefined ? undefined : addressOption(read, option, "");
}
