// The answer a request got, as remembered for idempotent retries and replicated
// with the change it made.

export enum DebitOutcome {
  Approved = 1,
  InsufficientCredit = 2,
  ApprovedWithOverdraft = 3,
}

export interface Answer {
  readonly kind: "debit" | "grant";
  readonly outcome: DebitOutcome;
  readonly balance: bigint;
  readonly localRights: bigint;
}
