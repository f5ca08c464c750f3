// Closed-loop load: `concurrency` callers each issue calls back to back until
// `total` calls are done. Bounded, so it always stops by itself.

export async function closedLoop(
  total: number,
  concurrency: number,
  call: (index: number) => Promise<unknown>,
): Promise<{ latenciesNs: number[]; seconds: number }> {
  const latenciesNs: number[] = new Array<number>(total);
  let next = 0;
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    for (;;) {
      const index = next++;
      if (index >= total) return;
      const t0 = process.hrtime.bigint();
      await call(index);
      latenciesNs[index] = Number(process.hrtime.bigint() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  return { latenciesNs, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/**
 * Open-loop load at a fixed rate: call k is due at start + k / ratePerSecond,
 * whether or not earlier calls have answered, and its latency counts from
 * that due time (a late start is the system's delay, not hidden: no
 * coordinated omission). Bounded by `total`.
 */
/** How long before a paced call's due time the generator stops sleeping and spins. */
const SPIN_MS = 2;

export async function pacedLoop(
  total: number,
  ratePerSecond: number,
  call: (index: number) => Promise<unknown>,
): Promise<{ latenciesNs: number[]; seconds: number }> {
  const latenciesNs: number[] = new Array<number>(total);
  const intervalNs = 1e9 / ratePerSecond;
  const started = process.hrtime.bigint();
  const inFlight: Array<Promise<void>> = [];
  for (let index = 0; index < total; index++) {
    const dueNs = started + BigInt(Math.round(index * intervalNs));
    // A timer fires up to a few ms late: sleep until just before the due time,
    // then spin the rest, so the generator's own lateness is not billed to the
    // system (a late system still is: latency counts from the due time).
    const waitMs = Number(dueNs - process.hrtime.bigint()) / 1e6 - SPIN_MS;
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
    while (process.hrtime.bigint() < dueNs) {
      // spin
    }
    inFlight.push(
      call(index).then(() => {
        latenciesNs[index] = Number(process.hrtime.bigint() - dueNs);
      }),
    );
  }
  await Promise.all(inFlight);
  return { latenciesNs, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}
