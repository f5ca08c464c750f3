// Who is watching which account. Changes (local or merged from peers) notify
// the account's watchers. Internal watchers (the rights broker's waits) are
// called at once, on every change. Client watchers (WatchBalance streams) are
// coalesced: an account changed any number of times within one tick is
// delivered once, on setImmediate, to all of its client watchers together, so
// the caller can build one message for all of them and a burst of debits costs
// one fan-out, not one per debit.

/** Identifies one delivery of an account's changes to its client watchers; the same object for all of them. */
export interface ChangeRound {
  readonly accountId: string;
}

/**
 * `changes`: how many changes to the account this call stands for (always 1
 * for internal watchers). `round` is shared by every watcher of the account
 * called in the same delivery.
 */
export type ChangeListener = (changes: number, round: ChangeRound) => void;

export interface WatchLimits {
  /** Client watches open on this node at once. */
  readonly maxPerNode: number;
  /** Client watches of one account on this node at once. */
  readonly maxPerAccount: number;
}

export interface BalanceWatchOptions {
  readonly limits?: WatchLimits;
  /** A client listener threw during a delivery; the others are still delivered. */
  readonly onListenerError?: (error: unknown) => void;
}

/** A client watch refused because a limit is reached; nothing was registered. */
export class WatchLimitError extends Error {
  override readonly name = "WatchLimitError";
}

interface ClientEntry {
  readonly listener: ChangeListener;
  /** Changes already pending when this watcher registered: its first value included them. */
  baseline: number;
}

interface AccountWatchers {
  readonly accountId: string;
  readonly internal: Set<ChangeListener>;
  readonly clients: Set<ClientEntry>;
  /** Changes since the last delivery to the client watchers. */
  pending: number;
}

const UNLIMITED: WatchLimits = { maxPerNode: Number.POSITIVE_INFINITY, maxPerAccount: Number.POSITIVE_INFINITY };

export class BalanceWatchHub {
  private readonly accounts = new Map<string, AccountWatchers>();
  private readonly closers = new Set<() => void>();
  private readonly limits: WatchLimits;
  private readonly onListenerError: (error: unknown) => void;
  /** Accounts with client watchers changed since the last delivery. */
  private dirty: AccountWatchers[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  /** Client watches (WatchBalance streams). */
  private count = 0;
  /** Every listener, internal ones included. */
  private listening = 0;

  constructor(options: BalanceWatchOptions = {}) {
    this.limits = options.limits ?? UNLIMITED;
    // Without a handler the error still surfaces (uncaught), after the other watchers got theirs.
    this.onListenerError =
      options.onListenerError ??
      ((error) =>
        queueMicrotask(() => {
          throw error;
        }));
  }

  get size(): number {
    return this.count;
  }

  /** Client watches of one account. */
  watchersOf(accountId: string): number {
    return this.accounts.get(accountId)?.clients.size ?? 0;
  }

  /**
   * `onClose` runs if the hub closes (node shutdown) while the watch is open.
   * Internal watches (the rights broker waiting for rights) are called
   * synchronously on each change, are not counted in `size` and are never
   * limited. Client watches are coalesced per tick and limited: past a limit
   * this throws WatchLimitError and registers nothing.
   */
  watch(accountId: string, listener: ChangeListener, onClose: () => void, internal = false): () => void {
    if (!internal) this.admit(accountId);
    let account = this.accounts.get(accountId);
    if (account === undefined) {
      account = { accountId, internal: new Set(), clients: new Set(), pending: 0 };
      this.accounts.set(accountId, account);
    }
    const entry: ClientEntry | undefined = internal ? undefined : { listener, baseline: account.pending };
    if (entry === undefined) account.internal.add(listener);
    else account.clients.add(entry);
    this.closers.add(onClose);
    this.listening++;
    if (!internal) this.count++;
    let active = true;
    const registered = account;
    return () => {
      if (!active) return;
      active = false;
      this.listening--;
      if (!internal) this.count--;
      this.closers.delete(onClose);
      if (entry === undefined) registered.internal.delete(listener);
      else registered.clients.delete(entry);
      if (registered.internal.size === 0 && registered.clients.size === 0 && this.accounts.get(accountId) === registered) {
        this.accounts.delete(accountId);
      }
    };
  }

  /** Ends every open watch (each closer unregisters itself). */
  closeAll(): void {
    for (const close of [...this.closers]) close();
    if (this.scheduled !== undefined) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.dirty = [];
  }

  notify(accountId: string): void {
    if (this.listening === 0) return;
    const account = this.accounts.get(accountId);
    if (account === undefined) return;
    if (account.internal.size > 0) {
      // Synchronous: a debit waiting for rights wakes in the same tick the rights arrive.
      const round: ChangeRound = { accountId };
      for (const listener of account.internal) listener(1, round);
    }
    if (account.clients.size === 0) return;
    if (account.pending++ === 0) this.dirty.push(account);
    this.scheduled ??= setImmediate(() => this.deliver());
  }

  private admit(accountId: string): void {
    const { maxPerNode, maxPerAccount } = this.limits;
    if (this.count >= maxPerNode) {
      throw new WatchLimitError(
        `this node has ${this.count} balance watches open, its limit (--max-watchers ${maxPerNode} per node); close a watch or watch at another node`,
      );
    }
    const ofAccount = this.watchersOf(accountId);
    if (ofAccount >= maxPerAccount) {
      throw new WatchLimitError(
        `account ${accountId} has ${ofAccount} balance watches open on this node, its limit (--max-watchers-per-account ${maxPerAccount}); share one watch or close one`,
      );
    }
  }

  /** One call per client watcher of each changed account, with the changes since its last call. */
  private deliver(): void {
    const dirty = this.dirty;
    this.dirty = [];
    this.scheduled = undefined;
    for (const account of dirty) {
      const changes = account.pending;
      account.pending = 0;
      const round: ChangeRound = { accountId: account.accountId };
      for (const entry of account.clients) {
        const unseen = changes - entry.baseline;
        entry.baseline = 0;
        if (unseen <= 0) continue;
        try {
          entry.listener(unseen, round);
        } catch (error) {
          this.onListenerError(error);
        }
      }
    }
  }
}
