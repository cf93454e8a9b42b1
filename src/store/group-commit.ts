// The group commit that the SQLite and PostgreSQL stores share: writes are queued by key and
// committed in batches, one transaction per batch, after a bounded delay or as soon as enough
// are queued; one transaction at a time (a commit or an update); a failed commit keeps its
// writes queued and is retried on the timer; a stop retries until its deadline, then says how
// many writes it lost. What a transaction is, is the backend's: `commit`.

import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Backoff } from '../backoff.js';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import { isDeleteIf, type QueuedWrite } from './pending.js';
import type { Entry, Store } from './types.js';

export interface GroupCommitSettings {
  readonly: boolean;
  /** Longest time a queued write waits before it is committed (ms). */
  commitDelay: number;
  /** Queue length that triggers a commit at once. */
  commitBatch: number;
  log: Logger;
  onCommit?: (seconds: number, ok: boolean) => void;
}

/** Queued writes dropped from the queue per step: a few milliseconds of main-thread work. */
const DROPS_PER_STEP = 1024;

export abstract class GroupCommitStore {
  /** Queued writes; null is a queued delete. Entries stay here until their commit succeeds. */
  protected readonly pending = new Map<string, QueuedWrite>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;
  private queued: Promise<void> | null = null;
  /** After a failed commit the size trigger pauses and the timer retries, so a broken database is not hammered per put. */
  private failing = false;
  protected closing: Promise<void> | null = null;
  /** Given up (abandon): nothing is written or committed any more; reads still work. */
  protected abandoned = false;
  /** Why the last commit failed, for the line that says what a failed close lost. */
  private lastFailure = '';

  protected constructor(readonly path: string, protected readonly settings: GroupCommitSettings) {}

  /** Commits `batch` (keys unique) in one transaction; throws what the database said. */
  protected abstract commit(batch: Array<[string, QueuedWrite]>): Promise<void>;
  /** False when there is nothing to commit to (a database opened read-only before it was made). */
  protected abstract canCommit(): boolean;
  /** The database's error in words, for the log and E_DB_WRITE. */
  protected abstract errorText(err: unknown): string;

  get pendingWrites(): number {
    return this.pending.size;
  }

  put(entry: Entry): void {
    this.writable();
    // A copy: the caller may keep mutating its object, and the commit compares by identity.
    this.pending.set(entry.key, { ...entry });
    this.schedule();
  }

  delete(key: string): void {
    this.writable();
    this.pending.set(key, null);
    this.schedule();
  }

  deleteIf(expected: Entry): void {
    this.writable();
    const queued = this.pending.get(expected.key);
    // A queued put is newer than the committed row the caller read, even one equal to it (the
    // database may hold something else until it commits); a queued delete already deletes.
    if (queued !== undefined && !isDeleteIf(queued)) return;
    this.pending.set(expected.key, { expected: { ...expected } });
    this.schedule();
  }

  flush(): Promise<void> {
    if (this.settings.readonly || this.abandoned) return Promise.resolve();
    if (this.queued) return this.queued;
    if (this.running) {
      // One commit at a time; everything asked for meanwhile goes into a single follow-up.
      this.queued = this.running
        .catch(() => undefined)
        .then(() => {
          this.queued = null;
          return this.startFlush();
        });
      return this.queued;
    }
    return this.startFlush();
  }

  /**
   * Runs an update's transaction as the only one: after the one under way and the writes
   * queued before it; a group commit asked for meanwhile waits.
   */
  protected exclusive<T>(transaction: () => Promise<T>): Promise<T> {
    const before = this.running ?? Promise.resolve();
    const p: Promise<T> = before.catch(() => undefined)
      .then(() => this.commitPending())
      .then(() => this.timed(transaction))
      .finally(() => {
        if (this.running === p) this.running = null;
      });
    this.running = p;
    return p;
  }

