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
