// A store held in memory: the same interface as the SQLite store, with nothing kept across a
// restart. The greylist core's tests run against it and against SQLite from one test file, so
// the rules are shown not to depend on the backend; it is also the reference for what a store
// must do (get, batched get, put, conditional delete, chunks in key order, tuples of an ip).

import { PfgreyError } from '../errors.js';
import type { CloseOptions, Entry, Store, StoreWrite } from './types.js';

export class MemoryStore implements Store {
  private readonly rows = new Map<string, Entry>();
  private closed = false;

  constructor(readonly path = ':memory:') {}

  get pendingWrites(): number {
    return 0;
  }

  async get(key: string): Promise<Entry | undefined> {
    const e = this.rows.get(key);
    return e && { ...e };
  }

  async getMany(keys: readonly string[]): Promise<Map<string, Entry>> {
    return this.getManyNow(keys);
  }

  put(entry: Entry): void {
    this.open();
    this.rows.set(entry.key, { ...entry });
  }

  delete(key: string): void {
    this.open();
    this.rows.delete(key);
  }

  deleteIf(expected: Entry): void {
    this.open();
    const e = this.rows.get(expected.key);
    if (e && e.first === expected.first && e.pass === expected.pass && e.expire === expected.expire &&
      e.bcount === expected.bcount && e.pcount === expected.pcount) this.rows.delete(expected.key);
  }

  async update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[]): Promise<boolean> {
    this.open();
    // Nothing else runs between this read and these writes: they are one synchronous step.
    for (const w of decide(this.getManyNow(keys))) {
      if ('put' in w) this.rows.set(w.put.key, { ...w.put });
      else this.rows.delete(w.delete);
    }
    return true;
  }

  private getManyNow(keys: readonly string[]): Map<string, Entry> {
    const found = new Map<string, Entry>();
    for (const k of keys) {
      const e = this.rows.get(k);
      if (e) found.set(k, { ...e });
    }
    return found;
  }

  async flush(): Promise<void> {}

  async *chunks(size: number): AsyncIterable<Entry[]> {
    // Key order by code unit: keys are byte strings, so this is byte order, as SQLite's.
    const all = [...this.rows.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    for (let i = 0; i < all.length; i += Math.max(1, size)) yield all.slice(i, i + Math.max(1, size)).map((e) => ({ ...e }));
  }

  async tuplesOf(ip: string): Promise<Entry[]> {
    const prefix = `${ip}\n`;
    return [...this.rows.values()].filter((e) => e.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((e) => ({ ...e }));
  }

  async close(_opts?: CloseOptions): Promise<void> {
    this.closed = true;
  }

  private open(): void {
    if (this.closed) throw new PfgreyError('E_DB_WRITE', `${this.path}: the database is closed`);
  }
}
