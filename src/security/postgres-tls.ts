// TLS for every Postgres connection of a node: the server's certificate must
// chain to the given CA and name the host it was reached at (libpq's
// verify-full). Without a CA (only with --insecure) connections are plaintext.

import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";

export function postgresSsl(caFile: string | undefined): ConnectionOptions | undefined {
  if (caFile === undefined) return undefined;
  // rejectUnauthorized checks the chain; Node's default checkServerIdentity
  // checks the host name (or IP) against the certificate.
  return { ca: readFileSync(caFile, "utf8"), rejectUnauthorized: true };
}
