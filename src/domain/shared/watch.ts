import type { Events } from './events.js';
import type { Runtime } from './runtime.js';

// "Send the current state, then every change, until a final one": the shape of every progress
// subscription (reindex, backup, workspace bucket). Written once here so that each of them listens
// before reading the current state (nothing published in between is lost), drops late or stale
// events the same way, and closes its topic subscription however the stream ends.

/** Topics whose payload is a state that eventually becomes final. */
type Topic = 'reindexProgress' | 'backupProgress' | 'bucketStatus' | 'uploadProgress';
type Payload<T extends Topic> = Events[T][1];

export interface WatchRules<E> {
  /** The state now; read after the subscription opened. May throw (the subscription is closed). */
  current: () => Promise<E>;
  /** Whether a state is final: the stream ends after yielding it. */
  isTerminal: (e: E) => boolean;
  /** Whether the current state is shown first (default: yes). A stream that skips it waits for the next event. */
  showCurrent?: (current: E) => boolean;
  /**
   * Whether a live event is shown, given the last one shown (undefined before the first) and the
   * current state read at the start. Default: every event. Used to drop late duplicates from other
   * replicas so that progress never goes backwards.
   */
  accept?: (e: E, last: E | undefined, current: E) => boolean;
}

/**
 * The state behind `key` on `topic` now, then its changes, ending after the first final state (at
 * once when the current state is final and shown). Throws what `current` throws, before any stream.
 */
export async function watchUntilTerminal<T extends Topic>(
  rt: Runtime,
  topic: T,
  key: string,
  rules: WatchRules<Payload<T>>,
): Promise<AsyncGenerator<Payload<T>>> {
  const source = (rt.events.subscribe as (topic: T, key: string) => AsyncIterableIterator<Payload<T>>)(topic, key);
  // Listen before reading the current state, so nothing published in between is missed.
  let pending = source.next();
  let current: Payload<T>;
  try {
    current = await rules.current();
  } catch (err) {
    await source.return?.();
    throw err;
  }
  const accept = rules.accept ?? (() => true);
  return (async function* stream() {
    try {
      let last: Payload<T> | undefined;
      if (rules.showCurrent?.(current) ?? true) {
        last = current;
        yield current;
        if (rules.isTerminal(current)) return;
      }
      while (true) {
        const next = await pending;
        if (next.done) return;
        pending = source.next();
        const e = next.value;
        if (!accept(e, last, current)) continue;
        last = e;
        yield e;
        if (rules.isTerminal(e)) return;
      }
    } finally {
      await source.return?.();
    }
  })();
}
