// A local certificate authority for the two-command start and the tests: one
// CA key and certificate in a directory, and leaf certificates issued from it
// (servers, clients, NATS, Postgres), all with the system `openssl` and no
// network. Reused when the files are already there, so `tally up` keeps its
// certificates across restarts.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync, chmodSync } from "node:fs";
import { join } from "node:path";

export interface IssuedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface CertificateRequest {
  /** File stem: `<name>.crt` and `<name>.key` in the CA's directory. */
  readonly name: string;
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** SAN URIs, e.g. `spiffe://tally/client/ops` (the principal of a gRPC caller). */
  readonly uris?: readonly string[];
  readonly usage: "server" | "client" | "both";
  /** Validity; default 825 days. */
  readonly days?: number;
  /** Validity window in the past (for tests of expired certificates). */
  readonly expired?: boolean;
}

const KEY_ALGORITHM = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

function openssl(args: readonly string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim() ?? "";
    throw new Error(`openssl ${args[0] ?? ""} failed: ${stderr || String(error)}`);
  }
}

export class LocalCa {
  readonly certFile: string;
  readonly keyFile: string;

  private constructor(readonly dir: string) {
    this.certFile = join(dir, "ca.crt");
    this.keyFile = join(dir, "ca.key");
  }

  /** The CA in `dir`, created (key and self-signed certificate) when absent. */
  static ensure(dir: string, commonName = "Tally local CA"): LocalCa {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const ca = new LocalCa(dir);
    if (!existsSync(ca.certFile) || !existsSync(ca.keyFile)) {
      openssl(
        ["req", "-x509", ...KEY_ALGORITHM, "-nodes", "-keyout", ca.keyFile, "-out", ca.certFile, "-days", "3650",
          "-subj", `/CN=${commonName}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        dir,
      );
      chmodSync(ca.keyFile, 0o600);
    }
    return ca;
  }

  /** The certificate named `request.name`, issued when absent (an existing pair is kept as is). */
  ensureIssued(request: CertificateRequest): IssuedCertificate {
    const issued = this.paths(request.name);
    if (existsSync(issued.certFile) && existsSync(issued.keyFile)) return issued;
    return this.issue(request);
  }

  /** Issues (or re-issues, replacing the files) a leaf certificate signed by this CA. */
  issue(request: CertificateRequest): IssuedCertificate {
    const { certFile, keyFile } = this.paths(request.name);
    const csrFile = join(this.dir, `${request.name}.csr`);
    const extFile = join(this.dir, `${request.name}.ext`);
    openssl(["req", ...KEY_ALGORITHM, "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${request.commonName}`], this.dir);
    chmodSync(keyFile, 0o600);
    writeFileSync(extFile, extensions(request));
    if (request.expired === true) {
      this.signWithDates(csrFile, extFile, certFile, "20200101000000Z", "20200102000000Z");
    } else {
      openssl(
        ["x509", "-req", "-in", csrFile, "-CA", this.certFile, "-CAkey", this.keyFile, "-CAcreateserial",
          "-out", certFile, "-days", String(request.days ?? 825), "-extfile", extFile],
        this.dir,
      );
    }
    return { certFile, keyFile };
  }

  private paths(name: string): IssuedCertificate {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`certificate name ${JSON.stringify(name)} must be a plain file stem`);
    return { certFile: join(this.dir, `${name}.crt`), keyFile: join(this.dir, `${name}.key`) };
  }

  /** `openssl x509` cannot date a certificate in the past; `openssl ca` can, with a throwaway database. */
  private signWithDates(csrFile: string, extFile: string, certFile: string, start: string, end: string): void {
    const db = join(this.dir, "ca-db");
    mkdirSync(db, { recursive: true });
    writeFileSync(join(db, "index.txt"), "");
    writeFileSync(join(db, "serial"), `${Date.now().toString(16).padStart(16, "0")}\n`);
    const config = join(db, "ca.cnf");
    writeFileSync(
      config,
      [
        "[ca]", "default_ca = local", "[local]", `dir = ${db}`, "database = $dir/index.txt", "serial = $dir/serial",
        "new_certs_dir = $dir", "default_md = sha256", "policy = any", "copy_extensions = none", "[any]", "commonName = supplied", "",
      ].join("\n"),
    );
    openssl(
      ["ca", "-batch", "-config", config, "-cert", this.certFile, "-keyfile", this.keyFile, "-in", csrFile, "-out", certFile,
        "-startdate", start, "-enddate", end, "-extfile", extFile, "-notext"],
      this.dir,
    );
  }
}

function extensions(request: CertificateRequest): string {
  const names = [
    ...(request.dnsNames ?? []).map((n) => `DNS:${n}`),
    ...(request.ipAddresses ?? []).map((ip) => `IP:${ip}`),
    ...(request.uris ?? []).map((u) => `URI:${u}`),
  ];
  const usage = { server: "serverAuth", client: "clientAuth", both: "serverAuth,clientAuth" }[request.usage];
  return [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usage}`,
    ...(names.length > 0 ? [`subjectAltName=${names.join(",")}`] : []),
    "",
  ].join("\n");
}
