// The durable log of every replica over NATS JetStream: one stream per replica
// (placed in that replica's region when clustered) holding its group commits.
// The writer appends with an expected last sequence, which fences out a second
// writer of the same slot; readers follow a stream with an ordered consumer,
// which resumes from the last sequence it saw after a disconnect or partition.

import {
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  headers,
  NatsError,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
} from "nats";
import { WriterFencedError, type StreamAppender } from "./replica-writer";
import { deltaSubject, streamName } from "./subjects";

/** JetStream API error codes (nats-server errors.json) this module acts on. */
const JS_STREAM_NOT_FOUND = 10059;
const JS_WRONG_LAST_SEQUENCE = 10071;
const JS_NO_MESSAGE = 10037;

export interface ReplicaLogOptions {
  /** Place each replica's stream in the NATS cluster named after the replica (supercluster). */
  readonly placeByRegion: boolean;
  /**
   * Copies JetStream keeps of this node's own stream, snapshot bucket and
   * writer lease (DESIGN §12: 3 in a region of three NATS servers); default 1.
   */
  readonly replicas?: number;
  readonly publishTimeoutMs?: number;
}

/** Longest wait for the next message while replaying a stream. */
export const DEFAULT_REPLAY_IDLE_TIMEOUT_MS = 10_000;

export interface ReplayOptions {
  /** Give up when no message arrives for this long; default DEFAULT_REPLAY_IDLE_TIMEOUT_MS. */
  readonly idleTimeoutMs?: number;
}

/** A replay that cannot deliver the range it was asked for; the message names the stream and the gap. */
export class ReplayError extends Error {
  override readonly name = "ReplayError";
  constructor(
    readonly replica: string,
    message: string,
  ) {
    super(message);
  }
}

export interface LoggedMessage {
  readonly seq: number;
  readonly data: Uint8Array;
  /** Messages left in the stream after this one, as the server counted at delivery. */
  readonly pending: number;
}

/** JetStream's answers when it cannot keep the copies asked for (nats-server errors.json). */
const JS_REPLICAS_NOT_SUPPORTED = 10074; // replicas > 1 not supported in non-clustered mode
const JS_NO_SUITABLE_PEERS = 10005; // no suitable peers for placement
const JS_INSUFFICIENT_RESOURCES = 10023;

/**
 * --stream-replicas asks for more copies than the region's NATS servers can
 * keep. Not worth retrying: the node stops at once, naming the option.
 */
export class StreamReplicasError extends Error {
  override readonly name = "StreamReplicasError";
}

/** `error`, or a StreamReplicasError naming the option when JetStream refused the replica count. */
export function explainReplicaRefusal(error: unknown, replicas: number, stream: string): unknown {
  const code = jetStreamErrorCode(error);
  if (replicas === 1 || (code !== JS_REPLICAS_NOT_SUPPORTED && code !== JS_NO_SUITABLE_PEERS && code !== JS_INSUFFICIENT_RESOURCES)) return error;
  const said = error instanceof Error ? error.message : String(error);
  return new StreamReplicasError(
    `--stream-replicas ${replicas} (TALLY_STREAM_REPLICAS): JetStream cannot keep ${replicas} copies of ${stream}: "${said}". ` +
      `A region needs at least ${replicas} NATS servers with JetStream in one cluster; use 1 with a single server.`,
    { cause: error },
  );
}

export class ReplicaLog implements StreamAppender {
  private constructor(
    readonly connection: NatsConnection,
    readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly options: ReplicaLogOptions,
  ) {}

  get maxPayload(): number {
    return this.connection.info?.max_payload ?? 1024 * 1024;
  }

