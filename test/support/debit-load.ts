// A bounded debit load for e2e tests that records every attempt, so a test can
// tell acknowledged debits from those cut short by a crash or partition.

import type { BalancesClient, DebitResponse } from "../../src/generated/tally/v1/balances";
import { DebitOutcome } from "../../src/generated/tally/v1/balances";
import { unary } from "./grpc-clients";

export interface Attempt {
  readonly requestId: string;
  readonly accountId: string;
  readonly amount: bigint;
  /** The answer, when the node acknowledged it. */
  answer?: DebitResponse;
  error?: string;
}

export interface LoadOptions {
  readonly client: () => BalancesClient;
  readonly accounts: readonly string[];
  readonly amount: bigint;
  readonly concurrency: number;
  /** Stops issuing new calls once this is true or `maxCalls` were made. */
  readonly stop: () => boolean;
  readonly maxCalls: number;
  readonly prefix: string;
  readonly maxWaitMs?: number;
  readonly deadlineMs?: number;
  /** Live counts, for tests that wait for the load to reach a point instead of sleeping. */
  readonly progress?: LoadProgress;
}

export interface LoadProgress {
  approved: number;
  refused: number;
  failed: number;
}

export const newProgress = (): LoadProgress => ({ approved: 0, refused: 0, failed: 0 });

/** Resolves once `check` holds, polling every 10 ms; fails after `timeoutMs` naming `what`. */
export async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function debitLoad(options: LoadOptions): Promise<Attempt[]> {
  const attempts: Attempt[] = [];
  let n = 0;
  const worker = async (): Promise<void> => {
    while (!options.stop() && n < options.maxCalls) {
      const i = n++;
      const attempt: Attempt = {
        requestId: `${options.prefix}-${i}`,
        accountId: options.accounts[i % options.accounts.length]!,
        amount: options.amount,
      };
      attempts.push(attempt);
      try {
        const client = options.client();
        attempt.answer = await unary(
          client,
          client.debit,
          { accountId: attempt.accountId, amount: attempt.amount, requestId: attempt.requestId, maxWaitMs: options.maxWaitMs ?? 0 },
          { deadline: Date.now() + (options.deadlineMs ?? 5_000) },
        );
        if (options.progress !== undefined) {
          if (isApproved(attempt.answer)) options.progress.approved++;
          else options.progress.refused++;
        }
      } catch (error) {
        if (options.progress !== undefined) options.progress.failed++;
        attempt.error = error instanceof Error ? error.message : String(error);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, () => worker()));
  return attempts;
}

function isApproved(answer: DebitResponse | undefined): boolean {
  return (
    answer !== undefined &&
    (answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED || answer.outcome === DebitOutcome.DEBIT_OUTCOME_APPROVED_WITH_OVERDRAFT)
  );
}

export function approved(attempts: readonly Attempt[]): Attempt[] {
  return attempts.filter((a) => isApproved(a.answer));
}

export function sum(attempts: readonly Attempt[]): bigint {
  return attempts.reduce((total, a) => total + a.amount, 0n);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
