// Stops a child process with a signal and waits for it to exit, escalating to
// SIGKILL if it does not within the grace period.

import type { ChildProcess } from "node:child_process";

export async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolveExit) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(timer);
      resolveExit();
    });
    child.kill(signal);
  });
}
