// What a node's gRPC listeners need for security, built from its options:
// mTLS credentials that follow their files, the authorization interceptor over
// the role map, and the audit log. `--insecure` keeps the audit log but serves
// plaintext to anyone, and says so at every start.

import { ServerCredentials, type ServerInterceptor } from "@grpc/grpc-js";
import type { Logger } from "../node/logger";
import { openAuditLog } from "./audit-log";
import { authorizationInterceptor, type Authorization } from "./authorization-interceptor";
import { ReloadingServerCredentials, type TlsFiles } from "./reloading-server-credentials";
import { loadRoleMap } from "./role-map";

export type GrpcSecurityOptions =
  | { readonly kind: "mtls"; readonly tls: TlsFiles; readonly rolesFile: string; readonly auditLogFile?: string | undefined }
  | { readonly kind: "insecure"; readonly auditLogFile?: string | undefined };

export interface GrpcSecurity {
  readonly credentials: ServerCredentials;
  readonly interceptors: ServerInterceptor[];
  stop(): Promise<void>;
}

export const INSECURE_WARNING = "--insecure: gRPC serves plaintext, with no client certificates and no roles (every caller may do everything); for local experiments only";

/** Throws RoleFileError or an Error naming the certificate file before any listener opens. */
export function openGrpcSecurity(options: GrpcSecurityOptions, region: string, logger: Logger): GrpcSecurity {
  let authorization: Authorization;
  let credentials: ServerCredentials;
  let reloading: ReloadingServerCredentials | undefined;
  if (options.kind === "mtls") {
    authorization = { kind: "roles", roles: loadRoleMap(options.rolesFile) };
    reloading = new ReloadingServerCredentials(options.tls, {
      reloaded: (files) => logger.info("gRPC TLS files reloaded", { cert: files.certFile, ca: files.caFile }),
      rejected: (files, reason) => logger.warn("gRPC TLS files changed but are not usable; keeping the previous ones", { cert: files.certFile, reason }),
    });
    credentials = reloading;
  } else {
    logger.warn(INSECURE_WARNING);
    authorization = { kind: "insecure" };
    credentials = ServerCredentials.createInsecure();
  }
  const audit = openAuditLog(region, options.auditLogFile);
  return {
    credentials,
    interceptors: [authorizationInterceptor(authorization, audit)],
    stop: async () => {
      reloading?.stop();
      await audit.close();
    },
  };
}
