// The security part of a node's NATS connection options: the server verified
// against the CA, the node authenticated by its nkey, and its inboxes under its
// own prefix (auth.conf lets a node subscribe only to `_INBOX.<region>.>`).

import { nkeyAuthenticator, type ConnectionOptions } from "nats";
import { readNkeySeed, type NatsClientSecurity } from "./nats-credentials";

export type NatsSecureOptions = Pick<ConnectionOptions, "tls" | "authenticator" | "inboxPrefix">;

export function natsSecureOptions(security: NatsClientSecurity, inboxOwner: string): NatsSecureOptions {
  const seed = readNkeySeed(security.nkeyFile);
  return {
    tls: { caFile: security.caFile },
    authenticator: nkeyAuthenticator(seed),
    inboxPrefix: `_INBOX.${inboxOwner}`,
  };
}
