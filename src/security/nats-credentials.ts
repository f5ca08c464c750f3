// NATS credentials for the local cluster and the tests, beside the local CA:
// one server certificate (client, route and gateway links) and one nkey per
// user — a node per region and an operators' user. Seeds stay in files the
// node reads (mode 0600); the servers get only the public keys (auth.conf).

import { chmodSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { nkeys } from "nats";
import { LocalCa } from "../devcluster/local-ca";
import { readNkeySeed } from "./nkey-file";

export { readNkeySeed };

/** The part of nkeys.js used here; `nats` re-exports it untyped. */
interface NkeysApi {
  createUser(): { getSeed(): Uint8Array };
  fromSeed(seed: Uint8Array): { getPublicKey(): string };
}
const userKeys = nkeys as NkeysApi;

/** A fresh nkey user seed (`SU...`), as text. */
export function createUserSeed(): string {
  return new TextDecoder().decode(userKeys.createUser().getSeed());
}

/** The users deploy/nats/auth.conf knows: one per region, and `ops` (every subject). */
export const NATS_USERS = ["east", "west", "central", "ops"] as const;
export type NatsUser = (typeof NATS_USERS)[number];

/** What a client needs to reach a secure NATS server. */
export interface NatsClientSecurity {
  /** CA that signed the servers' certificates. */
  readonly caFile: string;
  /** File holding the user's nkey seed (`SU...`). */
  readonly nkeyFile: string;
}

export interface NatsSecurityFiles {
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  /** Public nkey of each user, as the servers' NATS_NKEY_<USER> variables. */
  readonly publicKeys: Readonly<Record<NatsUser, string>>;
  readonly seedFiles: Readonly<Record<NatsUser, string>>;
}

/**
 * The CA in `tlsDir` (created when absent), a NATS server certificate valid
 * for loopback and `hostNames`, and every user's nkey seed; existing files are
 * kept, so restarts reuse them.
 */
export function ensureNatsSecurity(tlsDir: string, hostNames: readonly string[] = []): NatsSecurityFiles {
  const ca = LocalCa.ensure(tlsDir);
  const server = ca.ensureIssued({
    name: "nats-server",
    commonName: "tally-nats",
    dnsNames: ["localhost", ...NATS_USERS.filter((u) => u !== "ops").map((r) => `nats-${r}`), ...hostNames],
    ipAddresses: ["127.0.0.1"],
    // Routes and gateways present the same certificate as clients of each other.
    usage: "both",
  });
  const publicKeys = {} as Record<NatsUser, string>;
  const seedFiles = {} as Record<NatsUser, string>;
  for (const user of NATS_USERS) {
    const seedFile = join(tlsDir, `nats-${user}.nk`);
    if (!existsSync(seedFile)) {
      writeFileSync(seedFile, `${createUserSeed()}\n`, { mode: 0o600 });
      chmodSync(seedFile, 0o600);
    }
    seedFiles[user] = seedFile;
    publicKeys[user] = userKeys.fromSeed(readNkeySeed(seedFile)).getPublicKey();
  }
  return { caFile: ca.certFile, serverCertFile: server.certFile, serverKeyFile: server.keyFile, publicKeys, seedFiles };
}

/** The variables deploy/nats/region.conf and standalone.conf read for TLS and users. */
export function natsServerEnv(files: NatsSecurityFiles): Record<string, string> {
  const env: Record<string, string> = {
    NATS_TLS_CA: files.caFile,
    NATS_TLS_CERT: files.serverCertFile,
    NATS_TLS_KEY: files.serverKeyFile,
  };
  for (const user of NATS_USERS) env[`NATS_NKEY_${user.toUpperCase()}`] = files.publicKeys[user];
  return env;
}

export function natsClientSecurity(files: NatsSecurityFiles, user: NatsUser): NatsClientSecurity {
  return { caFile: files.caFile, nkeyFile: files.seedFiles[user] };
}

