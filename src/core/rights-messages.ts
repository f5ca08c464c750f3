// The rights protocol between regions, as domain values: a short region asks,
// a donor answers with what it gave, after that gift is durable in its row.

export interface RightsAsk {
  readonly accountId: string;
  readonly requester: string;
  /** Rights the requester wants. */
  readonly deficit: bigint;
}

export interface RightsGift {
  readonly donor: string;
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

/** How rights messages travel (NATS request/reply in production, in memory in the simulation). */
export interface RightsTransport {
  /** Asks `donor`; resolves with its gift, or undefined when no valid reply came in `timeoutMs`. */
  ask(donor: string, ask: RightsAsk, timeoutMs: number): Promise<RightsGift | undefined>;
  /** Serves asks addressed to this region until the returned function is called. */
  serve(donate: (ask: RightsAsk) => Promise<RightsGift>): () => void;
}
