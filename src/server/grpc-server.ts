// Builds the gRPC server of a node: Balances, Admin, standard health and
// server reflection, with message-size limits, behind mTLS and the
// authorization interceptor (src/security). Binds loopback by default; Admin
// and reflection may get a listener of their own.

import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Server, type ServerCredentials } from "@grpc/grpc-js";
import type { Socket } from "node:net";
import { Server as TlsServer, type TLSSocket } from "node:tls";
import { loadFileDescriptorSetFromBuffer, type AnyDefinition, type EnumTypeDefinition, type MessageTypeDefinition, type PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { DESCRIPTOR_SET_BASE64 } from "../generated/descriptor-set";
import { AdminService } from "../generated/tally/v1/admin";
import { LogBudget } from "../node/log-budget";
import type { TallyNode } from "../node/tally-node";
import { adminService, type SettlementAdmin } from "./admin-service";
import { balancesService, BalancesServiceDefinition } from "./balances-service";
import { NoopService, noopImplementation } from "./noop-service";
import type { GrpcSecurity } from "../security/grpc-security";

/** At most this many refused-handshake lines per window; the metric counts them all. */
const REFUSAL_LOG_LINES = 20;
const REFUSAL_LOG_WINDOW_MS = 10_000;

/** Largest request accepted (a full 10,000-item batch fits comfortably). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface RunningServer {
  readonly server: Server;
  readonly port: number;
  /** The separate Admin + reflection listener's port, when one was asked for. */
  readonly adminPort: number | undefined;
  readonly health: HealthImplementation;
  stop(): Promise<void>;
}

export interface GrpcServerOptions {
  readonly settlement?: SettlementAdmin;
  readonly noopService?: boolean;
  /** Credentials and the authorization interceptor of every listener. */
  readonly security: GrpcSecurity;
  /** host:port of a separate listener for Admin and reflection (e.g. ops-only); undefined serves them on `address`. */
  readonly adminAddress?: string | undefined;
}

function newServer(security: GrpcSecurity, onRefused: (remote: string, reason: string) => void): Server {
  const server = new Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    interceptors: security.interceptors,
  });
  reportRefusedHandshakes(server, onRefused);
  return server;
}

/** host:port of a TLS socket's peer: its own while it is up, else as noted for the TCP socket it wraps. */
function remoteOf(socket: TLSSocket, remotes: WeakMap<Socket, string>): string {
  if (socket.remoteAddress !== undefined) return `${socket.remoteAddress}:${socket.remotePort ?? "?"}`;
  const tcp = (socket as unknown as { _parent?: Socket })._parent;
  return (tcp === undefined ? undefined : remotes.get(tcp)) ?? "unknown";
}

/**
 * Why: the verification error of the client's certificate when there is one
 * ("CERT_HAS_EXPIRED", …), else OpenSSL's reason ("peer did not return a
 * certificate", …) without its codes and source path.
 */
function handshakeReason(error: Error, socket: TLSSocket): string {
  const verification: unknown = (socket as unknown as { authorizationError?: unknown }).authorizationError;
  const reason = /SSL routines:[^:]*:([^:]+)/.exec(error.message)?.[1] ?? error.message;
  return verification instanceof Error ? `${verification.message} (${reason})` : typeof verification === "string" ? `${verification} (${reason})` : reason;
}

/**
 * Reports every TLS handshake a listener refuses (no client certificate, an
 * untrusted or expired one): the caller only sees UNAVAILABLE, and an
 * operator needs the other side. grpc-js has no public hook, so the HTTP/2
 * server it creates per listener is reached by wrapping its
 * `createHttp2Server` when present (grpc-security tests that the reports come).
 */
