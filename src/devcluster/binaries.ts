// Locates the external servers a local cluster needs and says how to install them.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

export class MissingBinaryError extends Error {
  override readonly name = "MissingBinaryError";
  constructor(
    readonly binary: string,
    readonly installHint: string,
  ) {
    super(`${binary} not found. Install it with: ${installHint}`);
  }
}

function onPath(binary: string): string | undefined {
  try {
    const found = execFileSync("sh", ["-c", `command -v ${binary}`], { encoding: "utf8" }).trim();
    return found.length > 0 ? found : undefined;
  } catch {
    return undefined;
  }
}

export function natsServerBinary(): string {
  const found = process.env.NATS_SERVER_BIN ?? onPath("nats-server");
  if (found === undefined) {
    throw new MissingBinaryError("nats-server", "apt-get update && apt-get install -y nats-server");
  }
  return found;
}

export function postgresBinDir(): string {
  const dir = process.env.PG_BIN_DIR ?? "/usr/lib/postgresql/15/bin";
  if (!existsSync(`${dir}/postgres`) || !existsSync(`${dir}/initdb`)) {
    throw new MissingBinaryError("postgres", "apt-get install -y postgresql-15 (or set PG_BIN_DIR)");
  }
  return dir;
}
