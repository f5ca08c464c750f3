// Real nats-server processes for tests: a standalone JetStream server or a
// 3-region supercluster, in temp dirs, torn down after the suite.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePorts } from "../../src/devcluster/free-port";
import { NatsProcess } from "../../src/devcluster/nats-process";
import { NatsSupercluster } from "../../src/devcluster/nats-supercluster";

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `tally-${prefix}-`));
}

export async function startStandaloneNats(dir: string): Promise<NatsProcess> {
  const [client, monitor] = await freePorts(2);
  const nats = new NatsProcess({
    config: "standalone.conf",
    serverName: "standalone",
    clientPort: client!,
    monitorPort: monitor!,
    dataDir: join(dir, "nats"),
  });
  await nats.start();
  return nats;
}

/** Mocha helper: one standalone nats-server per describe block. */
export function useStandaloneNats(): () => NatsProcess {
  let nats: NatsProcess | undefined;
  let dir: string | undefined;
  before(async function () {
    this.timeout(30_000);
    dir = tempDir("nats");
    nats = await startStandaloneNats(dir);
  });
  after(async function () {
    this.timeout(30_000);
    await nats?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (nats === undefined) throw new Error("nats-server not started");
    return nats;
  };
}

/** Mocha helper: a 3-region supercluster per describe block. */
export function useSupercluster(): () => { cluster: NatsSupercluster; dir: string } {
  let cluster: NatsSupercluster | undefined;
  let dir: string | undefined;
  before(async function () {
    this.timeout(60_000);
    dir = tempDir("sc");
    cluster = await NatsSupercluster.start(dir);
  });
  after(async function () {
    this.timeout(60_000);
    await cluster?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (cluster === undefined || dir === undefined) throw new Error("supercluster not started");
    return { cluster, dir };
  };
}
