// Who is watching which account. Changes (local or merged from peers) notify
// the account's watchers; the watchers coalesce, so nothing here buffers.

export type ChangeListener = () => void;

export class BalanceWatchHub {
  private readonly listeners = new Map<string, Set<ChangeListener>>();
  private readonly closers = new Set<() => void>();
  /** Client watches (WatchBalance streams). */
  private count = 0;
  /** Every listener, internal ones included. */
  private listening = 0;

  get size(): number {
    return this.count;
  }

  /**
   * `onClose` runs if the hub closes (node shutdown) while the watch is open.
   * Internal watches (the rights broker waiting for rights) are not counted in `size`.
   */
  watch(accountId: string, listener: ChangeListener, onClose: () => void, internal = false): () => void {
    let set = this.listeners.get(accountId);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(accountId, set);
    }
    set.add(listener);
    this.closers.add(onClose);
    this.listening++;
    if (!internal) this.count++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.listening--;
      if (!internal) this.count--;
      this.closers.delete(onClose);
      const current = this.listeners.get(accountId);
      current?.delete(listener);
      if (current?.size === 0) this.listeners.delete(accountId);
    };
  }

  /** Ends every open watch (each closer unregisters itself). */
  closeAll(): void {
    for (const close of [...this.closers]) close();
  }

  notify(accountId: string): void {
    if (this.listening === 0) return;
    const set = this.listeners.get(accountId);
    if (set === undefined) return;
    for (const listener of set) listener();
  }
}
