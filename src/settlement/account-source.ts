// The caller's account source, guarded: a failure of the source itself is a
// SourceFailure (passed through as is), never mistaken for a store error.

/** An error thrown by the caller's account source: passed through as is, not as a store error. */
export class SourceFailure extends Error {
  override readonly name = "SourceFailure";
  constructor(readonly error: unknown) {
    super("the account source failed", { cause: error });
  }
}

/** The source's items; a failure of the source itself becomes a SourceFailure. */
export async function* sourced<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let done = false;
  try {
    for (;;) {
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } catch (error) {
        done = true;
        throw new SourceFailure(error);
      }
      if (next.done === true) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    // The consumer stopped early: let the source clean up.
    if (!done) await Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

export function* sourcedSync<T>(source: Iterable<T>): Generator<T> {
  const iterator = source[Symbol.iterator]();
  let done = false;
  try {
    for (;;) {
      let next: IteratorResult<T>;
      try {
        next = iterator.next();
      } catch (error) {
        done = true;
        throw new SourceFailure(error);
      }
      if (next.done === true) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (!done) {
      try {
        iterator.return?.(); // the consumer stopped early: let the source clean up
      } catch {
        // the original error matters more
      }
    }
  }
}

export function isAsyncIterable<T>(value: Iterable<T> | AsyncIterable<T>): value is AsyncIterable<T> {
  return typeof (value as Partial<AsyncIterable<T>>)[Symbol.asyncIterator] === "function";
}

