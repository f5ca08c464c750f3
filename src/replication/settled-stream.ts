// The TALLY_SETTLED stream: after a settlement commits, the settler publishes
// the totals of every account whose totals it changed; every node follows the
// stream from its start and keeps the latest per account in memory (so reads
// never wait on Postgres, wherever it is). Messages are checked on the way in.

import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type ConsumerMessages, type NatsConnection } from "nats";
import type { ReplicaSet } from "../core/replica-set";
import { jetStreamErrorCode } from "./jetstream-log";
import { clusterIdentityOf, inboundContext, type InboundContext } from "./inbound";
import { decodeSettledBatch, encodeSettledBatch, type SettledAccountValue, type SettledBatchValue } from "./settled-codec";
import { SETTLED_STREAM, SETTLED_SUBJECT } from "./subjects";

const ACCOUNTS_PER_MESSAGE = 5_000;
const JS_STREAM_NOT_FOUND = 10059;

export class SettledStream {
  private readonly ctx: InboundContext;
  private messages: ConsumerMessages | undefined;
  private stopped = false;

  constructor(
    private readonly connection: NatsConnection,
    replicas: ReplicaSet,
    private readonly badMessage: (source: string, subject: string, reason: string) => void,
    /** Copies of the stream when this node is the one to create it. */
    private readonly streamReplicas = 1,
  ) {
    this.ctx = inboundContext(replicas);
  }

  /**
   * Creates the stream if missing (every node tries at start-up; a create
   * never changes an existing stream), retrying in the background until it
   * succeeds or this is stopped. Settled totals are not needed to serve: a node restarted while
   * the region holding TALLY_SETTLED is cut off must start anyway (follow and
   * publish retry on their own); `onFirstFailure` is told once.
   */
  ensureInBackground(onFirstFailure: (error: unknown) => void): void {
    void (async () => {
      let told = false;
      while (!this.stopped) {
        try {
          await this.ensureOnce();
          return;
        } catch (error) {
          if (!told) onFirstFailure(error);
          told = true;
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    })();
  }

  private async ensureOnce(): Promise<void> {
    const jsm = await this.connection.jetstreamManager({ timeout: 10_000 });
    try {
      await jsm.streams.info(SETTLED_STREAM);
      return;
    } catch (error) {
      if (jetStreamErrorCode(error) !== JS_STREAM_NOT_FOUND) throw error;
    }
    await jsm.streams.add({
      name: SETTLED_STREAM,
      subjects: [SETTLED_SUBJECT],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: this.streamReplicas,
    });
  }

  /** Publishes one settlement's changed totals, durably, in messages of a few thousand accounts. */
  async publish(settlementId: bigint, accounts: readonly SettledAccountValue[]): Promise<void> {
    const js = this.connection.jetstream({ timeout: 10_000 });
    const identity = clusterIdentityOf(this.ctx.replicas);
    for (let start = 0; start < accounts.length; start += ACCOUNTS_PER_MESSAGE) {
      const part = accounts.slice(start, start + ACCOUNTS_PER_MESSAGE);
      // The message id makes a retried publish of the same part a no-op.
      await js.publish(SETTLED_SUBJECT, encodeSettledBatch({ settlementId, accounts: part }, identity), { msgID: `settled-${settlementId}-${start}` });
    }
  }

  /** Follows the stream from its first message, handing every valid batch to `apply`, until stopped. */
  async follow(apply: (batch: SettledBatchValue) => void): Promise<void> {
    let next = 1;
    while (!this.stopped) {
      try {
        const js = this.connection.jetstream({ timeout: 10_000 });
        const consumer = await js.consumers.get(SETTLED_STREAM, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: next });
        const messages = await consumer.consume({
          max_messages: 64,
          expires: 5_000,
          // A stream deleted under the follower ends this consume (the library would
          // otherwise retry on its own with a backoff of the pull's expiry); this loop
          // retries every 500 ms.
          abort_on_missing_resource: true,
          callback: (m) => {
            next = m.seq + 1;
            const decoded = decodeSettledBatch(m.data, this.ctx);
            if (decoded.ok) apply(decoded.value);
            else this.badMessage("settled", SETTLED_SUBJECT, decoded.reason);
          },
        });
        this.messages = messages;
        await messages.closed();
      } catch {
        // The stream may not exist yet or NATS is away: try again shortly.
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 500));
    }
  }

  stop(): void {
    this.stopped = true;
    this.messages?.stop();
  }
}