  /** The log over an open connection (the composition root owns the connection). */
  /**
   * Opens JetStream on `connection`. A server still electing its JetStream
   * meta leader (all regions starting together) times out: retried for up to
   * `withinMs`, then the error says what was tried.
   */
  static async over(connection: NatsConnection, options: ReplicaLogOptions, withinMs = 30_000): Promise<ReplicaLog> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      try {
        const jsm = await connection.jetstreamManager({ timeout: 10_000 });
        return new ReplicaLog(connection, connection.jetstream({ timeout: 10_000 }), jsm, options);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`JetStream is not available on ${connection.getServer()}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  /** Creates the replica's stream if it does not exist (idempotent; needs the JetStream meta leader). */
  async ensureStream(replica: string): Promise<void> {
    const name = streamName(replica);
    if (await this.streamExists(name)) {
      await this.ensureReplicas(name);
      return;
    }
    await this.addStream({
      name,
      subjects: [deltaSubject(replica)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      num_replicas: this.replicas,
      duplicate_window: 120_000_000_000,
      ...(this.options.placeByRegion ? { placement: { cluster: replica, tags: [] } } : {}),
    });
  }

  private async addStream(config: Parameters<JetStreamManager["streams"]["add"]>[0]): Promise<void> {
    try {
      await this.jsm.streams.add(config);
    } catch (error) {
      throw explainReplicaRefusal(error, this.replicas, config.name ?? "the stream");
    }
  }

  /** Copies of each own stream (options.replicas, default 1). */
  get replicas(): number {
    return this.options.replicas ?? 1;
  }

  /**
   * Brings an existing own stream to `replicas` copies: an operator who raises
   * --stream-replicas on a running region gets it applied at the next start,
   * not silently ignored. JetStream copies the data to the new peers itself.
   * Returns the count it found, for the log.
   */
  async ensureReplicas(name: string): Promise<number> {
    const info = await this.jsm.streams.info(name);
    const found = info.config.num_replicas;
    if (found !== this.replicas) {
      await this.jsm.streams.update(name, { ...info.config, num_replicas: this.replicas }).catch((error: unknown) => {
        throw explainReplicaRefusal(error, this.replicas, name);
      });
    }
    return found;
  }

  /** Whether the stream `name` exists (a JetStream answer; a timeout throws). */
  async streamExists(name: string): Promise<boolean> {
    try {
      await this.jsm.streams.info(name);
      return true;
    } catch (error) {
      if (isStreamNotFound(error)) return false;
      throw error;
    }
  }

  /** Removes `replica`'s messages below `keepFrom` (they are covered by a snapshot). */
  async purgeBelow(replica: string, keepFrom: number): Promise<number> {
    const result = await this.jsm.streams.purge(streamName(replica), { seq: keepFrom });
    return result.purged;
  }

  /** First sequence still stored in `replica`'s stream (last + 1 when empty). */
  async firstSequence(replica: string): Promise<number> {
    const info = await this.jsm.streams.info(streamName(replica));
    return info.state.first_seq;
  }

  /** First and last sequence stored in `replica`'s stream (first = last + 1 when empty). */
  async bounds(replica: string): Promise<{ first: number; last: number }> {
    const info = await this.jsm.streams.info(streamName(replica));
    return { first: info.state.first_seq, last: info.state.last_seq };
  }

  async lastSequence(replica: string): Promise<number> {
    const info = await this.jsm.streams.info(streamName(replica));
    return info.state.last_seq;
  }

  /**
   * Appends one message to `replica`'s stream, only if its last sequence is
   * `expectedLastSeq`. `msgId` makes a retry of the same message a no-op.
   * Returns the message's sequence.
   */
  async append(replica: string, data: Uint8Array, expectedLastSeq: number, msgId: string): Promise<number> {
    const h = headers();
    try {
      const ack = await this.js.publish(deltaSubject(replica), data, {
        msgID: msgId,
        expect: { lastSequence: expectedLastSeq },
        timeout: this.options.publishTimeoutMs ?? 5_000,
        headers: h,
      });
      return ack.seq;
    } catch (error) {
      if (jetStreamErrorCode(error) === JS_WRONG_LAST_SEQUENCE) {
        throw new WriterFencedError(streamName(replica), { cause: error });
      }
      throw error;
    }
  }

  /** The raw data of the messages of `replica`'s stream after `afterSeq` (at most `limit`), for checking who wrote them. */
  async messagesAfter(replica: string, afterSeq: number, limit = 100): Promise<Array<{ seq: number; data: Uint8Array }>> {
    const { last } = await this.bounds(replica);
    const out: Array<{ seq: number; data: Uint8Array }> = [];
    for (let seq = afterSeq + 1; seq <= last && out.length < limit; seq++) {
      try {
        const message = await this.jsm.streams.getMessage(streamName(replica), { seq });
        out.push({ seq, data: message.data });
      } catch (error) {
        if (jetStreamErrorCode(error) !== JS_NO_MESSAGE) throw error;
      }
    }
    return out;
  }

  /**
   * Delivers `replica`'s messages from `fromSeq` on, in order, to `onMessage`
   * until the returned handle is stopped.
   */
  async follow(replica: string, fromSeq: number, onMessage: (message: LoggedMessage) => void): Promise<ConsumerMessages> {
    const consumer = await this.js.consumers.get(streamName(replica), {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, fromSeq),
    });
    // Short pull expiry and heartbeats: a cut link is noticed within ~2 s and the
    // ordered consumer is recreated from the last sequence seen (default is 30 s).
    return consumer.consume({
      max_messages: 256,
      expires: 2_000,
      idle_heartbeat: 1_000,
      callback: (m) => onMessage({ seq: m.seq, data: m.data, pending: m.info.pending }),
    });
  }

  /** The last message of `replica`'s stream, or undefined when it holds none (empty, purged, or no stream). */
  async lastMessage(replica: string): Promise<{ seq: number; data: Uint8Array } | undefined> {
    // Info first: a message get for a stream that does not exist is answered by
    // the meta leader, and nats-server 2.9.10 (Debian's) can crash doing so
    // right after its election (nil pointer in jsMsgGetRequest).
    try {
      const info = await this.jsm.streams.info(streamName(replica));
      if (info.state.messages === 0) return undefined;
    } catch (error) {
      if (isStreamNotFound(error)) return undefined;
      throw error;
    }
    try {
      const message = await this.jsm.streams.getMessage(streamName(replica), { last_by_subj: deltaSubject(replica) });
      return { seq: message.seq, data: message.data };
    } catch (error) {
      const code = jetStreamErrorCode(error);
      if (code === JS_NO_MESSAGE || code === JS_STREAM_NOT_FOUND) return undefined;
      throw error;
    }
  }

  /**
   * Reads `replica`'s stream from `fromSeq` to the end it had when called, in
   * order, every message exactly once. Throws ReplayError rather than wait for
   * messages that are not there: when the stream starts above `fromSeq`
   * (purged), when a message inside the range is missing (deleted), or when
   * nothing arrives for `idleTimeoutMs` (server gone). An error thrown by
   * `onMessage` ends the replay with that error. Returns the last sequence.
   */
  async replay(replica: string, fromSeq: number, onMessage: (message: LoggedMessage) => void, options: ReplayOptions = {}): Promise<number> {
    const { first, last } = await this.bounds(replica);
    if (last < fromSeq) return last;
    if (first > fromSeq) {
      throw new ReplayError(replica, `stream of ${replica} starts at ${first}: messages ${fromSeq}..${first - 1} were purged`);
    }
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_REPLAY_IDLE_TIMEOUT_MS;
    const consumer = await this.js.consumers.get(streamName(replica), {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, fromSeq),
    });
    const messages = await boundedConsume(consumer.consume({ max_messages: 256, expires: 2_000, idle_heartbeat: 1_000 }), idleTimeoutMs, replica);
    let expected = fromSeq;
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        messages.stop();
      }, idleTimeoutMs);
    };
    arm();
    try {
      for await (const m of messages) {
        if (m.seq !== expected) {
          throw new ReplayError(replica, `stream of ${replica}: messages ${expected}..${m.seq - 1} are missing (deleted) inside ${fromSeq}..${last}`);
        }
        onMessage({ seq: m.seq, data: m.data, pending: m.info.pending });
        expected = m.seq + 1;
        if (m.seq >= last) break;
        // pending 0 below `last`: either the tail was deleted, or (R3/R5) the
        // consumer's server has not applied it yet while the leader that
        // answered `bounds` has. Ask the leader which; keep reading on lag.
        if (m.info.pending === 0 && !(await this.holds(replica, m.seq + 1))) {
          throw new ReplayError(replica, `stream of ${replica}: messages ${m.seq + 1}..${last} are missing (deleted) at the end of ${fromSeq}..${last}`);
        }
        arm();
      }
    } finally {
      clearTimeout(timer);
      messages.stop();
    }
    if (expected <= last) {
      throw new ReplayError(
        replica,
        stalled
          ? `stream of ${replica}: no message for ${idleTimeoutMs} ms while replaying ${fromSeq}..${last} (reached ${expected - 1})`
          : `stream of ${replica}: the read ended at ${expected - 1} of ${fromSeq}..${last}`,
      );
    }
    return last;
  }

  /** Whether `replica`'s stream holds message `seq` (asked of the stream leader). */
  private async holds(replica: string, seq: number): Promise<boolean> {
    try {
      await this.jsm.streams.getMessage(streamName(replica), { seq });
      return true;
    } catch (error) {
      if (jetStreamErrorCode(error) === JS_NO_MESSAGE) return false;
      throw error;
    }
  }

  /**
   * Drains the connection (pending publishes are flushed), or closes it after
   * `drainTimeoutMs`: a drain waits for a server, and with none reachable a
   * stopping node must not hang.
   */
  async close(drainTimeoutMs = 3_000): Promise<void> {
    if (this.connection.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, drainTimeoutMs);
    });
    await Promise.race([this.connection.drain().catch(() => undefined), expired]);
    clearTimeout(timer);
    if (!this.connection.isClosed()) await this.connection.close();
  }
}

/** The JetStream API error code carried by a nats.js error, if any. */
export function jetStreamErrorCode(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null || !("api_error" in error)) return undefined;
  const api: unknown = error.api_error;
  if (typeof api !== "object" || api === null || !("err_code" in api)) return undefined;
  return typeof api.err_code === "number" ? api.err_code : undefined;
}

/**
 * True for a NATS request that got no answer in time or found no responder:
 * JetStream electing a leader, or a gateway still connecting while a
 * supercluster starts. Worth retrying; every other error is an answer.
 */
export function isTransientNatsError(error: unknown): boolean {
  return error instanceof NatsError && (error.code === String(ErrorCode.Timeout) || error.code === String(ErrorCode.NoResponders));
}

/** True when `error` says the stream does not exist (JetStream's own answer, not a timeout). */
export function isStreamNotFound(error: unknown): boolean {
  return jetStreamErrorCode(error) === JS_STREAM_NOT_FOUND;
}

/**
 * The library creates an ordered consumer with its own retry loop (up to 30
 * tries, seconds apart): with a stream whose leader just died that is minutes
 * in which a replay neither reads nor fails. Bounded here by the replay's idle
 * timeout; a consume that starts after the give-up is stopped at once.
 */
async function boundedConsume(pending: Promise<ConsumerMessages>, timeoutMs: number, replica: string): Promise<ConsumerMessages> {
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
  });
  try {
    const messages = await Promise.race([pending, gaveUp]);
    if (messages !== undefined) return messages;
  } finally {
    clearTimeout(timer);
  }
  pending.then(
    (late) => late.stop(),
    () => undefined,
  );
  throw new Error(`stream of ${replica}: no consumer after ${timeoutMs} ms (JetStream is electing the stream's leader, or unreachable)`);
}
