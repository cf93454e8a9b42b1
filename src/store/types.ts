import type { Entry } from '../grey/entry.js';

/**
 * The greylist store as the daemon and the CLI see it. Writes are queued and committed in
 * batches (group commit): `put`/`delete` return at once, `get` sees queued writes, `flush`
 * commits them, `close` flushes and closes.
 */
export interface Store {
  readonly path: string;
  /** The entry under `key`, including writes not yet committed. */
  get(key: string): Promise<Entry | undefined>;
  /**
   * The entries under `keys` that exist (missing keys are absent from the map), including
   * writes not yet committed. One query answers hundreds of keys: the greylister reads a whole
   * batch of tuples' entries at once.
   */
  getMany(keys: readonly string[]): Promise<Map<string, Entry>>;
  /** Queues an insert-or-replace. */
  put(entry: Entry): void;
  /** Queues a deletion. */
  delete(key: string): void;
  /** Commits everything queued so far. */
  flush(): Promise<void>;
  /**
   * Walks the committed entries in key order, `size` at a time, so a scan over a large table
   * never holds the event loop for long. Call `flush` first to include queued writes.
   */
  chunks(size: number): AsyncIterable<Entry[]>;
  /** GREY entries whose ip part is `ip`, in key order. */
  tuplesOf(ip: string): Promise<Entry[]>;
  /** Number of queued, uncommitted writes. */
  readonly pendingWrites: number;
  /** Flushes and closes; safe to call twice. */
  close(): Promise<void>;
}
