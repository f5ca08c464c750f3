// Serves /metrics on its own HTTP port, apart from the gRPC port, and the
// same health the gRPC health service reports, as plain HTTP probes: the
// kubelet's gRPC probe cannot speak TLS, and the gRPC port is mTLS-only.

import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export type ProbeStatus = "SERVING" | "NOT_SERVING";

/** What a probe reads: the status of a gRPC health service name, and why when not serving. */
export type HealthLookup = (service: string) => { readonly status: ProbeStatus; readonly reason?: string } | undefined;

/** HTTP path → gRPC health service it reports. */
export const PROBE_PATHS: Readonly<Record<string, string>> = {
  "/readyz": "tally.v1.Balances",
  "/readyz/writer": "tally.writer",
  "/readyz/replication": "tally.replication",
};

export async function startMetricsServer(registry: Registry, port: number, host = "127.0.0.1", health?: HealthLookup): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (path === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        },
        (error: unknown) => {
          res.writeHead(500);
          res.end(String(error));
        },
      );
      return;
    }
    // Liveness: the event loop answers. Not tied to NATS: a node waiting for its
    // NATS server must not be restarted for it.
    if (path === "/livez") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    const service = PROBE_PATHS[path];
    if (service !== undefined && health !== undefined) {
      const found = health(service);
      const serving = found?.status === "SERVING";
      res.writeHead(serving ? 200 : 503, { "content-type": "text/plain" });
      res.end(serving ? "SERVING\n" : `NOT_SERVING${found?.reason === undefined ? "" : `: ${found.reason}`}\n`);
      return;
    }
    res.writeHead(404);
    res.end(`not found; try /metrics, /livez${health === undefined ? "" : `, ${Object.keys(PROBE_PATHS).join(", ")}`}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
