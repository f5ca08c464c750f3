// The gRPC certificates of a local cluster or test, from its local CA: one
// server certificate (localhost, 127.0.0.1, ::1), one client certificate per
// role plus "ops" (operator + auditor, the CLI's) and "all" (every role, for
// tests, benchmarks and local experiments), and the role file mapping their
// principals. Files are kept across restarts, like the CA.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { ROLES, type Role } from "../security/method-access";
import type { GrpcSecurityOptions } from "../security/grpc-security";
import { LocalCa, type IssuedCertificate } from "./local-ca";

export type ClientIdentity = Role | "ops" | "all";

export const CLIENT_IDENTITIES: readonly ClientIdentity[] = [...ROLES, "ops", "all"];

const IDENTITY_ROLES: Readonly<Record<ClientIdentity, readonly Role[]>> = {
  spender: ["spender"],
  granter: ["granter"],
  reader: ["reader"],
  operator: ["operator"],
  auditor: ["auditor"],
  ops: ["operator", "auditor"],
  all: ROLES,
};

/** The principal (SAN URI) of a local client certificate. */
export function localPrincipal(identity: string): string {
  return `spiffe://tally.local/client/${identity}`;
}

export const GRPC_ROLES_FILE = "grpc-roles.json";

export class LocalGrpcPki {
  private constructor(
    readonly ca: LocalCa,
    readonly server: IssuedCertificate,
    readonly rolesFile: string,
  ) {}

  /** The CA in `tlsDir` (created when absent) and the gRPC files issued from it. */
  static ensure(tlsDir: string): LocalGrpcPki {
    const ca = LocalCa.ensure(tlsDir);
    const server = ca.ensureIssued({
      name: "grpc-server",
      commonName: "tally-node",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
      usage: "server",
    });
    for (const identity of CLIENT_IDENTITIES) {
      ca.ensureIssued({ name: `grpc-client-${identity}`, commonName: `tally-client-${identity}`, uris: [localPrincipal(identity)], usage: "client" });
    }
    const rolesFile = join(tlsDir, GRPC_ROLES_FILE);
    // An edited role file is the operator's: kept as is.
    if (!existsSync(rolesFile)) {
      const principals = Object.fromEntries(CLIENT_IDENTITIES.map((identity) => [localPrincipal(identity), { roles: IDENTITY_ROLES[identity] }]));
      writeFileSync(rolesFile, `${JSON.stringify({ principals }, null, 2)}\n`, { mode: 0o600 });
    }
    return new LocalGrpcPki(ca, server, rolesFile);
  }

  get dir(): string {
    return this.ca.dir;
  }

  /** Options of a node served with these files (runNode). */
  serverSecurity(auditLogFile?: string): GrpcSecurityOptions {
    return { kind: "mtls", tls: { certFile: this.server.certFile, keyFile: this.server.keyFile, caFile: this.ca.certFile }, rolesFile: this.rolesFile, auditLogFile };
  }

  /** The same as `tally serve` flags. */
  serverArgs(): string[] {
    return ["--grpc-tls-cert", this.server.certFile, "--grpc-tls-key", this.server.keyFile, "--grpc-tls-ca", this.ca.certFile, "--grpc-roles", this.rolesFile];
  }

  clientFiles(identity: ClientIdentity): IssuedCertificate {
    return { certFile: join(this.dir, `grpc-client-${identity}.crt`), keyFile: join(this.dir, `grpc-client-${identity}.key`) };
  }

  /** mTLS channel credentials of one local client identity. */
  clientCredentials(identity: ClientIdentity): ChannelCredentials {
    const files = this.clientFiles(identity);
    return credentials.createSsl(readFileSync(this.ca.certFile), readFileSync(files.keyFile), readFileSync(files.certFile));
  }
}
