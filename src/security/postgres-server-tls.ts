// Server side of Postgres TLS for the local cluster and the tests: a server
// certificate from the local CA copied into the data directory (Postgres wants
// its key owned by the server user, mode 0600), `ssl=on`, and pg_hba rules
// that let the Tally roles in only over TLS with a password (scram).

import { chownSync, copyFileSync, chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCa, type IssuedCertificate } from "../devcluster/local-ca";
import { POSTGRES_ROLES } from "./postgres-roles";

export interface ServerIdentity {
  readonly uid: number;
  readonly gid: number;
}

/**
 * Issues (once) `postgres-server` for loopback from the CA in `tlsDir`, puts a
 * copy in `dataDir` for the server user, and returns the `-c` settings that
 * turn TLS on, with the CA file for clients.
 */
export function preparePostgresTls(tlsDir: string, dataDir: string, owner: ServerIdentity | undefined): { settings: Record<string, string>; caFile: string } {
  const { ca, issued } = issuePostgresServerCertificate(tlsDir);
  const certFile = join(dataDir, "tally-server.crt");
  const keyFile = join(dataDir, "tally-server.key");
  copyFileSync(issued.certFile, certFile);
  copyFileSync(issued.keyFile, keyFile);
  chmodSync(keyFile, 0o600);
  if (owner !== undefined) {
    chownSync(certFile, owner.uid, owner.gid);
    chownSync(keyFile, owner.uid, owner.gid);
  }
  return { settings: { ssl: "on", ssl_cert_file: certFile, ssl_key_file: keyFile, password_encryption: "scram-sha-256" }, caFile: ca.certFile };
}

/** The CA in `tlsDir` and `postgres-server.crt/.key` for loopback and the `postgres` host (docker-compose). */
export function issuePostgresServerCertificate(tlsDir: string): { ca: LocalCa; issued: IssuedCertificate } {
  const ca = LocalCa.ensure(tlsDir);
  const issued = ca.ensureIssued({ name: "postgres-server", commonName: "tally-postgres", dnsNames: ["localhost", "postgres"], ipAddresses: ["127.0.0.1"], usage: "server" });
  return { ca, issued };
}

const HBA_MARK = "# tally: roles over TLS only";

/**
 * Puts the Tally roles' rules first in pg_hba.conf: over TLS with a password,
 * never in plaintext. Other lines (the superuser's local administration) stay.
 */
export function requireTlsForRoles(dataDir: string, onlyTls = false): void {
  const file = join(dataDir, "pg_hba.conf");
  const current = readFileSync(file, "utf8");
  if (current.includes(HBA_MARK)) return;
  const roles = Object.values(POSTGRES_ROLES).join(",");
  const rules = [
    HBA_MARK,
    `hostnossl all ${roles} all reject`,
    `hostssl   all ${roles} 127.0.0.1/32 scram-sha-256`,
    `hostssl   all ${roles} ::1/128 scram-sha-256`,
    // `tally up`: nothing reaches the server over TCP without TLS.
    ...(onlyTls ? ["hostnossl all all all reject"] : []),
    "",
  ];
  writeFileSync(file, `${rules.join("\n")}${current}`);
}
