// The daemon's handle on its store, which can be swapped for a fresh one while the daemon runs:
// a database truncated, replaced, removed or damaged underneath it is given up and recovered
// (recover.ts replaceUnderneath), and the greylister, the scan and the tarpit's backlog check,
// which all hold this handle, carry on with the new store. Writes made during the swap are held
// and replayed into the new store; reads wait for it.
//
// A swap that fails leaves no usable store: writes are then held here (the tarpit's backlog
// check counts them, so clients are held back once there are many), reads fail with one clear
// error, fileProblem reports it so that the next scan tries again, and a stop says how many
// writes it could not keep.

import { PfgreyError, describe } from '../errors.js';
import type { Entry } from './types.js';
import type { Abandoned, CloseOptions, FileProblem, FileStore, Store, StoreWrite } from './types.js';

/** A write waiting for a store to go to. */
export type HeldWrite = (next: Store) => void;

/**
 * Opens the store that replaces `old` (undefined after a failed swap). `keep` takes the writes
 * `old` still had queued, as soon as it gives them up, so that they survive a failure after it.
 */
export type Replace = (old: FileStore | undefined, keep: (writes: HeldWrite[]) => void) => Promise<FileStore>;

export class SwitchableStore implements FileStore {
  /** Writes waiting for a store: made during a swap, or while none is usable. Oldest first. */
  private held: HeldWrite[] = [];
  private switching: Promise<void> | undefined;
  private current: FileStore | undefined;
  /** Why the last swap failed, while no store is usable. */
  private failure: string | undefined;

  constructor(first: FileStore) {
    this.current = first;
    this.path = first.path;
  }

  readonly path: string;

  get pendingWrites(): number {
    return (this.current?.pendingWrites ?? 0) + this.held.length;
  }

  /**
   * Replaces the store with what `replace` opens. Writes made meanwhile, and those the old one
   * gave up, go to the new store; if `replace` fails they stay held, and its error is thrown.
   */
  swap(replace: Replace): Promise<void> {
    this.switching ??= (async () => {
      const old = this.current;
      this.current = undefined;
      let given: HeldWrite[] = [];
      try {
        const next = await replace(old, (writes) => {
          given = writes;
        });
        this.current = next;
        this.failure = undefined;
      } catch (err) {
        this.failure = describe(err);
        throw err;
      } finally {
        // What the old store had queued is older than what was written during the swap.
        this.held = [...given, ...this.held];
        if (this.current) {
          const held = this.held;
          this.held = [];
          for (const write of held) write(this.current);
        }
      }
    })().finally(() => {
      this.switching = undefined;
    });
    return this.switching;
  }

  private async ready(): Promise<FileStore> {
    while (this.switching) await this.switching.catch(() => undefined);
    if (!this.current) {
      throw new PfgreyError('E_DB_OPEN', `${this.path}: no usable database since its recovery failed (${this.failure}); ` +
        'the next scan tries again');
    }
    return this.current;
  }

  private write(op: HeldWrite): void {
    if (this.switching || !this.current) this.held.push(op);
    else op(this.current);
  }

  async get(key: string): Promise<Entry | undefined> {
    return (await this.ready()).get(key);
  }

  async getMany(keys: readonly string[]): Promise<Map<string, Entry>> {
    return (await this.ready()).getMany(keys);
  }

  put(entry: Entry): void {
    const copy = { ...entry };
    this.write((s) => s.put(copy));
  }

  delete(key: string): void {
    this.write((s) => s.delete(key));
  }

  deleteIf(expected: Entry): void {
    const copy = { ...expected };
    this.write((s) => s.deleteIf(copy));
  }

  async flush(): Promise<void> {
    return (await this.ready()).flush();
  }

  async update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[], once?: string): Promise<boolean> {
    return (await this.ready()).update(keys, decide, once);
  }

  async *chunks(size: number): AsyncIterable<Entry[]> {
    yield* (await this.ready()).chunks(size);
  }

  async tuplesOf(ip: string): Promise<Entry[]> {
    return (await this.ready()).tuplesOf(ip);
  }

  async fileProblem(): Promise<FileProblem | undefined> {
    while (this.switching) await this.switching.catch(() => undefined);
    if (!this.current) return { kind: 'damaged', reason: `its recovery failed (${this.failure})` };
    return this.current.fileProblem();
  }

  async abandon(): Promise<Abandoned> {
    while (this.switching) await this.switching.catch(() => undefined);
    const held = this.held;
    this.held = [];
    const inner = this.current ? await this.current.abandon() : { writes: [], close: async () => undefined };
    return { writes: [...inner.writes, ...held], close: inner.close };
  }

  async close(opts?: CloseOptions): Promise<void> {
    while (this.switching) await this.switching.catch(() => undefined);
    if (!this.current) {
      const lost = this.held.length;
      this.held = [];
      if (lost > 0) throw new PfgreyError('E_DB_WRITE', `${this.path}: ${lost} queued writes lost: no usable database (${this.failure})`);
      return;
    }
    return this.current.close(opts);
  }
}
