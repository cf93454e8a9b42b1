// The daemon's handle on its store, which can be swapped for a fresh one while the daemon runs:
// a database truncated, replaced or damaged underneath it is given up and recovered as at
// start (recover.ts), and the greylister, the scan and the tarpit's backlog check, which all
// hold this handle, carry on with the new store. Writes made during the swap are held and
// replayed into the new store; reads wait for it.

import type { Entry } from '../grey/entry.js';
import type { CloseOptions, FileStore, Store } from './types.js';

export class SwitchableStore implements FileStore {
  /** Writes made while a swap runs, for the store that comes out of it. */
  private held: Array<(next: Store) => void> | undefined;
  private switching: Promise<void> | undefined;

  constructor(private current: FileStore) {}

  get path(): string {
    return this.current.path;
  }

  get pendingWrites(): number {
    return this.current.pendingWrites + (this.held?.length ?? 0);
  }

  /** Whether a swap is under way. */
  get recovering(): boolean {
    return this.switching !== undefined;
  }

  /**
   * Replaces the store with what `replace` opens from the old one (which it gives up). Writes
   * made meanwhile go to the new store; if `replace` fails, to the old one, which stays.
   */
  async swap(replace: (old: FileStore) => Promise<FileStore>): Promise<void> {
    if (this.switching) return this.switching;
    this.held = [];
    const run = (async () => {
      try {
        this.current = await replace(this.current);
      } finally {
        const held = this.held ?? [];
        this.held = undefined;
        for (const write of held) write(this.current);
      }
    })();
    this.switching = run.finally(() => {
      this.switching = undefined;
    });
    return this.switching;
  }

  private async ready(): Promise<FileStore> {
    while (this.switching) await this.switching.catch(() => undefined);
    return this.current;
  }

  async get(key: string): Promise<Entry | undefined> {
    return (await this.ready()).get(key);
  }

  async getMany(keys: readonly string[]): Promise<Map<string, Entry>> {
    return (await this.ready()).getMany(keys);
  }

  put(entry: Entry): void {
    if (this.held) this.held.push((s) => s.put({ ...entry }));
    else this.current.put(entry);
  }

  delete(key: string): void {
    if (this.held) this.held.push((s) => s.delete(key));
    else this.current.delete(key);
  }

  deleteIf(expected: Entry): void {
    if (this.held) this.held.push((s) => s.deleteIf({ ...expected }));
    else this.current.deleteIf(expected);
  }

  async flush(): Promise<void> {
    return (await this.ready()).flush();
  }

  async *chunks(size: number): AsyncIterable<Entry[]> {
    yield* (await this.ready()).chunks(size);
  }

  async tuplesOf(ip: string): Promise<Entry[]> {
    return (await this.ready()).tuplesOf(ip);
  }

  async fileProblem(): Promise<string | undefined> {
    return (await this.ready()).fileProblem();
  }

  async abandon(): Promise<Array<(next: Store) => void>> {
    return (await this.ready()).abandon();
  }

  async close(opts?: CloseOptions): Promise<void> {
    return (await this.ready()).close(opts);
  }
}
