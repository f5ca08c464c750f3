// The rights protocol between regions, as domain values: a short region asks
// for every account short in one window at once, a donor answers the batch
// with what it gave, after one durable group commit of all of it.

export interface RightsAsk {
  readonly accountId: string;
  /** Rights the requester wants. */
  readonly deficit: bigint;
  /** A debit waits for these rights (not an ask ahead of need): the donor may give below its fair share. */
  readonly urgent: boolean;
}

export interface RightsBatchAsk {
  readonly requester: string;
  /** One per account, account ids unique. */
  readonly asks: readonly RightsAsk[];
}

export interface RightsGift {
  readonly accountId: string;
  /** What this reply gave (0: nothing). */
  readonly granted: bigint;
  /** The donor's slot P[donor][requester] after the gift: absolute, so replays merge harmlessly. */
  readonly transferredTotal: bigint;
  readonly donorRights: bigint;
  /**
   * The donor's whole counter of the account (slot layout), so the
   * requester's view stays causally closed: it holds every row the gift
   * depended on. Empty when nothing was given.
   */
  readonly accountCounter: readonly bigint[];
}

export interface RightsBatchGift {
  readonly donor: string;
  readonly gifts: readonly RightsGift[];
}

/** Most accounts in one batch: keeps a reply well under NATS's default 1 MB payload. */
export const MAX_RIGHTS_BATCH = 2_000;

/** How rights messages travel (NATS request/reply in production, in memory in the simulation). */
export interface RightsTransport {
  /** Asks `donor` for a batch; resolves with its answer, or undefined when no valid reply came in `timeoutMs`. */
  ask(donor: string, batch: RightsBatchAsk, timeoutMs: number): Promise<RightsBatchGift | undefined>;
  /** Serves batches addressed to this region until the returned function is called. */
  serve(donate: (batch: RightsBatchAsk) => Promise<RightsBatchGift>): () => void;
}
