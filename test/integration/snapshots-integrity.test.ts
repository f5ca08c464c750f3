// A damaged snapshot is never restored silently. Each case writes a real
// snapshot to the JetStream object store, damages it there (cut short, an
// object-store chunk deleted in the middle or at the end, a byte flipped, the
// object deleted), then restarts the node: with the stream purged it refuses
// to start, naming the region and the fault, within seconds; with the stream
// whole it rebuilds the row from the stream and serves every balance and
// remembered request id. Real nats-server, in-process nodes.

import { expect } from "chai";
import { connect, type JetStreamManager, type NatsConnection, type ObjectStore } from "nats";
import { runNode, type RunningNode } from "../../src/app/run-node";
import { Mode } from "../../src/core/policy";
import { jsonLogger } from "../../src/node/logger";
import { snapshotBucket } from "../../src/replication/snapshot-store";
import { streamName } from "../../src/replication/subjects";
import { useStandaloneNats, natsAccess, natsConnectOptions } from "../support/nats";
import { testGrpcSecurity } from "../support/grpc-clients";

type Damage = "truncated" | "middle chunk deleted" | "last chunk deleted" | "byte flipped" | "object deleted" | "stream message deleted";

const ACCOUNTS = 600;
const GRANTS = 12_000;

describe("snapshots - integrity of stored snapshots at restart", function () {
  this.timeout(120_000);
  const nats = useStandaloneNats();
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  const running: RunningNode[] = [];
  let counter = 0;

  before(async () => {
    nc = await connect(natsConnectOptions(nats()));
    jsm = await nc.jetstreamManager();
  });
  after(async () => {
    for (const node of [...running]) await node.stop();
    await nc.close();
  });

  interface Started {
    readonly node: RunningNode;
    readonly lines: string[];
  }

  /** Starts `region` of [region, absent peer]; the peer never runs, so with the default retention nothing is purged. */
  const start = async (region: string, purge: boolean): Promise<Started> => {
    const lines: string[] = [];
    const node = await runNode({
      region,
      regions: [region, `${region}-peer`],
      ...natsAccess(nats(), "ops"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger(region, "info", (line) => lines.push(line)),
      config: { snapshotIntervalMs: 0, catchUpTimeoutMs: 300, ...(purge ? { maxRetainedMessages: 0 } : {}) },
    });
    running.push(node);
    return { node, lines };
  };
  const stop = async (node: RunningNode): Promise<void> => {
    await node.stop();
    running.splice(running.indexOf(node), 1);
  };

  /** Grants, debits (with request ids), a policy, a snapshot, then one debit in the stream tail only. */
  const populate = async (node: RunningNode): Promise<Map<string, bigint>> => {
    for (let start = 0; start < GRANTS; start += 1_000) {
      await Promise.all(
        Array.from({ length: 1_000 }, (_, k) => node.node.grant(`acct-${(start + k) % ACCOUNTS}`, 10n, `grant-${start + k}`)),
      );
    }
    await node.node.debit({ accountId: "acct-1", amount: 3n, requestId: "debit-1" }, 0);
    await node.node.setPolicy("acct-2", { mode: Mode.Overdraft, overdraftLimit: 50n, lowWaterMark: 0n });
    const header = await node.node.takeSnapshot();
    expect(header.accounts).to.equal(ACCOUNTS);
    expect(header.requests).to.equal(GRANTS + 1);
    await node.node.debit({ accountId: "acct-3", amount: 4n, requestId: "debit-2" }, 0);
    const balances = new Map<string, bigint>();
    for (let k = 0; k < ACCOUNTS; k++) balances.set(`acct-${k}`, node.node.state.balance(`acct-${k}`));
    return balances;
  };

  const objectStore = (region: string): Promise<ObjectStore> => nc.jetstream().views.os(snapshotBucket(region));

  const objectBytes = async (region: string): Promise<Uint8Array> => {
    const result = await (await objectStore(region)).get("state");
    if (result === null) throw new Error("no snapshot object");
    const parts: Uint8Array[] = [];
    const reader = result.data.getReader();
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      parts.push(next.value);
    }
    return Uint8Array.from(Buffer.concat(parts));
  };

  /** Sequences of the object's chunk messages in the object store's stream. */
  const chunkSequences = async (region: string): Promise<{ stream: string; seqs: number[] }> => {
    const stream = `OBJ_${snapshotBucket(region)}`;
    const info = await jsm.streams.info(stream);
    const seqs: number[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const message = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
      if (message?.subject.startsWith(`$O.${snapshotBucket(region)}.C.`) === true) seqs.push(seq);
    }
    return { stream, seqs };
  };

  const damage = async (region: string, kind: Damage): Promise<void> => {
    const store = await objectStore(region);
    switch (kind) {
      case "truncated": {
        // Cut at a chunk boundary after the accounts: every frame decodes and the account count still matches.
        const bytes = await objectBytes(region);
        let cut = 0;
        while (cut < bytes.length * 0.4) cut += 4 + new DataView(bytes.buffer, bytes.byteOffset + cut, 4).getUint32(0);
        await store.putBlob({ name: "state" }, bytes.subarray(0, cut));
        return;
      }
      case "byte flipped": {
        const bytes = Uint8Array.from(await objectBytes(region));
        const at = Math.floor(bytes.length * 0.7);
        bytes[at] = bytes[at]! ^ 0x04;
        await store.putBlob({ name: "state" }, bytes);
        return;
      }
      case "middle chunk deleted":
      case "last chunk deleted": {
        const { stream, seqs } = await chunkSequences(region);
        expect(seqs.length).to.be.greaterThan(2);
        const seq = kind === "last chunk deleted" ? seqs.at(-1)! : seqs[Math.floor(seqs.length / 2)]!;
        await jsm.streams.deleteMessage(stream, seq);
        return;
      }
      case "object deleted":
        await store.delete("state");
        return;
      case "stream message deleted": {
        const info = await jsm.streams.info(streamName(region));
        await jsm.streams.deleteMessage(streamName(region), info.state.last_seq - 1);
        return;
      }
    }
  };

  const refusal = async (region: string, purge: boolean): Promise<Error> => {
    try {
      await start(region, purge);
    } catch (error) {
      if (error instanceof Error) return error;
      throw error;
    }
    throw new Error(`region ${region} started`);
  };

  const cases: Array<{ kind: Damage; reason: RegExp }> = [
    { kind: "truncated", reason: /without its trailer/ },
    { kind: "middle chunk deleted", reason: /snapshot of r\d+/ },
    { kind: "last chunk deleted", reason: /snapshot of r\d+/ },
    { kind: "byte flipped", reason: /fails its seal/ },
  ];

  for (const { kind, reason } of cases) {
    it(`snapshots - ${kind}, stream purged: the node refuses to start, naming the region and the fault`, async () => {
      const region = `r${++counter}`;
      const first = await start(region, true);
      await populate(first.node);
      await stop(first.node);
      await damage(region, kind);
      const error = await refusal(region, true);
      expect(error.message).to.contain(`region ${region} refuses to start`).and.contain("damaged").and.contain("purged");
      expect(error.message).to.match(reason);
    });

    it(`snapshots - ${kind}, stream whole: the node rebuilds its row from the stream and says so`, async () => {
      const region = `r${++counter}`;
      const first = await start(region, false);
      const balances = await populate(first.node);
      await stop(first.node);
      await damage(region, kind);
      const again = await start(region, false);
      expect(again.lines.join("")).to.contain("own snapshot damaged").and.contain("stream-after-damaged-snapshot");
      for (const [account, balance] of balances) expect(again.node.node.state.balance(account), account).to.equal(balance);
      expect((await again.node.node.debit({ accountId: "acct-1", amount: 3n, requestId: "debit-1" }, 0)).replayed).to.equal(true);
      expect((await again.node.node.grant("acct-5", 10n, "grant-5")).replayed).to.equal(true);
      expect(again.node.node.state.balance("acct-1")).to.equal(balances.get("acct-1"));
      await stop(again.node);
    });
  }

  it("snapshots - object deleted, stream purged: the node refuses within seconds instead of waiting for purged messages", async () => {
    const region = `r${++counter}`;
    const first = await start(region, true);
    await populate(first.node);
    await stop(first.node);
    await damage(region, "object deleted");
    const error = await refusal(region, true);
    expect(error.message).to.contain(`region ${region} refuses to start`).and.contain("no usable snapshot").and.contain("purged below");
  });

  it("snapshots - object deleted, stream whole: the node replays its whole stream", async () => {
    const region = `r${++counter}`;
    const first = await start(region, false);
    const balances = await populate(first.node);
    await stop(first.node);
    await damage(region, "object deleted");
    const again = await start(region, false);
    expect(again.lines.join("")).to.contain('"source":"stream"');
    for (const [account, balance] of balances) expect(again.node.node.state.balance(account), account).to.equal(balance);
    await stop(again.node);
  });

  it("snapshots - a message deleted inside the own stream: the node refuses, naming the missing sequence", async () => {
    const region = `r${++counter}`;
    const first = await start(region, false);
    await populate(first.node);
    await stop(first.node);
    await damage(region, "object deleted");
    await damage(region, "stream message deleted");
    const error = await refusal(region, false);
    expect(error.message).to.contain(`region ${region} refuses to start`).and.match(/messages \d+\.\.\d+ are missing \(deleted\)/);
  });
});
