// Server TLS credentials that require a client certificate and follow their
// files: when the certificate, key or trusted-CA file changes, the three are
// read again, checked (key matches certificate, PEM parses) and only then put in
// place for new connections, with no restart. A half-written rotation (key
// replaced, certificate not yet) is refused and retried on the next change, so
// the node keeps serving on the previous pair meanwhile.

import { readFileSync, unwatchFile, watchFile, type Stats } from "node:fs";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import { ServerCredentials } from "@grpc/grpc-js";

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM bundle of the CAs whose client certificates are trusted. */
  readonly caFile: string;
}

export interface ReloadEvents {
  reloaded(files: TlsFiles): void;
  rejected(files: TlsFiles, reason: string): void;
}

/** Reads and checks the three files; throws with the reason when they do not form a usable context. */
export function readTlsFiles(files: TlsFiles): SecureContextOptions {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new Error(`cannot read ${what} ${path}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  };
  const options = { cert: read(files.certFile, "certificate"), key: read(files.keyFile, "key"), ca: read(files.caFile, "CA file") };
  try {
    createSecureContext(options);
  } catch (error) {
    throw new Error(`${files.certFile} / ${files.keyFile} / ${files.caFile} do not form a TLS context: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return options;
}

export class ReloadingServerCredentials extends ServerCredentials {
  private watching = false;
  private settle: NodeJS.Timeout | undefined;
  private readonly onChange = (current: Stats, previous: Stats): void => {
    if (current.mtimeMs === previous.mtimeMs && current.size === previous.size && current.ino === previous.ino) return;
    // Several files change in one rotation: read once they have stopped changing.
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.reload(), this.settleMs);
    this.settle.unref();
  };

  /** Throws (before any listener opens) when the files are not usable. */
  constructor(
    private readonly files: TlsFiles,
    private readonly events: ReloadEvents,
    private readonly pollMs = 1_000,
    private readonly settleMs = 100,
  ) {
    // rejectUnauthorized (the default) ends the handshake of a client with no,
    // an untrusted or an expired certificate: no call is ever read from it.
    super({ requestCert: true, rejectUnauthorized: true }, readTlsFiles(files));
  }

  override _addWatcher(watcher: (context: SecureContextOptions | null) => void): void {
    super._addWatcher(watcher);
    if (this.watching) return;
    this.watching = true;
    for (const path of this.paths()) watchFile(path, { interval: this.pollMs, persistent: false }, this.onChange);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }

  /** Stops following the files. */
  stop(): void {
    clearTimeout(this.settle);
    if (!this.watching) return;
    this.watching = false;
    for (const path of this.paths()) unwatchFile(path, this.onChange);
  }

  private paths(): string[] {
    return [...new Set([this.files.certFile, this.files.keyFile, this.files.caFile])];
  }

  private reload(): void {
    let options: SecureContextOptions;
    try {
      options = readTlsFiles(this.files);
    } catch (error) {
      this.events.rejected(this.files, error instanceof Error ? error.message : String(error));
      return;
    }
    this.updateSecureContextOptions(options);
    this.events.reloaded(this.files);
  }
}