  /** Stops committing and hands back the queued writes, oldest first, to replay elsewhere. */
  protected async giveUpQueue(): Promise<Array<(next: Store) => void>> {
    const writes = [...this.pending].map(([key, w]): ((next: Store) => void) =>
      w === null ? (next) => next.delete(key) : isDeleteIf(w) ? (next) => next.deleteIf(w.expected) : (next) => next.put(w));
    this.pending.clear();
    this.abandoned = true;
    this.clearTimer();
    await this.running?.catch(() => undefined);
    return writes;
  }

  /**
   * close()'s flush: retried with backoff until `retryUntil` is aborted (not at all without it).
   * Resolves with the E_DB_WRITE that says what was lost, or undefined when all was committed.
   */
  protected async finalFlush(retryUntil: AbortSignal | undefined): Promise<PfgreyError | undefined> {
    this.clearTimer();
    const backoff = new Backoff({ min: DEFAULTS.greyRetryMin, max: DEFAULTS.stopRetryWait });
    for (let attempt = 1; ; attempt++) {
      let failure: unknown;
      try {
        await this.flush();
        return undefined;
      } catch (err) {
        failure = err;
      }
      if (retryUntil && !retryUntil.aborted) {
        if (attempt === 1) {
          this.settings.log.error(`${this.path}: cannot commit ${this.pending.size} writes, retrying until the stop ` +
            `deadline: ${this.lastFailure}`);
        }
        if (await backoff.wait(retryUntil)) continue;
      }
      // Nothing retries them after this: say so, with the count, instead of "keeping them queued".
      return new PfgreyError('E_DB_WRITE', `${this.path}: ${this.pending.size} queued writes lost: ` +
        `${retryUntil ? 'still not committed when the stop gave up' : 'cannot commit them'} (${this.lastFailure})`,
      { cause: failure });
    }
  }

  protected writable(): void {
    if (this.closing || this.abandoned) throw new PfgreyError('E_DB_WRITE', `${this.path}: the database is closed`);
    if (this.settings.readonly) throw new PfgreyError('E_DB_WRITE', `${this.path}: the database was opened read-only`);
  }

  protected async timed<T>(transaction: () => Promise<T>): Promise<T> {
    const began = performance.now();
    let ok = false;
    try {
      const result = await transaction();
      ok = true;
      return result;
    } finally {
      this.settings.onCommit?.((performance.now() - began) / 1000, ok);
    }
  }

  private schedule(): void {
    if (this.pending.size >= this.settings.commitBatch && !this.failing) {
      this.clearTimer();
      this.flush().catch(() => undefined); // reported by commitPending; retried by the timer
      return;
    }
    this.arm();
  }

  private arm(): void {
    if (this.timer || this.closing || this.abandoned) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush().catch(() => undefined);
    }, this.settings.commitDelay);
    // A queued write must not keep a finished process alive; close() is what flushes at exit.
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private startFlush(): Promise<void> {
    this.clearTimer();
    const p = this.commitPending().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  private async commitPending(): Promise<void> {
    if (this.pending.size === 0 || !this.canCommit()) return;
    const batch = [...this.pending];
    try {
      await this.timed(() => this.commit(batch));
    } catch (err) {
      this.failing = true;
      const msg = this.errorText(err);
      this.lastFailure = msg;
      // Retry on the timer even if nothing else is written meanwhile. Once closing, close()
      // decides whether there is a retry, and says what it does.
      if (!this.closing) {
        this.settings.log.error(`${this.path}: cannot commit ${batch.length} writes, keeping them queued: ${msg}`);
        this.arm();
      }
      throw new PfgreyError('E_DB_WRITE', `${this.path}: cannot write to database (${msg})`, { cause: err });
    }
    this.failing = false;
    // Only what was committed leaves the queue; a write queued during the commit is a new
    // object (put copies) and stays for the next one.
    for (let i = 0; i < batch.length; i++) {
      const [key, value] = batch[i]!;
      if (this.pending.get(key) === value) this.pending.delete(key);
      if (i % DROPS_PER_STEP === DROPS_PER_STEP - 1) await yieldToLoop();
    }
    if (this.pending.size > 0) this.schedule();
  }
}
