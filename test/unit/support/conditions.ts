// Waiting for conditions instead of sleeping: a turn of the event loop, a
// predicate polled until it holds, and whether a promise has settled yet.

/** One turn of the event loop (timers, I/O and setImmediate callbacks run). */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs `count` turns of the event loop. */
export async function turns(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await turn();
}

/** Resolves once `condition` holds; fails after `timeoutMs` naming `what`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

export type Settlement<T> = { readonly state: "pending" } | { readonly state: "resolved"; readonly value: T } | { readonly state: "rejected"; readonly error: unknown };

/** Tracks a promise's settlement without awaiting it. */
export function track<T>(promise: Promise<T>): { readonly current: Settlement<T> } {
  const tracker: { current: Settlement<T> } = { current: { state: "pending" } };
  promise.then(
    (value) => (tracker.current = { state: "resolved", value }),
    (error: unknown) => (tracker.current = { state: "rejected", error }),
  );
  return tracker;
}
