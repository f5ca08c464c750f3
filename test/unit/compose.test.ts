// docker-compose.yml (and the deploy/k8s example) cannot run here (no Docker
// engine, no cluster), so they are checked statically: every mounted file
// exists, the NATS servers get every variable deploy/nats/region.conf reads,
// and every host and port one service names for another is one that service
// really listens on.

import { PROBE_PATHS } from "../../src/metrics/metrics-server";
import { expect } from "chai";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { NATS_USERS } from "../../src/security/nats-credentials";
import { writeCredentials } from "../../src/cli/credentials-command";
import { dirname, join, posix, resolve } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { repoRoot } from "../support/repo-root";

const ROOT = repoRoot();
const REGION_CONF = "deploy/nats/region.conf";
const AUTH_CONF = "deploy/nats/auth.conf";
/** Where `tally credentials` (and `tally up`) write the credentials; generated, so not in the repo. */
const CREDENTIALS_DIR = ".tally/tls";
const CREDENTIALS_TARGET = "/etc/tally/tls";

/** The files `tally credentials` writes, generated once into a temp dir. */
function generatedCredentials(): Set<string> {
  const dir = mkdtempSync(join(tmpdir(), "tally-compose-creds-"));
  try {
    const tls = join(dir, "tls");
    writeCredentials(tls);
    return new Set(readdirSync(tls));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- a typed view of the parts of a compose file checked here ---------------

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly bind: boolean;
}

interface Service {
  readonly name: string;
  readonly image: string | undefined;
  readonly build: { context: string; dockerfile: string } | undefined;
  readonly command: readonly string[];
  readonly env: ReadonlyMap<string, string>;
  readonly mounts: readonly Mount[];
  readonly publishedPorts: readonly number[];
}

interface Compose {
  readonly services: ReadonlyMap<string, Service>;
  readonly namedVolumes: ReadonlySet<string>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function scalar(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  throw new Error(`expected a scalar, got ${JSON.stringify(value)}`);
}

function list(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`expected a list, got ${JSON.stringify(value)}`);
  return value as unknown[];
}

function environment(value: unknown): Map<string, string> {
  const env = new Map<string, string>();
  if (Array.isArray(value)) {
    for (const item of value) {
      const text = scalar(item);
      const eq = text.indexOf("=");
      env.set(eq < 0 ? text : text.slice(0, eq), eq < 0 ? "" : text.slice(eq + 1));
    }
  } else if (isRecord(value)) {
    for (const [key, v] of Object.entries(value)) env.set(key, v === null ? "" : scalar(v));
  }
  return env;
}

function mount(value: unknown): Mount {
  if (isRecord(value)) {
    return { source: scalar(value.source), target: scalar(value.target), bind: value.type === "bind" };
  }
  const [source = "", target = ""] = scalar(value).split(":");
  return { source, target, bind: /^[./~]/.test(source) };
}

function publishedPort(value: unknown): number {
  if (isRecord(value)) return Number(scalar(value.published));
  const parts = scalar(value).split(":");
  // "container", "host:container" or "ip:host:container"
  return Number(parts.length === 1 ? parts[0] : parts[parts.length - 2]);
}

function loadCompose(text: string): Compose {
  const doc: unknown = parse(text, { merge: true });
  if (!isRecord(doc) || !isRecord(doc.services)) throw new Error("docker-compose.yml has no services");
  const services = new Map<string, Service>();
  for (const [name, raw] of Object.entries(doc.services)) {
    if (!isRecord(raw)) throw new Error(`service ${name} is not a mapping`);
    let build: Service["build"];
    if (typeof raw.build === "string") build = { context: raw.build, dockerfile: "Dockerfile" };
    else if (isRecord(raw.build)) {
      build = { context: scalar(raw.build.context ?? "."), dockerfile: scalar(raw.build.dockerfile ?? "Dockerfile") };
    }
    services.set(name, {
      name,
      image: raw.image === undefined ? undefined : scalar(raw.image),
      build,
      command: typeof raw.command === "string" ? raw.command.split(/\s+/) : list(raw.command).map(scalar),
      env: environment(raw.environment),
      mounts: list(raw.volumes).map(mount),
      publishedPorts: list(raw.ports).map(publishedPort),
    });
  }
  const namedVolumes = new Set(isRecord(doc.volumes) ? Object.keys(doc.volumes) : []);
  return { services, namedVolumes };
}

/** host:port (or scheme://host:port) split; the port is required. */
function hostPort(address: string): { host: string; port: number } {
  const match = /^(?:[a-z]+:\/\/)?([^:/]+):(\d+)\/?$/.exec(address);
  if (match === null) throw new Error(`not host:port: ${address}`);
  return { host: match[1] ?? "", port: Number(match[2]) };
}

/** A NATS config list passed through a variable ("[a, b]"); nats-server parses the value as config. */
function natsList(value: string): string[] {
  const trimmed = value.trim();
  if (!trimmed.startsWith("[") || !trimmed.endsWith("]")) throw new Error(`not a NATS list: ${value}`);
  return trimmed.slice(1, -1).split(",").map((x) => x.trim()).filter((x) => x !== "");
}

/** `$VARS` a NATS config reads (comments and quoted strings, such as "$JS.API.>" subjects, ignored). */
function confVariables(conf: string): Set<string> {
  const vars = new Set<string>();
  for (const line of conf.split("\n")) {
    const code = line.replace(/"[^"]*"/g, '""').replace(/#.*$/, "");
    for (const m of code.matchAll(/\$([A-Za-z_][A-Za-z0-9_]*)/g)) vars.add(m[1] ?? "");
  }
  return vars;
}

/** The conf's gateway list: gateway (region) name -> the variable holding its URL. */
function confGateways(conf: string): Map<string, string> {
  const gateways = new Map<string, string>();
  for (const m of conf.matchAll(/name:\s*"?([\w-]+)"?\s*,?\s*url:\s*\$([A-Za-z0-9_]+)/g)) gateways.set(m[1] ?? "", m[2] ?? "");
  return gateways;
}

/** Host file behind a container path, through the service's bind mounts. */
function hostPathOf(service: Service, containerPath: string): string | undefined {
  for (const m of service.mounts) {
    if (!m.bind) continue;
    if (containerPath === m.target) return resolve(ROOT, m.source);
    if (containerPath.startsWith(`${m.target}/`)) return resolve(ROOT, m.source, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

/** Files matching a path whose last segment may hold `*`. */
function globFiles(path: string): string[] {
  const dir = dirname(path);
  const base = path.slice(dir.length + 1);
  if (!base.includes("*")) return existsSync(path) ? [path] : [];
  if (!existsSync(dir)) return [];
  const pattern = new RegExp(`^${base.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
  return readdirSync(dir)
    .filter((f) => pattern.test(f))
    .map((f) => join(dir, f));
}

// ---- the checks --------------------------------------------------------------

describe("compose - docker-compose.yml describes the same topology as the tests", () => {
  const compose = loadCompose(readFileSync(join(ROOT, "docker-compose.yml"), "utf8"));
  const conf = readFileSync(join(ROOT, REGION_CONF), "utf8");
  const services = [...compose.services.values()];
  const natsServices = services.filter((s) => s.mounts.some((m) => m.bind && resolve(ROOT, m.source) === join(ROOT, REGION_CONF)));
  const tallyNodes = services.filter((s) => s.env.has("TALLY_NATS_URL"));
  const service = (name: string): Service => {
    const found = compose.services.get(name);
    if (found === undefined) throw new Error(`no service named ${name}`);
    return found;
  };
  const env = (s: Service, key: string): string => {
    const value = s.env.get(key);
    if (value === undefined || value === "") throw new Error(`${s.name}: ${key} is not set`);
    return value;
  };
  const natsOfRegion = (region: string): Service => {
    const found = natsServices.filter((s) => s.env.get("TALLY_REGION") === region);
    expect(found, `NATS services of region ${region}`).to.have.length(1);
    return found[0] as Service;
  };

  it("compose - declares three NATS servers, three nodes, Postgres, Prometheus and Grafana", () => {
    expect(natsServices.map((s) => s.name).sort()).to.deep.equal(["nats-central", "nats-east", "nats-west"]);
    expect(tallyNodes.map((s) => s.name).sort()).to.deep.equal(["tally-central", "tally-east", "tally-west"]);
    expect(service("postgres").image).to.match(/^postgres:15/);
    expect(service("prometheus").image).to.match(/prometheus/);
    expect(service("grafana").image).to.match(/grafana/);
    for (const s of natsServices) expect(s.image, s.name).to.match(/^nats:2\.9/);
  });

  it("compose - every host path mounted in a volume exists in the repo", () => {
    const missing: string[] = [];
    for (const s of services) {
      for (const m of s.mounts) {
        if (m.bind) {
          // The credentials directory is generated (checked file by file below).
          if (posix.normalize(m.source) === CREDENTIALS_DIR && m.target === CREDENTIALS_TARGET) continue;
          if (!existsSync(resolve(ROOT, m.source))) missing.push(`${s.name}: ${m.source}`);
        } else if (!compose.namedVolumes.has(m.source)) {
          missing.push(`${s.name}: named volume ${m.source} is not declared under volumes:`);
        }
      }
    }
    expect(missing, "mounted paths missing from the repo").to.deep.equal([]);
  });

  it("compose - every node is built from the repo's Dockerfile, whose sources exist", () => {
    for (const s of tallyNodes) {
      expect(s.build, `${s.name} build`).to.not.equal(undefined);
      const dockerfile = resolve(ROOT, s.build?.context ?? ".", s.build?.dockerfile ?? "Dockerfile");
      expect(existsSync(dockerfile), `${s.name}: ${dockerfile}`).to.equal(true);
    }
    const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    expect(dockerfile).to.match(/^FROM node:20-slim/m);
    expect(dockerfile).to.match(/RUN npm ci\b/);
    expect(dockerfile).to.match(/RUN npm run build\b/);
    expect(dockerfile).to.match(/ENTRYPOINT \["node", "dist\/src\/cli\/main\.js"\]/);
    for (const line of dockerfile.split("\n")) {
      const copy = /^COPY (?!--from)(.+) \S+$/.exec(line.trim());
      if (copy === null) continue;
      for (const source of (copy[1] ?? "").split(/\s+/)) expect(existsSync(join(ROOT, source)), `Dockerfile COPY ${source}`).to.equal(true);
    }
    const ignored = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const needed of ["src", "proto", "package.json", "package-lock.json", "tsconfig.json"]) {
      expect(ignored, `.dockerignore must not exclude ${needed}`).to.not.include(needed);
    }
  });

  it("compose - NATS services run deploy/nats/region.conf and set every variable it reads", () => {
    const variables = new Set([...confVariables(conf), ...confVariables(readFileSync(join(ROOT, AUTH_CONF), "utf8"))]);
    expect(variables.size, "variables parsed from region.conf").to.be.greaterThan(10);
    for (const s of natsServices) {
      const target = s.mounts.find((m) => resolve(ROOT, m.source) === join(ROOT, REGION_CONF))?.target ?? "";
      const configArg = s.command.findIndex((a) => a === "--config" || a === "-c");
      expect(configArg, `${s.name} passes --config`).to.be.greaterThan(-1);
      expect(s.command[configArg + 1], `${s.name} --config`).to.equal(target);
      const unset = [...variables].filter((v) => (s.env.get(v) ?? "") === "");
      expect(unset, `${s.name} leaves region.conf variables unset`).to.deep.equal([]);
    }
    const regions = natsServices.map((s) => env(s, "TALLY_REGION"));
    expect(new Set(regions).size, "one NATS service per region").to.equal(regions.length);
    const names = natsServices.map((s) => env(s, "NATS_SERVER_NAME"));
    expect(new Set(names).size, "server names are unique").to.equal(names.length);
  });

  it("compose - gateway URLs name existing services on the gateway port they listen on", () => {
    const gateways = confGateways(conf);
    expect([...gateways.keys()].sort(), "gateways in region.conf").to.deep.equal(
      natsServices.map((s) => env(s, "TALLY_REGION")).sort(),
    );
    for (const s of natsServices) {
      for (const [region, variable] of gateways) {
        const url = hostPort(env(s, variable));
        const peer = service(url.host);
        expect(peer.env.get("TALLY_REGION"), `${s.name} ${variable} -> ${url.host}`).to.equal(region);
        expect(url.port, `${s.name} ${variable} port`).to.equal(hostPort(env(peer, "NATS_GATEWAY_LISTEN")).port);
      }
      const advertised = hostPort(env(s, "NATS_GATEWAY_ADVERTISE"));
      expect(advertised.host, `${s.name} advertises itself`).to.equal(s.name);
      expect(advertised.port).to.equal(hostPort(env(s, "NATS_GATEWAY_LISTEN")).port);
      // One server per region in compose: its route list names its own cluster port.
      const routes = natsList(env(s, "NATS_CLUSTER_ROUTES")).map(hostPort);
      expect(routes.length, `${s.name} NATS_CLUSTER_ROUTES`).to.equal(1);
      expect([s.name, "127.0.0.1", "localhost"], `${s.name} routes to its own cluster`).to.include(routes[0]?.host);
      expect(routes[0]?.port).to.equal(hostPort(env(s, "NATS_CLUSTER_LISTEN")).port);
      // Monitoring and listen addresses must be reachable from other containers.
      expect(hostPort(env(s, "NATS_LISTEN")).host, `${s.name} NATS_LISTEN`).to.equal("0.0.0.0");
    }
  });

  it("compose - each node talks to the NATS server of its own region on its client port", () => {
    for (const node of tallyNodes) {
      const region = env(node, "TALLY_REGION");
      const nats = natsOfRegion(region);
      const url = hostPort(env(node, "TALLY_NATS_URL"));
      expect(url.host, `${node.name} TALLY_NATS_URL host`).to.equal(nats.name);
      expect(url.port, `${node.name} TALLY_NATS_URL port`).to.equal(hostPort(env(nats, "NATS_LISTEN")).port);
      expect(env(node, "TALLY_PLACE_BY_REGION"), `${node.name} places streams by region`).to.equal("1");
    }
  });

  it("compose - every node lists the same regions, one node per region", () => {
    const lists = tallyNodes.map((n) => env(n, "TALLY_REGIONS"));
    expect(new Set(lists).size, `TALLY_REGIONS differ: ${lists.join(" | ")}`).to.equal(1);
    const listed = (lists[0] ?? "").split(",").map((r) => r.trim());
    expect([...listed].sort(), "TALLY_REGIONS names every node's region").to.deep.equal(tallyNodes.map((n) => env(n, "TALLY_REGION")).sort());
    expect([...listed].sort(), "TALLY_REGIONS names every NATS region").to.deep.equal(natsServices.map((s) => env(s, "TALLY_REGION")).sort());
  });

  it("compose - nodes listen on all interfaces and reach Postgres with its own credentials", () => {
    const pg = service("postgres");
    for (const node of tallyNodes) {
      expect(hostPort(env(node, "TALLY_GRPC_ADDR")).host, `${node.name} gRPC`).to.equal("0.0.0.0");
      expect(env(node, "TALLY_METRICS_HOST"), `${node.name} metrics host`).to.equal("0.0.0.0");
      expect(Number(env(node, "TALLY_METRICS_PORT")), `${node.name} metrics port`).to.be.greaterThan(0);
      expect(Number(env(node, "TALLY_SETTLE_INTERVAL_MS")), `${node.name} settle interval`).to.be.greaterThan(0);
      // Settler, owner and reader: the roles init-roles.sh creates, with the passwords it is given.
      const initRoles = readFileSync(join(ROOT, "deploy/postgres/init-roles.sh"), "utf8");
      for (const [variable, role, password] of [
        ["TALLY_POSTGRES_URL", "tally_settler", "TALLY_PG_SETTLER_PASSWORD"],
        ["TALLY_POSTGRES_OWNER_URL", "tally_owner", "TALLY_PG_OWNER_PASSWORD"],
        ["TALLY_POSTGRES_READER_URL", "tally_reader", "TALLY_PG_READER_PASSWORD"],
      ] as const) {
        const url = new URL(env(node, variable));
        expect(url.hostname, `${node.name} ${variable} host`).to.equal(pg.name);
        expect(url.port === "" ? 5432 : Number(url.port)).to.equal(Number(pg.env.get("PGPORT") ?? "5432"));
        expect(decodeURIComponent(url.username), variable).to.equal(role);
        expect(decodeURIComponent(url.password), variable).to.equal(`\${${password}}`);
        expect(pg.env.has(password), `postgres gets ${password}`).to.equal(true);
        expect(initRoles, `init-roles.sh creates ${role} with ${password}`).to.match(new RegExp(`CREATE ROLE ${role} .*PASSWORD '\\$${password}'`));
        expect(url.pathname.slice(1)).to.equal("tally");
      }
      expect(initRoles).to.include("CREATE DATABASE tally OWNER tally_owner");
    }
  });

  it("compose - NATS and nodes use the credentials `tally credentials` writes, mounted where their variables point", () => {
    const files = generatedCredentials();
    const credentialPaths = (s: Service): string[] =>
      [...s.env.entries()].filter(([, v]) => v.startsWith(`${CREDENTIALS_TARGET}/`)).map(([k, v]) => `${k}=${v}`);
    for (const s of [...natsServices, ...tallyNodes, service("postgres")]) {
      expect(s.mounts.some((m) => m.bind && posix.normalize(m.source) === CREDENTIALS_DIR && m.target === CREDENTIALS_TARGET), `${s.name} mounts ${CREDENTIALS_DIR}`).to.equal(true);
      for (const entry of credentialPaths(s)) {
        const file = entry.slice(entry.indexOf("=") + CREDENTIALS_TARGET.length + 2);
        expect(files.has(file), `${s.name} ${entry} is a file tally credentials writes`).to.equal(true);
      }
    }
    for (const s of natsServices) {
      // auth.conf sits beside region.conf: it is included by relative path.
      const target = s.mounts.find((m) => resolve(ROOT, m.source) === join(ROOT, REGION_CONF))?.target ?? "";
      expect(s.mounts.find((m) => resolve(ROOT, m.source) === join(ROOT, AUTH_CONF))?.target, `${s.name} auth.conf`).to.equal(posix.join(posix.dirname(target), "auth.conf"));
      for (const user of NATS_USERS) {
        const name = `NATS_NKEY_${user.toUpperCase()}`;
        expect(env(s, name), `${s.name} ${name} comes from compose.env`).to.match(new RegExp(`^\\$\\{${name}(:\\?[^}]*)?\\}$`));
      }
      expect(credentialPaths(s).length, `${s.name} TLS files`).to.equal(3);
    }
    for (const node of tallyNodes) {
      expect(env(node, "TALLY_NATS_NKEY"), `${node.name} uses its own region's nkey`).to.equal(`${CREDENTIALS_TARGET}/nats-${env(node, "TALLY_REGION")}.nk`);
      expect(env(node, "TALLY_NATS_CA")).to.equal(`${CREDENTIALS_TARGET}/ca.crt`);
      expect(env(node, "TALLY_POSTGRES_CA")).to.equal(`${CREDENTIALS_TARGET}/ca.crt`);
      expect(node.env.has("TALLY_INSECURE"), `${node.name} is not insecure`).to.equal(false);
    }
  });

  it("compose - published host ports do not collide", () => {
    const seen = new Map<number, string>();
    for (const s of services) {
      for (const port of s.publishedPorts) {
        expect(Number.isInteger(port) && port > 0, `${s.name} publishes ${port}`).to.equal(true);
        expect(seen.get(port), `host port ${port} published by ${seen.get(port)} and ${s.name}`).to.equal(undefined);
        seen.set(port, s.name);
      }
    }
  });

  it("compose - prometheus targets name existing nodes on their metrics port", function () {
    const dir = join(ROOT, "deploy", "prometheus", "targets");
    if (!existsSync(dir)) this.skip();
    const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
    expect(files, "target files").to.not.deep.equal([]);
    const scraped = new Set<string>();
    for (const file of files) {
      const groups: unknown = JSON.parse(readFileSync(join(dir, file), "utf8"));
      for (const group of list(groups)) {
        if (!isRecord(group)) throw new Error(`${file}: a target group is not an object`);
        const labels = isRecord(group.labels) ? group.labels : {};
        for (const target of list(group.targets).map(scalar)) {
          const { host, port } = hostPort(target);
          const node = service(host);
          expect(tallyNodes, `${file}: ${target} is not a Tally node`).to.include(node);
          expect(port, `${file}: ${target} port`).to.equal(Number(env(node, "TALLY_METRICS_PORT")));
          if (labels.region !== undefined) expect(scalar(labels.region), `${file}: ${target} region label`).to.equal(env(node, "TALLY_REGION"));
          scraped.add(host);
        }
      }
    }
    expect([...scraped].sort(), "every node is scraped").to.deep.equal(tallyNodes.map((n) => n.name).sort());
  });

  it("compose - files prometheus.yml names resolve inside the prometheus container", function () {
    const prometheus = service("prometheus");
    const configArg = prometheus.command.find((a) => a.startsWith("--config.file="));
    const configPath = configArg?.slice("--config.file=".length) ?? "/etc/prometheus/prometheus.yml";
    const hostConfig = hostPathOf(prometheus, configPath);
    expect(hostConfig, `${configPath} is mounted`).to.not.equal(undefined);
    if (hostConfig === undefined || !existsSync(hostConfig)) this.skip();
    const config: unknown = parse(readFileSync(hostConfig, "utf8"));
    if (!isRecord(config)) throw new Error("prometheus.yml is not a mapping");
    const referenced = list(config.rule_files).map(scalar);
    for (const job of list(config.scrape_configs)) {
      if (!isRecord(job)) continue;
      for (const sd of list(job.file_sd_configs)) if (isRecord(sd)) referenced.push(...list(sd.files).map(scalar));
    }
    expect(referenced, "rule and target files").to.not.deep.equal([]);
    for (const file of referenced) {
      const inContainer = posix.resolve(posix.dirname(configPath), file);
      const onHost = hostPathOf(prometheus, inContainer);
      expect(onHost, `${inContainer} is not mounted into prometheus`).to.not.equal(undefined);
      expect(globFiles(onHost ?? ""), `${inContainer} -> ${onHost} matches no file`).to.not.deep.equal([]);
    }
  });

  it("compose - grafana provisioning points at prometheus and the mounted dashboards", function () {
    const grafana = service("grafana");
    const provisioning = hostPathOf(grafana, "/etc/grafana/provisioning");
    expect(provisioning, "/etc/grafana/provisioning is mounted").to.not.equal(undefined);
    if (provisioning === undefined || !existsSync(provisioning) || !statSync(provisioning).isDirectory()) this.skip();
    const yamlFiles = (sub: string): string[] => {
      const dir = join(provisioning, sub);
      return existsSync(dir) ? readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(dir, f)) : [];
    };
    let checked = 0;
    for (const file of yamlFiles("datasources")) {
      const doc: unknown = parse(readFileSync(file, "utf8"));
      for (const ds of list(isRecord(doc) ? doc.datasources : undefined)) {
        if (!isRecord(ds) || ds.type !== "prometheus" || ds.url === undefined) continue;
        const { host, port } = hostPort(scalar(ds.url).replace(/^https?:\/\//, ""));
        expect(service(host), `${file}: datasource host ${host}`).to.equal(service("prometheus"));
        expect(port, `${file}: datasource port`).to.equal(9090);
        checked++;
      }
    }
    for (const file of yamlFiles("dashboards")) {
      const doc: unknown = parse(readFileSync(file, "utf8"));
      for (const provider of list(isRecord(doc) ? doc.providers : undefined)) {
        if (!isRecord(provider) || !isRecord(provider.options) || provider.options.path === undefined) continue;
        const path = scalar(provider.options.path);
        const onHost = hostPathOf(grafana, path);
        expect(onHost, `${file}: dashboards path ${path} is not mounted into grafana`).to.not.equal(undefined);
        expect(existsSync(onHost ?? ""), `${path} -> ${onHost}`).to.equal(true);
        checked++;
      }
    }
    if (checked === 0) this.skip();
  });
});

describe("compose - the deploy/k8s example agrees with region.conf and the node flags", () => {
  const dir = join(ROOT, "deploy", "k8s");
  const conf = readFileSync(join(ROOT, REGION_CONF), "utf8");
  const objects: Record<string, unknown>[] = [];
  for (const file of existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".yaml")) : []) {
    for (const doc of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
      expect(doc.errors, `${file}`).to.deep.equal([]);
      const value: unknown = doc.toJS();
      if (isRecord(value)) objects.push(value);
    }
  }
  const named = (kind: string, name: string): Record<string, unknown> => {
    const found = objects.find((o) => o.kind === kind && isRecord(o.metadata) && o.metadata.name === name);
    if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/k8s`);
    return found;
  };
  /** The first container's environment of a StatefulSet (plain values only). */
  const containerEnv = (set: Record<string, unknown>): Map<string, string> => {
    const spec = isRecord(set.spec) && isRecord(set.spec.template) && isRecord(set.spec.template.spec) ? set.spec.template.spec : {};
    const container = list(spec.containers)[0];
    const env = new Map<string, string>();
    for (const item of list(isRecord(container) ? container.env : undefined)) {
      if (isRecord(item)) env.set(scalar(item.name), item.value === undefined ? "<from>" : scalar(item.value));
    }
    return env;
  };
  const servicePort = (name: string, portName: string): number => {
    const svc = named("Service", name);
    const port = list(isRecord(svc.spec) ? svc.spec.ports : undefined).find((p) => isRecord(p) && p.name === portName);
    if (!isRecord(port)) throw new Error(`Service ${name} has no port ${portName}`);
    return Number(scalar(port.port));
  };
  const regions = ["east", "west", "central"];

  it("compose - k8s NATS StatefulSets set every region.conf variable and reach each other's gateways", function () {
    if (objects.length === 0) this.skip();
    const variables = new Set([...confVariables(conf), ...confVariables(readFileSync(join(ROOT, AUTH_CONF), "utf8"))]);
    for (const region of regions) {
      const natsSet = named("StatefulSet", `nats-${region}`);
      const env = containerEnv(natsSet);
      expect([...variables].filter((v) => (env.get(v) ?? "") === ""), `nats-${region} unset variables`).to.deep.equal([]);
      // Routes name every server of the region by its stable pod name under the StatefulSet's headless Service.
      const spec = isRecord(natsSet.spec) ? natsSet.spec : {};
      const servers = Number(spec.replicas);
      const headless = named("Service", scalar(spec.serviceName));
      expect(isRecord(headless.spec) ? headless.spec.clusterIP : undefined, `${scalar(spec.serviceName)} is headless`).to.equal("None");
      const routes = natsList(env.get("NATS_CLUSTER_ROUTES") ?? "").map(hostPort);
      expect(routes.map((r) => r.host).sort(), `nats-${region} routes`).to.deep.equal(Array.from({ length: servers }, (_, i) => `nats-${region}-${i}.${scalar(spec.serviceName)}`));
      for (const route of routes) expect(route.port).to.equal(hostPort(env.get("NATS_CLUSTER_LISTEN") ?? "").port);
      // Each stream copy on its own server: no more replicas than servers.
      const replicas = Number(containerEnv(named("StatefulSet", `tally-${region}`)).get("TALLY_STREAM_REPLICAS") ?? "1");
      expect(replicas, `tally-${region} TALLY_STREAM_REPLICAS vs ${servers} NATS servers`).to.be.at.most(servers);
      expect(env.get("TALLY_REGION")).to.equal(region);
      for (const [gateway, variable] of confGateways(conf)) {
        const url = hostPort(env.get(variable) ?? "");
        expect(url.host, `nats-${region} ${variable}`).to.equal(`nats-${gateway}`);
        expect(url.port).to.equal(servicePort(url.host, "gateway"));
        expect(url.port).to.equal(hostPort(env.get("NATS_GATEWAY_LISTEN") ?? "").port);
      }
    }
  });

  it("compose - k8s nodes use their own region's NATS service and the same region list", function () {
    if (objects.length === 0) this.skip();
    for (const region of regions) {
      const set = named("StatefulSet", `tally-${region}`);
      const env = containerEnv(set);
      const replicas = isRecord(set.spec) ? Number(set.spec.replicas) : 0;
      // Several nodes of a region write only under the writer lease; a plain second node would be fenced.
      if (replicas > 1) expect(env.get("TALLY_STANDBY"), `tally-${region} has ${replicas} replicas`).to.equal("1");
      if (replicas > 1) expect(isRecord(set.spec) ? set.spec.podManagementPolicy : undefined, "a standby is never Ready").to.equal("Parallel");
      expect(env.get("TALLY_REGION")).to.equal(region);
      expect(env.get("TALLY_REGIONS")).to.equal(regions.join(","));
      const url = hostPort(env.get("TALLY_NATS_URL") ?? "");
      expect(url.host).to.equal(`nats-${region}`);
      expect(url.port).to.equal(servicePort(url.host, "client"));
      expect(hostPort(env.get("TALLY_GRPC_ADDR") ?? "").port).to.equal(servicePort(`tally-${region}`, "grpc"));
      expect(Number(env.get("TALLY_METRICS_PORT"))).to.equal(servicePort(`tally-${region}`, "metrics"));
      expect(env.get("TALLY_METRICS_HOST")).to.equal("0.0.0.0");
      expect(env.get("TALLY_NATS_NKEY"), `tally-${region} uses its own nkey`).to.equal(`/etc/tally/tls/nats-${region}.nk`);
      expect(env.get("TALLY_NATS_CA")).to.equal("/etc/tally/tls/ca.crt");
      expect(env.get("TALLY_POSTGRES_CA")).to.equal("/etc/tally/tls/ca.crt");
      expect(env.has("TALLY_INSECURE"), `tally-${region} is not insecure`).to.equal(false);
    }
  });

  it("compose - k8s probes reach the node's HTTP health on its metrics port (the kubelet cannot probe the mTLS gRPC port)", function () {
    if (objects.length === 0) this.skip();
    for (const region of regions) {
      const set = named("StatefulSet", `tally-${region}`);
      const spec = isRecord(set.spec) && isRecord(set.spec.template) && isRecord(set.spec.template.spec) ? set.spec.template.spec : {};
      const container = list(spec.containers)[0];
      if (!isRecord(container)) throw new Error(`tally-${region} has no container`);
      const metricsPort = list(container.ports).find((p) => isRecord(p) && p.name === "metrics");
      expect(isRecord(metricsPort) ? Number(metricsPort.containerPort) : undefined).to.equal(Number(containerEnv(set).get("TALLY_METRICS_PORT")));
      for (const [probe, paths] of [["readinessProbe", Object.keys(PROBE_PATHS)], ["livenessProbe", ["/livez"]]] as const) {
        const found = container[probe];
        const get = isRecord(found) ? found.httpGet : undefined;
        expect(isRecord(get), `tally-${region} ${probe} is an HTTP probe`).to.equal(true);
        if (!isRecord(get)) continue;
        expect(get.port, `tally-${region} ${probe} port`).to.equal("metrics");
        expect(paths, `tally-${region} ${probe} path`).to.include(scalar(get.path));
      }
    }
  });
});
