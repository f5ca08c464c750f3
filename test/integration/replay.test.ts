// Slot messages carry absolute values: replaying a replica's stream again, or
// applying its messages in any order, leaves the state unchanged. Checked on a
// real stream written by a real node.

import { expect } from "chai";
import { connect } from "nats";
import { runNode } from "../../src/app/run-node";
import { ReplicaSet } from "../../src/core/replica-set";
import { ReplicaState } from "../../src/core/replica-state";
import { jsonLogger } from "../../src/node/logger";
import { decodeDeltaOrThrow, type DecodedDelta } from "../../src/replication/delta-codec";
import { ReplicaLog, ReplayError } from "../../src/replication/jetstream-log";
import { streamName } from "../../src/replication/subjects";
import { useStandaloneNats, natsAccess, natsConnectOptions } from "../support/nats";
import { testGrpcSecurity } from "../support/grpc-clients";

const REGIONS = ["east", "west"];

function applyAll(state: ReplicaState, deltas: readonly DecodedDelta[]): void {
  for (const d of deltas) for (const s of d.slots) state.merge(s.accountId, s.writer, s.column, s.value);
}

describe("replay - duplicates and reordering change nothing", function () {
  this.timeout(60_000);
  const nats = useStandaloneNats();

  it("replay - the stream replayed twice, reversed or shuffled gives the node's own row digest", async () => {
    const running = await runNode({
      region: "east",
      regions: REGIONS,
      ...natsAccess(nats(), "east"),
      grpcAddress: "127.0.0.1:0", grpcSecurity: testGrpcSecurity(),
      logger: jsonLogger("east", "error"),
      config: { catchUpTimeoutMs: 500, snapshotIntervalMs: 0 },
    });
    const replicas = new ReplicaSet(REGIONS);
    try {
      for (let i = 0; i < 40; i++) await running.node.grant(`r-${i % 7}`, BigInt(100 + i), `rg-${i}`);
      await Promise.all(Array.from({ length: 60 }, (_, i) => running.node.debit({ accountId: `r-${i % 7}`, amount: 3n, requestId: `rd-${i}` }, 0)));
      await running.node.transfer("r-1", "west", 10n);
      const log = await ReplicaLog.over(await connect(natsConnectOptions(nats())), { placeByRegion: false });
      const deltas: DecodedDelta[] = [];
      await log.replay("east", 1, (m) => deltas.push(decodeDeltaOrThrow(replicas, m.data, "east")));
      await log.close();
      expect(deltas.length).to.be.greaterThan(1);
      const expected = running.node.state.rowDigest(0);

      const inOrder = new ReplicaState({ replicas, self: "west" });
      applyAll(inOrder, deltas);
      expect(inOrder.rowDigest(0)).to.equal(expected);
      applyAll(inOrder, deltas); // duplicates
      expect(inOrder.rowDigest(0)).to.equal(expected);

      const reversed = new ReplicaState({ replicas, self: "west" });
      applyAll(reversed, [...deltas].reverse());
      expect(reversed.rowDigest(0)).to.equal(expected);

      const shuffled = [...deltas];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = (i * 7919) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const mixed = new ReplicaState({ replicas, self: "west" });
      applyAll(mixed, [...shuffled, ...deltas.slice(0, 3)]);
      expect(mixed.rowDigest(0)).to.equal(expected);
      for (let i = 0; i < 7; i++) expect(mixed.balance(`r-${i}`)).to.equal(running.node.state.balance(`r-${i}`));

      // The live node, fed its whole stream again, changes nothing.
      const before = running.node.state.balance("r-0");
      applyAll(running.node.state, deltas);
      expect(running.node.state.rowDigest(0)).to.equal(expected);
      expect(running.node.state.balance("r-0")).to.equal(before);
    } finally {
      await running.stop();
    }
  });

  it("replay - a deleted tail is refused at once, naming the missing sequences, not after the idle timeout", async () => {
    const nc = await connect(natsConnectOptions(nats()));
    const log = await ReplicaLog.over(nc, { placeByRegion: false });
    try {
      await log.ensureStream("west");
      for (let i = 1; i <= 5; i++) await log.append("west", new Uint8Array([i]), i - 1, `tail-${i}`);
      await nc.jetstreamManager().then((jsm) => jsm.streams.deleteMessage(streamName("west"), 5));
      const seen: number[] = [];
      const error = await log.replay("west", 1, (m) => seen.push(m.seq), { idleTimeoutMs: 60_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(ReplayError);
      expect((error as Error).message).to.contain("messages 5..5 are missing (deleted) at the end of 1..5");
      expect(seen).to.deep.equal([1, 2, 3, 4]);
    } finally {
      await log.close();
    }
  });
});