function reportRefusedHandshakes(server: Server, onRefused: (remote: string, reason: string) => void): void {
  const internals = server as unknown as { createHttp2Server?: (credentials: ServerCredentials) => unknown };
  const create = internals.createHttp2Server;
  if (typeof create !== "function") return;
  internals.createHttp2Server = (credentials: ServerCredentials): unknown => {
    const http2Server: unknown = create.call(server, credentials);
    if (http2Server instanceof TlsServer) {
      // Noted when the TCP connection arrives: a refused TLS socket may be torn down before it is reported.
      const remotes = new WeakMap<Socket, string>();
      http2Server.on("connection", (tcp: Socket) => remotes.set(tcp, `${tcp.remoteAddress ?? "unknown"}:${tcp.remotePort ?? "?"}`));
      http2Server.on("tlsClientError", (error: Error, socket: TLSSocket) => onRefused(remoteOf(socket, remotes), handshakeReason(error, socket)));
    }
    return http2Server;
  };
}

function bind(server: Server, address: string, security: GrpcSecurity): Promise<number> {
  return new Promise<number>((resolvePort, reject) => {
    server.bindAsync(address, security.credentials, (error, bound) => (error ? reject(error) : resolvePort(bound)));
  });
}

function shutdown(server: Server): Promise<void> {
  return new Promise<void>((resolveStop) => {
    const force = setTimeout(() => server.forceShutdown(), 5_000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolveStop();
    });
  });
}

export async function startGrpcServer(node: TallyNode, address: string, options: GrpcServerOptions): Promise<RunningServer> {
  // Every refusal is counted; lines are limited so that a flood of bad
  // handshakes cannot flood the log (the next line says how many were left out).
  const budget = new LogBudget(REFUSAL_LOG_LINES, REFUSAL_LOG_WINDOW_MS);
  const onRefused = (remote: string, reason: string): void => {
    node.metrics.grpcTlsRefusals.inc();
    const decision = budget.take(node.monotonic());
    if (!decision.write) return;
    node.logger.warn("TLS handshake refused", { remote, reason, ...(decision.skipped > 0 ? { alsoRefusedUnlogged: decision.skipped } : {}) });
  };
  const server = newServer(options.security, onRefused);
  // Admin and reflection go to their own listener when asked; health is on both.
  const adminServer = options.adminAddress === undefined ? server : newServer(options.security, onRefused);
  server.addService(BalancesServiceDefinition, balancesService(node));
  adminServer.addService(AdminService, adminService(node, options.settlement));
  if (options.noopService === true) server.addService(NoopService, noopImplementation);
  const health = new HealthImplementation({
    "": "SERVING",
    "tally.v1.Balances": "SERVING",
    "tally.v1.Admin": "SERVING",
  });
  health.addToServer(server);
  if (adminServer !== server) health.addToServer(adminServer);
  // Reflection only describes the contract; it is built once here, never on the hot path.
  new ReflectionService(reflectedServices()).addToServer(adminServer);
  const port = await bind(server, address, options.security);
  let adminPort: number | undefined;
  if (options.adminAddress !== undefined) {
    try {
      adminPort = await bind(adminServer, options.adminAddress, options.security);
    } catch (error) {
      server.forceShutdown();
      throw error;
    }
  }
  return {
    server,
    port,
    adminPort,
    health,
    stop: async () => {
      health.setStatus("", "NOT_SERVING");
      await Promise.all([shutdown(server), ...(adminServer === server ? [] : [shutdown(adminServer)])]);
    },
  };
}

/**
 * Balances, Admin, health and reflection, from the descriptor set that
 * scripts/generate.sh builds with buf (compiled into dist: no file to locate).
 */
function reflectedServices(): PackageDefinition {
  const set = Buffer.from(DESCRIPTOR_SET_BASE64, "base64");
  const files = descriptorSetFiles(set);
  // proto-loader re-encodes each file without its imports (and with malformed map
  // entries), so clients cannot resolve the services (grpc-node #3018):
  // reflection gets buf's files as built.
  return Object.fromEntries(
    Object.entries(loadFileDescriptorSetFromBuffer(set, { keepCase: true })).map(([name, definition]) => [
      name,
      isTypeDefinition(definition) ? { ...definition, fileDescriptorProtos: files } : definition,
    ]),
  );
}

function isTypeDefinition(definition: AnyDefinition): definition is MessageTypeDefinition<object, object> | EnumTypeDefinition {
  return Array.isArray(definition.fileDescriptorProtos);
}

/** The files of a google.protobuf.FileDescriptorSet (field 1), each as encoded. */
function descriptorSetFiles(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}
