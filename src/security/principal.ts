// The principal of a gRPC call: the client certificate's first SAN URI (e.g.
// spiffe://tally.local/client/ops), else its subject CN. URIs come first because
// they are what workload identity systems (SPIFFE) issue; CN keeps plain
// openssl-made certificates usable.

import type { PeerCertificate } from "node:tls";

/** Node renders SANs as `URI:a, DNS:b`; a value holding a comma is JSON-quoted (`URI:"a,b"`). */
function firstSanUri(subjectAltName: string | undefined): string | undefined {
  if (subjectAltName === undefined) return undefined;
  const pattern = /(?:^|, )URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  const match = pattern.exec(subjectAltName);
  if (match === null) return undefined;
  const raw = match[1] ?? "";
  if (raw.startsWith('"')) {
    try {
      const parsed: unknown = JSON.parse(raw);
      return typeof parsed === "string" && parsed !== "" ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
  return raw === "" ? undefined : raw;
}

function commonName(certificate: PeerCertificate): string | undefined {
  const cn: unknown = (certificate.subject as Record<string, unknown> | undefined)?.CN;
  if (typeof cn === "string" && cn !== "") return cn;
  // A subject with several CNs is ambiguous: no principal.
  return undefined;
}

export function principalOf(certificate: PeerCertificate | undefined): string | undefined {
  if (certificate === undefined) return undefined;
  return firstSanUri(certificate.subjectaltname) ?? commonName(certificate);
}
