/**
 * One stored record: a key and five numbers, as spamd's database holds them. The store keeps
 * them; what the key's shape and the numbers mean (GREY, WHITE, TRAPPED, SPAMTRAP; times in
 * milliseconds) is the greylist's business (src/grey/entry.ts).
 */
export interface Entry {
  key: string;
  first: number;
  pass: number;
  expire: number;
  bcount: number;
  pcount: number;
}

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
  /**
   * Reads the entries under `keys` (those that exist) and writes what `decide` returns, as one
   * atomic step: no other writer, in this process or another, writes between the read and the
   * write, so two writers of one key never lose an update. Writes queued before it are
   * committed first. `decide` may be called more than once, each time on a newer read (another
   * writer got in between): it must say what to write without acting on it, and the last call's
   * writes are the ones made. For the doors that share the file with the daemon (pfgrey db,
   * logd, pfgrey policy); the daemon's tuples go through the group commit.
   *
   * `once` names the update for a caller that retries it after a failure: a store whose
   * commit can succeed with its reply lost (PostgreSQL, over a connection that drops after
   * COMMIT is sent) records the name in the same transaction, and a retry under a name it
   * holds resolves false without calling `decide`: the update was made, and is not made twice.
   * Otherwise the update resolves true. Stores in this process (SQLite, memory) never lose a
   * commit's outcome and ignore the name.
   */
  update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[], once?: string): Promise<boolean>;
  /**
   * Queues a deletion of `expected.key` that happens only if the row is still exactly
   * `expected` when it is committed: the scan deletes what it read, and a row another process
   * (`pfgrey db -a`) or the greylister wrote since is newer and stays. A write to the key queued
   * here before it wins; one queued after it replaces it. Reads treat the key as deleted until
   * the commit, as they do for `delete`.
   */
  deleteIf(expected: Entry): void;
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
  /**
   * Flushes and closes; safe to call twice. A commit that fails is retried (with backoff) until
   * `retryUntil` is aborted, or not at all without it; what could not be committed is then lost,
   * and the rejection says how many writes. `pendingWrites` still counts them afterwards.
   */
  close(opts?: CloseOptions): Promise<void>;
}

/** One write of an atomic update: an entry to insert or replace, or a key to delete. */
export type StoreWrite = { put: Entry } | { delete: string };

export interface CloseOptions {
  /** Keep retrying failed commits until this is aborted (the daemon's stop deadline). */
  retryUntil?: AbortSignal;
}

/**
 * A store the daemon watches for trouble underneath it: the SQLite store's file, which someone
 * can truncate, replace or remove. The PostgreSQL store (postgres.ts) has the same shape, so
 * the daemon's wrapper holds either, but there is no file under it: it never reports a problem.
 */
export interface FileStore extends Store {
  /** What happened to the file since it was opened, if anything a daemon cannot go on with. */
  fileProblem(): Promise<FileProblem | undefined>;
  /** Stops committing and returns the queued writes, to replay into a replacement. */
  abandon(): Promise<Abandoned>;
}

/** What a store given up leaves: its uncommitted writes, and the close of its connection. */
export interface Abandoned {
  writes: Array<(next: Store) => void>;
  close(): Promise<void>;
}

/**
 * A database file changed underneath its store: `removed` (the open connection still reads
 * it), `replaced` by another file (the new one is the database now, as at a start), or
 * `damaged` in place (truncated, overwritten: recovered from what can still be read).
 */
export interface FileProblem {
  kind: 'removed' | 'replaced' | 'damaged';
  reason: string;
}
