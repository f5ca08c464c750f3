// The only writer of this replica's stream: group commit, encoding and
// fencing. An append names the sequence it expects to follow, so a second
// process writing the same replica fences this one; after a fence or stop
// every waiting call ends at once (nothing of theirs was acknowledged).

import type { ReplicaSet } from "../core/replica-set";
import type { CommitBatch, DurableWrite } from "../core/durable-write";
import type { SlotChange } from "../core/replica-state";
import { decodeDelta, encodeDelta } from "./delta-codec";
import { inboundContext } from "./inbound";
import { GroupCommitter, PoisonWriteError, type CommitHealth } from "./group-commit";

/** A second writer appended to this replica's stream. */
export class WriterFencedError extends Error {
  override readonly name = "WriterFencedError";
  constructor(
    readonly stream: string,
    options?: { cause?: unknown },
  ) {
    super(`another writer appended to ${stream}; this node must stop writing`, options);
  }
}

/** The part of the durable log a writer needs (JetStream in production, a fake in tests). */
export interface StreamAppender {
  /** Appends if the stream's last sequence is `expectedLastSeq`; returns the new sequence. */
  append(replica: string, data: Uint8Array, expectedLastSeq: number, msgId: string): Promise<number>;
  /** Largest message the server accepts. */
  readonly maxPayload: number;
  /** The messages after `afterSeq` (to tell a second writer from a stray publisher). */
  messagesAfter?(replica: string, afterSeq: number): Promise<Array<{ seq: number; data: Uint8Array }>>;
}

export interface WriterHooks {
  /** The row digest of this replica now (published with each message). */
  rowDigest(): string;
  /** Other writers' non-zero slots of these accounts as held now (the message's causal context). */
  context?(accountIds: ReadonlySet<string>): SlotChange[];
  /** Called once when another writer fenced this one. */
  onFenced(error: WriterFencedError): void;
  onCommitted(slots: number, seconds: number): void;
  /** Messages this node did not write were found in its stream and stepped over. */
  onForeign?(sequences: readonly number[], reason: string): void;
  onError(error: unknown): void;
}

export interface ReplicaWriterOptions {
  readonly region: string;
  readonly replicas: ReplicaSet;
  /** Sequence of the last message of the stream at start (recovered). */
  readonly startSequence: number;
  readonly maxBatchSlots: number;
  readonly retryDelayMs: number;
  /** Distinguishes this process's message ids from an earlier one's (dedupe window). */
  readonly instanceId: string;
  readonly now: () => number;
}

export class ReplicaWriter {
  private readonly committer: GroupCommitter;
  private ownSequence: number;
  private ownDigest = "";
  private published = 0;
  private fenced = false;

  constructor(
    private readonly log: StreamAppender,
    private readonly options: ReplicaWriterOptions,
    private readonly hooks: WriterHooks,
  ) {
    this.ownSequence = options.startSequence;
    this.ownDigest = hooks.rowDigest();
    this.committer = new GroupCommitter(
      (batch) => this.publish(batch),
      { maxBatchSlots: options.maxBatchSlots, retryDelayMs: options.retryDelayMs },
      (error) => hooks.onError(error),
    );
  }

  /** Sequence of the last durable message of this replica. */
  get sequence(): number {
    return this.ownSequence;
  }

  /** Row digest at `sequence`, as published. */
  get publishedDigest(): string {
    return this.ownDigest;
  }

  get health(): CommitHealth {
    return this.committer.health;
  }

  get idle(): boolean {
    return this.committer.idle;
  }

  /** Resolves with the sequence once `write` is durable. */
  commit(write: DurableWrite): Promise<number> {
    return this.committer.commit(write);
  }

  /** Everything committed before is durable; the resolved sequence covers exactly that and nothing later. */
  barrier(): Promise<number> {
    // Idle: the last durable message is the stream's, recovered ones included
    // (the committer only knows the sequences it published itself).
    if (this.committer.idle) return Promise.resolve(this.ownSequence);
    return this.committer.barrier();
  }

  /** Ends every waiter with `reason`; later commits fail with it at once. */
  stop(reason: Error): void {
    this.committer.stop(reason);
  }

  /**
   * The stream moved past what this writer appended. If every message in
   * between is not a delta of this replica (garbage, or another cluster's),
   * a stray publisher wrote it: it is reported and stepped over, and the
   * append is retried. A valid delta of this replica means a second writer:
   * that is a fence. Returns true when it stepped over.
   */
  private async stepOverForeign(): Promise<boolean> {
    if (this.log.messagesAfter === undefined) return false;
    let messages: Array<{ seq: number; data: Uint8Array }>;
    try {
      messages = await this.log.messagesAfter(this.options.region, this.ownSequence);
    } catch {
      return false;
    }
    if (messages.length === 0) return false;
    const ctx = { ...inboundContext(this.options.replicas), expectedWriter: this.options.region };
    const reasons: string[] = [];
    for (const message of messages) {
      const decoded = decodeDelta(message.data, ctx);
      if (decoded.ok) return false;
      reasons.push(`${message.seq}: ${decoded.reason}`);
    }
    const sequences = messages.map((m) => m.seq);
    this.ownSequence = sequences[sequences.length - 1]!;
    this.hooks.onForeign?.(sequences, reasons.join("; "));
    return true;
  }

  private async publish(plain: CommitBatch): Promise<number> {
    // Only a barrier alone makes an empty batch: what it covers is durable at
    // the last message already, and an empty message would only lengthen the stream.
    if (plain.slots.length === 0 && plain.requests.length === 0 && plain.policies.length === 0) return this.ownSequence;
    const batch: CommitBatch =
      this.hooks.context === undefined || plain.slots.length === 0
        ? plain
        : { ...plain, context: this.hooks.context(new Set(plain.slots.map((s) => s.accountId))) };
    const digest = this.hooks.rowDigest();
    let bytes: Uint8Array;
    try {
      bytes = encodeDelta(this.options.replicas, this.options.replicas.indexOf(this.options.region), batch, this.options.now(), digest);
    } catch (error) {
      throw new PoisonWriteError(`cannot encode the change: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
    if (bytes.length > this.log.maxPayload) {
      throw new PoisonWriteError(
        `the change is ${bytes.length} bytes, above the stream's ${this.log.maxPayload}-byte message limit; send fewer items per call`,
      );
    }
    const started = process.hrtime.bigint();
    const msgId = `${this.options.instanceId}-${this.published + 1}`;
    let sequence: number;
    try {
      sequence = await this.log.append(this.options.region, bytes, this.ownSequence, msgId);
    } catch (error) {
      if (error instanceof WriterFencedError && !this.fenced && (await this.stepOverForeign())) throw error;
      if (error instanceof WriterFencedError && !this.fenced) {
        this.fenced = true;
        this.committer.stop(error);
        this.hooks.onFenced(error);
      }
      throw error;
    }
    this.published++;
    this.ownSequence = sequence;
    this.ownDigest = digest;
    this.hooks.onCommitted(batch.slots.length, Number(process.hrtime.bigint() - started) / 1e9);
    return sequence;
  }
}
